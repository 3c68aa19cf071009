"""The pipeline's steps: what each reads, its config, and its one front door.

Every step is one function ``<name>_step(cfg, *, data_root?, <inputs>, out)`` on plain folders
and URIs. Its command line (``python -m components.<name>``, what docker compose runs) and its
KFP component (``components/``) both call it with the same arguments, so both write the same
files. This module is the one layer where a data root and a step's output folder become file
URIs (``train.csv``, ``manifest.parquet``, ``checkpoint.pt``, ...); the library below it takes
those URIs.

A train step's output folder holds ``checkpoint.pt``, ``metrics.json`` and ``snapshots.json``:
the URIs of every snapshot of the chain so far, its own last. That is how every cycle's snapshot
reaches the ensemble: the infer step reads the last cycle's list. Every step also writes
``timing.json`` (step, seconds, code version).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import MISSING, dataclass
from typing import Any

from protloc import storage
from protloc.config import (
    InferConfig,
    SplitConfig,
    SubmitConfig,
    ThresholdsConfig,
    TrainConfig,
)
from protloc.errors import ArtifactError, ConfigError
from protloc.params import Param, Spec, StepConfig
from protloc.version import code_version

log = logging.getLogger(__name__)

# File names inside the step folders (shared/DESIGN.md's contracts).
MANIFEST = "manifest.parquet"
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
SNAPSHOTS = "snapshots.json"
PREDICTIONS = "predictions.parquet"
THRESHOLDS = "thresholds.json"
SUBMISSION = "submission.csv"
TIMING = "timing.json"


# ----------------------------------------------------------------------------- the front doors


@contextmanager
def timed(step: str, out: str) -> Iterator[None]:
    """Log the step's wall time and record it in ``{out}/timing.json``."""
    version = code_version()
    log.info("%s: code version %s", step, version)
    t0 = time.perf_counter()
    yield
    seconds = time.perf_counter() - t0
    storage.write_text(
        storage.join(out, TIMING),
        json.dumps({"step": step, "seconds": round(seconds, 3), "code_version": version}) + "\n",
    )
    log.info("%s took %.1f s", step, seconds)


def split_step(cfg: SplitConfig, *, data_root: str, out: str) -> dict[str, Any]:
    """Stratified split of ``{data_root}/train.csv``: manifest, stats and plots in ``out``."""
    from protloc.data.hpa import labels_uri
    from protloc.data.split import run_split

    with timed("split", out):
        return run_split(labels_uri(data_root), out, cfg)


def train_step(
    cfg: TrainConfig,
    *,
    data_root: str,
    split: str,
    out: str,
    previous: str | None = None,
    out_uri: str | None = None,
) -> dict[str, Any]:
    """One cycle, warm-started from ``previous`` (the previous train step's folder).

    ``out_uri`` is where later steps will read ``out`` (on KFP the artifact's s3:// URI, while
    ``out`` is the pod's local copy); it defaults to ``out``. With ``cfg.work_root`` (durable
    storage, e.g. s3://) the per-epoch checkpoints live there, so a retried pod resumes.
    """
    from protloc.data.hpa import labels_uri
    from protloc.train.cycle import train_cycle

    with timed(f"train cycle {cfg.cycle}", out):
        chain: list[str] = read_snapshot_list(previous) if previous else []
        init = storage.join(previous, CHECKPOINT) if previous else ""
        manifest = storage.join(split, MANIFEST)
        work = work_folder(cfg.work_root, manifest, cfg, init) if cfg.work_root else out
        metrics = train_cycle(
            manifest, data_root, work, cfg, init=init, labels_uri=labels_uri(data_root)
        )
        if work != out:
            for name in (CHECKPOINT, METRICS):
                storage.write_bytes(
                    storage.join(out, name), storage.read_bytes(storage.join(work, name))
                )
        chain.append(storage.join(out_uri or out, CHECKPOINT))
        storage.write_text(
            storage.join(out, SNAPSHOTS), json.dumps({"snapshots": chain}, indent=2) + "\n"
        )
        return metrics


def work_folder(work_root: str, manifest_uri: str, cfg: TrainConfig, init: str) -> str:
    """The durable folder of one cycle's per-epoch checkpoints under ``work_root``.

    Keyed by everything the cycle's result depends on (manifest, warm-start weights, settings,
    code), not by where those live: a retried pod, or the same run submitted again, resumes; a
    run with other data or settings never picks up a stale checkpoint.
    """
    h = hashlib.sha256(storage.read_bytes(manifest_uri))
    if init:
        h.update(storage.read_bytes(init))
    h.update(json.dumps(cfg.result_fields(), sort_keys=True).encode())
    h.update(code_version().encode())
    return storage.join(work_root, f"cycle{cfg.cycle}-{cfg.size}px-{h.hexdigest()[:16]}")


def read_snapshot_list(train_dir: str) -> list[str]:
    """The snapshot URIs a train step's output folder lists."""
    uri = storage.join(train_dir, SNAPSHOTS)
    try:
        doc = json.loads(storage.read_text(uri))
        snapshots = doc["snapshots"]
    except (ValueError, KeyError, TypeError):
        raise ArtifactError(f"{uri}: not a snapshot list") from None
    if not isinstance(snapshots, list) or not all(isinstance(s, str) and s for s in snapshots):
        raise ArtifactError(f"{uri}: 'snapshots' must be a list of checkpoint URIs")
    if not snapshots:
        raise ArtifactError(f"{uri}: lists no snapshot")
    return snapshots


