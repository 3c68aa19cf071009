"""K folds: the split's fold assignment on the real labels, the manifest's chain views, the
collect step's out-of-fold contract, and a whole kfp.local run with two folds of two ranks."""

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pipeline
from protloc.config import SplitConfig
from protloc.data.hpa import labels_to_matrix, parse_labels, read_test_ids
from protloc.data.manifest import parse_manifest, to_bytes
from protloc.data.split import make_manifest
from protloc.errors import ArtifactError, ConfigError
from protloc.evaluate import predictions as P
from protloc.evaluate.collect import collect
from protloc.train.schedule import Cycle


def test_five_folds_on_the_real_labels_are_stratified(hpa_dir):
    labels = parse_labels((hpa_dir / "train.csv").read_bytes())
    t0 = time.perf_counter()
    frame = make_manifest(labels, SplitConfig(folds=5))
    seconds = time.perf_counter() - t0
    y = labels_to_matrix(frame["labels"])
    totals = y.sum(axis=0)
    index = frame["fold_index"].to_numpy()
    assert set(index.tolist()) == {0, 1, 2, 3, 4}
    for k in range(5):
        counts = y[index == k].sum(axis=0)
        share = counts / totals
        big = totals >= 100
        assert np.abs(share[big] - 0.2).max() <= 0.01, (k, share[big])
        assert (counts[totals >= 5] >= 1).all(), k  # every class with >= 5 samples, every fold
    # Every sample trains in 4 chains: all rows are training rows with their weight.
    assert (frame["fold"] == "train").all() and (frame["weight"] > 0).all()
    assert seconds < 30, seconds


def _kfold_manifest(n: int = 40, folds: int = 2):
    text = "Id,Target\n" + "".join(f"s{i},{i % 4} {4 + i % 3}\n" for i in range(n))
    labels = parse_labels(text.encode())
    frame = make_manifest(labels, SplitConfig(folds=folds, rare_below=0))
    return parse_manifest(to_bytes(frame, {}), "m.parquet")


def test_a_chain_sees_its_fold_as_validation():
    m = _kfold_manifest()
    assert m.kfold and m.folds == 2 and len(m.held_out()) == 40
    seen = []
    for k in (0, 1):
        view = m.chain(k)
        val = view.fold("val")
        assert (val["weight"] == 0).all() and (view.fold("train")["weight"] > 0).all()
        assert set(val["id"]) == set(m.frame.loc[m.frame["fold_index"] == k, "id"])
        seen += list(val["id"])
    assert sorted(seen) == sorted(m.frame["id"])  # each sample held out exactly once
    with pytest.raises(ArtifactError, match="has 2 folds: a chain must name its fold"):
        m.chain(-1)
    with pytest.raises(ArtifactError, match="fold 2 asked of a manifest of 2 folds"):
        m.chain(2)
    holdout = parse_manifest(
        to_bytes(make_manifest(m.frame[["id", "labels"]], SplitConfig(rare_below=0)), {}), "h"
    )
    with pytest.raises(ArtifactError, match="fold 0 asked of a holdout manifest"):
        holdout.chain(0)


def test_more_folds_than_samples_is_refused():
    labels = parse_labels(b"Id,Target\na,1\nb,2\nc,1\n")
    with pytest.raises(ConfigError, match="folds 5 needs at least 5 labelled samples"):
        make_manifest(labels, SplitConfig(folds=5))


