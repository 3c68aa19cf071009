"""Threshold methods: how the 28 decision thresholds are chosen, one registry (numpy only).

A method is a function ``(probs, y, target, setting) -> thresholds``. It fits on the held-out
rows' probabilities ``probs`` and 0/1 labels ``y``, for the rows ``target`` the thresholds will be
applied to (only ``proportion`` looks at them, and it looks at no label). A sample is positive
for a class when its probability is above the class's threshold.

:func:`cross_fit` is what tells whether a method generalises: fit on one half of the held-out
rows, apply to the other, both ways, pooled. ``auto`` (for the method or for alpha) is itself a
fit: the choice is made by cross-fit *within the fitting rows*, so cross-fitting ``auto`` is a
nested estimate and not the best of several cross-fits (which would flatter it).

The per-class search is exact: sort the class's scores once, take cumulative true and false
positives, and evaluate every cut between two distinct scores, maximising F1 - alpha * |P - R|
(the paper's penalty, which keeps precision and recall close so the threshold generalises; its
printed formula is garbled, this is its stated intent). The chosen threshold is the midpoint
between the last score kept and the first score dropped. A class with no positive in the fitting
rows keeps FALLBACK_THRESHOLD (0.5, the threshold the training loss aims at).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

import numpy as np

from protloc.errors import ConfigError
from protloc.metrics import macro_f1, threshold_curve
from protloc.registry import Registry

FALLBACK_THRESHOLD = 0.5
AUTO = "auto"
# The alphas ``alpha=auto`` chooses from (0: plain F1; the paper's penalty grows to the right).
ALPHA_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
ALPHA_HELP = (
    "penalty on |precision - recall| (0: plain F1; auto: the alpha of "
    f"{', '.join(f'{a:g}' for a in ALPHA_GRID)} with the best 2-fold cross-fit)"
)
GLOBAL_GRID = np.round(np.arange(0.01, 1.0, 0.01), 2)

THRESHOLD_METHODS = Registry("threshold method")

Fit = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Setting:
    """What the methods may use besides the rows: per_class's alpha (None: auto) and each
    class's share of positives in the training labels (proportion's target rate)."""

    alpha: float | None
    prior: np.ndarray


@dataclass(frozen=True)
class ClassFit:
    """The best cut for one class."""

    threshold: float
    objective: float
    precision: float
    recall: float
    f1: float
    fitted: bool  # False: no positive to fit on, the fallback threshold is used


def search_class(scores: np.ndarray, y: np.ndarray, alpha: float) -> ClassFit:
    """Exact search for one class: O(N log N) for the sort, O(N) for every cut."""
    scores = np.asarray(scores, dtype=np.float64)
    y = np.asarray(y, dtype=bool)
    n_pos = int(y.sum())
    if n_pos == 0:
        return ClassFit(FALLBACK_THRESHOLD, 0.0, 0.0, 0.0, 0.0, fitted=False)
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], y[order]
    tp = np.cumsum(t)
    fp = np.arange(1, len(s) + 1) - tp
    # A cut can only fall between two distinct scores: keep the last row of each group of ties.
    last = np.r_[s[:-1] != s[1:], True]
    tp, fp, kept = tp[last], fp[last], s[last]
    dropped = np.r_[kept[1:], -np.inf]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    f1 = 2 * tp / (tp + fp + n_pos)
    objective = f1 - alpha * np.abs(precision - recall)
    k = int(np.argmax(objective))
    if objective[k] < 0:  # predicting nothing (objective 0) beats every cut
        return ClassFit(float(s[0]), 0.0, 0.0, 0.0, 0.0, fitted=True)
    if np.isfinite(dropped[k]):
        threshold = 0.5 * (kept[k] + dropped[k])
    else:  # every sample positive: just below the lowest score
        threshold = float(np.nextafter(kept[k], -np.inf))
    return ClassFit(
        float(threshold),
        float(objective[k]),
        float(precision[k]),
        float(recall[k]),
        float(f1[k]),
        fitted=True,
    )


def fit_thresholds(
    probs: np.ndarray, y: np.ndarray, alpha: float
) -> tuple[np.ndarray, list[ClassFit]]:
    """Per-class thresholds for (N, C) probabilities and 0/1 targets."""
    if not (np.isfinite(alpha) and alpha >= 0):
        raise ConfigError(f"alpha must be a finite number >= 0, got {alpha}")
    fits = [search_class(probs[:, c], y[:, c], alpha) for c in range(probs.shape[1])]
    return np.array([f.threshold for f in fits]), fits


def grid_search_class(
    scores: np.ndarray, y: np.ndarray, alpha: float, grid: np.ndarray
) -> tuple[float, float]:
    """(threshold, objective) of the best grid point for one class (the yardstick)."""
    precision, recall, f1 = threshold_curve(scores, y, grid)
    objective = f1 - alpha * np.abs(precision - recall)
    k = int(np.argmax(objective))
    return float(grid[k]), float(objective[k])


def grid_macro_f1(probs: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Macro F1 of one threshold for all classes, at every grid point: (G,).

    Sorting each class once and counting with searchsorted costs O(N log N + G log N) per class,
    instead of a full pass over the (N, C) matrix per grid point.
    """
    yb = np.asarray(y, dtype=bool)
    f1 = np.zeros((len(grid), probs.shape[1]))
    for c in range(probs.shape[1]):
        pos = np.sort(probs[yb[:, c], c])
        neg = np.sort(probs[~yb[:, c], c])
        tp = len(pos) - np.searchsorted(pos, grid, side="right")  # scores above t
        fp = len(neg) - np.searchsorted(neg, grid, side="right")
        den = tp + fp + len(pos)
        f1[:, c] = np.divide(2 * tp, den, out=np.zeros(len(grid)), where=den > 0)
    return f1.mean(axis=1)


