"""One schema per JSON artifact (``protloc.schemas``): a damaged thresholds.json, bundle.json,
snapshots.json or metrics.json is refused in one line naming the file and the field, by every
step that reads it, and a step never writes what the next one would refuse."""

from __future__ import annotations

import copy
import json
import random
import shutil
from pathlib import Path

import pytest

from protloc.config import BundleConfig, ThresholdsConfig
from protloc.errors import ArtifactError, ProtlocError, StorageError
from protloc.evaluate.bundle import read_bundle
from protloc.evaluate.predictions import read_predictions, write_predictions
from protloc.evaluate.thresholds import read_ensemble, read_thresholds
from protloc.folders import read_snapshot_list
from protloc.report.summary import run_summary
from protloc.steps import bundle_step, thresholds_step

NAN = object()  # written as the bare constant NaN, which strict JSON refuses
MUTANTS = [None, "0.5", True, False, -3, 5, 2.7, 0, [], {}, "", "x", NAN, [1, "a"], {"a": 1}]


def _copy(src: str, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _write(path: Path, doc) -> None:
    text = json.dumps(doc, default=lambda o: "__NAN__")
    path.write_text(text.replace('"__NAN__"', "NaN"))


def _paths(doc, prefix=()):
    """Every path into a JSON value (dict keys and list indexes)."""
    yield prefix
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else []
    )
    for key, value in items:
        yield from _paths(value, (*prefix, key))


def _mutate(doc, rng: random.Random):
    """``doc`` with one value replaced by a mutant, or deleted; the whole document at times."""
    doc = copy.deepcopy(doc)
    path = rng.choice(list(_paths(doc)))
    if not path:
        return rng.choice([[], "x", 3, None, [doc]])
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and rng.random() < 0.2:
        del parent[path[-1]]
    else:
        parent[path[-1]] = rng.choice(MUTANTS)
    return doc


def _one_line_naming(exc: ProtlocError, name: str) -> None:
    """One line; a schema's refusal names the artifact (a path it lists that is not there is a
    StorageError naming that path)."""
    message = str(exc)
    assert "\n" not in message, message
    assert name in message or isinstance(exc, StorageError), message


def test_bundle_values_are_checked_where_read_and_where_written(evaluated_run, tmp_path):
    """Item: a NaN, inf, -3, 5 or ``true`` threshold and a TTA of 2.7 in bundle.json were
    applied (dropping a class, predicting all 28, or only the top one); the bundle step copied
    threshold values submit refuses."""
    good = json.loads(Path(evaluated_run["bundle"], "bundle.json").read_text())
    for k, (field, raw, needle) in enumerate(
        [
            ("thresholds", "NaN", "thresholds[3]: Input should be a finite number"),
            ("thresholds", "1e999", "thresholds[3]: Input should be a finite number"),
            ("thresholds", "-3", "thresholds[3]: Input should be greater than or equal to -1"),
            ("thresholds", "5", "thresholds[3]: Input should be less than or equal to 1"),
            ("thresholds", "true", "thresholds[3]: Input should be a valid number"),
            ("thresholds", '"0.5"', "thresholds[3]: Input should be a valid number"),
            ("tta", "2.7", "tta: Input should be a valid integer"),
        ]
    ):
        bundle = _copy(evaluated_run["bundle"], tmp_path / f"b{k}")
        doc = copy.deepcopy(good)
        if field == "thresholds":
            doc["thresholds"][3] = "__V__"
        else:
            doc[field] = "__V__"
        (bundle / "bundle.json").write_text(json.dumps(doc).replace('"__V__"', raw))
        with pytest.raises(ArtifactError) as err:
            read_bundle(str(bundle))
        _one_line_naming(err.value, "bundle.json")
        assert needle in str(err.value), (field, raw, str(err.value))

    thresholds = _copy(evaluated_run["thresholds"], tmp_path / "thr")
    doc = json.loads((thresholds / "thresholds.json").read_text())
    for value in (5, -3, "0.5"):
        doc["thresholds"][0] = value
        (thresholds / "thresholds.json").write_text(json.dumps(doc))
        out = tmp_path / f"bundle-{value}"
        with pytest.raises(ArtifactError, match=r"thresholds.json: thresholds\[0\]: "):
            bundle_step(
                BundleConfig(),
                predictions=evaluated_run["infer"],
                thresholds=str(thresholds),
                out=str(out),
            )
        assert not (out / "bundle.json").exists()


