"""Recipes (``--recipes FILE``): the file's contract, a recipe reaching its tasks' settings, the
compare step's ranking and ensemble against direct computations, the compiled DAG's loop, and
a kfp.local run of two recipes whose bundle (two architectures) predicts the submission."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import f1_score

import pipeline
from protloc.config import CompareConfig, InferConfig, TrainConfig
from protloc.data.hpa import labels_to_matrix, read_test_ids
from protloc.data.manifest import read_manifest
from protloc.errors import ArtifactError, ConfigError
from protloc.evaluate import predictions as P
from protloc.evaluate.compare import run_compare
from protloc.evaluate.ensemble import choose, cycle_of, snapshot_name
from protloc.recipes import decode, parse_recipes, recipe_settings, with_recipe
from protloc.train.schedule import Cycle
from tests.conftest import ROOT

TWO = """
- name: paper
- name: dense
  arch: densenet121
  loss: focal:0.5+lovasz:0.5
  crop: 1
"""


def test_a_recipes_file_gives_named_typed_settings_that_reach_their_steps():
    paper, dense = parse_recipes(TWO, "r.yaml")
    assert (paper.name, paper.settings) == ("paper", {})
    # crop is a float setting: 1 and 1.0 are one recipe (one JSON, one cache key)
    assert dense.settings == {"arch": "densenet121", "loss": "focal:0.5+lovasz:0.5", "crop": 1.0}
    assert decode(dense.to_json()) == dense
    train = with_recipe(TrainConfig(size=96, batch_size=4, epochs=1, recipe=dense.to_json()))
    assert (train.arch, train.loss, train.crop) == ("densenet121", "focal:0.5+lovasz:0.5", 1.0)
    infer = with_recipe(InferConfig(recipe=dense.to_json()))
    assert infer == InferConfig(recipe=dense.to_json())  # none of its settings is infer's
    plain = TrainConfig(size=96, batch_size=4, epochs=1)
    assert with_recipe(plain) is plain
    # what a recipe may set: every train and infer pipeline parameter but the fixed ones
    assert {"arch", "loss", "pool", "crop", "lr_max", "infer_batch_size"} <= set(recipe_settings())
    assert not {"tta", "pretrained", "recipe", "method", "alpha", "fold"} & set(recipe_settings())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- name: a\n  foo: 2\n- name: b", r"recipe 'a' sets 'foo', not a train or infer setting"),
        ("- name: a\n  arch: vgg\n- name: b", r"recipe 'a': arch must be one of inception_v3"),
        ("- name: a\n  lr_max: .nan\n- name: b", r"recipe 'a': lr_max must be a finite number"),
        ("- name: a\n  lr_max: '0.1'\n- name: b", r"recipe 'a': lr_max must be float"),
        (
            "- name: a\n  tta: 2\n- name: b",
            r"recipe 'a' sets tta, which a recipe cannot: the bundle",
        ),
        ("- name: a\n  method: global\n- name: b", r"recipe 'a' sets 'method', not a train or"),
        ("- name: a\n- name: a", r"two recipes are called 'a'"),
        ("- name: Big_one\n- name: b", r"a recipe's name is 1 to 31 of a-z"),
        ("- name: ensemble\n- name: b", r"a recipe's name is .* and not ensemble"),
        (
            "- name: a\n  lr_max: 1e-3\n- name: b",
            r"recipe 'a': lr_max must be float, got '1e-3' \(YAML",
        ),
        ("- name: a", r"a comparison needs at least two recipes, got 1"),
        ("name: a", r"a recipes file is a YAML list"),
        ("- arch: densenet121\n- name: b", r"entry 1 is not a mapping with a name"),
        ("- name: [a", r"not YAML"),
    ],
)
def test_a_bad_recipes_file_is_refused_naming_the_file_recipe_and_key(text, message):
    with pytest.raises(ConfigError, match=r"^r\.yaml: " + message):
        parse_recipes(text, "r.yaml")


def test_a_task_refuses_a_recipe_it_cannot_read():
    with pytest.raises(ConfigError, match="recipe must be JSON"):
        with_recipe(InferConfig(recipe="densenet121"))
    bad = json.dumps({"name": "a", "settings": {"arch": "vgg"}})
    with pytest.raises(ConfigError, match=r"^recipe: recipe 'a': arch must be one of"):
        with_recipe(InferConfig(recipe=bad))


def test_snapshot_names_carry_the_recipe_and_the_ensemble_choice_reads_them():
    names = [snapshot_name(c, 80 + 16 * c, -1, r) for r in ("paper", "dense") for c in (0, 1)]
    assert names[2:] == ["dense.cycle0_80px", "dense.cycle1_96px"]
    assert snapshot_name(1, 96, 0, "a-b") == "a-b.fold0_cycle1_96px"
    assert [cycle_of(n) for n in names] == [1, 2, 1, 2]
    # last:1 takes the last cycle of every recipe
    assert choose(names, "last:1") == ["paper.cycle1_96px", "dense.cycle1_96px"]


def _recipe_folder(root: Path, name: str, val_ids, test_ids, probs_val, probs_test) -> str:
    """A recipe's predictions folder as infer writes it: one snapshot and the ensemble."""
    folder = root / name
    folder.mkdir(parents=True)
    snap = f"{name}.cycle0_80px"
    rows = pd.concat(
        [
            P.frame(val_ids, "val", snap, probs_val),
            P.frame(test_ids, "test", snap, probs_test),
            P.frame(val_ids, "val", P.ENSEMBLE, probs_val),
            P.frame(test_ids, "test", P.ENSEMBLE, probs_test),
        ],
        ignore_index=True,
    )
    P.write_predictions(rows, str(folder / "predictions.parquet"))
    return str(folder)


