"""The threshold methods (protloc.threshold_methods), each against a direct computation, and the
thresholds step's choice, comparison and honest headline."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from protloc.classes import NUM_CLASSES
from protloc.config import ThresholdsConfig
from protloc.errors import ConfigError
from protloc.evaluate.thresholds import thresholds_report
from protloc.metrics import macro_f1
from protloc.synthetic.predictions import structured_predictions
from protloc.threshold_methods import (
    ALPHA_GRID,
    THRESHOLD_METHODS,
    Setting,
    best_global_threshold,
    choose_alpha,
    cross_fit,
    fit_thresholds,
    method_fit,
    proportion_thresholds,
)


@pytest.fixture(scope="module")
def preds():
    """Held-out rows, rows to apply the thresholds to, and a training prior of another draw."""
    probs, y = structured_predictions(1200, seed=11)
    target, _ = structured_predictions(900, seed=12)
    prior = structured_predictions(3000, seed=13)[1].mean(axis=0)
    return probs, y, target, prior


def test_proportion_predicts_each_class_on_its_training_share_of_the_target_rows(preds):
    probs, y, target, prior = preds
    thresholds = proportion_thresholds(target, prior)
    positives = (target > thresholds).sum(axis=0)
    for c in range(NUM_CLASSES):
        want = round(prior[c] * len(target))
        ties = np.sort(target[:, c])[::-1]
        if 0 < want < len(target) and ties[want - 1] == ties[want]:
            assert positives[c] <= want  # a tie at the cut is never split
        else:
            assert positives[c] == want, c
    # It reads no label: fitted with the labels shuffled, the same thresholds.
    fit = THRESHOLD_METHODS.get("proportion")
    shuffled = np.random.default_rng(0).permutation(y)
    assert np.array_equal(
        fit(probs, y, target, Setting(0.1, prior)),
        fit(probs, shuffled, target, Setting(0.1, prior)),
    )


def test_global_is_the_best_single_threshold_sklearn_finds(preds):
    probs, y, _, _ = preds
    grid = np.round(np.arange(0.01, 1.0, 0.01), 2)
    sk = [f1_score(y, (probs > t).astype(int), average="macro", zero_division=0) for t in grid]
    assert best_global_threshold(probs, y) == grid[int(np.argmax(sk))]


def test_cross_fit_is_the_pooled_macro_f1_of_each_half_fitted_on_the_other(preds):
    probs, y, _, _ = preds
    order = np.random.default_rng(0).permutation(len(y))
    a, b = order[: len(y) // 2], order[len(y) // 2 :]
    predicted = np.zeros_like(y)
    for fit_rows, apply_rows in ((a, b), (b, a)):
        t = fit_thresholds(probs[fit_rows], y[fit_rows], 0.1)[0]
        predicted[apply_rows] = probs[apply_rows] > t
    want = f1_score(y, predicted, average="macro", zero_division=0)
    fit = method_fit("per_class", Setting(0.1, np.zeros(NUM_CLASSES)))
    assert cross_fit(probs, y, fit) == pytest.approx(want, abs=1e-12)


def test_alpha_auto_takes_the_grid_alpha_with_the_best_cross_fit(preds):
    probs, y, _, _ = preds
    scores = [
        cross_fit(probs, y, lambda p, t, _, a=a: fit_thresholds(p, t, a)[0]) for a in ALPHA_GRID
    ]
    assert choose_alpha(probs, y) == ALPHA_GRID[int(np.argmax(scores))]


@pytest.mark.parametrize("method", ["per_class", "global", "proportion", "auto"])
def test_the_report_uses_the_method_it_was_told_and_its_cross_fit_is_the_headline(method, preds):
    probs, y, target, prior = preds
    report = thresholds_report(probs, y, ThresholdsConfig(method=method), prior, target)
    cmp = report["comparison"]
    assert set(cmp) == {"0.5", *THRESHOLD_METHODS}
    registered = {name: cmp[name]["crossfit"] for name in THRESHOLD_METHODS}
    used = max(registered, key=registered.get) if method == "auto" else method
    assert report["method"] == used and report["method_choice"] == method
    setting = Setting(0.1, prior)
    want = method_fit(used, setting)(probs, y, target)
    assert np.array_equal(report["thresholds"], want)  # the thresholds submit applies
    if method != "auto":  # auto's headline is nested: the choice remade inside each half
        assert report["macro_f1_crossfit"] == cmp[method]["crossfit"]
    in_sample = method_fit(used, setting)(probs, y, probs)
    assert report["held_out_thresholds"] == list(in_sample)  # where P/R/F1 were measured
    assert report["macro_f1"] == pytest.approx(macro_f1(y, probs, in_sample), abs=1e-12)


def test_alpha_auto_in_the_report_records_the_alpha_it_chose(preds):
    probs, y, target, prior = preds
    report = thresholds_report(probs, y, ThresholdsConfig(alpha="auto"), prior, target)
    assert report["alpha"] == choose_alpha(probs, y) and report["alpha_choice"] == "auto"
    assert report["thresholds"] == list(fit_thresholds(probs, y, report["alpha"])[0])
    # per_class's cross-fit is nested (alpha chosen inside each half), not the grid's best
    nested = cross_fit(probs, y, method_fit("per_class", Setting(None, prior)))
    assert report["comparison"]["per_class"]["crossfit"] == nested == report["macro_f1_crossfit"]


def test_the_prior_is_the_training_rows_of_a_holdout_and_every_row_of_k_folds():
    import pandas as pd

    from protloc.data.manifest import COMPETITION, Manifest
    from protloc.evaluate.thresholds import training_prior

    frame = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "labels": [[0], [0, 2], [1], [1]],
            "fold": ["train", "train", "val", "val"],
            "fold_index": [-1, -1, -1, -1],
            "source": [COMPETITION, COMPETITION, COMPETITION, "ext"],
        }
    )
    prior = training_prior(Manifest(frame, {}))
    assert prior[0] == 1.0 and prior[1] == 0.0 and prior[2] == 0.5  # the held-out rows unseen
    kfold = frame.assign(fold_index=[0, 0, 1, 1])
    assert list(training_prior(Manifest(kfold, {}))[:3]) == [2 / 3, 1 / 3, 1 / 3]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"alpha": "nan"}, r"alpha must be a number in \[0, 1\] or auto, got 'nan'"),
        ({"alpha": "1.5"}, r"alpha must be a number in \[0, 1\] or auto, got '1.5'"),
        ({"alpha": "Auto"}, r"alpha must be a number in \[0, 1\] or auto, got 'Auto'"),
        ({"method": "median"}, r"method must be one of per_class, global, proportion, auto"),
    ],
)
def test_bad_method_or_alpha_is_refused_naming_it(values, message):
    with pytest.raises(ConfigError, match=message):
        ThresholdsConfig(**values)


def test_a_new_method_is_one_registration():
    """Registered once, it is a valid setting, scored in the comparison, and listed on the
    parameters page and in the step's flags."""
    from protloc.steps import STEPS
    from tools.generate import parameters_page

    @THRESHOLD_METHODS.register("everything", "every class on every image (a test's)")
    def everything(probs, y, target, s):
        return np.full(probs.shape[1], -1.0)

    try:
        probs, y = structured_predictions(300, seed=1)
        cfg = ThresholdsConfig(method="everything")
        report = thresholds_report(probs, y, cfg, y.mean(axis=0), probs)
        assert report["method"] == "everything" and "everything" in report["comparison"]
        assert report["macro_f1"] == pytest.approx(macro_f1(y, probs, -1.0))
        assert "`everything`: every class on every image" in parameters_page()
        method = next(p for p in STEPS["thresholds"].config.params() if p.name == "method")
        assert "everything" in method.description()
    finally:
        THRESHOLD_METHODS.unregister("everything")