def infer_step(cfg: InferConfig, *, data_root: str, split: str, last_cycle: str, out: str):
    """Every snapshot listed by ``last_cycle`` predicts the validation fold and the test ids."""
    from protloc.data.hpa import labels_uri, sample_submission_uri
    from protloc.evaluate.infer import run_infer

    with timed("infer", out):
        return run_infer(
            storage.join(split, MANIFEST),
            data_root,
            read_snapshot_list(last_cycle),
            out,
            cfg,
            labels_uri=labels_uri(data_root),
            sample_submission_uri=sample_submission_uri(data_root),
        )


def thresholds_step(
    cfg: ThresholdsConfig, *, split: str, predictions: str, out: str
) -> dict[str, Any]:
    """Per-class thresholds fitted on the ensemble's validation predictions."""
    from protloc.evaluate.thresholds import run_thresholds

    with timed("thresholds", out):
        return run_thresholds(
            storage.join(predictions, PREDICTIONS), storage.join(split, MANIFEST), out, cfg.alpha
        )


def submit_step(cfg: SubmitConfig, *, data_root: str, predictions: str, thresholds: str, out: str):
    """The Kaggle submission CSV for ``{data_root}/sample_submission.csv``'s ids."""
    from protloc.data.hpa import sample_submission_uri
    from protloc.evaluate.submission import run_submit

    with timed("submit", out):
        return run_submit(
            storage.join(predictions, PREDICTIONS),
            storage.join(thresholds, THRESHOLDS),
            sample_submission_uri(data_root),
            out,
        )


# ----------------------------------------------------------------------------- the step table


@dataclass(frozen=True)
class Input:
    """A folder a step reads: another step's output (a KFP input artifact)."""

    name: str
    help: str
    optional: bool = False


DATA_ROOT = Param(
    "data_root",
    str,
    MISSING,
    Spec("data root: train.csv, sample_submission.csv, train/ and test/ images (local or s3://)"),
)


@dataclass(frozen=True)
class Step:
    """One pipeline step: its config, the folders it reads, and its front door."""

    name: str
    summary: str
    config: type[StepConfig]
    inputs: tuple[Input, ...]
    reads_data_root: bool
    run: Callable[..., Any]
    gpu: bool = False


_SPLIT = Input("split", "the split step's output folder (manifest.parquet)")
_PREDICTIONS = Input("predictions", "the infer step's output folder (predictions.parquet)")

STEPS: dict[str, Step] = {
    s.name: s
    for s in (
        Step(
            "split",
            "Stratified split and resampling weights: manifest.parquet, stats.json, plots.",
            SplitConfig,
            (),
            True,
            split_step,
        ),
        Step(
            "train",
            "One SGDR cycle, warm-started from the previous cycle's snapshot.",
            TrainConfig,
            (
                _SPLIT,
                Input(
                    "previous",
                    "the previous train step's output folder (warm start "
                    "and snapshot chain); none for the first cycle",
                    optional=True,
                ),
            ),
            True,
            train_step,
            gpu=True,
        ),
        Step(
            "infer",
            "Every snapshot of the chain predicts validation and test ids; the "
            "ensemble is the mean.",
            InferConfig,
            (_SPLIT, Input("last_cycle", "the last train step's output folder (snapshots.json)")),
            True,
            infer_step,
            gpu=True,
        ),
        Step(
            "thresholds",
            "Per-class thresholds on the ensemble's validation predictions.",
            ThresholdsConfig,
            (_SPLIT, _PREDICTIONS),
            False,
            thresholds_step,
        ),
        Step(
            "submit",
            "The Kaggle submission CSV.",
            SubmitConfig,
            (
                _PREDICTIONS,
                Input("thresholds", "the thresholds step's output folder (thresholds.json)"),
            ),
            True,
            submit_step,
        ),
    )
}


def pipeline_params() -> list[Param]:
    """The pipeline's parameters: the data root, then every step's pipeline-scope fields.

    A name that two steps share must mean the same thing (type, default, help, range).
    """
    out: dict[str, Param] = {DATA_ROOT.name: DATA_ROOT}
    for step in STEPS.values():
        for p in step.config.params():
            if p.spec.scope != "pipeline":
                continue
            seen = out.get(p.name)
            if seen is not None and seen != p:
                raise ConfigError(f"parameter {p.name} differs between steps: {seen} vs {p}")
            out[p.name] = p
    return list(out.values())


def step_configs(values: dict[str, Any], cycles: list[dict[str, int]]) -> dict[str, Any]:
    """Every step's config from pipeline parameter ``values`` (train: one per cycle of the
    schedule). Refuses an unknown or missing name and any bad value, naming it."""
    known = {p.name for p in pipeline_params()}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown pipeline parameter(s): {', '.join(unknown)}")
    if not values.get(DATA_ROOT.name):
        raise ConfigError("data_root is empty: give the data root (local folder or s3://)")

    def pick(cls: type[StepConfig]) -> dict[str, Any]:
        return {p.name: values[p.name] for p in cls.params() if p.name in values}

    out: dict[str, Any] = {}
    for name, step in STEPS.items():
        if name == "train":
            out[name] = [TrainConfig(**pick(TrainConfig), **c) for c in cycles]
        else:
            out[name] = step.config(**pick(step.config))
    return out
