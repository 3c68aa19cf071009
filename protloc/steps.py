"""The pipeline's steps: what each reads, its config, and its one front door.

Every step is one function ``<name>_step(cfg, *, data_root?, <inputs>, out)`` on plain folders
and URIs. Its command line (``python -m components.<name>``, what docker compose runs) and its
KFP component (``components/``) both call it with the same arguments, so both write the same
files. This module is the one layer where a data root and a step's output folder become file
URIs (``train.csv``, ``manifest.parquet``, ``checkpoint.pt``, ...); the library below it takes
those URIs.

A step's folder is whole or marked incomplete: ``timing.json`` (step, seconds, code version) is
written last and is the completion marker. A step deletes it before writing anything and every
step checks it on the folders it reads, so a killed or half-overwritten folder is refused, never
mixed into a result; a lock file refuses a second run into the same local folder while one runs.
Output and cache folders are checked writable before the work starts.

A train step's output folder holds ``checkpoint.pt``, ``metrics.json`` and ``snapshots.json``:
the URIs of every snapshot of the chain so far, its own last. That is how every cycle's snapshot
reaches the ensemble: the infer step reads the last cycle's list.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import MISSING, dataclass
from functools import partial
from typing import Any

from protloc import storage
from protloc.config import (
    BundleConfig,
    CollectConfig,
    InferConfig,
    PredictConfig,
    PrepareConfig,
    SplitConfig,
    SubmitConfig,
    ThresholdsConfig,
    TrainConfig,
)
from protloc.errors import ArtifactError, ConfigError, StorageError
from protloc.params import Param, Spec, StepConfig
from protloc.report import scalars
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
CURVES = "training_curves.png"
TIMING = "timing.json"  # written last: the completion marker
LOCK = ".protloc.lock"


# ----------------------------------------------------------------------------- the front doors


@contextmanager
def timed(step: str, out: str, reads: dict[str, str | None] | None = None) -> Iterator[None]:
    """The frame of every step: check the folders it reads are complete and ``out`` is
    writable, hold ``out``'s lock, unmark it, and mark it complete with ``timing.json``."""
    require_finished(reads or {})
    if not _main_process():  # under torchrun only rank 0 writes: it frames the folder
        yield
        return
    created = storage.check_writable_folder(out)
    version = code_version()
    try:
        with _locked(out):
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


def _launches(gpus: int) -> bool:
    """True where a front door must start ``gpus`` ranks of itself (not already one of them)."""
    if gpus == 1 or "WORLD_SIZE" in os.environ:
        return False
    from protloc.train.distributed import check_devices

    check_devices(gpus)
    return True


def _in_ranks(front_door: Callable[..., Any], cfg: Any, **kwargs: Any) -> Any:
    """``front_door(cfg, **kwargs)`` in ``cfg.gpus`` ranks; rank 0's result."""
    from protloc.train.distributed import launch

    return launch(partial(front_door, cfg, **kwargs), cfg.gpus)


def _main_process() -> bool:
    """False in the ranks > 0 of a torchrun group (they compute, rank 0 writes)."""
    return os.environ.get("RANK", "0") == "0"


def require_finished(reads: dict[str, str | None]) -> None:
    """Every folder a step reads (name -> folder; None: not given) was finished by its step."""
    for name, folder in reads.items():
        if folder:
            require_complete(folder, name)


def require_complete(folder: str, name: str) -> None:
    """Refuse a step folder its step did not finish (no completion marker)."""
    if not storage.exists(storage.join(folder, TIMING)):
        raise ArtifactError(
            f"--{name.replace('_', '-')} {folder}: not a finished step folder (no {TIMING}: "
            f"its step did not finish, or is still writing it)"
        )


@contextmanager
def _locked(out: str) -> Iterator[None]:
    """A lock file in a local ``out`` (O_EXCL): a second run into it fails at once, naming the
    first; a lock left by a killed process is taken over. S3 folders are not locked."""
    if storage.is_s3(out):
        yield
        return
    path = storage.join(out, LOCK)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _lock_holder(path)
            if holder is not None:
                raise StorageError(
                    f"{out} is being written by another protloc run (pid {holder}); "
                    f"wait for it, or use another --out"
                ) from None
            log.warning("%s: taking over the lock of a process that no longer runs", out)
            os.unlink(path)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        break
    try:
        yield
    finally:
        os.unlink(path)


