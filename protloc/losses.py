"""The training losses, registered by name: ``loss`` in the train config is one of them.

Each takes (logits (N, C), 0/1 targets (N, C)) and returns a scalar tensor, computed in float32
(stable under bf16 autocast). The train step trains with it and reports it on the validation
rows too, so a new loss is one registered function here. torch is imported inside the functions:
the configs read this registry's names on the CPU image, which has no torch.
"""

from __future__ import annotations

from typing import Any

from protloc.registry import Registry

LOSSES = Registry("loss")


def soft_f1_from_probs(probs: Any, targets: Any, eps: float = 1e-7) -> Any:
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


@LOSSES.register("soft_f1", "differentiable macro F1 from sigmoid outputs (the paper's)")
def soft_f1_loss(logits: Any, targets: Any) -> Any:
    """Soft-F1 loss from logits."""
    import torch

    return soft_f1_from_probs(torch.sigmoid(logits.float()), targets.float())


@LOSSES.register("bce", "binary cross-entropy, mean over classes and samples")
def bce_loss(logits: Any, targets: Any) -> Any:
    """Mean binary cross-entropy over classes and samples."""
    import torch.nn.functional as F

    return F.binary_cross_entropy_with_logits(logits.float(), targets.float())


def logits_of(probs: Any, eps: float = 1e-7) -> Any:
    """The logits of probabilities (clamped to [eps, 1 - eps]): how a loss defined on logits
    scores predictions that were kept as probabilities (the validation rows)."""
    import torch

    p = probs.double().clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)