def test_compare_ranks_by_cross_fit_and_averages_the_best(tiny_split, tmp_path):
    manifest_uri = str(tiny_split / "manifest.parquet")
    val = read_manifest(manifest_uri).held_out()
    val_ids, test_ids = list(val["id"]), [f"t{i}" for i in range(5)]
    y = labels_to_matrix(val["labels"])
    rng = np.random.default_rng(0)
    probs = {  # one recipe that learned the labels, two that did not
        "good": np.clip(0.7 * y + 0.3 * rng.random(y.shape), 0, 1),
        "noise": rng.random(y.shape),
        "flat": np.full(y.shape, 0.3) + 0.01 * rng.random(y.shape),
    }
    tests = {n: rng.random((len(test_ids), 28)) for n in probs}
    recipes = {}
    for name, p in probs.items():
        folder = _recipe_folder(tmp_path, name, val_ids, test_ids, p, tests[name])
        settings = {"arch": "resnet50"} if name == "noise" else {}
        recipes[folder] = {
            "snapshots": [f"{folder}/ckpt"],
            "tta": 1,
            "recipe": {"name": name, "settings": settings},
        }
    cfg = CompareConfig(method="per_class", alpha="0", best=2)
    doc = run_compare(cfg, recipes, manifest_uri, out=str(tmp_path / "out"))
    ranking = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert ranking == doc["compare"]
    ranked = ranking["recipes"]
    assert ranked[0]["name"] == "good"
    assert [r["rank"] for r in ranked] == [1, 2, 3]
    crossfit = [r["macro_f1_crossfit"] for r in ranked]
    assert crossfit == sorted(crossfit, reverse=True)
    for r in ranked:  # at 0.5 against scikit-learn
        want = f1_score(y, probs[r["name"]] > 0.5, average="macro", zero_division=0)
        assert r["macro_f1_at_0.5"] == pytest.approx(want, abs=1e-9)
    best = [r["name"] for r in ranked[:2]]
    assert [r["chosen"] for r in ranked] == [True, True, False]
    assert ranking["ensemble"]["recipes"] == best
    # the ensemble the last steps read: the mean of the best two recipes' ensembles
    rows = P.read_predictions(str(tmp_path / "out" / "predictions.parquet"))
    mean_val = (probs[best[0]] + probs[best[1]]) / 2
    assert np.allclose(P.probabilities(P.select(rows, "val")), mean_val, atol=1e-6)  # float32
    mean_test = (tests[best[0]] + tests[best[1]]) / 2
    assert np.allclose(P.probabilities(P.select(rows, "test")), mean_test, atol=1e-6)
    assert sorted(set(rows["snapshot"]) - {P.ENSEMBLE}) == sorted(f"{n}.cycle0_80px" for n in best)
    assert doc["snapshots"] == [f"{f}/ckpt" for n in best for f in recipes if f.endswith(n)]
    assert doc["tta"] == 1
    with pytest.raises(ConfigError, match="best is 4, but the run has 3 recipes"):
        run_compare(CompareConfig(best=4), recipes, manifest_uri, out=str(tmp_path / "o2"))
    unnamed = {f: {k: v for k, v in d.items() if k != "recipe"} for f, d in recipes.items()}
    with pytest.raises(ArtifactError, match=r"snapshots\.json names no recipe"):
        run_compare(cfg, unnamed, manifest_uri, out=str(tmp_path / "o3"))


