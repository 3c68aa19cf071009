"""The model bundle in one process: a finished cycle's snapshot through infer, thresholds,
submit and bundle, then predict on the same test images gives the submission's labels (the
kfp.local run's bundle is checked the same way in test_pipeline.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from protloc.config import (
    PredictConfig,
)
from protloc.errors import ArtifactError
from protloc.evaluate.bundle import read_bundle
from protloc.evaluate.predictions import probabilities, read_predictions, select
from protloc.steps import predict_step


def test_predict_with_the_bundle_gives_the_submissions_labels(evaluated_run, tiny_data, tmp_path):
    cfg = PredictConfig(images=str(tiny_data / "test"), workers=0, infer_batch_size=1)
    predict_step(cfg, model=evaluated_run["bundle"], out=str(tmp_path))
    labels = pd.read_csv(tmp_path / "labels.csv", dtype=str)
    sub = pd.read_csv(f"{evaluated_run['submit']}/submission.csv", dtype=str)
    assert dict(zip(labels["Id"], labels["Predicted"], strict=True)) == dict(
        zip(sub["Id"], sub["Predicted"], strict=True)
    )
    mine = select(read_predictions(str(tmp_path / "predictions.parquet")), "test").set_index("id")
    infer = select(read_predictions(f"{evaluated_run['infer']}/predictions.parquet"), "test")
    assert np.array_equal(probabilities(mine.loc[infer["id"]].reset_index()), probabilities(infer))
    summary = Path(evaluated_run["submit"], "summary.md").read_text()
    assert "Ensemble of 1 snapshots" in summary


def test_the_bundle_records_what_predict_needs(evaluated_run):
    bundle = read_bundle(evaluated_run["bundle"])
    doc = bundle.doc
    assert doc["format"] == 3 and doc["tta"] == 2 and len(doc["thresholds"]) == 28
    assert [(e["arch"], e["pool"]) for e in doc["snapshots"]] == [("inception_v3", "avg")]
    assert [s["size"] for s in doc["snapshots"]] == [96] and len(bundle.snapshots) == 1
    thresholds = json.loads(Path(evaluated_run["thresholds"], "thresholds.json").read_text())
    assert doc["thresholds"] == thresholds["thresholds"]


def test_a_format_2_bundle_reads_and_an_unknown_network_is_refused(evaluated_run, tmp_path):
    """Format 2 recorded one network for the bundle (top-level arch and pool); format 3 records
    each snapshot's, so a bundle may hold several. Both read; an unknown one is named."""
    import shutil

    copy = shutil.copytree(evaluated_run["bundle"], tmp_path / "b")
    doc = json.loads((copy / "bundle.json").read_text())
    old = {**doc, "format": 2, "arch": "inception_v3", "pool": "avg"}
    old["snapshots"] = [
        {k: v for k, v in e.items() if k not in ("arch", "pool")} for e in doc["snapshots"]
    ]
    (copy / "bundle.json").write_text(json.dumps(old))
    assert [s.name for s in read_bundle(str(copy)).snapshots] == [
        e["name"] for e in doc["snapshots"]
    ]
    for bad in (
        {**old, "arch": "vgg16"},
        {**doc, "snapshots": [{**doc["snapshots"][0], "arch": "vgg16"}]},
    ):
        (copy / "bundle.json").write_text(json.dumps(bad))
        with pytest.raises(ArtifactError, match="the bundle's architecture is 'vgg16'"):
            read_bundle(str(copy))


def test_a_bundle_of_another_class_list_is_refused(evaluated_run, tmp_path):
    import shutil

    copy = shutil.copytree(evaluated_run["bundle"], tmp_path / "b")
    doc = json.loads((copy / "bundle.json").read_text())
    doc["class_names"][1] = "Mitochondria"
    (copy / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match="class 1 is 'Mitochondria' in the bundle"):
        read_bundle(str(copy))
