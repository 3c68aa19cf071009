"""Every step's settings: one typed config per step, the only list of its parameters.

No torch, no kfp: the pipeline reads these at compile time. CLI flags, KFP component inputs and
pipeline parameters are derived from them (see ``protloc.params``). A name used by two steps
(``seed``, ``workers``, ``cache_dir``, ``gpus``, ``method``) is one concept and one pipeline
parameter: both steps build the field with the same function (``protloc.fields``), and the
contract test checks they agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from protloc import fields as F
from protloc.architectures import ARCHITECTURES, MIN_SIZE, POOLINGS
from protloc.errors import ConfigError
from protloc.losses import LossExpressions
from protloc.params import StepConfig, param
from protloc.setting_lists import check_ensemble_spec, external_roots

NORM_TYPES = {"l2": 2.0, "l1": 1.0, "inf": math.inf}

MAX_SIZE = 4096
LR_SCALINGS = ("none", "linear", "sqrt")
RESAMPLINGS = ("class", "sample")


@dataclass(frozen=True)
class SplitConfig(StepConfig):
    """The split step: stratified holdout and per-sample resampling weights."""

    val_fraction: float = param(
        0.15,
        "share of the labelled samples held out for validation",
        low=0,
        high=1,
        low_open=True,
        high_open=True,
    )
    seed: int = F.seed_field()
    folds: int = param(
        1,
        "1: a stratified holdout of val_fraction (the paper); F >= 2: every labelled sample in "
        "one of F folds (iterstrat's MultilabelStratifiedKFold), one chain of cycles per fold, "
        "thresholds on the out-of-fold predictions; a compile-time setting "
        "(`pipeline.py compile --folds F`)",
        low=1,
        high=F.MAX_FOLDS,
        scope="task",
    )
    external: str = param(
        "",
        "external labelled data roots, comma-separated (local or a bucket URI), each a train.csv "
        "(Id,Target) and train/{Id}_{colour}.{png,jpg,tif} images, e.g. HPAv18 fetched by "
        "`python -m protloc.data.hpav18`; they train with the data root's samples",
    )
    val_on_competition: bool = param(
        True,
        "hold out (for validation, or out-of-fold scoring with K folds) only the data root's "
        "samples, so F1 stays comparable with the paper; external samples always train",
    )
    rare_below: int = param(
        100, "a class with fewer training samples is rare (0: none is)", low=0, high=10**9
    )
    rare_factor: float = param(
        5.0,
        "draws per epoch of a training sample that has a rare class",
        low=0,
        high=100,
        low_open=True,
    )
    dominant_factor: float = param(
        0.5,
        "undersampling of the dominant classes: with resampling=class their expected draws per "
        "epoch are multiplied by it; with resampling=sample, a sample whose classes are all "
        "dominant is drawn this many times",
        low=0,
        high=100,
        low_open=True,
    )
    resampling: str = param(
        "class",
        "how dominant_factor applies: class (the paper's rule, the dominant classes' draws scale "
        "by it) or sample (only all-dominant samples are reweighted: Nucleoplasm and Cytosol "
        "fall by only 17 and 21 % on HPA)",
        choices=RESAMPLINGS,
    )
    dominant_share: float = param(
        0.2,
        "a class in at least this share of training samples is dominant",
        low=0,
        high=1,
        low_open=True,
    )

    def check(self) -> None:
        external_roots(self.external)


@dataclass(frozen=True)
class PrepareConfig(StepConfig):
    """The prepare step: every labelled and test sample decoded once into the store."""

    store_size: int = param(
        help="pixels of the stored samples: the schedule's largest size (cycles resize from it)",
        low=MIN_SIZE,
        high=MAX_SIZE,
        scope="task",
    )
    extra_sizes: str = param(
        "",
        "smaller sizes also stored, comma-separated (the DAG passes the schedule's other "
        "sizes), so a cycle fetches its own size's bytes instead of resizing the largest",
        scope="task",
    )
    # 512 samples at 512 px are 512 MiB: a pod holds a few while it resizes, and a test set of
    # 11,702 samples is 23 shards to fetch in parallel.
    shard_samples: int = param(512, "samples per store shard", low=1, high=10**6)
    workers: int = F.workers_field()
    skip_bad: bool = F.skip_bad_field()

    def sizes(self) -> tuple[int, ...]:
        """The extra sizes as numbers (checked when the config is made)."""
        if not self.extra_sizes.strip():
            return ()
        try:
            out = tuple(int(x) for x in self.extra_sizes.split(","))
        except ValueError:
            raise ConfigError(
                f"extra_sizes must be comma-separated whole numbers, got {self.extra_sizes!r}"
            ) from None
        bad = [x for x in out if not MIN_SIZE <= x < self.store_size]
        if bad or len(set(out)) != len(out):
            raise ConfigError(
                f"extra_sizes must be distinct sizes in [{MIN_SIZE}, store_size "
                f"{self.store_size}), got {self.extra_sizes!r}"
            )
        return out

    def check(self) -> None:
        self.sizes()


@dataclass(frozen=True)
class TrainConfig(StepConfig):
    """The train step: one SGDR cycle (stored, resolved, in every checkpoint)."""

    size: int = param(
        help="image size in pixels of this cycle", low=MIN_SIZE, high=MAX_SIZE, scope="task"
    )
    batch_size: int = param(
        help="images per optimizer step and process (BatchNorm needs >= 2)",
        low=2,
        high=4096,
        scope="task",
    )
    epochs: int = param(
        help="epochs of this cycle (one cosine annealing)", low=1, high=10_000, scope="task"
    )
    cycle: int = param(
        0, "index of this cycle in the schedule (0 = first)", low=0, high=1000, scope="task"
    )
    fold: int = F.fold_field()
    recipe: str = F.recipe_field()
    # measured: bench/decisions/learnability.py, soft F1 (docs/method.md)
    lr_max: float = param(
        0.2, "learning rate at the start of each cycle", low=0, high=10, low_open=True
    )
    lr_min: float = param(
        0.0005, "learning rate at the end of each cycle (<= lr_max)", low=0, high=10
    )
    momentum: float = param(0.9, "SGD momentum", low=0, high=1, high_open=True)
    weight_decay: float = param(
        1e-4, "L2 weight decay (not on biases and BatchNorm)", low=0, high=1
    )
    # measured: bench/decisions/clip_norm.py (the paper's total L1 norm at 10 freezes training)
    clip_norm: float = param(10.0, "gradient clipping threshold (0: off)", low=0, high=1e6)
    clip_norm_type: str = param(
        "l2", "norm the clipping threshold applies to", choices=tuple(NORM_TYPES)
    )
    arch: str = param("inception_v3", "network", choices=ARCHITECTURES)
    pool: str = param("avg", "global pooling before the classifier", choices=POOLINGS)
    loss: str = param("soft_f1", "training loss", choices=LossExpressions())
    focal_gamma: float = param(2.0, "focal loss's gamma (0: BCE)", low=0, high=10)
    seed: int = F.seed_field()
    dropout: float = param(0.5, "dropout before the classifier", low=0, high=1, high_open=True)
    jitter: float = param(
        0.1, "intensity jitter per channel (+- share)", low=0, high=1, high_open=True
    )
    crop: float = param(
        1.0,
        "train on random crops of the cycle's size cut from the samples at crop x its size "
        "(capped at the store's size, the schedule's largest; above 1 needs a store); 1: whole "
        "samples (the paper); validation and inference always see whole samples",
        low=1,
        high=4,
    )
    crop_jitter: float = param(
        0.0,
        "scale jitter of the training crops: a window's side is the cycle's size times a factor "
        "drawn in [1 - j, 1 + j] (capped at the sample), resized to the cycle's size",
        low=0,
        high=0.5,
    )
    pretrained: str = param(
        "",
        "torchvision ImageNet state dict of the arch (local or a bucket URI) for the first "
        "cycle; empty: from scratch",
    )
    workers: int = F.workers_field()
    cache_dir: str = F.cache_dir_field()
    gpus: int = F.gpus_field()
    # With N ranks the global batch is N x batch_size. sqrt by default: the SGDR cycles restart
    # at lr_max with no warm-up, and the linear rule (Goyal et al. 2017) needs one at large N.
    lr_scaling: str = param(
        "sqrt",
        "learning-rate rule for N ranks: lr_max and lr_min times N (linear), sqrt(N) (sqrt) "
        "or 1 (none), relative to the schedule's per-rank batch",
        choices=LR_SCALINGS,
    )
    sync_bn: bool = param(
        False, "SyncBatchNorm across the ranks of a cycle (GPUs only; more sync per step)"
    )
    log_every: int = param(20, "log every N optimizer steps", low=1, high=10**6, result=False)
    # Validation is 15 % of the samples and prediction costs about a third of a training step
    # per image, so validating every epoch costs ~5 % of an epoch (the aim: under 10 %).
    val_every: int = param(
        1,
        "validate after every N epochs (0: only after the last; the last always is)",
        low=0,
        high=10_000,
        result=False,
    )
    skip_bad: bool = F.skip_bad_field()
    work_root: str = param(
        "",
        "durable folder (s3://, gs://, az://) for per-epoch checkpoints so a retried pod resumes; "
        "empty: the output folder, or on a cluster a work/ folder beside the task's output "
        "artifact under the pipeline root",
        result=False,
    )

    def check(self) -> None:
        if self.lr_min > self.lr_max:
            raise ConfigError(
                f"lr_min must be <= lr_max, got lr_min={self.lr_min}, lr_max={self.lr_max}"
            )


@dataclass(frozen=True)
class InferConfig(StepConfig):
    """The infer step: snapshot ensemble with test-time augmentation."""

    tta: int = param(8, "D4 transforms averaged per image", low=1, high=8)
    fold: int = F.fold_field()
    recipe: str = F.recipe_field()
    infer_batch_size: int = F.infer_batch_size_field()
    workers: int = F.workers_field()
    cache_dir: str = F.cache_dir_field()
    gpus: int = F.gpus_field()


@dataclass(frozen=True)
class CollectConfig(StepConfig):
    """The collect step (K-fold runs) has no settings: it gathers the folds' predictions."""


