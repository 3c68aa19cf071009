"""One module per pipeline step: its command line (for docker compose and debugging) and its KFP
component, both derived from the step's config and both calling the step's one front door
(``protloc.steps``). ``factory`` writes the components; ``cluster`` places them on Kubernetes."""
