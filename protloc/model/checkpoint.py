"""The checkpoint contract: ``torch.save`` of a plain dict, loadable with ``weights_only=True``.

Keys: ``arch``, ``pool`` (absent: ``avg``, the only pooling before it was recorded), ``num_classes``, ``class_names``, ``model`` (state dict), ``cycle``, ``size``,
``config`` (the resolved train config), ``norm`` (per-channel mean and std), ``epochs_done``,
``complete``, ``val_metrics``; while a cycle is running also ``optimizer`` (for resuming).
"""

from __future__ import annotations

import io
import os
import tempfile
from typing import Any

import torch

from protloc import storage
from protloc.architectures import ARCHITECTURES, POOLINGS
from protloc.classes import CLASS_NAMES, NUM_CLASSES
from protloc.errors import ArtifactError, StorageError

REQUIRED = ("arch", "num_classes", "model", "size", "config", "norm", "epochs_done", "complete")


def pooling(state: dict[str, Any]) -> str:
    """The global pooling a checkpoint's network uses (``avg`` when it records none: a
    checkpoint written before pooling could be chosen, when average pooling was the only one)."""
    return state.get("pool", "avg")


def save_checkpoint(state: dict[str, Any], uri: str) -> None:
    """Write atomically (local rename, or one completed S3 upload)."""
    if storage.is_remote(uri):
        fd, tmp = tempfile.mkstemp(suffix=".pt")
        os.close(fd)
        try:
            torch.save(state, tmp)
            storage.upload_file(tmp, uri)
        finally:
            os.unlink(tmp)
        return
    buf = io.BytesIO()
    torch.save(state, buf)
    storage.write_bytes(uri, buf.getvalue())


def load_checkpoint(uri: str) -> dict[str, Any]:
    """Load and check a protloc checkpoint; another architecture or class count is refused."""
    try:
        data = storage.read_bytes(uri)
    except StorageError as exc:
        raise ArtifactError(f"checkpoint {exc}") from None
    return parse_checkpoint(data, uri)


def parse_checkpoint(data: bytes, uri: str) -> dict[str, Any]:
    """Check a protloc checkpoint already read from ``uri``."""
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ArtifactError(
            f"{uri}: not a readable checkpoint ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED):
        what = f"keys {sorted(state)[:8]}" if isinstance(state, dict) else type(state).__name__
        raise ArtifactError(f"{uri}: not a protloc checkpoint ({what})")
    if state["arch"] not in ARCHITECTURES:
        raise ArtifactError(
            f"{uri}: checkpoint is a {state['arch']!r} model; this protloc builds "
            f"{', '.join(ARCHITECTURES)}"
        )
    if pooling(state) not in POOLINGS:
        raise ArtifactError(
            f"{uri}: checkpoint pools with {pooling(state)!r}; this protloc builds "
            f"{', '.join(POOLINGS)}"
        )
    if state["num_classes"] != NUM_CLASSES or list(state.get("class_names", CLASS_NAMES)) != list(
        CLASS_NAMES
    ):
        raise ArtifactError(
            f"{uri}: checkpoint has {state['num_classes']} classes, expected {NUM_CLASSES}"
        )
    return state
