"""The experiments that chose protloc's defaults; each module's docstring ends with its result
(``python -m bench.decisions.<experiment>``)."""
