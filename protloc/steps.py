"""One entry point per pipeline step, on plain folders and URIs (the KFP components in
``components/`` call these; they know nothing of KFP).

A train step's output folder holds its ``checkpoint.pt``, ``metrics.json`` and ``snapshots.json``:
the URIs of every snapshot of the chain so far, its own last. That is how every cycle's snapshot
reaches the ensemble: the infer step reads the last cycle's list. Every step also writes
``timing.json`` (step, seconds, code version), the pipeline's own timing log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from protloc import storage
from protloc.errors import ArtifactError

log = logging.getLogger(__name__)


@contextmanager
def timed(step: str, out: str, code_version: str) -> Iterator[None]:
    """Log the step's wall time and record it in ``{out}/timing.json``."""
    log.info("%s: code version %s", step, code_version)
    t0 = time.perf_counter()
    yield
    seconds = time.perf_counter() - t0
    storage.write_text(
        storage.join(out, "timing.json"),
        json.dumps({"step": step, "seconds": round(seconds, 3), "code_version": code_version})
        + "\n",
    )
    log.info("%s took %.1f s", step, seconds)


def split_step(data_root: str, out: str, params, code_version: str) -> None:
    from protloc.data import labels_uri
    from protloc.split import run_split

    with timed("split", out, code_version):
        run_split(labels_uri(data_root), out, params)


def train_step(
    split_dir: str,
    data_root: str,
    out: str,
    out_uri: str,
    cfg,
    code_version: str,
    previous_dir: str | None = None,
    work_root: str = "",
) -> None:
    """One cycle, warm-started from ``previous_dir``'s checkpoint. With ``work_root`` (durable
    storage, e.g. s3://) the per-epoch checkpoints live there, so a retried pod resumes."""
    from protloc.train import train_cycle

    with timed(f"train cycle {cfg.cycle}", out, code_version):
        chain: list[str] = []
        if previous_dir:
            chain = read_snapshot_list(previous_dir)
            cfg = replace(cfg, init=storage.join(previous_dir, "checkpoint.pt"))
        manifest = storage.join(split_dir, "manifest.parquet")
        work = work_folder(work_root, manifest, cfg, code_version) if work_root else out
        train_cycle(manifest, data_root, work, cfg)
        if work != out:
            for name in ("checkpoint.pt", "metrics.json"):
                storage.write_bytes(
                    storage.join(out, name), storage.read_bytes(storage.join(work, name))
                )
        chain.append(storage.join(out_uri, "checkpoint.pt"))
        storage.write_text(
            storage.join(out, "snapshots.json"), json.dumps({"snapshots": chain}, indent=2) + "\n"
        )


def work_folder(work_root: str, manifest_uri: str, cfg, code_version: str) -> str:
    """The durable folder of one cycle's per-epoch checkpoints under ``work_root``.

    Keyed by everything the cycle's result depends on (manifest, warm-start weights, settings,
    code), not by where those live: a retried pod, or the same run submitted again, resumes; a
    run with other data or settings never picks up a stale checkpoint.
    """
    h = hashlib.sha256(storage.read_bytes(manifest_uri))
    if cfg.init:
        h.update(storage.read_bytes(cfg.init))
    settings = {k: v for k, v in cfg.result_fields().items() if k != "init"}
    h.update(json.dumps(settings, sort_keys=True).encode())
    h.update(code_version.encode())
    return storage.join(work_root, f"cycle{cfg.cycle}-{cfg.size}px-{h.hexdigest()[:16]}")


def read_snapshot_list(train_dir: str) -> list[str]:
    """The snapshot URIs a train step's output folder lists."""
    uri = storage.join(train_dir, "snapshots.json")
    try:
        doc = json.loads(storage.read_text(uri))
        snapshots = [str(s) for s in doc["snapshots"]]
    except (ValueError, KeyError, TypeError):
        raise ArtifactError(f"{uri}: not a snapshot list") from None
    if not snapshots:
        raise ArtifactError(f"{uri}: lists no snapshot")
    return snapshots


def infer_step(
    split_dir: str,
    data_root: str,
    last_train_dir: str,
    out: str,
    tta: int,
    batch_size: int,
    workers: int,
    code_version: str,
) -> None:
    from protloc.infer import run_infer

    with timed("infer", out, code_version):
        snapshots = read_snapshot_list(last_train_dir)
        run_infer(
            storage.join(split_dir, "manifest.parquet"),
            data_root,
            snapshots,
            out,
            tta=tta,
            batch_size=batch_size,
            workers=workers,
        )


def thresholds_step(
    split_dir: str, infer_dir: str, out: str, alpha: float, code_version: str
) -> None:
    from protloc.thresholds import run_thresholds

    with timed("thresholds", out, code_version):
        run_thresholds(
            storage.join(infer_dir, "predictions.parquet"),
            storage.join(split_dir, "manifest.parquet"),
            out,
            alpha,
        )


def submit_step(
    infer_dir: str, thresholds_dir: str, data_root: str, out: str, code_version: str
) -> None:
    from protloc.data import sample_submission_uri
    from protloc.submission import run_submit

    with timed("submit", out, code_version):
        run_submit(
            storage.join(infer_dir, "predictions.parquet"),
            storage.join(thresholds_dir, "thresholds.json"),
            sample_submission_uri(data_root),
            out,
        )
