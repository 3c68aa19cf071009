import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from protloc.config import SubmitConfig, ThresholdsConfig
from protloc.data.hpa import read_test_ids
from protloc.errors import ArtifactError, ConfigError
from protloc.evaluate import predictions
from protloc.evaluate.submission import make_submission, run_submit, validate_submission
from protloc.evaluate.thresholds import read_thresholds
from protloc.metrics import macro_f1, per_class_scores
from protloc.synthetic.predictions import structured_predictions
from protloc.threshold_methods import fit_thresholds, grid_search_class, search_class
from tests.conftest import mark_complete, run_python, thresholds_doc


def test_metrics_match_sklearn_with_empty_classes():
    rng = np.random.default_rng(0)
    y = (rng.random((200, 28)) < 0.1).astype(int)
    y[:, 3] = 0  # no positives
    probs = rng.random((200, 28))
    probs[:, 4] = 0.0  # never predicted
    thr = rng.uniform(0.3, 0.9, 28)
    scores = per_class_scores(y, probs, thr)
    pred = (probs > thr).astype(int)
    assert np.allclose(scores["f1"], f1_score(y, pred, average=None, zero_division=0))
    assert np.allclose(scores["precision"], precision_score(y, pred, average=None, zero_division=0))
    assert np.allclose(scores["recall"], recall_score(y, pred, average=None, zero_division=0))
    assert macro_f1(y, probs, thr) == pytest.approx(
        f1_score(y, pred, average="macro", zero_division=0)
    )


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.3])
def test_exact_search_beats_101_point_grid_for_every_class(alpha):
    probs, y = structured_predictions(10_000, seed=2)
    grid = np.linspace(0, 1, 101)
    thresholds, fits = fit_thresholds(probs, y, alpha)
    for c in range(28):
        if y[:, c].sum() == 0:
            assert not fits[c].fitted and thresholds[c] == 0.5
            continue
        _, grid_obj = grid_search_class(probs[:, c].astype(np.float64), y[:, c], alpha, grid)
        assert fits[c].objective >= grid_obj - 1e-12, c
        # What the search reports is what scikit-learn measures at the chosen threshold.
        pred = probs[:, c] > thresholds[c]
        assert fits[c].f1 == pytest.approx(f1_score(y[:, c], pred, zero_division=0))
        assert fits[c].precision == pytest.approx(precision_score(y[:, c], pred, zero_division=0))


def test_search_handles_ties_and_edges():
    s = np.array([0.9, 0.7, 0.7, 0.7, 0.2])
    y = np.array([1, 1, 0, 1, 0])
    fit = search_class(s, y, 0.0)
    assert 0.2 < fit.threshold < 0.7 and fit.f1 == pytest.approx(2 * 3 / (4 + 3))
    everything = search_class(np.array([0.3, 0.3]), np.array([1, 1]), 0.0)
    assert (np.array([0.3, 0.3]) > everything.threshold).all() and everything.f1 == 1.0
    with pytest.raises(ConfigError, match="alpha must be a finite number >= 0"):
        fit_thresholds(np.zeros((3, 28)), np.zeros((3, 28)), -0.1)


@pytest.fixture(scope="module")
def real_size_inputs(tmp_path_factory):
    """A manifest with 4,661 validation rows and ensemble predictions for them."""
    from protloc.data.manifest import write_manifest

    tmp = tmp_path_factory.mktemp("thr")
    probs, y = structured_predictions(4661 + 100, seed=4)
    ids = [f"id{i:05d}" for i in range(len(y))]
    labels = [list(np.flatnonzero(row)) or [0] for row in y]
    fold = ["val"] * 4661 + ["train"] * 100
    manifest = pd.DataFrame({"id": ids, "labels": labels, "fold": fold, "weight": np.float32(1.0)})
    write_manifest(manifest, {}, str(tmp / "manifest.parquet"))
    val = slice(0, 4661)
    rows = pd.concat(
        [
            predictions.frame(ids[val], "val", "ensemble", probs[val]),
            predictions.frame(ids[val], "val", "cycle0_96px", probs[val]),
        ]
    )
    predictions.write_predictions(rows, str(tmp / "predictions.parquet"))
    return mark_complete(tmp)


