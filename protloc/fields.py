"""The fields several steps share, made by one function each, so a name two steps use is one
concept and one pipeline parameter (the contract test checks they agree)."""

from __future__ import annotations

from protloc.params import param
from protloc.threshold_methods import ALPHA_HELP, AlphaChoices, MethodChoices

MAX_SEED = 2**32 - 1  # numpy's and iterstrat's seed range
MAX_FOLDS = 20
# one instance each: a field two steps share compares equal (its choices included)
METHODS = MethodChoices()
ALPHAS = AlphaChoices()


def seed_field():
    return param(
        0,
        "random seed of the split, sampling, augmentation and initialisation",
        low=0,
        high=MAX_SEED,
    )


def workers_field():
    return param(
        8,
        "data loader and image-decoding processes (0: decode in the main process)",
        low=0,
        high=256,
        result=False,
    )


def gpus_field():
    return param(
        1,
        "processes this task runs, one per GPU of its node (on a machine without GPUs: gloo "
        "ranks on the CPU); a compile-time setting (`pipeline.py compile --gpus N`)",
        low=1,
        high=16,
        scope="task",
    )


def fold_field():
    return param(
        -1,
        "the fold this chain of cycles holds out and predicts (K-fold runs: 0..F-1, set by the "
        "DAG); -1: the split's holdout",
        low=-1,
        high=MAX_FOLDS - 1,
        scope="task",
    )


def infer_batch_size_field():
    return param(64, "images per forward pass", low=1, high=4096)


def skip_bad_field():
    return param(
        False,
        "leave unreadable samples out (listed in the step's output) instead of stopping",
        result=False,
    )


def cache_dir_field():
    return param(
        "", "image cache folder; empty: $PROTLOC_CACHE_DIR, else a temporary folder", result=False
    )


def method_field():
    return param("per_class", "how the thresholds are chosen", choices=METHODS)


def alpha_field():
    # Chosen by the 2-fold cross-fit of bench/decisions/threshold_alpha.py (docs/method.md).
    return param("0.1", f"per_class's {ALPHA_HELP}", choices=ALPHAS)


def recipe_field():
    return param(
        "",
        "the recipe this task runs, as JSON {name, settings} (set by the DAG of a "
        "`--recipes` run: its settings replace the run's); empty: the run's settings",
        scope="task",
    )