def _lock_holder(path: str) -> int | None:
    """The pid holding the lock file, or None if that process is gone."""
    try:
        pid = int(open(path).read().strip() or "0")  # noqa: SIM115
    except (ValueError, FileNotFoundError):
        return None
    return pid if pid > 0 and storage.pid_alive(pid) else None


def split_step(cfg: SplitConfig, *, data_root: str, out: str) -> dict[str, Any]:
    """Stratified split of ``{data_root}/train.csv``: manifest, stats and plots in ``out``."""
    from protloc.data.hpa import labels_uri
    from protloc.data.split import run_split

    with timed("split", out):
        return run_split(labels_uri(data_root), out, cfg)


def prepare_step(cfg: PrepareConfig, *, data_root: str, split: str, out: str) -> dict[str, Any]:
    """Every sample of the split's manifest and every test id decoded once, at ``cfg.store_size``
    px, into the store in ``out`` (shards, index.parquet, store.json)."""
    from protloc.data.hpa import read_test_ids, sample_submission_uri
    from protloc.data.identity import data_fingerprint
    from protloc.data.manifest import COMPETITION, read_manifest
    from protloc.data.store import build_store

    with timed("prepare", out, {"split": split}):
        fingerprint = data_fingerprint(data_root)  # before reading: a change meanwhile shows
        manifest = read_manifest(storage.join(split, MANIFEST))
        own = manifest.frame[manifest.frame["source"] == COMPETITION]
        return build_store(
            data_root,
            {
                "train": list(own["id"]),
                "test": read_test_ids(sample_submission_uri(data_root)),
            },
            cfg.store_size,
            out,
            external=manifest.external,
            extra_sizes=cfg.sizes(),
            shard_samples=cfg.shard_samples,
            workers=cfg.workers,
            skip_bad=cfg.skip_bad,
            labels_sha256=manifest.meta.get("labels_sha256", ""),
            data_fingerprint=fingerprint,
        )


def check_store(store: str | None, data_root: str) -> None:
    """A store given to train or infer must come from the data the data root holds now."""
    if not store:
        return
    from protloc.data.identity import data_fingerprint
    from protloc.data.store import open_store, require_same_data

    require_same_data(open_store(store), data_fingerprint(data_root), data_root)