@pytest.mark.slow
def test_thresholds_cli_on_real_validation_size_writes_the_contract(real_size_inputs, tmp_path):
    # Its wall time is a row of `make bench` (bench.speed.thresholds.cli_walls), not an assertion.
    folder = str(real_size_inputs)
    cli = ["-m", "components.thresholds", "--predictions", folder, "--split", folder]
    proc = run_python([*cli, "--out", str(tmp_path)])
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "thresholds.json").read_text())
    assert len(doc["thresholds"]) == 28 and doc["alpha"] == 0.1 and doc["n_val"] == 4661
    assert doc["macro_f1"] >= doc["macro_f1_at_0.5"]
    assert set(doc["comparison"]) == {"0.5", "global", "per_class", "proportion"}
    assert all(set(v) >= {"fit", "crossfit"} for v in doc["comparison"].values())
    assert len(doc["classes"]) == 28 and {"precision", "recall", "f1"} <= set(doc["classes"][0])
    for png in ("threshold_curves.png", "per_class_f1.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    assert np.allclose(read_thresholds(str(tmp_path / "thresholds.json")), doc["thresholds"])


def test_predictions_not_matching_manifest_refused(real_size_inputs, tmp_path):
    from protloc.evaluate.thresholds import run_thresholds

    rows = predictions.read_predictions(str(real_size_inputs / "predictions.parquet"))
    rows = rows[rows["id"] != "id00007"]
    predictions.write_predictions(rows, str(tmp_path / "p.parquet"))
    with pytest.raises(
        ArtifactError, match=r"does not match the held-out rows .* 1 validation ids missing"
    ):
        run_thresholds(
            ThresholdsConfig(alpha="0.1"),
            str(tmp_path / "p.parquet"),
            str(real_size_inputs / "manifest.parquet"),
            out=str(tmp_path),
        )


@pytest.fixture(scope="module")
def kaggle_test_ids(hpa_dir):
    return read_test_ids(str(hpa_dir / "sample_submission.csv"))


def test_submission_for_kaggle_test_ids_passes_validator(kaggle_test_ids, hpa_dir, tmp_path):
    probs, _ = structured_predictions(len(kaggle_test_ids), seed=5)
    probs[0] = 0.0  # nothing above threshold: gets its most probable class
    probs[0, 17] = 0.01
    rows = predictions.frame(kaggle_test_ids, "test", "ensemble", probs)
    predictions.write_predictions(rows, str(tmp_path / "predictions.parquet"))
    (tmp_path / "thresholds.json").write_text(json.dumps(thresholds_doc([0.4] * 28)))
    sub = run_submit(
        SubmitConfig(),
        str(tmp_path / "predictions.parquet"),
        str(tmp_path / "thresholds.json"),
        str(hpa_dir / "sample_submission.csv"),
        out=str(tmp_path),
    )
    assert len(sub) == 11702 and list(sub["Id"]) == kaggle_test_ids
    assert sub["Predicted"].iloc[0] == "17"
    written = pd.read_csv(tmp_path / "submission.csv", dtype=str)
    validate_submission(written, kaggle_test_ids)
    assert written.equals(sub)


def test_submission_bad_inputs_name_the_problem(kaggle_test_ids, hpa_dir, tmp_path):
    ids = kaggle_test_ids[:50]
    probs, _ = structured_predictions(50, seed=6)
    good = predictions.frame(ids, "test", "ensemble", probs)
    thr = tmp_path / "t.json"
    thr.write_text(json.dumps(thresholds_doc([0.5] * 28)))

    nan = good.copy()
    nan.loc[7, "p3"] = np.nan
    predictions.write_predictions(nan, str(tmp_path / "nan.parquet"))
    with pytest.raises(ArtifactError, match=rf"column 'p3' has nan for id '{ids[7]}'"):
        predictions.read_predictions(str(tmp_path / "nan.parquet"))

    good.drop(columns=["p12"]).to_parquet(tmp_path / "missing.parquet")
    with pytest.raises(ArtifactError, match=r"lack column\(s\) p12"):
        predictions.read_predictions(str(tmp_path / "missing.parquet"))

    stranger = good.copy()
    stranger.loc[3, "id"] = "not-a-kaggle-id"
    with pytest.raises(
        ArtifactError, match=r"absent from the sample submission, e.g. 'not-a-kaggle-id'"
    ):
        make_submission(stranger, np.full(28, 0.5), ids[:3] + ids[4:])

    thr27 = tmp_path / "t27.json"
    thr27.write_text(json.dumps(thresholds_doc([0.5] * 27)))
    with pytest.raises(
        ArtifactError, match=r"t27\.json: thresholds: List should have at least 28 items"
    ):
        read_thresholds(str(thr27))

    bad = pd.DataFrame({"Id": ids[:2], "Predicted": ["3 28", "1"]})
    with pytest.raises(ArtifactError, match=rf"id '{ids[0]}' has '3 28'"):
        validate_submission(bad, ids[:2])
