"""The global pooling before the classifier (``pool`` in the train config): average (the
paper's), or average and max concatenated (the 2018 winner's head), which doubles the features
the classifier sees."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from protloc.architectures import POOLINGS


class AvgMaxPool(nn.Module):
    """Global average and max pooling, concatenated along the channels: (N, 2C, 1, 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.adaptive_avg_pool2d(x, 1), F.adaptive_max_pool2d(x, 1)], dim=1)


def make_pool(name: str) -> tuple[nn.Module, int]:
    """(the pooling module ``name`` registers, how many features it gives per channel)."""
    width = POOLINGS.get(name).width
    return (nn.AdaptiveAvgPool2d(1) if name == "avg" else AvgMaxPool()), width