def train_step(
    cfg: TrainConfig,
    *,
    data_root: str,
    split: str,
    out: str,
    previous: str | None = None,
    store: str | None = None,
    out_uri: str | None = None,
) -> dict[str, Any]:
    """One cycle, warm-started from ``previous`` (the previous train step's folder); with
    ``cfg.gpus`` N > 1, in N ranks of this front door (rank 0 writes).

    ``out_uri`` is where later steps will read ``out`` (on KFP the artifact's s3:// URI, while
    ``out`` is the pod's local copy); it defaults to ``out``. With ``cfg.work_root`` (durable
    storage, e.g. s3://) the per-epoch checkpoints live there, so a retried pod resumes.
    """
    if _launches(cfg.gpus):
        folders = {"split": split, "out": out, "previous": previous, "store": store}
        return _in_ranks(train_step, cfg, data_root=data_root, out_uri=out_uri, **folders)
    from protloc.data.cache import default_cache_dir
    from protloc.data.hpa import labels_uri
    from protloc.report.pages import training_page
    from protloc.report.plot_worker import BackgroundPlots
    from protloc.train.cycle import check_existing, train_cycle

    require_finished({"split": split, "previous": previous, "store": store})
    check_store(store, data_root)
    if previous:
        before = storage.read_json(storage.join(previous, METRICS)).get("fold", -1)
        if before != cfg.fold:
            raise ConfigError(
                f"--previous {previous} is a cycle of fold {before}, this cycle is of fold "
                f"{cfg.fold}: a chain keeps one fold"
            )
    init = storage.join(previous, CHECKPOINT) if previous else ""
    manifest = storage.join(split, MANIFEST)
    inputs = cycle_inputs(manifest, data_root, init, cfg)
    work = work_folder(cfg.work_root, cfg, inputs) if cfg.work_root else out
    # A checkpoint from other inputs is refused before the folder is taken (and unmarked).
    check_existing(storage.join(work, CHECKPOINT), cfg, init, inputs)
    # Only rank 0 draws; its helper imports matplotlib while the cycle trains.
    plotter = BackgroundPlots() if _main_process() else contextlib.nullcontext()
    with timed(f"train cycle {cfg.cycle}", out), plotter as figures:
        storage.check_writable_folder(cfg.cache_dir or str(default_cache_dir()), "cache folder")
        chain: list[str] = read_snapshot_list(previous) if previous else []
        metrics = train_cycle(
            manifest,
            data_root,
            work,
            cfg,
            init=init,
            labels_uri=labels_uri(data_root),
            inputs=inputs,
            store=store or "",
        )
        if not _main_process():
            return metrics
        if work != out:
            for name in (CHECKPOINT, METRICS):
                storage.write_bytes(
                    storage.join(out, name), storage.read_bytes(storage.join(work, name))
                )
        # The page shows the chain so far: the curves of every earlier cycle, then this one's.
        chain_metrics = [
            storage.read_json(storage.join(storage.parent(uri), METRICS)) for uri in chain
        ]
        chain_metrics.append(metrics)
        figures.render("training_curves", storage.join(out, CURVES), chain_metrics)
        figures.close()
        training_page(chain_metrics, storage.read_bytes(storage.join(out, CURVES)), out)
        chain.append(storage.join(out_uri or out, CHECKPOINT))
        storage.write_json(storage.join(out, SNAPSHOTS), {"snapshots": chain})
        return metrics


