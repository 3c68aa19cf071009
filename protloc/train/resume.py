"""What a cycle's checkpoint holds, and when one may be resumed or reused.

A checkpoint records the cycle's inputs by content (``protloc.steps.train.cycle_inputs``: the
manifest's bytes, the images' identity, the warm-start weights, the settings, the code); a
checkpoint found in the output (or durable work) folder is resumed, or reused when complete,
only for the same inputs, else refused naming what differs.
"""

from __future__ import annotations

from typing import Any

from protloc import storage
from protloc.classes import CLASS_NAMES, NUM_CLASSES
from protloc.config import TrainConfig
from protloc.errors import ArtifactError
from protloc.model.checkpoint import load_checkpoint


def check_existing(
    ckpt_uri: str, cfg: TrainConfig, init: str, inputs: dict[str, Any] | None
) -> None:
    """Refuse a checkpoint at ``ckpt_uri`` made from other inputs (no checkpoint: nothing to do)."""
    if storage.exists(ckpt_uri):
        check_resumable(load_checkpoint(ckpt_uri), cfg, init, inputs, ckpt_uri)


def check_resumable(
    state: dict, cfg: TrainConfig, init: str, inputs: dict[str, Any] | None, uri: str
) -> None:
    """Refuse ``state`` (read from ``uri``) unless it was made from the same inputs (or, for a
    checkpoint without recorded inputs, the same settings and warm start)."""
    saved_inputs = state.get("inputs")
    if inputs is not None and saved_inputs is not None:
        for key, value in inputs.items():
            if saved_inputs.get(key) != value:
                raise ArtifactError(
                    f"{uri} holds a cycle made from other inputs "
                    f"({_differs(key, saved_inputs.get(key), value)}): "
                    f"use another --out, or delete it to start over"
                )
        return
    saved = {**state["config"], "init": state.get("init", state["config"].get("init") or "")}
    # Written before these could be chosen: average pooling, whole samples.
    saved = {"pool": "avg", "crop": 1.0, "crop_jitter": 0.0, **saved}
    for key, value in {**cfg.result_fields(), "init": init}.items():
        if saved.get(key) != value:
            raise ArtifactError(
                f"{uri} holds a cycle with {key}={saved.get(key)!r}, this run asks {key}={value!r}: "
                f"use another --out, or delete it to start over"
            )


def _differs(key: str, saved: Any, now: Any) -> str:
    """'settings lr_max 0.2 -> 0.1', 'manifest_sha256 3f2a... -> 9c1b...'."""
    if isinstance(saved, dict) and isinstance(now, dict):
        for k in sorted(set(saved) | set(now)):
            if saved.get(k) != now.get(k):
                return f"{key} {k}: {saved.get(k)!r} then, {now.get(k)!r} now"
    return f"{key}: {str(saved)[:16]}... then, {str(now)[:16]}... now"


def checkpoint_state(
    model_state: dict,
    cfg: TrainConfig,
    *,
    init: str,
    inputs: dict[str, Any] | None,
    norm: dict[str, list[float]],
    epochs_done: int,
    history: list[dict],
    metrics: dict[str, Any] | None,
    optimizer_state: dict | None,
) -> dict:
    """The checkpoint contract (``protloc.model.checkpoint``); complete when ``metrics`` is
    given, resumable while ``optimizer_state`` is."""
    state = {
        "arch": cfg.arch,
        "pool": cfg.pool,
        "num_classes": NUM_CLASSES,
        "class_names": list(CLASS_NAMES),
        "model": model_state,
        "cycle": cfg.cycle,
        "size": cfg.size,
        "config": cfg.to_dict(),
        "init": init,
        "inputs": inputs,
        "norm": norm,
        "epochs_done": epochs_done,
        "complete": metrics is not None,
        "val_metrics": metrics,
        "history": history,
    }
    if optimizer_state is not None:
        state["optimizer"] = optimizer_state
    return state
