"""What happens when things go wrong: each test here backs one row of docs/faults.md.

Faults are real where this machine allows: a real S3 API (moto's server) behind a proxy that
kills the endpoint mid-transfer, real SIGKILLs of real processes, damaged PNG files (the full
disk, a real 1 MB tmpfs, is in test_cache.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from protloc import storage
from protloc.config import InferConfig, TrainConfig
from protloc.data.identity import DataListing
from protloc.data.manifest import check_labels, read_manifest
from protloc.errors import ArtifactError, StorageError
from protloc.model.checkpoint import load_checkpoint
from protloc.train.cycle import train_cycle
from tests.conftest import (
    ROOT,
    TEST_KEY_ID,
    TEST_SECRET,
    TINY_CYCLE,
    free_port,
    run_python,
    train_cmd,
)
from tests.faults import CuttableProxy, kill_at

MB = 1024 * 1024


def _env(endpoint: str, cache_dir: Path, **extra: str) -> dict[str, str]:
    """A step's environment: S3 at ``endpoint`` with the test credentials, fast retries."""
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": TEST_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": TEST_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "PROTLOC_STORAGE_ATTEMPTS": "3",
        "PROTLOC_STORAGE_BACKOFF_S": "0.1",
        "PROTLOC_CACHE_DIR": str(cache_dir),
        **extra,
    }


def _run(args: list[str], env: dict[str, str], timeout: float = 300):
    return run_python(["-m", *args], env, timeout)


def _train_args(tiny_data: Path, tiny_split: Path, out: str, epochs: int = 2) -> list[str]:
    return train_cmd(tiny_data, tiny_split, out, epochs)[2:]  # without "python -m"


@pytest.fixture
def proxy(s3_server):
    p = CuttableProxy(s3_server).start()
    yield p
    p.kill()


# ----------------------------------------------------------------------------- S3 down at start


def test_step_starting_with_s3_down_fails_cleanly_and_writes_nothing(tmp_path):
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    out = tmp_path / "split"
    proc = _run(
        ["components.split", "--data-root", "s3://protloc/data", "--out", str(out)],
        _env(endpoint, tmp_path / "cache"),
    )
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: s3://protloc/data/train.csv: cannot reach S3 endpoint")
    assert endpoint in last and "after 3 attempts" in last
    assert proc.stderr.count("retrying in") == 2 and "Traceback" not in proc.stderr
    assert not out.exists()


# ----------------------------------------------------------------------------- S3 dies mid-upload


def test_endpoint_dying_mid_put_never_exposes_a_partial_object(bucket, proxy, monkeypatch):
    """A single-PUT artifact (predictions, manifest, metrics): the endpoint dies after 1 MB of a
    4 MB body. Back within the backoff: the write is retried and completes. Gone for good: one
    error naming the URI and endpoint, and the key still holds the previous whole object."""
    uri = f"{bucket}/run/infer/predictions.parquet"
    first, second = os.urandom(4 * MB), os.urandom(4 * MB)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    monkeypatch.setenv("PROTLOC_STORAGE_BACKOFF_S", "0.3")

    def restore_soon() -> None:
        if proxy.killed.wait(10):
            time.sleep(0.2)
            proxy.restore()

    proxy.kill_on(b"PUT /", after=1 * MB)
    threading.Thread(target=restore_soon, daemon=True).start()
    storage.write_bytes(uri, first)  # dies after 1 MB, is back 0.2 s later: retried
    assert proxy.killed.is_set()

    monkeypatch.setenv("PROTLOC_STORAGE_ATTEMPTS", "3")
    proxy.kill_on(b"PUT /", after=1 * MB)
    with pytest.raises(StorageError) as err:
        storage.write_bytes(uri, second)
    assert uri in str(err.value) and proxy.url in str(err.value)

    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.upstream_url)
    assert storage.read_bytes(uri) == first  # the whole old object, not a part of the new one