def cycle_inputs(manifest_uri: str, data_root: str, init: str, cfg: TrainConfig) -> dict[str, Any]:
    """Everything one cycle's result depends on, by content: the manifest's bytes, the identity
    of its images, the warm-start (or pretrained) weights' bytes, the settings and the code. A
    finished or resumable cycle is reused only for the same inputs (see
    ``protloc.train.cycle``), and the durable work folder is keyed by them."""
    from protloc.data.identity import images_identity
    from protloc.data.manifest import COMPETITION, parse_manifest

    raw = storage.read_bytes(manifest_uri)
    manifest = parse_manifest(raw, manifest_uri)
    own = manifest.frame[manifest.frame["source"] == COMPETITION]
    return {
        "manifest_sha256": hashlib.sha256(raw).hexdigest(),
        "images": images_identity(data_root, "train", list(own["id"])),
        "external_images": {
            root: images_identity(root, "train", ids) for root, ids in manifest.external.items()
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


def infer_step(
    cfg: InferConfig,
    *,
    data_root: str,
    split: str,
    last_cycle: str,
    out: str,
    store: str | None = None,
) -> dict[str, Any]:
    """Every snapshot listed by ``last_cycle`` predicts the validation fold and the test ids
    (with ``cfg.gpus`` N > 1, each of N ranks its share); returns each snapshot's and the
    ensemble's validation macro F1 at 0.5."""
    if _launches(cfg.gpus):
        folders = {"split": split, "last_cycle": last_cycle, "out": out, "store": store}
        return _in_ranks(infer_step, cfg, data_root=data_root, **folders)
    from protloc.data.cache import default_cache_dir
    from protloc.data.hpa import labels_uri, sample_submission_uri
    from protloc.evaluate.infer import run_infer, val_scores

    require_finished({"split": split, "last_cycle": last_cycle, "store": store})
    check_store(store, data_root)
    with timed("infer", out, {"split": split, "last_cycle": last_cycle, "store": store}):
        storage.check_writable_folder(cfg.cache_dir or str(default_cache_dir()), "cache folder")
        snapshots = read_snapshot_list(last_cycle)
        rows = run_infer(
            storage.join(split, MANIFEST),
            data_root,
            snapshots,
            out,
            cfg,
            labels_uri=labels_uri(data_root),
            sample_submission_uri=sample_submission_uri(data_root),
            store=store or "",
        )
        if not _main_process():  # rank 0 gathered every rank's predictions and wrote them
            return {}
        scores = val_scores(rows, storage.join(split, MANIFEST), cfg.fold)
        # Which snapshots made these predictions, and how each scored: the run summary's source.
        storage.write_json(
            storage.join(out, SNAPSHOTS),
            {"snapshots": snapshots, "val_macro_f1_at_0.5": scores, "tta": cfg.tta},
        )
        return {"val_macro_f1_at_0.5": scores}


def collect_step(
    cfg: CollectConfig, *, split: str, predictions: list[str], out: str
) -> dict[str, Any]:
    """A K-fold run's chains' infer folders as one: out-of-fold validation rows, test rows
    averaged over folds x snapshots (what thresholds and submit read)."""
    from protloc.evaluate.collect import run_collect

    reads = {f"predictions[{i}]": folder for i, folder in enumerate(predictions)}
    with timed("collect", out, {"split": split, **reads}):
        chains = {
            storage.join(f, PREDICTIONS): storage.read_json(storage.join(f, SNAPSHOTS))
            for f in predictions
        }
        doc = run_collect(chains, storage.join(split, MANIFEST), out)
        # The summary reads each chain's infer folder (its time) from here.
        doc["infer_folders"] = [storage.parent(uri) for uri in doc.pop("order")]
        storage.write_json(storage.join(out, SNAPSHOTS), doc)
        return {"val_macro_f1_at_0.5": doc["val_macro_f1_at_0.5"]}


def thresholds_step(
    cfg: ThresholdsConfig, *, split: str, predictions: str, out: str
) -> dict[str, Any]:
    """Per-class thresholds fitted on the ensemble's validation predictions."""
    from protloc.evaluate.thresholds import run_thresholds

    with timed("thresholds", out, {"split": split, "predictions": predictions}):
        return run_thresholds(
            storage.join(predictions, PREDICTIONS),
            storage.join(split, MANIFEST),
            out,
            cfg.alpha,
            cfg.ensemble,
        )


def submit_step(cfg: SubmitConfig, *, data_root: str, predictions: str, thresholds: str, out: str):
    """The Kaggle submission CSV for ``{data_root}/sample_submission.csv``'s ids, and the run's
    summary (``summary.md``: the cycles' and the ensemble's F1, the step times)."""
    from protloc.data.hpa import sample_submission_uri
    from protloc.evaluate.submission import run_submit
    from protloc.report.summary import SUMMARY, format_summary, run_summary

    with timed("submit", out, {"predictions": predictions, "thresholds": thresholds}):
        result = run_submit(
            storage.join(predictions, PREDICTIONS),
            storage.join(thresholds, THRESHOLDS),
            sample_submission_uri(data_root),
            out,
        )
        summary = run_summary(predictions, thresholds)
        storage.write_text(storage.join(out, SUMMARY), format_summary(summary))
        return result


def bundle_step(cfg: BundleConfig, *, predictions: str, thresholds: str, out: str) -> dict:
    """The model bundle: the snapshots the thresholds step chose (their checkpoints, sizes and
    normalisation), its thresholds, the TTA infer used, class names and code version."""
    from protloc.evaluate.bundle import write_bundle
    from protloc.evaluate.ensemble import snapshot_name

    with timed("bundle", out, {"predictions": predictions, "thresholds": thresholds}):
        doc = storage.read_json(storage.join(predictions, SNAPSHOTS))
        thr = storage.read_json(storage.join(thresholds, THRESHOLDS))
        by_name = {}  # snapshot name -> (checkpoint URI, its cycle's metrics.json)
        for uri in doc["snapshots"]:
            m = storage.read_json(storage.join(storage.parent(uri), METRICS))
            by_name[snapshot_name(m["cycle"], m["size"], m.get("fold", -1))] = (uri, m)
        chosen = thr.get("ensemble", {}).get("snapshots") or list(by_name)
        unknown = sorted(set(chosen) - set(by_name))
        if unknown:
            raise ArtifactError(
                f"--thresholds {thresholds} chose snapshot(s) {unknown} that --predictions "
                f"{predictions} does not list"
            )
        tta = doc.get("tta")
        if not isinstance(tta, int):
            raise ArtifactError(
                f"--predictions {predictions}: {SNAPSHOTS} records no single TTA ({tta!r})"
            )
        return write_bundle({n: by_name[n] for n in chosen}, thr, tta, out)


def predict_step(cfg: PredictConfig, *, model: str, out: str) -> Any:
    """A model bundle applied to ``cfg.images``: predictions.parquet and labels.csv."""
    from protloc.evaluate.apply import run_predict

    with timed("predict", out, {"model": model}):
        return run_predict(model, cfg, out)


# ----------------------------------------------------------------------------- the step table


@dataclass(frozen=True)
class Input:
    """A folder a step reads: another step's output (a KFP input artifact of ``type``)."""

    name: str
    help: str
    optional: bool = False
    type: str = "Artifact"  # the KFP artifact class: Dataset, Model or Artifact
    many: bool = False  # a list of folders (KFP: the outputs of a ParallelFor, dsl.Collected)


DATA_ROOT = Param(
    "data_root",
    str,
    MISSING,
    Spec("data root: train.csv, sample_submission.csv, train/ and test/ images (local or s3://)"),
)


DATA_FINGERPRINT = Param(
    "data_fingerprint",
    str,
    "",
    Spec(
        "fingerprint of the data root's labels and image listing (and of the pretrained "
        "weights' bytes, after a +), taken by `pipeline.py local` and `submit` (empty: not "
        "checked); part of every data-reading task's cache key, so data or weights changed "
        "under the same URI are never served from cache"
    ),
)


@dataclass(frozen=True)
class Report:
    """A file of a step's output folder shown in the KFP UI: a page (``HTML``) or the run
    summary (``Markdown``), handed over as an output artifact of that type named ``name``."""

    name: str
    type: str
    file: str
    help: str


_PAGE = Report("page", "HTML", "report.html", "this step's results as one self-contained page")


@dataclass(frozen=True)
class Step:
    """One pipeline step: its config, the folders it reads, its front door, what its output
    folder is (a KFP Dataset, Model or plain Artifact) and the scalars a run is compared by."""

    name: str
    summary: str
    config: type[StepConfig]
    inputs: tuple[Input, ...]
    reads_data_root: bool
    run: Callable[..., Any]
    output: str = "Artifact"
    scalars: Callable[[Any], dict[str, float]] | None = None
    gpu: bool = False
    reports: tuple[Report, ...] = ()
    cpus: int = 2  # a CPU step's request on a cluster
    in_dag: bool = (
        True  # False: a command and component of its own (predict), no pipeline parameter
    )


_SPLIT = Input("split", "the split step's output folder (manifest.parquet)", type="Dataset")
_STORE = Input(
    "store",
    "the prepare step's output folder (the decoded samples); none: decode the images",
    optional=True,
    type="Dataset",
)
_PREDICTIONS = Input(
    "predictions", "the infer step's output folder (predictions.parquet)", type="Dataset"
)
_THRESHOLDS = Input("thresholds", "the thresholds step's output folder (thresholds.json)")

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
            output="Dataset",
            reports=(_PAGE,),
        ),
        Step(
            "prepare",
            "Every labelled and test sample decoded once into the sample store (uint8 shards).",
            PrepareConfig,
            (_SPLIT,),
            True,
            prepare_step,
            output="Dataset",
            cpus=16,
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
                    type="Model",
                ),
                _STORE,
            ),
            True,
            train_step,
            output="Model",
            scalars=scalars.train_scalars,
            gpu=True,
            reports=(_PAGE,),
        ),
        Step(
            "infer",
            "Every snapshot of the chain predicts validation and test ids; the "
            "ensemble is the mean.",
            InferConfig,
            (
                _SPLIT,
                Input(
                    "last_cycle",
                    "the last train step's output folder (snapshots.json)",
                    type="Model",
                ),
                _STORE,
            ),
            True,
            infer_step,
            output="Dataset",
            scalars=lambda result: scalars.infer_scalars(result["val_macro_f1_at_0.5"]),
            gpu=True,
        ),
        Step(
            "collect",
            "K-fold runs: the folds' predictions as one (out-of-fold validation rows, test "
            "rows averaged over folds x snapshots).",
            CollectConfig,
            (
                _SPLIT,
                Input(
                    "predictions",
                    "every fold's infer output folder (predictions.parquet, snapshots.json)",
                    type="Dataset",
                    many=True,
                ),
            ),
            False,
            collect_step,
            output="Dataset",
            scalars=lambda result: scalars.infer_scalars(result["val_macro_f1_at_0.5"]),
        ),
        Step(
            "thresholds",
            "Per-class thresholds on the ensemble's validation predictions.",
            ThresholdsConfig,
            (_SPLIT, _PREDICTIONS),
            False,
            thresholds_step,
            scalars=scalars.thresholds_scalars,
            reports=(_PAGE,),
        ),
        Step(
            "submit",
            "The Kaggle submission CSV.",
            SubmitConfig,
            (_PREDICTIONS, _THRESHOLDS),
            True,
            submit_step,
            output="Dataset",
            reports=(
                Report(
                    "summary",
                    "Markdown",
                    "summary.md",
                    "the run summary: the cycles' and the ensemble's F1, the step times",
                ),
            ),
        ),
        Step(
            "bundle",
            "The model bundle: the chosen snapshots, their sizes and normalisation, the "
            "thresholds, TTA, class names and code version.",
            BundleConfig,
            (_PREDICTIONS, _THRESHOLDS),
            False,
            bundle_step,
            output="Model",
        ),
        Step(
            "predict",
            "A model bundle applied to a folder of RGBY images: probabilities and labels.",
            PredictConfig,
            (Input("model", "a model bundle (the bundle step's output folder)", type="Model"),),
            False,
            predict_step,
            output="Dataset",
            gpu=True,
            in_dag=False,
        ),
    )
}


