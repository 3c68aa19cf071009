"""Training: one SGDR cycle, its schedule and the distributed helpers."""