@pytest.mark.slow
def test_endpoint_dying_mid_checkpoint_upload_then_rerun_completes(
    tiny_data, tiny_split, bucket, proxy, tmp_path, cache_dir
):
    """The train step writes its per-epoch checkpoints (~33 MB of efficientnet_b0 and its
    optimizer state: multipart) to s3://. The endpoint dies 8 MB into epoch 2's upload: the step
    fails naming the URI and endpoint, the key still holds epoch 1's whole checkpoint, and the
    rerun resumes from it and completes."""
    out = f"{bucket}/run/train"
    args = _train_args(tiny_data, tiny_split, out)
    env = _env(proxy.url, cache_dir)
    proxy.kill_on(b"checkpoint.pt?uploads", occurrence=2, after=8 * MB)
    failed = _run(args, env)
    assert proxy.killed.is_set()
    assert failed.returncode == 2, failed.stderr[-2000:]
    last = failed.stderr.strip().splitlines()[-1]
    assert f"{out}/checkpoint.pt" in last and proxy.url in last, last

    state = load_checkpoint(f"{out}/checkpoint.pt")  # direct to the store, not via the proxy
    assert state["epochs_done"] == 1 and not state["complete"]
    assert not storage.exists(f"{out}/metrics.json")

    proxy.restore()
    rerun = _run(args, env)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"resuming cycle 0 from {out}/checkpoint.pt after epoch 1 of 2" in rerun.stderr
    state = load_checkpoint(f"{out}/checkpoint.pt")
    assert state["complete"] and [h["epoch"] for h in state["history"]] == [1, 2]


# ----------------------------------------------------------------------------- SIGKILL twice


def _pod(tiny_data, tiny_split, out: Path, out_uri: str, env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.pod", str(tiny_split), str(tiny_data), str(out), out_uri],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_pod_killed_twice_mid_epoch_ends_like_an_uninterrupted_run(
    tiny_data, tiny_split, bucket, s3_env, tmp_path
):
    """Three attempts of one train pod (what KFP's retry policy does after a preemption), each
    with a fresh local disk; per-epoch checkpoints live in the default work root on S3 (beside
    the task's output artifact: no setting needed). Killed mid epoch 2, then mid epoch 3: the
    last attempt ends with the same epochs, config and weights as a pod never interrupted."""
    lines: list[str] = []
    env = lambda n: _env(s3_env, tmp_path / f"cache{n}")  # noqa: E731 - one fresh disk per pod

    task = f"{bucket}/run/train"  # the task's artifact folder under the pipeline root
    first = _pod(tiny_data, tiny_split, tmp_path / "out1", f"{task}/out", env(1))
    kill_at(first, lines, ["epoch 1/3 done", "epoch 2/3 step 2/"], timeout=240)
    second = _pod(tiny_data, tiny_split, tmp_path / "out2", f"{task}/out", env(2))
    kill_at(second, lines, ["after epoch 1 of 3", "epoch 3/3 step 2/"], timeout=240)
    last = _pod(tiny_data, tiny_split, tmp_path / "out3", f"{task}/out", env(3))
    _, stderr = last.communicate(timeout=240)
    assert last.returncode == 0, stderr[-2000:]
    assert "after epoch 2 of 3" in stderr
    assert not (tmp_path / "out1" / "checkpoint.pt").exists()  # the killed pods finished nothing

    # No work root was set: the default one beside the artifact kept the per-epoch checkpoints.
    assert any(u.startswith(f"{task}/work/cycle0-80px-") for u in storage.list_files(task))
    clean = _pod(tiny_data, tiny_split, tmp_path / "clean", f"{bucket}/clean/train/out", env(4))
    _, clean_err = clean.communicate(timeout=240)
    assert clean.returncode == 0, clean_err[-2000:]
    resumed = load_checkpoint(str(tmp_path / "out3" / "checkpoint.pt"))
    straight = load_checkpoint(str(tmp_path / "clean" / "checkpoint.pt"))
    assert resumed["complete"] and resumed["epochs_done"] == straight["epochs_done"] == 3
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    # Same settings except where the checkpoints were kept (an operational setting).
    assert (
        TrainConfig(**resumed["config"]).result_fields()
        == TrainConfig(**straight["config"]).result_fields()
    )
    for key, value in straight["model"].items():
        assert torch.equal(resumed["model"][key], value), key