def _kfold_recipe(root: Path, name: str, m, test_ids, cycles: int, seed: int):
    """A recipe's collect folder of a 2-fold run: ``cycles`` snapshots per fold, out-of-fold
    ensemble rows, test rows averaged over folds x snapshots."""
    rng = np.random.default_rng(seed)
    frames, oof, test = [], [], []
    for k in (0, 1):
        val_ids = list(m.chain(k).fold("val")["id"])
        val = []
        for c in range(cycles):
            snap = snapshot_name(c, 80, k, name)
            pv, pt = rng.random((len(val_ids), 28)), rng.random((len(test_ids), 28))
            frames += [P.frame(val_ids, "val", snap, pv, k), P.frame(test_ids, "test", snap, pt, k)]
            val.append(pv)
            test.append(pt)
        oof.append(P.frame(val_ids, "val", P.ENSEMBLE, np.mean(val, axis=0), k))
    frames += [*oof, P.frame(test_ids, "test", P.ENSEMBLE, np.mean(test, axis=0), -1)]
    folder = root / name
    folder.mkdir()
    P.write_predictions(pd.concat(frames, ignore_index=True), str(folder / "predictions.parquet"))
    return str(folder)


def test_compare_of_kfold_recipes_averages_every_snapshot_and_scores_as_thresholds_does(
    tmp_path,
):
    """Two recipes' collect folders (2 folds; 1 and 3 snapshots per fold): the ensemble is
    each id's mean over the chosen snapshots that predicted it (out of fold for 'val'), not the
    mean of the two recipes' ensembles; each recipe's cross-fit is what the thresholds step
    reports on its folder alone."""
    from protloc.config import ThresholdsConfig
    from protloc.data.manifest import to_bytes
    from protloc.evaluate.thresholds import run_thresholds
    from tests.test_kfold import _kfold_manifest

    m = _kfold_manifest()
    manifest_uri = str(tmp_path / "manifest.parquet")
    Path(manifest_uri).write_bytes(to_bytes(m.frame, {}))
    test_ids = [f"t{i}" for i in range(4)]
    folders = {
        "one": _kfold_recipe(tmp_path, "one", m, test_ids, 1, 1),
        "three": _kfold_recipe(tmp_path, "three", m, test_ids, 3, 2),
    }
    recipes = {
        f: {"snapshots": [f"{f}/c"], "tta": 1, "recipe": {"name": n, "settings": {}}}
        for n, f in folders.items()
    }
    out = tmp_path / "out"
    run_compare(CompareConfig(alpha="0", best=2), recipes, manifest_uri, out=str(out))
    rows = P.read_predictions(str(out / "predictions.parquet"))
    snaps = rows[rows["snapshot"] != P.ENSEMBLE]
    assert snaps["snapshot"].nunique() == 2 * (1 + 3)
    for split in ("val", "test"):
        part = snaps[snaps["split"] == split]
        want = part.groupby("id", sort=False)[list(P.PROB_COLUMNS)].mean()
        got = P.select(rows, split).set_index("id")
        assert np.allclose(got.loc[want.index, list(P.PROB_COLUMNS)], want, atol=1e-6)
        assert sorted(got.index) == sorted(m.frame["id"] if split == "val" else test_ids)
    oof = P.select(rows, "val").set_index("id")["fold"]
    assert (oof == m.frame.set_index("id").loc[oof.index, "fold_index"]).all()
    # the mean of the recipes' ensembles would weigh one snapshot as much as three
    ens = [
        P.select(P.read_predictions(f"{f}/predictions.parquet"), "test") for f in folders.values()
    ]
    equal_weights = (P.probabilities(ens[0]) + P.probabilities(ens[1])) / 2
    assert not np.allclose(P.probabilities(P.select(rows, "test")), equal_weights, atol=1e-3)
    ranking = json.loads((out / "compare.json").read_text())
    for r in ranking["recipes"]:
        alone = tmp_path / f"thresholds-{r['name']}"
        report = run_thresholds(
            ThresholdsConfig(alpha="0"),
            f"{folders[r['name']]}/predictions.parquet",
            manifest_uri,
            out=str(alone),
        )
        assert r["macro_f1_crossfit"] == report["macro_f1_crossfit"]
        assert r["macro_f1_at_0.5"] == report["macro_f1_at_0.5"]


