"""Figures the steps write next to their artifacts, as PNG bytes (matplotlib, no display)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from protloc.classes import CLASS_NAMES
from protloc.metrics import threshold_curve

# The object API (Figure + Agg canvas), not pyplot: no global state, no GUI backend, and about
# half a second less import time in the CPU steps.


def _subplots(nrows: int = 1, ncols: int = 1, **kw):
    fig = Figure(figsize=kw.pop("figsize"), layout=kw.pop("layout", None))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kw)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    # One render pass: bbox_inches="tight" would draw the figure twice.
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


def class_distribution(stats: dict[str, Any]) -> bytes:
    """Training samples per class before resampling and expected draws per epoch after (log scale),
    like the paper's Fig. 2."""
    classes = stats["classes"]
    before = np.array([c["train"] for c in classes], dtype=float)
    after = np.array([c["draws_per_epoch"] for c in classes], dtype=float)
    x = np.arange(len(classes))
    fig, ax = _subplots(figsize=(12, 5.5), layout="tight")
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
    fig, ax = _subplots(figsize=(10, 9), layout="tight")
    im = ax.imshow(corr, cmap="coolwarm", vmin=-0.3, vmax=0.3)
    ticks = [f"{i} {n}" for i, n in enumerate(CLASS_NAMES)]
    ax.set_xticks(range(len(ticks)), ticks, rotation=90, fontsize=7)
    ax.set_yticks(range(len(ticks)), ticks, fontsize=7)
    ax.set_title("Class co-occurrence correlation")
    fig.colorbar(im, ax=ax, shrink=0.8)
    return _png(fig)


def threshold_curves(
    probs: np.ndarray, y: np.ndarray, thresholds: np.ndarray, classes: int = 4
) -> bytes:
    """Precision, recall and F1 against the threshold for the classes with most validation
    positives, with the chosen threshold marked (the paper's Fig. 6)."""
    support = y.sum(axis=0)
    picked = [c for c in np.argsort(-support, kind="stable")[:classes] if support[c] > 0]
    grid = np.linspace(0.0, 1.0, 201)
    fig, axes = _subplots(2, 2, figsize=(10, 6.5), squeeze=False, sharex=True, sharey=True)
    fig.subplots_adjust(hspace=0.35, wspace=0.2, left=0.05, right=0.98, top=0.88, bottom=0.07)
    for ax, c in zip(axes.ravel(), picked, strict=False):
        truth = y[:, c].astype(bool)
        precision, recall, f1 = threshold_curve(probs[:, c], truth, grid)
        ax.plot(grid, precision, label="precision")
        ax.plot(grid, recall, label="recall")
        ax.plot(grid, f1, label="F1", linewidth=2)
        ax.axvline(thresholds[c], color="k", linestyle="--", linewidth=1)
        ax.set_title(f"{c} {CLASS_NAMES[c]} (n={int(truth.sum())})", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
    for ax in axes.ravel()[len(picked) :]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Precision, recall and F1 against the threshold (dashed: chosen)")
    return _png(fig)


def per_class_f1(report: dict[str, Any]) -> bytes:
    """Validation F1 per class at the fitted thresholds (horizontal bars: no rotated labels)."""
    classes = report["classes"]
    y = np.arange(len(classes))[::-1]
    fig, ax = _subplots(figsize=(8, 7))
    fig.subplots_adjust(left=0.32, right=0.97, top=0.93, bottom=0.07)
    ax.barh(
        y,
        [c["f1"] for c in classes],
        height=0.7,
        label=f"fitted thresholds (macro {report['macro_f1']:.3f})",
    )
    ax.axvline(
        report["macro_f1_at_0.5"],
        color="gray",
        linestyle=":",
        label=f"macro F1 at 0.5: {report['macro_f1_at_0.5']:.3f}",
    )
    ax.set_yticks(y, [f"{c['index']} {c['name']}" for c in classes], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("validation F1")
    method = report["method"]
    if method == "per_class":
        method += f", alpha {report['alpha']:g}"
    ax.set_title(f"Per-class F1 (thresholds: {method})")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def training_curves(chain: list[dict[str, Any]]) -> bytes:
    """Loss, learning rate and gradient norm per optimizer step, and validation loss and macro
    F1 per epoch, over the cycles of a snapshot chain laid end to end (the warm restarts show as
    the learning rate's saw-tooth); dotted lines mark where a cycle starts."""
    fig, axes = _subplots(4, 1, figsize=(10, 9), squeeze=False, sharex=True)
    axes = axes[:, 0]
    fig.subplots_adjust(hspace=0.15, left=0.09, right=0.98, top=0.95, bottom=0.06)
    offset = 0
    for m in chain:
        steps = [s for epoch in m.get("history", []) for s in epoch.get("steps", [])]
        x = np.array([offset + s["step"] for s in steps], dtype=float)
        label = f"cycle {m['cycle'] + 1} ({m['size']} px)"
        if len(x):
            axes[0].plot(x, [s["loss"] for s in steps], linewidth=0.8, label=label)
            axes[1].plot(x, [s["lr"] for s in steps], linewidth=1)
            axes[2].plot(x, [s["grad_norm"] for s in steps], linewidth=0.8)
        ends, val_loss, val_f1 = [], [], []
        for epoch in m.get("history", []):
            if "val" in epoch and epoch.get("steps"):
                ends.append(offset + epoch["steps"][-1]["step"])
                val_loss.append(epoch["val"]["loss"])
                val_f1.append(epoch["val"]["macro_f1_at_0.5"])
        axes[3].plot(
            ends,
            val_f1,
            marker="o",
            label="macro F1 at 0.5" if offset == 0 else None,
            color="tab:green",
        )
        axes[3].plot(
            ends,
            val_loss,
            marker="s",
            linestyle="--",
            color="tab:red",
            label="loss" if offset == 0 else None,
        )
        if offset:
            for ax in axes:
                ax.axvline(offset + 0.5, color="gray", linestyle=":", linewidth=1)
        offset = int(x[-1]) if len(x) else offset
    axes[0].set_ylabel("training loss")
    axes[0].legend(fontsize=8, loc="upper right")
    axes[1].set_ylabel("learning rate")
    axes[2].set_ylabel("gradient norm")
    axes[2].set_yscale("log")
    axes[3].set_ylabel("validation")
    axes[3].legend(fontsize=8, loc="upper left")
    axes[3].set_xlabel("optimizer step (cycles end to end)")
    fig.suptitle("Training curves")
    return _png(fig)


def warm_up() -> None:
    """Render a tiny figure once, loading the fonts, so the next figure renders warm."""
    fig, ax = _subplots(figsize=(2, 1))
    ax.set_title("warm-up")
    _png(fig)
