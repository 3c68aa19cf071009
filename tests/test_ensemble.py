"""Choosing the ensemble: which snapshots, each snapshot's scores alone, and submit and
thresholds agreeing on the choice (scikit-learn as the oracle of the scores)."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from protloc.config import SubmitConfig, ThresholdsConfig
from protloc.data.manifest import write_manifest
from protloc.errors import ConfigError
from protloc.evaluate import predictions as P
from protloc.evaluate.ensemble import choose, ensemble_rows
from protloc.evaluate.submission import decide, run_submit
from protloc.evaluate.thresholds import run_thresholds
from protloc.synthetic.predictions import structured_predictions

NAMES = [f"fold{k}_cycle{c}_{96 + 32 * c}px" for k in (0, 1) for c in range(3)]


@pytest.mark.parametrize(
    ("spec", "cycles"),
    [("all", [1, 2, 3]), ("last:1", [3]), ("last:2", [2, 3]), ("cycles:1,3", [1, 3])],
)
def test_choice_selects_those_cycles_of_every_fold(spec, cycles):
    chosen = choose(NAMES, spec)
    assert chosen == [f"fold{k}_cycle{c - 1}_{96 + 32 * (c - 1)}px" for k in (0, 1) for c in cycles]


@pytest.mark.parametrize(
    ("spec", "message"),
    [("last:4", "the run has only 3 cycles"), ("cycles:2,4", r"cycle\(s\) \[4\] not in this run")],
)
def test_a_choice_the_run_cannot_meet_is_refused(spec, message):
    with pytest.raises(ConfigError, match=message):
        choose(NAMES, spec)


@pytest.mark.parametrize("spec", ["best", "last:0", "cycles:", "cycles:0", "last:two", ""])
def test_malformed_choice_is_refused_naming_the_parameter(spec):
    with pytest.raises(ConfigError, match="ensemble must be all, last:K or cycles"):
        ThresholdsConfig(ensemble=spec)


@pytest.fixture
def run_files(tmp_path):
    """A holdout run's manifest and predictions: three snapshots of different quality."""
    n_val, n_test = 600, 50
    truth_probs, y = structured_predictions(n_val + n_test, seed=7)
    ids = [f"s{i}" for i in range(n_val)]
    labels = [list(np.flatnonzero(r)) or [0] for r in y[:n_val]]
    manifest = pd.DataFrame(
        {"id": [*ids, "t0"], "labels": [*labels, [1]], "fold": ["val"] * n_val + ["train"],
         "weight": np.float32(1.0)}
    )  # fmt: skip
    write_manifest(manifest, {}, str(tmp_path / "manifest.parquet"))
    rng = np.random.default_rng(0)
    test_ids = [f"x{i}" for i in range(n_test)]
    frames, snaps = [], {}
    for c, noise in enumerate((0.45, 0.3, 0.15)):  # later cycles are better
        probs = np.clip(truth_probs + rng.normal(0, noise, truth_probs.shape), 0, 1)
        name = f"cycle{c}_{96 + 32 * c}px"
        snaps[name] = probs
        frames += [
            P.frame(ids, "val", name, probs[:n_val]),
            P.frame(test_ids, "test", name, probs[n_val:]),
        ]
    mean = np.mean(list(snaps.values()), axis=0)
    frames += [
        P.frame(ids, "val", P.ENSEMBLE, mean[:n_val]),
        P.frame(test_ids, "test", P.ENSEMBLE, mean[n_val:]),
    ]
    P.write_predictions(pd.concat(frames, ignore_index=True), str(tmp_path / "predictions.parquet"))
    (tmp_path / "sample_submission.csv").write_text(
        "Id,Predicted\n" + "".join(f"{i},0\n" for i in test_ids)
    )
    return tmp_path, snaps, y[:n_val], n_val


def test_thresholds_and_submit_use_the_chosen_snapshots(run_files, tmp_path):
    folder, snaps, y, n_val = run_files
    out = tmp_path / "thr"
    report = run_thresholds(
        ThresholdsConfig(alpha="0.1", ensemble="last:1"),
        str(folder / "predictions.parquet"),
        str(folder / "manifest.parquet"),
        out=str(out),
    )
    last = "cycle2_160px"
    assert report["ensemble"] == {"choice": "last:1", "snapshots": [last]}
    # Each snapshot alone, scored as scikit-learn scores it.
    for name, probs in snaps.items():
        want = f1_score(y, probs[:n_val] > 0.5, average="macro", zero_division=0)
        assert report["snapshots"][name]["macro_f1_at_0.5"] == pytest.approx(want, abs=1e-6)
        assert report["snapshots"][name]["rows"] == n_val
    # The ensemble of the last snapshot alone is that snapshot, F1 and all.
    assert report["macro_f1_at_0.5"] == pytest.approx(report["snapshots"][last]["macro_f1_at_0.5"])
    assert (
        report["snapshots"]["cycle0_96px"]["macro_f1_at_0.5"]
        < report["snapshots"][last]["macro_f1_at_0.5"]
    )
    sub = run_submit(
        SubmitConfig(),
        str(folder / "predictions.parquet"),
        str(out / "thresholds.json"),
        str(folder / "sample_submission.csv"),
        out=str(tmp_path / "sub"),
    )
    thresholds = np.array(json.loads((out / "thresholds.json").read_text())["thresholds"])
    last_probs = snaps[last][n_val:].astype(np.float32).astype(np.float64)
    want = [" ".join(map(str, np.flatnonzero(r))) for r in decide(last_probs, thresholds)]
    assert list(sub["Predicted"]) == want


def test_all_is_the_stored_ensemble_and_a_subset_is_its_mean(run_files):
    folder, snaps, _, n_val = run_files
    rows = P.read_predictions(str(folder / "predictions.parquet"))
    names = list(snaps)
    assert ensemble_rows(rows, "val", names).equals(P.select(rows, "val"))
    two = ensemble_rows(rows, "test", names[1:])
    want = np.mean([snaps[n][n_val:].astype(np.float32) for n in names[1:]], axis=0)
    assert np.allclose(P.probabilities(two), want, atol=1e-6)