def _chain_rows(m, k: int, test_ids: list[str], seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    val_ids = list(m.chain(k).fold("val")["id"])
    frames = []
    snaps = []
    for c in (0, 1):
        name = f"fold{k}_cycle{c}_80px"
        for split, ids in (("val", val_ids), ("test", test_ids)):
            probs = rng.random((len(ids), 28))
            frames.append(P.frame(ids, split, name, probs, k))
            if split == "test":
                snaps.append(probs)
        val = [f for f in frames if f["split"].iloc[0] == "val"]
    frames.append(
        P.frame(val_ids, "val", P.ENSEMBLE, np.mean([P.probabilities(f) for f in val], axis=0), k)
    )
    frames.append(P.frame(test_ids, "test", P.ENSEMBLE, np.mean(snaps, axis=0), k))
    return pd.concat(frames, ignore_index=True), snaps


def test_collect_gives_every_sample_one_out_of_fold_row(tmp_path):
    m = _kfold_manifest()
    uri = tmp_path / "manifest.parquet"
    uri.write_bytes(to_bytes(m.frame, {}))
    test_ids = [f"t{i}" for i in range(6)]
    (a, snaps_a), (b, snaps_b) = _chain_rows(m, 0, test_ids, 1), _chain_rows(m, 1, test_ids, 2)
    rows, f1, order = collect({"a": a, "b": b}, str(uri))
    assert order == ["a", "b"]
    P.validate(rows, "collected")
    oof = P.select(rows, "val")
    assert sorted(oof["id"]) == sorted(m.frame["id"])  # every labelled sample exactly once
    test = P.select(rows, "test")
    assert list(test["id"]) == test_ids and (test["fold"] == -1).all()
    # the test ensemble is the mean over folds x snapshots
    assert np.allclose(P.probabilities(test), np.mean(snaps_a + snaps_b, axis=0), atol=1e-6)
    assert 0 <= f1 <= 1
    with pytest.raises(ArtifactError, match=r"fold\(s\) \[1\] of 2 are missing"):
        collect({"a": a}, str(uri))
    with pytest.raises(ArtifactError, match="fold 0 predicted twice"):
        collect({"a": a, "b": a}, str(uri))


def test_collect_refuses_a_fold_of_another_split(tmp_path):
    """Item: collect accepted fold files whose validation ids belong to another fold (a chain
    of another split, scored on rows it trained on)."""
    m = _kfold_manifest()
    other = _kfold_manifest(folds=2)  # the same samples, two of them in each other's fold
    fold = other.frame["fold_index"]
    x, y = fold.index[fold == 0][0], fold.index[fold == 1][0]
    other.frame.loc[x, "fold_index"], other.frame.loc[y, "fold_index"] = 1, 0
    uri = tmp_path / "manifest.parquet"
    uri.write_bytes(to_bytes(m.frame, {}))
    test_ids = [f"t{i}" for i in range(6)]
    a, _ = _chain_rows(m, 0, test_ids, 1)
    b, _ = _chain_rows(other, 1, test_ids, 2)
    with pytest.raises(ArtifactError, match=r"^b: its validation ids are not fold 1's"):
        collect({"a": a, "b": b}, str(uri))


@pytest.mark.slow
def test_local_pipeline_with_two_folds_of_two_ranks(tiny_data, tmp_path, capfd):
    """kfp.local, --folds 2 --gpus 2: a ParallelFor of two chains, each train and infer task
    starting 2 gloo ranks on the CPU whose weights agree at the end of the cycle; collect,
    thresholds on out-of-fold predictions of every labelled sample exactly once, a submission
    over both folds."""
    base = {"data_root": str(tiny_data), "rare_below": 0, "workers": 0, "tta": 1, "alpha": "0"}
    summary = pipeline.run_local([Cycle(80, 8, 1)], base, str(tmp_path / "root"), folds=2, gpus=2)
    text = "".join(capfd.readouterr())
    assert text.count("launching 2 ranks on this node") == 4  # train and infer of each fold
    assert text.count("weights identical on 2 ranks") == 2 and "device cpu x2" in text
    assert "on 2 rank(s)" in text  # infer
    run = Path(summary["submission"]).parents[2]
    labelled = pd.read_csv(tiny_data / "train.csv")["Id"].tolist()
    collected = P.read_predictions(str(run / "collect" / "out" / "predictions.parquet"))
    oof = P.select(collected, "val")
    assert sorted(oof["id"]) == sorted(labelled)  # every labelled sample, exactly once
    assert set(oof["fold"]) == {0, 1}
    thresholds = json.loads((run / "thresholds" / "out" / "thresholds.json").read_text())
    assert thresholds["n_val"] == len(labelled)  # fitted on the out-of-fold rows
    sub = pd.read_csv(summary["submission"], dtype=str)
    assert list(sub["Id"]) == read_test_ids(str(tiny_data / "sample_submission.csv"))
    assert [c["fold"] for c in summary["cycles"]] == [0, 1]
    steps = [s["step"] for s in summary["steps"]]
    assert "collect" in steps and "infer (fold 1)" in steps
    # rank 0 writes one complete result
    trained = sorted(p.parent for p in run.rglob("train*/out/snapshots.json"))
    assert len(trained) == 2, sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    for folder in trained:
        assert sorted(p.name for p in folder.iterdir()) == [
            "checkpoint.pt", "metrics.json", "report.html", "snapshots.json", "timing.json",
            "training_curves.png",
        ]  # fmt: skip


@pytest.mark.slow
def test_compiled_kfold_dag(tmp_path):
    """--folds 3: one ParallelFor over the folds holding each chain and its infer, collect
    gathering them (dsl.Collected), thresholds and submit reading collect."""
    import subprocess
    import sys

    import yaml

    from tests.conftest import ROOT

    out = tmp_path / "p.yaml"
    proc = subprocess.run(
        [sys.executable, "pipeline.py", "compile", "-o", str(out), "--schedule",
         "96:8:1,128:8:1", "--folds", "3"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    spec = yaml.safe_load_all(out.read_text()).__next__()
    tasks = spec["root"]["dag"]["tasks"]
    loop = next(t for name, t in tasks.items() if name.startswith("for-loop"))
    assert loop["parameterIterator"]["items"]["raw"] == "[0, 1, 2]"
    inner = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert set(inner) == {"train", "train-2", "infer"}
    assert tasks["split"]["inputs"]["parameters"]["folds"]["runtimeValue"]["constant"] == 3
    collected = tasks["collect"]["inputs"]["artifacts"]["predictions"]
    assert collected["taskOutputArtifact"]["producerTask"] == loop["taskInfo"]["name"]
    for name in ("thresholds", "submit"):
        src = tasks[name]["inputs"]["artifacts"]["predictions"]["taskOutputArtifact"]
        assert src["producerTask"] == "collect"
    bad = subprocess.run(
        [sys.executable, "pipeline.py", "compile", "-o", str(out), "--folds", "0"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and "folds must be in [1, 20], got 0" in bad.stderr