def best_global_threshold(
    probs: np.ndarray, y: np.ndarray, grid: np.ndarray = GLOBAL_GRID
) -> float:
    """The single threshold for all classes with the best macro F1 (grid 0.01..0.99)."""
    return float(grid[int(np.argmax(grid_macro_f1(probs, y, grid)))])


def proportion_thresholds(target: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Per-class thresholds under which round(prior[c] * N) of the N ``target`` rows are
    positive for class c (fewer when ties straddle the cut: a tie is never split)."""
    n = len(target)
    out = np.empty(target.shape[1])
    for c in range(target.shape[1]):
        s = np.sort(target[:, c])[::-1]
        k = round(float(prior[c]) * n)
        if n == 0 or k <= 0:
            out[c] = s[0] if n else FALLBACK_THRESHOLD  # nothing is above the top score
        elif k >= n:
            out[c] = np.nextafter(s[-1], -np.inf)
        else:
            out[c] = 0.5 * (s[k - 1] + s[k]) if s[k - 1] > s[k] else s[k - 1]
    return out


@THRESHOLD_METHODS.register(
    "per_class", "each class's cut maximising F1 - alpha*|P - R| on the held-out rows (the paper)"
)
def per_class(probs: np.ndarray, y: np.ndarray, target: np.ndarray, s: Setting) -> np.ndarray:
    alpha = s.alpha if s.alpha is not None else choose_alpha(probs, y)
    return fit_thresholds(probs, y, alpha)[0]


@THRESHOLD_METHODS.register(
    "global", "one threshold for every class, the best macro F1 on the held-out rows"
)
def global_(probs: np.ndarray, y: np.ndarray, target: np.ndarray, s: Setting) -> np.ndarray:
    return np.full(probs.shape[1], best_global_threshold(probs, y))


@THRESHOLD_METHODS.register(
    "proportion",
    "each class positive on its share of the training labels, counted on the rows predicted",
)
def proportion(probs: np.ndarray, y: np.ndarray, target: np.ndarray, s: Setting) -> np.ndarray:
    return proportion_thresholds(target, s.prior)


def cross_fit(probs: np.ndarray, y: np.ndarray, fit: Fit, seed: int = 0) -> float:
    """Macro F1 of thresholds fitted on one half of the rows and applied to the other, both
    ways, pooled: an estimate of the macro F1 on rows the thresholds never saw."""
    n = len(y)
    order = np.random.default_rng(seed).permutation(n)
    halves = (order[: n // 2], order[n // 2 :])
    predicted = np.zeros_like(y, dtype=bool)
    for a, b in (halves, halves[::-1]):
        predicted[b] = probs[b] > fit(probs[a], y[a], probs[b])
    return macro_f1(y, predicted.astype(float), 0.5)


def choose_alpha(probs: np.ndarray, y: np.ndarray) -> float:
    """The alpha of ALPHA_GRID with the best cross-fit on these rows (ties: the smallest)."""
    scores = [
        cross_fit(probs, y, lambda p, t, _, a=a: fit_thresholds(p, t, a)[0]) for a in ALPHA_GRID
    ]
    return ALPHA_GRID[int(np.argmax(scores))]


def method_fit(method: str, setting: Setting) -> Fit:
    """The fit ``method`` (a registered name, or auto) makes, as one function of the rows."""
    if method == AUTO:
        return lambda p, t, target: method_fit(choose_method(p, t, setting), setting)(p, t, target)
    fn = THRESHOLD_METHODS.get(method)
    return lambda p, t, target: fn(p, t, target, setting)


def choose_method(probs: np.ndarray, y: np.ndarray, setting: Setting) -> str:
    """The registered method with the best cross-fit on these rows (ties: the first)."""
    names = list(THRESHOLD_METHODS)
    scores = [cross_fit(probs, y, method_fit(name, setting)) for name in names]
    return names[int(np.argmax(scores))]


def parse_alpha(text: str) -> float | None:
    """``alpha`` as the config holds it: a number in [0, 1], or None for auto."""
    if text == AUTO:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value <= 1):
        raise ConfigError(f"alpha must be a number in [0, 1] or {AUTO}, got {text!r}")
    return value


class AlphaChoices(Collection[str]):
    """What the ``alpha`` setting accepts: auto, or a number in [0, 1]."""

    range_extra = ", or a number in [0, 1]"

    def __contains__(self, text: object) -> bool:
        try:
            parse_alpha(str(text))
        except ConfigError:
            return False
        return isinstance(text, str)

    def check(self, text: str) -> None:
        """Raise the ConfigError that says what ``alpha`` accepts."""
        parse_alpha(text)

    def __iter__(self) -> Iterator[str]:
        return iter((AUTO,))

    def __len__(self) -> int:
        return 1


class MethodChoices(Collection[str]):
    """What the ``method`` setting accepts: a registered threshold method, or auto (the one
    with the best 2-fold cross-fit)."""

    range_extra = f" ({AUTO}: the one with the best 2-fold cross-fit)"

    registry = THRESHOLD_METHODS

    def __contains__(self, name: object) -> bool:
        return name == AUTO or name in THRESHOLD_METHODS

    def __iter__(self) -> Iterator[str]:
        return iter([*THRESHOLD_METHODS, AUTO])

    def __len__(self) -> int:
        return len(THRESHOLD_METHODS) + 1