@pytest.mark.parametrize(
    ("recipes", "flags", "message"),
    [
        ("- name: a\n  lr_max: 0.01\n- name: b\n  lr_min: 0.3", [], r"recipe 'b': lr_min must be <= lr_max"),
        (TWO, ["--best", "3"], r"--best 3: the recipes file "),
        (None, ["--best", "2"], r"--best chooses among the recipes of --recipes FILE"),
        ("- name: a\n  foo: 1\n- name: b", [], r"recipe 'a' sets 'foo'"),
        ("- name: a\n- name: b\n  arch: densenet121", ["--pretrained", "/w/inception.pth"],
         r"recipe 'b' sets arch densenet121, but the run starts from --pretrained /w/inception"),
    ],
)  # fmt: skip
def test_bad_recipes_fail_before_anything_runs(recipes, flags, message, tmp_path):
    args = [sys.executable, "pipeline.py", "local", "--root", str(tmp_path / "root"), *flags]
    if recipes is not None:
        (tmp_path / "r.yaml").write_text(recipes)
        args += ["--recipes", str(tmp_path / "r.yaml")]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert message.replace("\\", "") in proc.stderr or pytest.fail(proc.stderr)
    if recipes is not None:  # the file is named
        assert str(tmp_path / "r.yaml") in proc.stderr
    assert not (tmp_path / "root").exists()  # nothing ran, no demo data made for it


