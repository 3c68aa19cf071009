"""protloc: where a protein sits in a human cell, from 4-channel HPA microscopy images.

The library holds all the logic; it never imports kfp, and the modules the CPU steps use
(split, thresholds, submission) never import torch.
"""

__version__ = "0.1.0"
