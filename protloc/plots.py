"""Figures the steps write next to their artifacts, as PNG bytes (matplotlib, no display)."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from protloc.classes import CLASS_NAMES


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def class_distribution(stats: dict[str, Any]) -> bytes:
    """Training samples per class before resampling and expected draws per epoch after (log scale),
    like the paper's Fig. 2."""
    classes = stats["classes"]
    before = np.array([c["train"] for c in classes], dtype=float)
    after = np.array([c["draws_per_epoch"] for c in classes], dtype=float)
    x = np.arange(len(classes))
    fig, ax = plt.subplots(figsize=(12, 4.5))
    ax.bar(x - 0.2, np.maximum(before, 0.5), width=0.4, label="training samples")
    ax.bar(x + 0.2, np.maximum(after, 0.5), width=0.4, label="draws per epoch after resampling")
    ax.set_yscale("log")
    ax.set_xticks(
        x, [f"{c['index']} {c['name']}" for c in classes], rotation=75, ha="right", fontsize=8
    )
    ratio = stats["commonest_to_rarest"]
    ax.set_title(
        f"Class distribution (commonest/rarest {ratio['before']:.0f} before, "
        f"{ratio['after']:.1f} after)"
    )
    ax.legend()
    return _png(fig)


def cooccurrence(y: np.ndarray) -> bytes:
    """Pearson correlation between class indicators, like the paper's Fig. 3."""
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(y.T.astype(float))
    corr = np.nan_to_num(corr)
    fig, ax = plt.subplots(figsize=(9, 8))
    im = ax.imshow(corr, cmap="coolwarm", vmin=-0.3, vmax=0.3)
    ticks = [f"{i} {n}" for i, n in enumerate(CLASS_NAMES)]
    ax.set_xticks(range(len(ticks)), ticks, rotation=90, fontsize=7)
    ax.set_yticks(range(len(ticks)), ticks, fontsize=7)
    ax.set_title("Class co-occurrence correlation")
    fig.colorbar(im, ax=ax, shrink=0.8)
    return _png(fig)
