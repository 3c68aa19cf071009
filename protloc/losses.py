"""The training losses, registered by name: ``loss`` in the train config is one of them.

Each takes (logits (N, C), 0/1 targets (N, C)) and returns a scalar tensor, computed in float32
(stable under bf16 autocast). ``loss`` may also be a weighted sum of registered losses
(``focal:0.5+lovasz:0.5``, :func:`make_loss`). The train step trains with it and reports it on
the validation rows too, so a new loss is one registered function here. torch is imported inside the functions:
the configs read this registry's names on the CPU image, which has no torch.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Collection, Iterator
from typing import Any

from protloc.errors import ConfigError
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


@LOSSES.register("focal", "binary focal loss, (1 - p_t)^gamma x BCE (gamma: focal_gamma; 0 is bce)")
def focal_loss(logits: Any, targets: Any, gamma: float = 2.0) -> Any:
    """Binary focal loss (Lin et al. 2017), mean over classes and samples: each term's BCE
    down-weighted by (1 - p_t)^gamma, p_t the probability given to the true label."""
    import torch
    import torch.nn.functional as F

    bce = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    # 1 - p_t without cancellation; floored, because 0 ** gamma has an infinite derivative for
    # gamma < 1 (a label predicted right by a margin of 17 or more rounds 1 - p_t to 0)
    hard = (-torch.expm1(-bce)).clamp_min(1e-12)
    return (hard**gamma * bce).mean()


@LOSSES.register("lovasz", "Lovász hinge: the convex surrogate of each image's Jaccard loss")
def lovasz_loss(logits: Any, targets: Any) -> Any:
    """Multi-label Lovász hinge (Berman et al. 2018), per image over its classes, averaged: a
    convex surrogate of each image's Jaccard loss, 1 - |positives predicted| / |positives or
    predicted|, as the 2018 winner used it beside focal loss. All images at once (one sort)."""
    import torch

    logits, targets = logits.float(), targets.float()
    errors, order = torch.sort(1 - logits * (2 * targets - 1), dim=1, descending=True)
    gt = torch.gather(targets, 1, order)
    # alg. 1's weights: the Jaccard loss of each prefix of the sorted labels minus the previous's
    positives = gt.sum(dim=1, keepdim=True)
    jaccard = 1 - (positives - gt.cumsum(dim=1)) / (positives + (1 - gt).cumsum(dim=1))
    weights = torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], dim=1)
    return (torch.relu(errors) * weights).sum(dim=1).mean()


SUM_EXAMPLE = "focal:0.5+lovasz:0.5"


def parse_loss(text: str) -> list[tuple[str, float]]:
    """``'focal:0.5+lovasz:0.5'`` -> ``[('focal', 0.5), ('lovasz', 0.5)]``; a bare name weighs 1.
    An unknown name, a weight that is not a positive finite number or a term given twice is a
    ConfigError naming it."""
    terms: list[tuple[str, float]] = []
    for term in str(text).split("+"):
        name, sep, weight_text = term.strip().partition(":")
        if name not in LOSSES:
            raise ConfigError(
                f"loss must be one of {', '.join(LOSSES)} or a weighted sum such as "
                f"{SUM_EXAMPLE}, got {text!r} (unknown term {name!r})"
            )
        try:
            weight = float(weight_text) if sep else 1.0
        except ValueError:
            weight = math.nan
        if not (math.isfinite(weight) and weight > 0):
            raise ConfigError(f"loss {text!r}: {name}'s weight must be a positive number, "
                              f"got {weight_text!r}")  # fmt: skip
        if name in (n for n, _ in terms):
            raise ConfigError(f"loss {text!r}: {name} is given twice")
        terms.append((name, weight))
    return terms


class LossExpressions(Collection[str]):
    """What the ``loss`` setting accepts: a registered loss or a weighted sum of them. Iterating
    gives the registered names (the CLI's and the docs' list); ``in`` parses."""

    registry = LOSSES
    range_extra = f", or a weighted sum of them such as {SUM_EXAMPLE}"

    def __contains__(self, text: object) -> bool:
        try:
            parse_loss(str(text))
        except ConfigError:
            return False
        return isinstance(text, str)

    def check(self, text: str) -> None:
        """Raise the ConfigError that names what is wrong in ``text``."""
        parse_loss(text)

    def __iter__(self) -> Iterator[str]:
        return iter(LOSSES)

    def __len__(self) -> int:
        return len(LOSSES)


def make_loss(text: str, focal_gamma: float = 2.0) -> Callable[[Any, Any], Any]:
    """The training loss ``text`` names (a registered loss or a weighted sum of them) as one
    function of (logits, targets); a loss with a ``gamma`` keyword gets ``focal_gamma``."""
    terms = []
    for name, weight in parse_loss(text):
        fn = LOSSES.get(name)
        if "gamma" in inspect.signature(fn).parameters:
            fn = functools.partial(fn, gamma=focal_gamma)
        terms.append((weight, fn))
    if len(terms) == 1 and terms[0][0] == 1.0:
        return terms[0][1]

    def weighted_sum(logits: Any, targets: Any) -> Any:
        return sum(weight * fn(logits, targets) for weight, fn in terms)

    return weighted_sum


def logits_of(probs: Any, eps: float = 1e-7) -> Any:
    """The logits of probabilities (clamped to [eps, 1 - eps]): how a loss defined on logits
    scores predictions that were kept as probabilities (the validation rows)."""
    import torch

    p = probs.double().clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)