def test_thresholds_refuses_predictions_without_per_snapshot_rows(
    evaluated_run, weighted_split, tmp_path
):
    """Item: thresholds wrote an empty ensemble list (which submit then refused) from a
    predictions folder holding only the ensemble's rows."""
    infer = _copy(evaluated_run["infer"], tmp_path / "infer")
    rows = read_predictions(str(infer / "predictions.parquet"))
    write_predictions(rows[rows["snapshot"] == "ensemble"], str(infer / "predictions.parquet"))
    with pytest.raises(ArtifactError, match="holds no per-snapshot rows"):
        thresholds_step(
            ThresholdsConfig(),
            split=str(weighted_split),
            predictions=str(infer),
            out=str(tmp_path / "thr"),
        )
    assert not (tmp_path / "thr").exists()


def _readers(run: dict, folder: Path):
    """name -> (file to mutate, the reader(s) of it, run on the copied folders)."""
    thr, infer, bundle = folder / "thresholds", folder / "infer", folder / "bundle"
    cycle = Path(
        json.loads(Path(run["infer"], "snapshots.json").read_text())["snapshots"][0]
    ).parent

    def bundle_from_copies():
        out = folder / f"b-{random.random()}"
        bundle_step(BundleConfig(), predictions=str(infer), thresholds=str(thr), out=str(out))

    return {
        "thresholds.json": (
            thr / "thresholds.json",
            [
                lambda: read_thresholds(str(thr / "thresholds.json")),
                lambda: read_ensemble(str(thr / "thresholds.json")),
                lambda: run_summary(str(infer), str(thr)),
                bundle_from_copies,
            ],
        ),
        "bundle.json": (bundle / "bundle.json", [lambda: read_bundle(str(bundle))]),
        "snapshots.json": (
            infer / "snapshots.json",
            [lambda: run_summary(str(infer), str(thr)), bundle_from_copies],
        ),
        "train snapshots.json": (
            folder / "cycle" / "snapshots.json",
            [lambda: read_snapshot_list(str(folder / "cycle"))],
        ),
        "metrics.json": (cycle / "metrics.json", [bundle_from_copies]),
    }


# thresholds.json's and metrics.json's readers include the bundle step, which copies the
# snapshots for every mutant it accepts (about 15 s each): left to `make test`.
@pytest.mark.parametrize(
    "artifact",
    [
        pytest.param("thresholds.json", marks=pytest.mark.slow),
        "bundle.json",
        "snapshots.json",
        "train snapshots.json",
        pytest.param("metrics.json", marks=pytest.mark.slow),
    ],
)
def test_every_json_artifact_reader_refuses_seeded_mutants_in_one_line(
    artifact, evaluated_run, cycle0, tmp_path
):
    """60 seeded mutants of each artifact (a value replaced by a wrong type, NaN, an out-of-range
    number, or deleted; the whole document replaced): every reader accepts it or raises one
    ProtlocError line naming the file, never another exception."""
    folder = tmp_path / "run"
    for name in ("thresholds", "infer", "bundle"):
        _copy(evaluated_run[name], folder / name)
    _copy(str(cycle0[0]), folder / "cycle")
    path, readers = _readers(evaluated_run, folder)[artifact]
    if artifact == "metrics.json":  # the infer copy's snapshots point at the copied cycle
        doc = json.loads((folder / "infer" / "snapshots.json").read_text())
        doc["snapshots"] = [str(folder / "cycle" / "checkpoint.pt")]
        (folder / "infer" / "snapshots.json").write_text(json.dumps(doc))
        path = folder / "cycle" / "metrics.json"
    good = json.loads(path.read_text())
    rng = random.Random(f"{artifact}")
    refused = 0
    for _ in range(60):
        _write(path, _mutate(good, rng))
        for reader in readers:
            try:
                reader()
            except ProtlocError as exc:
                refused += 1
                _one_line_naming(exc, path.name)
    path.write_text(json.dumps(good))
    for reader in readers:  # the good document still reads
        reader()
    assert refused > 0  # the mutants reach checked fields (unchecked ones, e.g. a history, pass)


def test_what_protloc_writes_its_readers_accept(evaluated_run):
    read_bundle(evaluated_run["bundle"])
    assert len(read_thresholds(str(Path(evaluated_run["thresholds"], "thresholds.json")))) == 28
    summary = run_summary(evaluated_run["infer"], evaluated_run["thresholds"])
    assert summary["ensemble"]["alpha"] == float(ThresholdsConfig().alpha)
