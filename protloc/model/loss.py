"""Objectives: soft F1 (the paper's) and binary cross-entropy (for comparison)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from protloc.config import LOSSES


def soft_f1_from_probs(
    probs: torch.Tensor, targets: torch.Tensor, eps: float = 1e-7
) -> torch.Tensor:
    """1 - macro F1 over classes, with tp, fp, fn counted softly from probabilities in [0, 1].

    tp = sum(p * y), fp = sum(p * (1 - y)), fn = sum((1 - p) * y) over the batch, per class; F1 =
    2 tp / (2 tp + fp + fn). On hard 0/1 predictions it equals 1 - scikit-learn's macro F1 (a class
    with neither positives nor predicted positives scores 0, as zero_division=0 does).
    """
    targets = targets.to(probs.dtype)
    tp = (probs * targets).sum(dim=0)
    fp = (probs * (1 - targets)).sum(dim=0)
    fn = ((1 - probs) * targets).sum(dim=0)
    f1 = 2 * tp / (2 * tp + fp + fn + eps)
    return 1 - f1.mean()


def soft_f1_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Soft-F1 loss from logits (computed in float32 for stability under autocast)."""
    return soft_f1_from_probs(torch.sigmoid(logits.float()), targets.float())


def bce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over classes and samples."""
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float())


def get_loss(name: str):
    """The loss function called ``name`` ('soft_f1' or 'bce')."""
    from protloc.errors import ConfigError

    if name == "soft_f1":
        return soft_f1_loss
    if name == "bce":
        return bce_loss
    raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {name!r}")