@dataclass(frozen=True)
class CompareConfig(StepConfig):
    """The compare step of a ``--recipes`` run: the recipes ranked, the best ones' ensemble."""

    method: str = F.method_field()
    alpha: str = F.alpha_field()
    best: int = param(
        1,
        "recipes whose ensemble the thresholds, submission and bundle use: the best by "
        "cross-fit macro F1 (a `--recipes` run)",
        low=1,
        high=64,
    )


@dataclass(frozen=True)
class BundleConfig(StepConfig):
    """The bundle step has no settings: the thresholds step's choice decides its snapshots."""


@dataclass(frozen=True)
class PredictConfig(StepConfig):
    """Applying a model bundle to a folder of images (outside the training DAG)."""

    images: str = param(
        help="folder of RGBY images to predict, {Id}_{red,green,blue,yellow}.{png,jpg,tif} "
        "(local or a bucket URI), any size",
        scope="task",
    )
    ids: str = param(
        "",
        "CSV with an Id column: the samples to predict, in that order; empty: every sample "
        "in the images folder",
        scope="task",
    )
    infer_batch_size: int = F.infer_batch_size_field()
    workers: int = F.workers_field()
    cache_dir: str = F.cache_dir_field()


@dataclass(frozen=True)
class ThresholdsConfig(StepConfig):
    """The thresholds step: how the 28 decision thresholds are chosen on the held-out rows."""

    method: str = F.method_field()
    alpha: str = F.alpha_field()
    ensemble: str = param(
        "all",
        "snapshots the ensemble averages: all, last:K (the last K cycles) or cycles:I,J,... "
        "(cycle numbers from 1; with K folds, those cycles of every fold)",
    )

    def check(self) -> None:
        check_ensemble_spec(self.ensemble)


@dataclass(frozen=True)
class SubmitConfig(StepConfig):
    """The submit step has no settings: thresholds and predictions decide everything."""


CONFIGS: dict[str, type[StepConfig]] = {
    "split": SplitConfig,
    "prepare": PrepareConfig,
    "train": TrainConfig,
    "infer": InferConfig,
    "collect": CollectConfig,
    "compare": CompareConfig,
    "thresholds": ThresholdsConfig,
    "submit": SubmitConfig,
    "bundle": BundleConfig,
    "predict": PredictConfig,
}