def pipeline_params() -> list[Param]:
    """The pipeline's parameters: the data root, then every step's pipeline-scope fields.

    A name that two steps share must mean the same thing (type, default, help, range).
    """
    out: dict[str, Param] = {DATA_ROOT.name: DATA_ROOT, DATA_FINGERPRINT.name: DATA_FINGERPRINT}
    for step in STEPS.values():
        for p in step.config.params() if step.in_dag else []:
            if p.spec.scope != "pipeline":
                continue
            seen = out.get(p.name)
            if seen is not None and seen != p:
                raise ConfigError(f"parameter {p.name} differs between steps: {seen} vs {p}")
            out[p.name] = p
    return list(out.values())


def extra_sizes(sizes: list[int]) -> str:
    """The store's extra sizes for a schedule's sizes: every one but the largest."""
    return ",".join(str(x) for x in sorted(set(sizes) - {max(sizes)}))


def step_configs(
    values: dict[str, Any], cycles: list[dict[str, int]], folds: int = 1
) -> dict[str, Any]:
    """Every step's config from pipeline parameter ``values`` (train: one per cycle of the
    schedule; ``folds`` chains). Refuses an unknown or missing name and any bad value, naming
    it."""
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
        if not step.in_dag:
            continue
        if name == "train":
            out[name] = [TrainConfig(**pick(TrainConfig), **c) for c in cycles]
        elif name == "split":
            out[name] = SplitConfig(**pick(SplitConfig), folds=folds)
        elif name == "prepare":  # the store holds the largest size of the schedule
            sizes = [c["size"] for c in cycles]
            out[name] = PrepareConfig(
                **pick(PrepareConfig), store_size=sizes[-1], extra_sizes=extra_sizes(sizes)
            )
        else:
            out[name] = step.config(**pick(step.config))
    return out