# ----------------------------------------------------------------------------- bad PNGs


@pytest.mark.slow
def test_bad_pngs_stop_before_training_or_are_skipped_and_reported(
    tiny_data, tiny_split, tmp_path, cache_dir
):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    manifest = read_manifest(str(tiny_split / "manifest.parquet"))
    train_ids, val_ids = list(manifest.fold("train")["id"]), list(manifest.fold("val")["id"])
    bad = {train_ids[20]: "green", train_ids[30]: "blue", val_ids[5]: "red"}
    truncated = data / "train" / f"{train_ids[20]}_green.png"
    truncated.write_bytes(truncated.read_bytes()[:300])
    (data / "train" / f"{train_ids[30]}_blue.png").unlink()
    (data / "train" / f"{val_ids[5]}_red.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    out = tmp_path / "out"
    args = _train_args(data, tiny_split, str(out), epochs=1)

    stopped = _run(args, _env("http://unused", cache_dir))
    assert stopped.returncode == 2
    last = stopped.stderr.strip().splitlines()[-1]
    assert f"sample '{train_ids[20]}' channel green" in last, last
    assert " epochs x " not in stopped.stderr  # stopped before training started
    assert not out.exists() or not any(out.iterdir())
    assert not any(".tmp" in p.name for p in cache_dir.rglob("*"))  # no half-written cache

    skipped = _run([*args, "--skip-bad"], _env("http://unused", cache_dir))
    assert skipped.returncode == 0, skipped.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert sorted(metrics["skipped_ids"]) == sorted(bad)
    for sample_id, channel in bad.items():
        assert f"'{sample_id}' channel {channel}" in skipped.stderr


# ----------------------------------------------------------------------------- inconsistent artifacts


def test_manifest_from_another_labels_file_is_refused(tiny_data, tiny_split, cycle0, tmp_path):
    """The split step records the labels' SHA-256; train and infer compare it with the data
    root's train.csv and, when it differs, every row's labels."""
    from protloc.evaluate.infer import run_infer

    other = tmp_path / "other"
    other.mkdir()
    (other / "train").symlink_to(tiny_data / "train")
    (other / "test").symlink_to(tiny_data / "test")
    shutil.copy(tiny_data / "sample_submission.csv", other)
    lines = (tiny_data / "train.csv").read_text().splitlines()
    victim, target = lines[7].split(",")
    changed = "0" if target != "0" else "1"
    lines[7] = f"{victim},{changed}"
    (other / "train.csv").write_text("\n".join(lines) + "\n")

    manifest_uri = str(tiny_split / "manifest.parquet")
    expected = rf"made from another labels file than {other}/train.csv: id '{victim}' has labels"
    with pytest.raises(ArtifactError, match=expected):
        train_cycle(
            TrainConfig(**TINY_CYCLE),
            manifest_uri,
            DataListing(str(other)),
            out=str(tmp_path / "t"),
        )
    assert not (tmp_path / "t").exists()
    out, _, _ = cycle0
    with pytest.raises(ArtifactError, match=expected):
        run_infer(
            InferConfig(workers=0),
            manifest_uri,
            DataListing(str(other)),
            [str(out / "checkpoint.pt")],
            out=str(tmp_path / "i"),
        )

    # A manifest made from a subset of the same labels is fine (its rows agree).
    from protloc.config import SplitConfig
    from protloc.data.split import run_split

    subset = tmp_path / "subset.csv"
    subset.write_text("\n".join((tiny_data / "train.csv").read_text().splitlines()[:41]) + "\n")
    run_split(SplitConfig(val_fraction=0.25, rare_below=0), str(subset), out=str(tmp_path / "s"))
    small = read_manifest(str(tmp_path / "s" / "manifest.parquet"))
    check_labels(small, str(tiny_data / "train.csv"))
    with pytest.raises(ArtifactError, match=rf"id '{victim}' has labels"):
        check_labels(small, str(other / "train.csv"))


# ----------------------------------------------------------------------------- secrets


@pytest.mark.slow
def test_no_credential_in_yaml_manifests_artifacts_or_logs(bucket, s3_env, tmp_path, hpa_dir):
    import pipeline
    from protloc.train.schedule import paper_schedule

    # The compiled pipeline, compiled while the credentials sit in the environment.
    yaml_path = tmp_path / "pipeline.yaml"
    pipeline.compile_pipeline(paper_schedule(), str(yaml_path))
    compiled = yaml_path.read_text()
    assert "secretKeyRef" in compiled or "secretAsEnv" in compiled
    # The k8s manifests: the Secret is a template, nothing else holds a secret.
    docs = []
    for path in sorted((ROOT / "k8s").rglob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    secrets = [d for d in docs if d["kind"] == "Secret"]
    assert secrets and all("data" not in s for s in secrets)
    for s in secrets:
        for key, value in s["stringData"].items():
            if "KEY" in key or "SECRET" in key or "PASSWORD" in key:
                assert value == "REPLACE_ME", f"k8s Secret {s['metadata']['name']} holds {key}"

    # A step through S3: its log, its artifacts, and an error message.
    storage.upload_file(hpa_dir / "train.csv", f"{bucket}/data/train.csv")
    env = _env(s3_env, tmp_path / "cache")
    ok = _run(
        ["components.split", "--data-root", f"{bucket}/data", "--out", f"{bucket}/split"],
        env,
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    artifacts = [storage.read_bytes(u) for u in storage.list_files(f"{bucket}/split")]
    failed = _run(
        ["components.split", "--data-root", f"{bucket}/nope", "--out", str(tmp_path / "o")], env
    )
    assert failed.returncode == 2 and "no such object" in failed.stderr
    haystacks = {
        "pipeline YAML": compiled,
        "k8s manifests": json.dumps(docs),
        "step log": ok.stdout + ok.stderr,
        "error": failed.stdout + failed.stderr,
        **{f"artifact {i}": a.decode("latin-1") for i, a in enumerate(artifacts)},
    }
    for what, text in haystacks.items():
        for credential in (TEST_KEY_ID, TEST_SECRET):
            assert credential not in text, f"{credential} leaked into the {what}"


def test_images_hold_no_credential_and_run_as_non_root():
    """What goes into an image: only code (the build context allows four paths), no AWS_*
    build argument or environment, a numeric non-root USER in every final stage; compose
    takes credentials only from the environment."""
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") + 1 :][:4] == [
        "!pyproject.toml",
        "!README.md",
        "!protloc/",
        "!components/",
    ]
    dockerfile = (ROOT / "containers" / "Dockerfile").read_text()
    assert "AWS_" not in dockerfile and "SECRET" not in dockerfile.upper()
    stages = dockerfile.split("\nFROM ")[1:]
    finals = [s for s in stages if s.split()[2] in ("cpu", "gpu")]
    assert len(finals) == 2 and all("\nUSER 1000:1000" in s for s in finals)
    compose = yaml.safe_load((ROOT / "containers" / "compose.yaml").read_text())
    for service in compose["services"].values():
        env = service.get("environment") or {}
        for key, value in env.items():
            if "SECRET" in key or "PASSWORD" in key or "ACCESS_KEY" in key:
                assert str(value).startswith("${"), f"{key} has a literal value"
        if service.get("build"):
            assert service["user"] == "1000:1000"
    example = dict(
        line.split("=", 1)
        for line in (ROOT / "containers" / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert example["S3_SECRET_KEY"] == "change-me-please"  # a placeholder, not a secret
    assert "containers/.env" in (ROOT / ".gitignore").read_text().split()
