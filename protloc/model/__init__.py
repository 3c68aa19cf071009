"""The model: Inception-v3 with BatchNorm, its losses and its checkpoint contract (torch)."""
