"""What a cluster run gets from components/cluster.py and protloc/cpus.py: images tagged with the
code version, placement flags refused when malformed, the folds' parallelism within the GPU
quota, and thread pools sized to the CPUs a process may use (affinity, cgroup quota, sharers)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

import pipeline
from components import cluster
from protloc import cpus
from protloc.errors import ConfigError, ProtlocError
from protloc.train.schedule import Cycle
from protloc.version import code_version
from tests.conftest import ROOT


def test_image_tags_are_the_code_version():
    tag = code_version().replace("+", "-")
    assert cluster.images() == {
        "cpu": f"ghcr.io/protloc/protloc:{tag}-cpu", "gpu": f"ghcr.io/protloc/protloc:{tag}-gpu"
    }  # fmt: skip
    assert (
        cluster.images("reg.example/x/protloc", "0.1.0+abc")["gpu"]
        == "reg.example/x/protloc:0.1.0-abc-gpu"
    )


def test_image_tags_need_no_torch_and_no_venv_packages():
    """make images and make push compute the tags with the system Python, nothing installed."""
    code = (
        "import sys; sys.path.insert(0, '.'); sys.modules['torch'] = None; "
        "sys.modules['kfp'] = None; sys.modules['numpy'] = None; "
        "from components.cluster import images; print(images()['gpu'])"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().endswith(code_version().replace("+", "-") + "-gpu")


@pytest.mark.parametrize(
    ("registry", "image", "expected"),
    [
        ("registry.example.org/team/", "", "registry.example.org/team/protloc"),
        (
            "",
            "registry.example.org/team/protloc-custom",
            "registry.example.org/team/protloc-custom",
        ),
    ],
)
def test_registry_or_image_chooses_the_repository(registry, image, expected):
    p = cluster.Placement.from_flags("a=b", "", "nvidia.com/gpu", "", registry, image)
    assert p.image == expected


@pytest.mark.parametrize(
    ("registry", "image", "message"),
    [
        ("r.example", "r.example/protloc", "give --image-registry or --image, not both"),
        ("", "r.example/protloc:1.0", "names a tag"),
    ],
)
def test_bad_image_flags_are_refused(registry, image, message):
    with pytest.raises(ConfigError, match=message):
        cluster.Placement.from_flags("a=b", "", "nvidia.com/gpu", "", registry, image)


def test_the_quota_in_code_is_the_quota_in_k8s():
    quota = yaml.safe_load((ROOT / "k8s" / "base" / "resourcequota.yaml").read_text())
    assert int(quota["spec"]["hard"]["requests.nvidia.com/gpu"]) == cluster.QUOTA_GPUS
    assert [cluster.parallel_folds(g) for g in (1, 2, 4, 8)] == [4, 2, 1, 1]


def _compiled(tmp_path, *flags: str):
    path = tmp_path / "p.yaml"
    assert pipeline.main(["compile", "-o", str(path), "--schedule", "96:8:1", *flags]) == 0
    return list(yaml.safe_load_all(path.read_text()))


def test_folds_run_within_the_quota_or_as_told(tmp_path):
    spec = _compiled(tmp_path, "--folds", "5", "--gpus", "4")[0]
    loop = next(t for n, t in spec["root"]["dag"]["tasks"].items() if n.startswith("for-loop"))
    assert loop["iteratorPolicy"]["parallelismLimit"] == 1  # 4 GPUs a task, 4 in the quota
    spec = _compiled(tmp_path, "--folds", "5", "--max-parallel-folds", "3")[0]
    loop = next(t for n, t in spec["root"]["dag"]["tasks"].items() if n.startswith("for-loop"))
    assert loop["iteratorPolicy"]["parallelismLimit"] == 3


def test_scratch_from_a_storage_class_is_reserved(tmp_path):
    platform = _compiled(tmp_path, "--scratch-storage-class", "fast-nvme")[1]
    execs = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    train = next(v for k, v in execs.items() if "train" in k)
    (volume,) = train["genericEphemeralVolume"]
    assert volume["storageClassName"] == "fast-nvme" and volume["size"] == "200Gi"
    assert [m["mountPath"] for m in train["emptyDirMounts"]] == ["/dev/shm"]


# ----------------------------------------------------------------------------- threads


def _cgroup(tmp_path, v2: str | None = None, v1: tuple[int, int] | None = None):
    root = tmp_path / "cgroup"
    root.mkdir(parents=True)
    if v2 is not None:
        (root / "cpu.max").write_text(v2 + "\n")
    if v1 is not None:
        (root / "cpu").mkdir()
        (root / "cpu" / "cpu.cfs_quota_us").write_text(f"{v1[0]}\n")
        (root / "cpu" / "cpu.cfs_period_us").write_text(f"{v1[1]}\n")
    return root


def test_the_cgroup_quota_is_read_in_both_versions(tmp_path):
    assert cpus.cgroup_quota(_cgroup(tmp_path / "a", v2="250000 100000")) == 2.5
    assert cpus.cgroup_quota(_cgroup(tmp_path / "b", v2="max 100000")) is None
    assert cpus.cgroup_quota(_cgroup(tmp_path / "c", v1=(150000, 100000))) == 1.5
    assert cpus.cgroup_quota(_cgroup(tmp_path / "d", v1=(-1, 100000))) is None
    assert cpus.cgroup_quota(tmp_path / "none") is None


def test_the_share_is_the_quota_divided_among_ranks_and_tasks(tmp_path, monkeypatch):
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda pid: set(range(96)))
    root = _cgroup(tmp_path, v2="800000 100000")  # a pod limited to 8 CPUs on a 96-core node
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.delenv(cpus.TASKS_ENV, raising=False)
    assert cpus.cpu_share(root) == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert cpus.cpu_share(root) == 4
    monkeypatch.setenv(cpus.TASKS_ENV, "8")
    assert cpus.cpu_share(root) == 1  # never 0
    monkeypatch.setenv(cpus.TASKS_ENV, "zero")
    with pytest.raises(ConfigError, match="PROTLOC_TASKS_PER_MACHINE must be a whole number"):
        cpus.cpu_share(root)


def test_limit_threads_sizes_torch_openmp_and_blas():
    code = (
        "import os; os.environ['PROTLOC_TASKS_PER_MACHINE'] = '2'; "
        "import torch, numpy; from protloc.cpus import limit_threads; n = limit_threads(); "
        "from threadpoolctl import threadpool_info; "
        "print(n, torch.get_num_threads(), os.environ['OMP_NUM_THREADS'], "
        "sorted({p['num_threads'] for p in threadpool_info()}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    n, torch_threads, omp, pools = out.stdout.split(maxsplit=3)
    expected = max(1, len(__import__("os").sched_getaffinity(0)) // 2)
    assert int(n) == int(torch_threads) == int(omp) == expected
    assert pools.strip() == str([expected])


def test_decode_threads_follow_the_share(monkeypatch):
    monkeypatch.setattr(cpus, "cpu_share", lambda: 3)
    assert [cpus.compute_threads(w) for w in (0, 1, 2, 8)] == [1, 1, 2, 3]


def test_local_tells_its_tasks_how_many_run_at_once(tmp_path, monkeypatch):
    """pipeline.py local sets PROTLOC_TASKS_PER_MACHINE for the task processes: the folds it
    runs at once (1 without folds)."""
    monkeypatch.setenv(cpus.TASKS_ENV, "1")  # recorded, so restored after the test
    seen = {}

    def fake_build(schedule, placement, gpus, folds, parallel, cache=True, recipes=None):
        seen["env"] = __import__("os").environ.get(cpus.TASKS_ENV)
        raise RuntimeError("stop here")

    monkeypatch.setattr(pipeline, "build_pipeline", fake_build)
    with pytest.raises(ProtlocError, match="stop here"):
        pipeline.run_local(
            [Cycle(96, 8, 1)], {"data_root": str(tmp_path)}, str(tmp_path / "r"), folds=2
        )
    assert seen["env"] == "2"


def test_urls_are_printed_without_user_or_query():
    from protloc.redact import redact_url

    assert (
        redact_url("http://admin:pw@kfp.example.org:8080/p?token=x")
        == "http://kfp.example.org:8080/p"
    )
    assert redact_url("https://kfp.example.org") == "https://kfp.example.org"
    assert redact_url("not a url") == "not a url"
    from protloc.redact import redact_text

    # inside a sentence: punctuation after a URL stays; a port that is not a number never raises
    assert redact_text("--host http://u:pw@h:8080: refused") == "--host http://h:8080: refused"
    assert redact_text("at http://u:pw@h:x/p?t=1.") == "at http://h:x/p."
