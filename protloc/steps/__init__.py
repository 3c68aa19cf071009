"""The pipeline's steps: what each reads, its config, its front door, what it outputs.

Every step is one function ``<name>_step(cfg, *, data_root?, <inputs>, out)`` on plain folders
and URIs (``protloc.steps.data``, ``.train``, ``.evaluate``). Its command line
(``python -m components.<name>``, what docker compose runs) and its KFP component
(``components/<name>.py``, generated from this table by ``make components``) both call it with
the same arguments, so both write the same files. This module is the table they read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass
from typing import Any

from protloc.config import (
    BundleConfig,
    CollectConfig,
    CompareConfig,
    InferConfig,
    PredictConfig,
    PrepareConfig,
    SplitConfig,
    SubmitConfig,
    ThresholdsConfig,
    TrainConfig,
)
from protloc.errors import ConfigError
from protloc.folders import PAGE, SUMMARY
from protloc.params import Param, Spec, StepConfig
from protloc.report import scalars
from protloc.steps.data import prepare_step, split_step
from protloc.steps.evaluate import (
    bundle_step,
    collect_step,
    compare_step,
    infer_step,
    predict_step,
    submit_step,
    thresholds_step,
)
from protloc.steps.train import train_step

__all__ = [
    "DATA_FINGERPRINT",
    "DATA_ROOT",
    "STEPS",
    "Input",
    "Report",
    "Step",
    "bundle_step",
    "collect_step",
    "compare_step",
    "extra_sizes",
    "infer_step",
    "pipeline_params",
    "predict_step",
    "prepare_step",
    "split_step",
    "step_configs",
    "submit_step",
    "thresholds_step",
    "train_step",
]


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
    Spec(
        "data root: train.csv, sample_submission.csv, train/ and test/ images (a local folder, s3://, gs:// or az://)"
    ),
)


DATA_FINGERPRINT = Param(
    "data_fingerprint",
    str,
    "",
    Spec(
        "fingerprint of the data root's labels and image listing (and of the external roots' "
        "and the pretrained weights' bytes), the output of the DAG's fingerprint task (empty: "
        "not checked); part of every data-reading task's cache key, so data or weights changed "
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


_PAGE = Report("page", "HTML", PAGE, "this step's results as one self-contained page")


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
            "compare",
            "A --recipes run: the recipes ranked by cross-fit macro F1 of their held-out "
            "predictions; the best ones' ensemble as one predictions folder.",
            CompareConfig,
            (
                _SPLIT,
                Input(
                    "predictions",
                    "every recipe's infer (or collect) output folder (predictions.parquet, "
                    "snapshots.json)",
                    type="Dataset",
                    many=True,
                ),
            ),
            False,
            compare_step,
            output="Dataset",
            scalars=scalars.compare_scalars,
            reports=(_PAGE,),
        ),
        Step(
            "thresholds",
            "Decision thresholds on the ensemble's held-out predictions, every method compared.",
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
                    SUMMARY,
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
    out: dict[str, Param] = {DATA_ROOT.name: DATA_ROOT}
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
        raise ConfigError(
            "data_root is empty: give the data root (a local folder, s3://, gs:// or az://)"
        )

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
