"""One module per pipeline step: its command line (for docker compose and debugging) and, from
the pipeline issue on, its KFP component. Both are thin: all logic lives in ``protloc``."""
