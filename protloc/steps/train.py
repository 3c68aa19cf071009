"""The train step's front door: one SGDR cycle, warm-started from the previous one.

A train step's output folder holds ``checkpoint.pt``, ``metrics.json`` and ``snapshots.json``:
the URIs of every snapshot of the chain so far, its own last. That is how every cycle's snapshot
reaches the ensemble: the infer step reads the last cycle's list.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Any

from protloc import schemas, storage
from protloc.config import TrainConfig
from protloc.data.identity import DataListing, require_unchanged
from protloc.data.manifest import COMPETITION, parse_manifest
from protloc.errors import ConfigError
from protloc.folders import (
    CHECKPOINT,
    CURVES,
    MANIFEST,
    METRICS,
    SNAPSHOTS,
    cycle_folder,
    read_snapshot_list,
    require_finished,
    step_frame,
)
from protloc.process import is_main
from protloc.recipes import with_recipe
from protloc.schemas import CycleMetrics, CycleSnapshots
from protloc.steps.data import open_checked_store
from protloc.version import code_version


def train_step(
    cfg: TrainConfig,
    *,
    data_root: str,
    split: str,
    out: str,
    previous: str | None = None,
    store: str | None = None,
    out_uri: str | None = None,
    data_fingerprint: str = "",
) -> dict[str, Any]:
    """One cycle, warm-started from ``previous`` (the previous train step's folder); with
    ``cfg.gpus`` N > 1, in N ranks of this front door (rank 0 writes).

    ``out_uri`` is where later steps will read ``out`` (on KFP the artifact's s3:// URI, while
    ``out`` is the pod's local copy); it defaults to ``out``. With ``cfg.work_root`` (durable
    storage, e.g. s3://) the per-epoch checkpoints live there, so a retried pod resumes.
    """
    from protloc import distributed

    cfg = with_recipe(cfg)
    if distributed.launches(cfg.gpus):
        folders = {"split": split, "out": out, "previous": previous, "store": store}
        return distributed.in_ranks(
            train_step,
            cfg,
            data_root=data_root,
            out_uri=out_uri,
            data_fingerprint=data_fingerprint,
            **folders,
        )
    from protloc.data.cache import default_cache_dir
    from protloc.train.cycle import check_existing, train_cycle

    data = DataListing(data_root)
    require_unchanged(data_fingerprint, data, cfg.pretrained, "train")
    require_finished({"split": split, "previous": previous, "store": store})
    opened = open_checked_store(store, data)
    _check_chain(previous, cfg)
    chain = read_snapshot_list(previous) if previous else []  # refused now, not after training
    init = storage.join(previous, CHECKPOINT) if previous else ""
    manifest = storage.join(split, MANIFEST)
    inputs = cycle_inputs(manifest, data, init, cfg)
    work = work_folder(cfg.work_root, cfg, inputs) if cfg.work_root else out
    # A checkpoint from other inputs is refused before the folder is taken (and unmarked).
    check_existing(storage.join(work, CHECKPOINT), cfg, init, inputs)
    with step_frame(f"train cycle {cfg.cycle}", out), _plots() as figures:
        storage.check_writable_folder(cfg.cache_dir or str(default_cache_dir()), "cache folder")
        metrics = train_cycle(cfg, manifest, data, init=init, inputs=inputs, store=opened, out=work)
        if is_main():
            _publish(work, out, out_uri or out, chain, metrics, figures)
        return metrics


def _plots() -> Any:
    """Rank 0's figure helper (it imports matplotlib while the cycle trains)."""
    from protloc.report.plot_worker import BackgroundPlots

    return BackgroundPlots() if is_main() else contextlib.nullcontext()


def _check_chain(previous: str | None, cfg: TrainConfig) -> None:
    """A chain of cycles keeps one fold."""
    if previous:
        before = schemas.read(CycleMetrics, storage.join(previous, METRICS)).fold
        if before != cfg.fold:
            raise ConfigError(
                f"--previous {previous} is a cycle of fold {before}, this cycle is of fold "
                f"{cfg.fold}: a chain keeps one fold"
            )


def _publish(
    work: str,
    out: str,
    out_uri: str,
    chain: list[str],
    metrics: dict[str, Any],
    figures: Any,
) -> None:
    """The cycle's output folder: its checkpoint and metrics (copied from a durable work
    folder), the curves and page of the chain so far, and the chain's snapshot list."""
    from protloc.report.pages import training_page

    if work != out:
        for name in (CHECKPOINT, METRICS):
            storage.write_bytes(
                storage.join(out, name), storage.read_bytes(storage.join(work, name))
            )
    # The page shows the chain so far: the curves of every earlier cycle, then this one's.
    chain_metrics = [storage.read_json(storage.join(cycle_folder(uri), METRICS)) for uri in chain]
    chain_metrics.append(metrics)
    figures.render("training_curves", storage.join(out, CURVES), chain_metrics)
    figures.close()
    training_page(chain_metrics, storage.read_bytes(storage.join(out, CURVES)), out)
    schemas.write(
        CycleSnapshots,
        storage.join(out, SNAPSHOTS),
        {"snapshots": [*chain, storage.join(out_uri, CHECKPOINT)]},
    )


def cycle_inputs(
    manifest_uri: str, data: DataListing, init: str, cfg: TrainConfig
) -> dict[str, Any]:
    """Everything one cycle's result depends on, by content: the manifest's bytes, the identity
    of its images, the warm-start (or pretrained) weights' bytes, the settings and the code. A
    finished or resumable cycle is reused only for the same inputs (see
    ``protloc.train.resume``), and the durable work folder is keyed by them."""
    raw = storage.read_bytes(manifest_uri)
    manifest = parse_manifest(raw, manifest_uri)
    own = manifest.frame[manifest.frame["source"] == COMPETITION]
    return {
        "manifest_sha256": hashlib.sha256(raw).hexdigest(),
        "assignment_sha256": manifest.assignment_sha256,
        "images": data.images_identity("train", list(own["id"])),
        "external_images": {
            root: DataListing(root).images_identity("train", ids)
            for root, ids in manifest.external.items()
        },
        "init_sha256": hashlib.sha256(storage.read_bytes(init)).hexdigest() if init else "",
        # ImageNet weights start a chain only (its first cycle); keyed by their bytes.
        "pretrained_sha256": _pretrained_sha256(cfg.pretrained)
        if cfg.pretrained and not init
        else "",
        "settings": cfg.result_fields(),
        "code_version": code_version(),
    }


def _pretrained_sha256(uri: str) -> str:
    if not storage.exists(uri):
        raise ConfigError(f"pretrained weights {uri}: no such file (they are never downloaded)")
    return hashlib.sha256(storage.read_bytes(uri)).hexdigest()


def work_folder(work_root: str, cfg: TrainConfig, inputs: dict[str, Any]) -> str:
    """The durable folder of one cycle's per-epoch checkpoints under ``work_root``, keyed by
    the cycle's inputs (not by where they live): a retried pod, or the same run submitted again,
    resumes; a run with other data or settings never picks up a stale checkpoint."""
    h = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode())
    return storage.join(work_root, f"cycle{cfg.cycle}-{cfg.size}px-{h.hexdigest()[:16]}")
