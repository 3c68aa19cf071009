"""Reports: the figures and the run summary."""
