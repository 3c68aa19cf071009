import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import pipeline
from protloc.data.hpa import read_test_ids
from protloc.train.schedule import Cycle, paper_schedule
from protloc.version import code_version
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    path = tmp_path_factory.mktemp("compile") / "pipeline.yaml"
    pipeline.compile_pipeline(paper_schedule(), str(path))
    docs = list(yaml.safe_load_all(path.read_text()))
    return docs[0], (docs[1] if len(docs) > 1 else {})


def test_compiled_dag(compiled):
    spec, platform = compiled
    tasks = spec["root"]["dag"]["tasks"]
    trains = [f"train{'' if i == 0 else f'-{i + 1}'}" for i in range(7)]
    assert set(tasks) == {
        "fingerprint", "split", "prepare", *trains, "infer", "thresholds", "submit", "bundle"
    }  # fmt: skip
    # The data fingerprint: the DAG's first task, never cached; every task reading the data
    # root takes its output (part of their cache keys), whoever started the run.
    assert not tasks["fingerprint"].get("cachingOptions", {}).get("enableCache")
    assert "data_fingerprint" not in spec["root"]["inputDefinitions"]["parameters"]
    for name in ("split", "prepare", *trains, "infer", "submit"):
        fp = tasks[name]["inputs"]["parameters"]["data_fingerprint"]["taskOutputParameter"]
        assert fp["producerTask"] == "fingerprint", name
        assert tasks[name]["cachingOptions"]["enableCache"] is True, name
    # Images bound to the code: the tag is the code version the tasks check; the check runs
    # first in the GPU image, on a small CPU pod with no retry.
    tag = code_version().replace("+", "-")
    execs = spec["deploymentSpec"]["executors"]
    assert execs["exec-fingerprint"]["container"]["image"] == f"ghcr.io/protloc/protloc:{tag}-gpu"
    assert execs["exec-split"]["container"]["image"] == f"ghcr.io/protloc/protloc:{tag}-cpu"
    assert "retryPolicy" not in tasks["fingerprint"]
    assert execs["exec-fingerprint"]["container"]["resources"]["resourceMemoryLimit"] == "2G"
    # Every task states a memory limit; a GPU task's requests equal its limits.
    for name, e in execs.items():
        res = e["container"]["resources"]
        assert res["resourceMemoryLimit"] == res["resourceMemoryRequest"], name
        assert res["resourceCpuLimit"] == res["resourceCpuRequest"], name
    # The last output: the model bundle, made from infer's snapshots and the thresholds.
    bundle = tasks["bundle"]["inputs"]["artifacts"]
    assert bundle["predictions"]["taskOutputArtifact"]["producerTask"] == "infer"
    assert bundle["thresholds"]["taskOutputArtifact"]["producerTask"] == "thresholds"
    model = spec["root"]["outputDefinitions"]["artifacts"]["model"]
    assert model["artifactType"]["schemaTitle"] == "system.Model"
    # Decoded once, at the largest size; every cycle and infer read that store.
    prepare = tasks["prepare"]["inputs"]["parameters"]
    assert prepare["store_size"]["runtimeValue"]["constant"] == 512
    # ... and at each smaller size of the schedule, so a cycle fetches only its own size
    assert prepare["extra_sizes"]["runtimeValue"]["constant"] == "221,256,296,320,384,440"
    for name in (*trains, "infer"):
        store = tasks[name]["inputs"]["artifacts"]["store"]["taskOutputArtifact"]
        assert store["producerTask"] == "prepare", name
    # K train tasks chained in schedule order, each warm-started from the one before.
    assert "previous" not in tasks["train"]["inputs"].get("artifacts", {})
    for i in range(1, 7):
        prev = tasks[trains[i]]["inputs"]["artifacts"]["previous"]["taskOutputArtifact"][
            "producerTask"
        ]
        assert prev == trains[i - 1]
        assert (
            tasks[trains[i]]["inputs"]["parameters"]["size"]["runtimeValue"]["constant"]
            == [221, 256, 296, 320, 384, 440, 512][i]
        )
    assert (
        tasks["infer"]["inputs"]["artifacts"]["last_cycle"]["taskOutputArtifact"]["producerTask"]
        == trains[-1]
    )
    assert (
        tasks["thresholds"]["inputs"]["artifacts"]["predictions"]["taskOutputArtifact"][
            "producerTask"
        ]
        == "infer"
    )
    assert (
        tasks["submit"]["inputs"]["artifacts"]["thresholds"]["taskOutputArtifact"]["producerTask"]
        == "thresholds"
    )
    for name, task in tasks.items():
        if name != "fingerprint":  # never cached: it tells whether the data changed
            assert task["cachingOptions"]["enableCache"] is True, name
        assert task["taskInfo"]["name"], name
        assert task["inputs"]["parameters"]["code_version"]["runtimeValue"]["constant"].startswith(
            "0.1.0+"
        )
    assert tasks["train-3"]["taskInfo"]["name"] == "train cycle 3/7 (296 px)"
    executors = spec["deploymentSpec"]["executors"]
    for name, task in tasks.items():
        container = executors[spec["components"][task["componentRef"]["name"]]["executorLabel"]][
            "container"
        ]
        gpu = name.startswith(("train", "infer"))
        image = "gpu" if gpu or name == "fingerprint" else "cpu"  # the check runs in the GPU image
        assert container["image"].endswith(f":{code_version().replace('+', '-')}-{image}"), name
        assert ("accelerator" in container.get("resources", {})) == gpu, name
        if gpu:
            assert container["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
            assert task["retryPolicy"]["maxRetryCount"] == 3
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    train_k8s = k8s[spec["components"][tasks["train"]["componentRef"]["name"]]["executorLabel"]]
    assert train_k8s["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
    assert train_k8s["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert {m["mountPath"] for m in train_k8s["emptyDirMounts"]} == {"/dev/shm", "/scratch"}
    assert train_k8s["secretAsEnv"][0]["secretName"] == "protloc-s3"
    assert (
        train_k8s["securityContext"]["runAsNonRoot"] is True
        and int(train_k8s["securityContext"]["runAsUser"]) == 1000
    )
    split_k8s = k8s[spec["components"][tasks["split"]["componentRef"]["name"]]["executorLabel"]]
    assert (
        "nodeSelector" not in split_k8s
        and split_k8s["secretAsEnv"][0]["secretName"] == "protloc-s3"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--schedule", "128:8:1,96:8:1"], "sizes must increase"),
        (["--schedule", "96:0:1"], r"schedule cycle 1: batch_size must be in \[2, 4096\], got 0"),
        (["--schedule", "64:8:1"], r"size must be in \[75, 4096\], got 64"),
        (["--alpha", "-0.1"], r"alpha must be a number in \[0, 1\] or auto, got '-0.1'"),
        (["--alpha", "nan"], r"alpha must be a number in \[0, 1\] or auto, got 'nan'"),
        (["--schedule", ""], "schedule is empty"),
        (["--tta", "0"], r"tta must be in \[1, 8\], got 0"),
        (["--val-fraction", "1.5"], r"val_fraction must be in \(0, 1\)"),
    ],
)
def test_bad_parameters_fail_before_anything_runs(args, message, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "pipeline.py",
            "local",
            "--data-root",
            str(tmp_path / "none"),
            "--root",
            str(tmp_path / "root"),
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert re.search(message, proc.stderr), proc.stderr
    assert not (tmp_path / "root").exists()


def test_gpus_scales_the_pods_and_reaches_train_and_infer(tmp_path):
    """compile --gpus 4: train and infer ask for 4 GPUs with 4x the CPUs, memory and /dev/shm,
    and get gpus=4 (the ranks they start); a bad value is one line."""
    out = tmp_path / "p.yaml"
    rc = pipeline.main(["compile", "-o", str(out), "--schedule", "96:8:1", "--gpus", "4"])
    assert rc == 0
    spec, platform = list(yaml.safe_load_all(out.read_text()))
    tasks = spec["root"]["dag"]["tasks"]
    executors = spec["deploymentSpec"]["executors"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in ("train", "infer"):
        label = spec["components"][tasks[name]["componentRef"]["name"]]["executorLabel"]
        res = executors[label]["container"]["resources"]
        assert res["accelerator"]["resourceCount"] == "4" and res["cpuRequest"] == 32
        assert res["memoryRequest"] == 192
        shm = next(m for m in k8s[label]["emptyDirMounts"] if m["mountPath"] == "/dev/shm")
        assert shm["sizeLimit"] == "64Gi"
        assert tasks[name]["inputs"]["parameters"]["gpus"]["runtimeValue"]["constant"] == 4
    proc = subprocess.run(
        [sys.executable, "pipeline.py", "compile", "-o", str(out), "--gpus", "0"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "gpus must be in [1, 16], got 0" in proc.stderr


def test_docker_runner_refuses_a_data_root_it_cannot_pass_credentials_for(tmp_path):
    from components.docker_runner import docker_runner
    from protloc.errors import ConfigError

    with pytest.raises(ConfigError, match=r"passes only S3 credentials .*gs://b/hpa"):
        docker_runner(tmp_path, "gs://b/hpa", "label")


def test_docker_runner_without_an_engine_is_one_line(tiny_data, tmp_path):
    """`--runner docker` where no Docker engine answers: one line naming the runner, exit 2,
    before any task starts (`make demo-docker` runs it for real where an engine is)."""
    import os

    proc = subprocess.run(
        [sys.executable, "pipeline.py", "local", "--runner", "docker",
         "--data-root", str(tiny_data), "--root", str(tmp_path / "root"),
         "--schedule", "80:8:1"],
        cwd=ROOT, capture_output=True, text=True, check=False,
        env={**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert re.search(r"^error: --runner docker: no Docker engine answers", proc.stderr, re.M)
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "root").glob("protloc-*"))  # no task ran


@pytest.fixture(scope="module")
def local_runs(tiny_data, tmp_path_factory):
    """The whole pipeline through kfp.local, three times: the second with only alpha changed,
    the third after one image was regenerated in place under the same data root."""
    import shutil

    from PIL import Image

    data = shutil.copytree(tiny_data, tmp_path_factory.mktemp("kfp-data") / "data")
    root = tmp_path_factory.mktemp("kfp-root")
    schedule = [Cycle(80, 8, 1), Cycle(96, 8, 1)]
    # Batches of one image: predict (below) then meets the same float32 sums infer did.
    base = {"data_root": str(data), "rare_below": 0, "workers": 0, "tta": 2, "alpha": "0"}
    base["infer_batch_size"] = 1
    first = pipeline.run_local(schedule, base, str(root))
    second = pipeline.run_local(schedule, {**base, "alpha": "0.5"}, str(root))
    changed = sorted((data / "train").glob("*_green.png"))[0]
    Image.fromarray(np.zeros((96, 96), np.uint8)).save(changed)
    third = pipeline.run_local(schedule, {**base, "alpha": "0.5"}, str(root))
    return first, second, third


@pytest.mark.slow
def test_local_pipeline_writes_a_valid_submission(local_runs, tiny_data):
    first, _, _ = local_runs
    sub = pd.read_csv(first["submission"], dtype=str)
    assert list(sub["Id"]) == read_test_ids(str(tiny_data / "sample_submission.csv"))
    assert sub["Predicted"].str.fullmatch(r"\d+( \d+)*").all()
    assert [c["size"] for c in first["cycles"]] == [80, 96]
    assert all(s["ran"] for s in first["steps"])
    assert len(first["plots"]) == 4


@pytest.mark.slow
def test_alpha_only_rerun_serves_split_train_infer_from_cache(local_runs):
    first, second, _ = local_runs
    ran = {s["step"]: s["ran"] for s in second["steps"]}
    assert ran == {
        "split": False,
        "prepare": False,
        "train cycle 1": False,
        "train cycle 2": False,
        "infer": False,
        "thresholds": True,
        "submit": True,
        "bundle": True,  # it holds the thresholds
    }
    t1, t2 = (
        json.loads(
            (
                Path(r["submission"]).parents[2] / "thresholds" / "out" / "thresholds.json"
            ).read_text()
        )
        for r in (first, second)
    )
    assert t1["alpha"] == 0.0 and t2["alpha"] == 0.5
    assert t1["thresholds"] != t2["thresholds"]


@pytest.mark.slow
def test_data_changed_under_the_same_uri_is_not_served_from_cache(local_runs):
    """Same data root URI, same parameters as the second run, one image regenerated in place:
    the data fingerprint (a task argument, so part of KFP's cache key) changed, and every task
    that reads the data runs again instead of serving the old model and predictions."""
    _, _, third = local_runs
    ran = {s["step"]: s["ran"] for s in third["steps"]}
    assert ran["train cycle 1"] and ran["train cycle 2"] and ran["infer"], ran
    assert ran["split"] and ran["prepare"]  # they read the data root too
    assert third["cycles"][0]["val_macro_f1_at_0.5"] >= 0


def test_code_change_is_never_served_stale(monkeypatch):
    """The code version is a task argument, so it is part of every cache key."""
    v1 = pipeline.build_pipeline([Cycle(80, 8, 1)], placement=None)
    monkeypatch.setattr(pipeline, "code_version", lambda: "0.1.0+changed")
    v2 = pipeline.build_pipeline([Cycle(80, 8, 1)], placement=None)

    def arg(p):
        return (
            p.pipeline_spec.root.dag.tasks["split"]
            .inputs.parameters["code_version"]
            .runtime_value.constant.string_value
        )

    assert arg(v1) != arg(v2) and arg(v2) == "0.1.0+changed"


@pytest.mark.slow
def test_cli_and_kfp_local_write_the_same_files(local_runs, tiny_data, tmp_path):
    """One front door per step: the CLI (what docker compose runs) on the same inputs and
    settings writes the same files, byte for byte (timing.json aside), as the kfp.local task."""
    first, _, _ = local_runs
    run = Path(first["submission"]).parents[2]
    kfp = {name: run / name / "out" for name in ("split", "infer", "thresholds", "submit")}
    cli = {name: tmp_path / name for name in kfp}
    steps = {
        "split": ["--data-root", str(tiny_data), "--rare-below", "0"],
        "thresholds": [
            "--split",
            str(kfp["split"]),
            "--predictions",
            str(kfp["infer"]),
            "--alpha",
            "0.0",
        ],
        "submit": [
            "--data-root",
            str(tiny_data),
            "--predictions",
            str(kfp["infer"]),
            "--thresholds",
            str(kfp["thresholds"]),
        ],
    }
    for name, args in steps.items():
        proc = subprocess.run(
            [sys.executable, "-m", f"components.{name}", *args, "--out", str(cli[name])],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        files = sorted(p.name for p in kfp[name].iterdir())
        assert sorted(p.name for p in cli[name].iterdir()) == files, name
        for f in files:
            a, b = (kfp[name] / f).read_bytes(), (cli[name] / f).read_bytes()
            if f == "timing.json":
                ta, tb = json.loads(a), json.loads(b)
                assert {**ta, "seconds": 0} == {**tb, "seconds": 0}, name
            else:  # manifest, stats, thresholds, submission and the plots
                assert a == b, (name, f)


def test_submit_passes_namespace_account_root_and_placement_to_kfp(
    tiny_data, tmp_path, monkeypatch
):
    """kfp.Client replaced by a stand-in that records what submit hands it (constructor,
    experiment, run) and keeps the YAML it is given; the HTTP itself is test_submit.py's."""
    import kfp

    seen: dict = {"runs": []}

    class RecordingClient:
        def __init__(self, host=None, namespace="kubeflow", **kwargs):
            seen["client"] = {"host": host, "namespace": namespace, **kwargs}
            self._healthz_api = self

        def healthz_service_get_healthz(self, _preload_content=True):
            return type("Raw", (), {"data": b'{"tag_name": "2.17.0"}'})()

        def create_experiment(self, name, namespace=None):
            seen["experiment"] = (name, namespace)
            return type("Experiment", (), {"experiment_id": "exp-1"})()

        def run_pipeline(self, **kwargs):
            seen["runs"].append(
                {**kwargs, "yaml": Path(kwargs["pipeline_package_path"]).read_text()}
            )
            return type("Run", (), {"run_id": "run-123"})()

    monkeypatch.setattr(kfp, "Client", RecordingClient)
    rc = pipeline.main(
        [
            "submit",
            "--host", "https://kfp.example.org",
            "--data-root", "s3://a-bucket-this-machine-cannot-read/hpa",
            "--experiment", "hpa",
            "--namespace", "team-a",
            "--service-account", "protloc-runner",
            "--pipeline-root", "s3://bucket/protloc",
            "--gpu-node-selector", "cloud.google.com/gke-accelerator=nvidia-h100-80gb",
            "--gpu-toleration", "",
            "--image-pull-secret", "regcred",
            "--image-registry", "registry.example.org/team",
            "--schedule", "96:8:1",
            "--alpha", "0.3",
            "--existing-token", "a-token",
        ]
    )  # fmt: skip
    assert rc == 0  # the data root is never read from here: the run's first task reads it
    assert seen["client"]["host"] == "https://kfp.example.org"
    assert seen["client"]["namespace"] == "team-a" and seen["client"]["existing_token"] == "a-token"
    assert seen["experiment"] == ("hpa", "team-a")
    (run,) = seen["runs"]
    assert run["experiment_id"] == "exp-1" and run["service_account"] == "protloc-runner"
    # Caching as compiled (every task but the fingerprint): a run-level setting would cache it
    assert run["pipeline_root"] == "s3://bucket/protloc" and run["enable_caching"] is None
    assert run["params"]["alpha"] == "0.3" and "data_fingerprint" not in run["params"]
    spec, platform = list(yaml.safe_load_all(run["yaml"]))[:2]
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    tag = code_version().replace("+", "-")
    assert images == {f"registry.example.org/team/protloc:{tag}-{t}" for t in ("cpu", "gpu")}
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    train = next(v for k, v in k8s.items() if "train" in k)
    assert train["nodeSelector"]["labels"] == {
        "cloud.google.com/gke-accelerator": "nvidia-h100-80gb"
    }
    assert "tolerations" not in train  # --gpu-toleration "": none
    assert [s["secretName"] for s in train["imagePullSecret"]] == ["regcred"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--gpu-node-selector", "nokey"], "--gpu-node-selector must be KEY=VALUE"),
        (["--gpu-resource", " "], "--gpu-resource is empty"),
        # Kubernetes' own rules, at compile time (the API server would refuse them at run time)
        (["--gpu-node-selector", "my key=v"], "--gpu-node-selector key 'my key'"),
        (["--gpu-node-selector", "a=b,c=d"], "--gpu-node-selector value 'b,c=d'"),
        (["--gpu-toleration", "bad key!"], "--gpu-toleration 'bad key!'"),
        (["--gpu-resource", "nvidia.com/gpu x"], "--gpu-resource 'nvidia.com/gpu x'"),
        (["--gpu-resource", "gpu"], "DOMAIN/NAME"),
        (["--image-pull-secret", "Bad_Secret!"], "--image-pull-secret 'Bad_Secret!'"),
        (["--scratch-storage-class", "Fast SSD"], "--scratch-storage-class 'Fast SSD'"),
    ],
)
def test_bad_placement_flags_are_refused(flags, message, tmp_path):
    proc = subprocess.run(
        [sys.executable, "pipeline.py", "compile", "-o", str(tmp_path / "p.yaml"), *flags],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


@pytest.mark.slow
def test_metrics_artifacts_hold_the_figures_the_summary_prints(local_runs):
    """Output[Metrics] of each train cycle, infer and thresholds, written to the artifact file
    (kfp.local caches only what is written): the same numbers as the run summary."""
    first, _, _ = local_runs
    run = Path(first["submission"]).parents[2]
    for task, cycle in (("train", first["cycles"][0]), ("train-2", first["cycles"][1])):
        m = json.loads((run / task / "metrics").read_text())
        assert m["val_macro_f1_at_0.5"] == cycle["val_macro_f1_at_0.5"]
        assert m["cycle"] == cycle["cycle"] and m["size_px"] == cycle["size"]
        assert m["images_per_s"] > 0 and m["train_loss"] > 0
    thr = json.loads((run / "thresholds" / "metrics").read_text())
    e = first["ensemble"]
    assert thr["macro_f1_at_0.5"] == e["macro_f1_at_0.5"]
    assert thr["macro_f1_fitted"] == e["macro_f1_at_thresholds"]
    assert thr["macro_f1_crossfit"] == e["crossfit_macro_f1"] and thr["alpha"] == e["alpha"]
    assert len([k for k in thr if k.startswith("f1_")]) == 28
    infer = json.loads((run / "infer" / "metrics").read_text())
    assert set(infer) == {
        "cycle0_80px_val_macro_f1_at_0.5",
        "cycle1_96px_val_macro_f1_at_0.5",
        "ensemble_val_macro_f1_at_0.5",
    }
    assert infer["ensemble_val_macro_f1_at_0.5"] == pytest.approx(e["macro_f1_at_0.5"])


def _embedded_pngs(page: str) -> list[tuple[int, int]]:
    """The sizes of the PNGs embedded in an HTML page."""
    import base64
    import io

    from PIL import Image

    found = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    return [Image.open(io.BytesIO(base64.b64decode(b))).size for b in found]


@pytest.mark.slow
def test_pages_and_summary_reach_the_ui(local_runs):
    """Output[HTML] of split, each cycle and thresholds and Output[Markdown] of submit hold the
    step folder's report.html / summary.md; the pages link to nothing outside themselves; the
    last cycle's page shows the whole chain; the figures are those the run summary prints."""
    first, _, _ = local_runs
    run = Path(first["submission"]).parents[2]
    figures = {"split": 2, "train": 1, "train-2": 1, "thresholds": 2}
    pages = {}
    for task, n in figures.items():
        page = (run / task / "page").read_bytes()
        assert page == (run / task / "out" / "report.html").read_bytes(), task
        pages[task] = text = page.decode()
        assert not re.search(r"(href|src)=\"(?!data:)", text) and "<script" not in text, task
        sizes = _embedded_pngs(text)
        assert len(sizes) == n and all(w >= 600 and h >= 400 for w, h in sizes), (task, sizes)
    c1, c2 = first["cycles"]
    for c in (c1, c2):  # the second cycle's page: both cycles of the chain
        assert f"<td>{c['val_macro_f1_at_0.5']:.4f}</td>" in pages["train-2"]
    assert f"{c2['val_macro_f1_at_0.5']:.4f}" not in pages["train"]
    e = first["ensemble"]
    assert f"{e['crossfit_macro_f1']:.4f} when fitted on one half" in pages["thresholds"]
    assert f"{e['macro_f1_at_thresholds']:.4f} fitted and scored on the same" in pages["thresholds"]
    assert pages["split"].count("<tr>") == 1 + 28  # header + one row per class
    summary = (run / "submit" / "summary").read_text()
    assert summary == (run / "submit" / "out" / "summary.md").read_text()
    for c in first["cycles"]:
        assert (
            f"| {c['cycle']} | {c['size']} | {c['epochs']} | {c['val_macro_f1_at_0.5']:.4f} |"
            in summary
        )
    # The headline is the cross-fit (honest) figure; the in-sample one is labelled as such.
    assert (
        f"macro F1 **{e['crossfit_macro_f1']:.4f}** with thresholds fitted on one half" in summary
    )
    assert f"{e['macro_f1_at_thresholds']:.4f} in-sample" in summary
    assert f"{e['macro_f1_at_0.5']:.4f} at 0.5." in summary
    assert [Path(p).name for p in first["pages"]] == ["report.html"] * 3


def test_compiled_artifacts_are_typed(compiled):
    spec, _ = compiled
    comps = spec["components"]

    def kind(comp: str, where: str, name: str) -> str:
        return comps[comp][where]["artifacts"][name]["artifactType"]["schemaTitle"]

    assert kind("comp-split", "outputDefinitions", "out") == "system.Dataset"
    assert kind("comp-train", "outputDefinitions", "out") == "system.Model"
    assert kind("comp-train", "inputDefinitions", "previous") == "system.Model"
    assert kind("comp-infer", "outputDefinitions", "out") == "system.Dataset"
    assert kind("comp-submit", "outputDefinitions", "out") == "system.Dataset"
    for comp in ("comp-train", "comp-infer", "comp-thresholds"):
        assert kind(comp, "outputDefinitions", "metrics") == "system.Metrics"
    for comp in ("comp-split", "comp-train", "comp-thresholds"):
        assert kind(comp, "outputDefinitions", "page") == "system.HTML"
    assert kind("comp-submit", "outputDefinitions", "summary") == "system.Markdown"


@pytest.mark.slow
def test_the_bundle_applied_to_images_gives_the_runs_labels(local_runs, tiny_data, tmp_path):
    """components.predict on the run's model bundle over a folder of images: the test images
    get the labels infer + thresholds + submit gave them; a new sample in HPAv18's format (colour-
    coded JPEGs, another size) is predicted beside them."""
    import shutil

    from protloc.evaluate.predictions import probabilities, read_predictions, select
    from tests.conftest import run_python
    from tests.test_external_images import write_hpav18

    first, _, _ = local_runs
    images = tmp_path / "new" / "images"
    shutil.copytree(tiny_data / "test", images)
    write_hpav18(ROOT / "tests" / "data" / "hpa", images, "hpav18-sample", size=192)
    bundle = json.loads((Path(first["model"]) / "bundle.json").read_text())
    assert bundle["format"] == 3 and [s["size"] for s in bundle["snapshots"]] == [80, 96]
    assert bundle["tta"] == 2 and len(bundle["class_names"]) == 28
    out = tmp_path / "pred"
    proc = run_python(
        ["-m", "components.predict", "--model", first["model"], "--images", str(images),
         "--out", str(out), "--workers", "0", "--infer-batch-size", "1"]
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    labels = pd.read_csv(out / "labels.csv", dtype=str)
    sub = pd.read_csv(first["submission"], dtype=str)
    got = dict(zip(labels["Id"], labels["Predicted"], strict=True))
    assert {i: got[i] for i in sub["Id"]} == dict(zip(sub["Id"], sub["Predicted"], strict=True))
    assert "hpav18-sample" in got and len(got) == len(sub) + 1
    names = labels.set_index("Id")["Labels"]
    assert all(len(names[i].split(";")) == len(got[i].split()) for i in got)
    # the probabilities are infer's test ensemble's: the same pixels (the store holds what
    # decoding gives), one image per batch in both and the same thread count (both are
    # processes of this machine): the same float32 sums, so equal bit for bit
    run = Path(first["submission"]).parents[2]
    infer = select(read_predictions(str(run / "infer" / "out" / "predictions.parquet")), "test")
    mine = select(read_predictions(str(out / "predictions.parquet")), "test").set_index("id")
    assert np.array_equal(probabilities(mine.loc[infer["id"]].reset_index()), probabilities(infer))


@pytest.mark.slow
def test_a_bundle_this_protloc_cannot_apply_is_refused_naming_what_differs(local_runs, tmp_path):
    import shutil

    from protloc.errors import ArtifactError
    from protloc.evaluate.bundle import FORMAT, read_bundle, snapshot_bytes

    first, _, _ = local_runs
    newer = FORMAT + 1

    def network(doc: dict) -> dict:  # the first snapshot's, which format 3 records
        return {"snapshots": [{**doc["snapshots"][0], "arch": "resnet18"}, *doc["snapshots"][1:]]}

    for change, message in [
        (lambda doc: {"format": newer},
         rf"bundle format {newer} was written by a newer protloc .* reads formats up to {FORMAT}"),
        (network, r"architecture is 'resnet18', this protloc applies inception_v3, "),
        (lambda doc: {"class_names": ["Nucleoplasm", "Mitochondria", *["x"] * 26]},
         r"class 1 is 'Mitochondria' in the bundle, 'Nuclear membrane' here"),
        (lambda doc: {"class_names": ["a"] * 19}, "the bundle has 19 classes, this protloc has 28"),
    ]:  # fmt: skip
        folder = tmp_path / f"b{len(list(tmp_path.iterdir()))}"
        shutil.copytree(first["model"], folder)
        doc = json.loads((folder / "bundle.json").read_text())
        (folder / "bundle.json").write_text(json.dumps({**doc, **change(doc)}))
        with pytest.raises(ArtifactError, match=message):
            read_bundle(str(folder))
    folder = tmp_path / "tampered"
    shutil.copytree(first["model"], folder)
    bundle = read_bundle(str(folder))
    snap = bundle.snapshots[0]
    data = bytearray(Path(snap.uri).read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    Path(snap.uri).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="not the file the bundle recorded"):
        snapshot_bytes(bundle, snap)


@pytest.mark.slow
def test_kfp_local_run_with_its_data_and_checkpoints_on_gcs(tiny_data, gs_bucket, tmp_path):
    """The data root and the per-epoch checkpoints (work_root) on the GCS emulator: every task
    reads the data through gcsfs, the train task keeps its checkpoints there, the submission
    is whole. The run trains another registered network (efficientnet_b0) with the winner's head
    (average + max pooling) and a loss sum, and predict applies its bundle: the same labels as
    the submission."""
    from protloc import storage
    from protloc.model.checkpoint import load_checkpoint
    from tests.conftest import run_python

    data, work = f"{gs_bucket}/hpa", f"{gs_bucket}/work"
    assert storage.upload_dir(tiny_data, data) == sum(p.is_file() for p in tiny_data.rglob("*"))
    base = {"data_root": data, "work_root": work, "rare_below": 0, "workers": 0, "tta": 1}
    # Batches of one image: predict then meets the same float32 sums infer did.
    base |= {"arch": "efficientnet_b0", "infer_batch_size": 1, "loss": "focal:0.5+lovasz:0.5"}
    base["pool"] = "avgmax"
    summary = pipeline.run_local([Cycle(80, 8, 1)], base, str(tmp_path / "root"))
    assert all(s["ran"] for s in summary["steps"])
    sub = pd.read_csv(summary["submission"], dtype=str)
    assert list(sub["Id"]) == read_test_ids(str(tiny_data / "sample_submission.csv"))
    bundle = json.loads((Path(summary["model"]) / "bundle.json").read_text())
    assert {(e["arch"], e["pool"]) for e in bundle["snapshots"]} == {("efficientnet_b0", "avgmax")}
    run = Path(summary["submission"]).parents[2]
    metrics = json.loads((run / "train" / "out" / "metrics.json").read_text())
    assert metrics["config"]["loss"] == "focal:0.5+lovasz:0.5"
    assert metrics["config"]["focal_gamma"] == 2.0
    snapshot = load_checkpoint(str(Path(summary["model"]) / bundle["snapshots"][0]["file"]))
    assert snapshot["pool"] == "avgmax" and snapshot["model"]["fc.weight"].shape == (28, 2 * 1280)
    proc = run_python(
        ["-m", "components.predict", "--model", summary["model"], "--images",
         str(tiny_data / "test"), "--out", str(tmp_path / "pred"), "--workers", "0",
         "--infer-batch-size", "1"]
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    labels = pd.read_csv(tmp_path / "pred" / "labels.csv", dtype=str)
    assert dict(zip(labels["Id"], labels["Predicted"], strict=True)) == dict(
        zip(sub["Id"], sub["Predicted"], strict=True)
    )
    checkpoints = [u for u in storage.list_files(work) if u.endswith(".pt")]
    assert checkpoints and all(u.startswith(f"{work}/cycle0-80px-") for u in checkpoints)
    # kfp.local keeps its artifacts in a local pipeline root; a step's command line writes its
    # folder on GCS as on a cluster with a gs:// pipeline root
    out = f"{gs_bucket}/runs/thresholds"
    proc = subprocess.run(
        [sys.executable, "-m", "components.thresholds", "--predictions", str(run / "infer" / "out"),
         "--split", str(run / "split" / "out"), "--out", out, "--alpha", "0.2"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {u.rsplit("/", 1)[1] for u in storage.list_files(out)} >= {
        "thresholds.json",
        "timing.json",
    }
    assert storage.read_json(f"{out}/thresholds.json")["alpha"] == 0.2


def _alive(pid: int) -> bool:
    """Runs (a zombie has exited: its files and locks are closed)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_ends_a_local_run_and_its_task_processes(tmp_path):
    """Item: SIGTERM to ``pipeline.py local`` during a task left the task process running and
    writing. Now the run forwards it to its task processes, which end like a killed step (no
    completion marker), then exits 143."""
    import signal
    import time

    from protloc.process import descendants

    root = tmp_path / "r"
    proc = subprocess.Popen(
        [sys.executable, "pipeline.py", "local", "--root", str(root)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def train_tasks() -> list[int]:
        found = []
        for pid in descendants(proc.pid):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"kfp.dsl.executor_main" in cmd and b"train" in cmd:
                found.append(pid)
        return found

    tasks: list[int] = []
    deadline = time.monotonic() + 300
    while not tasks and proc.poll() is None and time.monotonic() < deadline:
        tasks = train_tasks()
        time.sleep(0.1)
    assert tasks, "no train task started"
    while not list(root.rglob("train*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)  # until it writes its folder: into its work (a demo cycle takes longer)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    deadline = time.monotonic() + 60
    while any(_alive(pid) for pid in tasks) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in tasks), err[-3000:]
    # killed mid-cycle: its folder never got its completion marker (it would have, run on)
    assert not list(root.rglob("train*/**/timing.json")), err[-3000:]
