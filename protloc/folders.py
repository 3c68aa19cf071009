"""A step's output folder: the names of its files, its completion marker, its lock, its readers.

Every file name a step folder holds is defined here once; the library imports the name and never
types the literal. A folder is whole or marked incomplete: ``timing.json`` (step, seconds, code
version) is written last and is the completion marker. :func:`step_frame` deletes it before the
step writes anything and writes it after, and every step checks it on the folders it reads
(:func:`require_finished`), so a killed or half-overwritten folder is refused, never mixed into
a result. A lock (``flock``) refuses a second run into the same local folder while one runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from protloc import storage
from protloc.errors import ArtifactError, StorageError
from protloc.process import is_main
from protloc.storage import lock
from protloc.version import code_version

log = logging.getLogger(__name__)

# split
MANIFEST = "manifest.parquet"
SPLIT_STATS = "stats.json"
CLASS_DISTRIBUTION = "class_distribution.png"
COOCCURRENCE = "cooccurrence.png"
# prepare (the store; its shards are named by protloc.data.store.shard_name)
STORE = "store.json"
STORE_INDEX = "index.parquet"
# train
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
SNAPSHOTS = "snapshots.json"  # also infer's and collect's: the snapshots behind the predictions
CURVES = "training_curves.png"
# infer, collect, predict
PREDICTIONS = "predictions.parquet"
# compare (a --recipes run; its predictions.parquet and snapshots.json are those of infer)
COMPARE = "compare.json"
# thresholds
THRESHOLDS = "thresholds.json"
THRESHOLD_CURVES = "threshold_curves.png"
PER_CLASS_F1 = "per_class_f1.png"
# submit
SUBMISSION = "submission.csv"
SUMMARY = "summary.md"
# bundle
BUNDLE = "bundle.json"
# predict
LABELS = "labels.csv"
# every step
PAGE = "report.html"  # a step's result page (split, train, compare, thresholds)
TIMING = "timing.json"  # written last: the completion marker
ERROR = "error.txt"  # a failed KFP task's one-line error
LOCK = ".protloc.lock"


def require_complete(folder: str, name: str) -> None:
    """Refuse a step folder its step did not finish (no completion marker); ``name`` is the
    input it was given as (``split``, ``last_cycle``, ...)."""
    if not storage.exists(storage.join(folder, TIMING)):
        raise ArtifactError(
            f"--{name.replace('_', '-')} {folder}: not a finished step folder (no {TIMING}: "
            f"its step did not finish, or is still writing it)"
        )


def require_finished(reads: dict[str, str | None]) -> None:
    """Every folder a step reads (input name -> folder; None: not given) was finished."""
    for name, folder in reads.items():
        if folder:
            require_complete(folder, name)


@contextmanager
def step_frame(step: str, out: str, reads: dict[str, str | None] | None = None) -> Iterator[None]:
    """The frame of every step: check the folders it reads are complete and ``out`` is
    writable, hold ``out``'s lock, unmark it, and mark it complete with ``timing.json``."""
    require_finished(reads or {})
    if not is_main():  # under torchrun only rank 0 writes: it frames the folder
        yield
        return
    created = storage.check_writable_folder(out)
    version = code_version()
    try:
        with locked(out):
            storage.delete(storage.join(out, TIMING))
            log.info("%s: code version %s", step, version)
            t0 = time.perf_counter()
            yield
            seconds = time.perf_counter() - t0
            storage.write_json(
                storage.join(out, TIMING),
                {"step": step, "seconds": round(seconds, 3), "code_version": version},
            )
    except BaseException:
        if created:  # a failed step leaves no empty folder behind
            storage.remove_empty_folder(out)
        raise
    log.info("%s took %.1f s", step, seconds)


@contextmanager
def locked(out: str) -> Iterator[None]:
    """Hold ``out``'s lock (local folders): a second run into it fails at once, naming the
    first. The kernel drops the lock when its holder dies, so a killed run's folder is free
    again and a live one is never taken over. Bucket folders are not locked."""
    if storage.is_remote(out):
        yield
        return
    try:
        with lock.hold(storage.local_path(storage.join(out, LOCK))):
            yield
    except lock.LockHeldError as exc:
        raise StorageError(
            f"{out} is being written by another protloc run ({exc.holder or 'starting'}); "
            f"wait for it, or use another --out"
        ) from None


def read_snapshot_list(train_dir: str) -> list[str]:
    """The snapshot URIs a train step's output folder lists (its chain so far, its own last)."""
    from protloc.schemas import CycleSnapshots, read

    return list(read(CycleSnapshots, storage.join(train_dir, SNAPSHOTS)).snapshots)


def read_prediction_snapshots(folder: str) -> dict:
    """An infer, collect or compare folder's ``snapshots.json`` as a plain dict (checked)."""
    from protloc.schemas import PredictionSnapshots, read

    doc = read(PredictionSnapshots, storage.join(folder, SNAPSHOTS))
    return doc.model_dump(by_alias=True, exclude_none=True)


def cycle_folder(snapshot: str) -> str:
    """The train step folder a snapshot's checkpoint URI lies in (its metrics beside it)."""
    return storage.parent(snapshot)