@pytest.mark.parametrize("folds", [1, 2])
def test_compiled_recipes_dag(folds, tmp_path):
    """A ParallelFor over the recipes (each its chain, or its folds' loop and collect), compare
    gathering them (dsl.Collected), and thresholds, submit and bundle reading compare."""
    (tmp_path / "r.yaml").write_text(TWO)
    out = tmp_path / "p.yaml"
    proc = subprocess.run(
        [sys.executable, "pipeline.py", "compile", "-o", str(out), "--schedule", "96:8:1,128:8:1",
         "--folds", str(folds), "--recipes", str(tmp_path / "r.yaml")],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    spec = next(yaml.safe_load_all(out.read_text()))
    tasks = spec["root"]["dag"]["tasks"]
    loop = next(t for name, t in tasks.items() if name.startswith("for-loop"))
    items = json.loads(loop["parameterIterator"]["items"]["raw"])
    assert [decode(i) for i in items] == parse_recipes(TWO, "r.yaml")
    inner = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    item = loop["parameterIterator"]["itemInput"]  # the recipe, inside the loop
    # two chains at once within the quota's 4: two recipes, or with two folds each, 2 x 2
    assert loop["iteratorPolicy"]["parallelismLimit"] == 2
    if folds == 1:
        assert set(inner) == {"train", "train-2", "infer"}
        chain = inner
    else:
        assert "collect" in inner
        folds_loop = next(t for n, t in inner.items() if n.startswith("for-loop"))
        chain = spec["components"][folds_loop["componentRef"]["name"]]["dag"]["tasks"]
        assert set(chain) == {"train", "train-2", "infer"}
        collect = inner["collect"]["inputs"]["artifacts"]["predictions"]["taskOutputArtifact"]
        assert collect["producerTask"] == folds_loop["taskInfo"]["name"]
    for task in ("train", "train-2", "infer"):
        wired = chain[task]["inputs"]["parameters"]["recipe"]["componentInputParameter"]
        assert wired == item
    collected = tasks["compare"]["inputs"]["artifacts"]["predictions"]
    assert collected["taskOutputArtifact"]["producerTask"] == loop["taskInfo"]["name"]
    for name in ("thresholds", "submit", "bundle"):
        src = tasks[name]["inputs"]["artifacts"]["predictions"]["taskOutputArtifact"]
        assert src["producerTask"] == "compare"
    assert "best" in spec["root"]["inputDefinitions"]["parameters"]


def test_a_pipeline_without_recipes_has_no_best_parameter(tmp_path):
    out = tmp_path / "p.yaml"
    proc = subprocess.run(
        [sys.executable, "pipeline.py", "compile", "-o", str(out), "--schedule", "96:8:1"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    params = next(yaml.safe_load_all(out.read_text()))["root"]["inputDefinitions"]["parameters"]
    assert "best" not in params and "method" in params


@pytest.mark.slow
def test_local_run_of_two_recipes_bundles_and_predicts_both_networks(tiny_data, tmp_path):
    """kfp.local with two recipes on tiny data: each trains its own network, compare ranks
    them (compare.json, page, Metrics), the best two's ensemble is thresholded and submitted,
    and its bundle (Inception-v3 and efficientnet_b0) applied to the test images gives the
    submission's labels."""
    recipes = parse_recipes("- name: paper\n- name: effnet\n  arch: efficientnet_b0\n", "r")
    base = {"data_root": str(tiny_data), "rare_below": 0, "workers": 0, "tta": 1, "alpha": "0"}
    # one image per batch and the same thread count here and in predict: the same float32
    # sums (see test_pipeline's test_the_bundle_applied_to_images_gives_the_runs_labels)
    summary = pipeline.run_local(
        [Cycle(80, 8, 1)],
        {**base, "best": 2, "infer_batch_size": 1},
        str(tmp_path / "root"),
        parallel=1,  # one chain at a time: infer keeps every core's threads, as predict does
        recipes=recipes,
    )
    assert sorted(r["name"] for r in summary["recipes"]) == ["effnet", "paper"]
    assert all(r["chosen"] for r in summary["recipes"])
    assert sorted(c["recipe"] for c in summary["cycles"]) == ["effnet", "paper"]
    run = Path(summary["submission"]).parents[2]
    ranking = json.loads((run / "compare" / "out" / "compare.json").read_text())
    metrics = json.loads((run / "compare" / "metrics").read_text())
    for r in ranking["recipes"]:
        assert metrics[f"{r['name']}_macro_f1_crossfit"] == r["macro_f1_crossfit"]
    page = (run / "compare" / "out" / "report.html").read_text()
    assert "protloc recipes compared" in page and "arch=efficientnet_b0" in page
    assert str(run / "compare" / "out" / "report.html") in summary["pages"]
    text = pipeline.format_summary(summary)
    assert "| 1 | " in text and "(in the ensemble)" in text
    bundle = json.loads((Path(summary["model"]) / "bundle.json").read_text())
    assert bundle["format"] == 3
    assert sorted((s["name"], s["arch"]) for s in bundle["snapshots"]) == [
        ("effnet.cycle0_80px", "efficientnet_b0"), ("paper.cycle0_80px", "inception_v3")
    ]  # fmt: skip
    out = tmp_path / "predicted"
    proc = subprocess.run(
        [sys.executable, "-m", "components.predict", "--model", summary["model"],
         "--images", str(tiny_data / "test"), "--out", str(out), "--workers", "0",
         "--infer-batch-size", "1"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    labels = pd.read_csv(out / "labels.csv", dtype=str).fillna("")
    sub = pd.read_csv(summary["submission"], dtype=str).fillna("")
    assert list(sub["Id"]) == read_test_ids(str(tiny_data / "sample_submission.csv"))
    got = dict(zip(labels["Id"], labels["Predicted"], strict=True))
    assert got == dict(zip(sub["Id"], sub["Predicted"], strict=True))
    # the probabilities are the ensemble's compare handed on, bit for bit
    compared = P.select(P.read_predictions(str(run / "compare/out/predictions.parquet")), "test")
    mine = P.select(P.read_predictions(str(out / "predictions.parquet")), "test").set_index("id")
    assert np.array_equal(
        P.probabilities(mine.loc[compared["id"]].reset_index()), P.probabilities(compared)
    )
