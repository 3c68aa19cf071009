import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from protloc.config import TrainConfig
from protloc.data.identity import DataListing
from protloc.data.manifest import read_manifest
from protloc.errors import ArtifactError, ConfigError
from protloc.model.checkpoint import load_checkpoint
from protloc.train.cycle import TrainingError, train_cycle
from tests.conftest import ROOT, TINY_CYCLE, free_port, train_cmd


def _cfg(**kw):
    return TrainConfig(**{**TINY_CYCLE, **kw})


def _data(root) -> DataListing:
    return DataListing(str(root))


def test_one_cycle_lowers_loss_and_writes_the_contract(cycle0):
    # Training speed is a `make bench` row (train step), not an assertion here.
    out, metrics, _ = cycle0
    first, last = metrics["history"][0]["loss"], metrics["history"][-1]["loss"]
    assert last < first, (first, last)
    state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["complete"] and state["epochs_done"] == 2 and state["size"] == 96
    assert state["cycle"] == 0 and len(state["class_names"]) == 28 and "optimizer" not in state
    assert len(state["norm"]["mean"]) == 4 and state["config"]["clip_norm_type"] == "l2"
    saved = json.loads((out / "metrics.json").read_text())
    assert 0 <= saved["val"]["macro_f1_at_0.5"] <= 1 and len(saved["val"]["per_class_f1"]) == 28
    assert saved["val"]["loss"] == pytest.approx(metrics["val"]["loss"])


def test_finished_cycle_rerun_is_a_noop(cycle0, tiny_data, weighted_split, caplog):
    out, metrics, _ = cycle0
    mtime = (out / "checkpoint.pt").stat().st_mtime_ns
    again = train_cycle(
        _cfg(workers=3), str(weighted_split / "manifest.parquet"), _data(tiny_data), out=str(out)
    )
    # Nothing was read or trained: no image cache, no epoch.
    assert not any("image cache" in r.message or "epoch" in r.message for r in caplog.records)
    assert again["val"] == metrics["val"] and (out / "checkpoint.pt").stat().st_mtime_ns == mtime
    assert any("already complete" in r.message for r in caplog.records)


def test_rerun_with_another_config_is_refused(cycle0, tiny_data, weighted_split):
    out, _, _ = cycle0
    with pytest.raises(
        ArtifactError, match=r"holds a cycle with lr_max=0.2, this run asks lr_max=0.1"
    ):
        train_cycle(
            _cfg(lr_max=0.1),
            str(weighted_split / "manifest.parquet"),
            _data(tiny_data),
            out=str(out),
        )


@pytest.mark.slow
def test_warm_start_at_another_size_keeps_the_weights(cycle0, tiny_data, tiny_split, tmp_path):
    out, _, _ = cycle0
    init = load_checkpoint(str(out / "checkpoint.pt"))
    cfg = _cfg(
        size=112,
        epochs=1,
        cycle=1,
        lr_max=1e-12,
        lr_min=0.0,
        momentum=0.0,
        weight_decay=0.0,
    )
    manifest = str(tiny_split / "manifest.parquet")
    train_cycle(cfg, manifest, _data(tiny_data), init=str(out / "checkpoint.pt"), out=str(tmp_path))
    state = load_checkpoint(str(tmp_path / "checkpoint.pt"))
    assert state["size"] == 112 and state["cycle"] == 1 and state["norm"] == init["norm"]
    for key, value in init["model"].items():
        if "running" in key or "num_batches" in key:
            continue  # BatchNorm statistics follow the new size's batches
        assert torch.allclose(state["model"][key], value, atol=1e-6), key


@pytest.mark.slow
def test_killed_cycle_resumes_from_last_epoch(tiny_data, tiny_split, tmp_path, cache_dir):
    cmd = train_cmd(tiny_data, tiny_split, tmp_path / "out")
    env = {**os.environ, "PROTLOC_CACHE_DIR": str(cache_dir)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    ckpt = tmp_path / "out" / "checkpoint.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not ckpt.exists():
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)  # mid-cycle, after the first epoch's checkpoint
    proc.wait()
    done_before = load_checkpoint(str(ckpt))["epochs_done"]
    assert 1 <= done_before < 3
    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming cycle 0 from {ckpt} after epoch {done_before} of 3" in rerun.stderr
    state = load_checkpoint(str(ckpt))
    assert state["complete"] and state["epochs_done"] == 3
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3]


def test_nan_loss_stops_with_batch_and_keeps_last_checkpoint(
    tiny_data, tiny_split, tmp_path, cache_dir
):
    from protloc.losses import LOSSES, soft_f1_loss
    from protloc.train.epoch import per_epoch

    calls = {"n": 0}
    cfg = _cfg(size=80, epochs=2)
    weights = read_manifest(str(tiny_split / "manifest.parquet")).fold("train")["weight"].to_numpy()
    steps = per_epoch(weights, cfg.batch_size, 1)[1]

    @LOSSES.register("nan_in_epoch_2", "soft F1, NaN at the second step of epoch 2 (a test)")
    def flaky(logits, targets):
        calls["n"] += logits.requires_grad  # training steps only, not the validation loss
        value = soft_f1_loss(logits, targets)
        return value * float("nan") if calls["n"] == steps + 2 else value

    try:
        with pytest.raises(
            TrainingError, match=r"loss is nan at epoch 2 batch 2 .*\(after epoch 1\) is kept"
        ):
            train_cycle(
                _cfg(size=80, epochs=2, loss="nan_in_epoch_2"),
                str(tiny_split / "manifest.parquet"),
                _data(tiny_data),
                out=str(tmp_path),
            )
    finally:
        LOSSES.unregister("nan_in_epoch_2")
    state = load_checkpoint(str(tmp_path / "checkpoint.pt"))
    assert state["epochs_done"] == 1 and not state["complete"]


def test_bad_inputs_are_clear_errors(tiny_data, tiny_split, tmp_path):
    with pytest.raises(ConfigError, match=r"size must be in \[75, 4096\], got 60"):
        _cfg(size=60)
    with pytest.raises(ConfigError, match=r"batch_size must be in \[2, 4096\], got 1"):
        _cfg(batch_size=1)  # BatchNorm cannot train on one image
    with pytest.raises(ArtifactError, match=r"nope/checkpoint\.pt"):
        train_cycle(
            _cfg(),
            str(tiny_split / "manifest.parquet"),
            _data(tiny_data),
            init=str(tmp_path / "nope" / "checkpoint.pt"),
            out=str(tmp_path),
        )
    cmd = [
        *train_cmd(tiny_data, tiny_split, tmp_path / "o"),
        "--size",
        "50",
    ]  # the last --size wins
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "error: size must be in [75, 4096], got 50" in proc.stderr


@pytest.mark.slow
def test_torchrun_two_processes_trains_with_ddp(tiny_data, tiny_split, tmp_path, cache_dir):
    """WORLD_SIZE > 1: DistributedDataParallel (gloo on the CPU), each rank its share of the
    epoch, only rank 0 writes."""
    out = tmp_path / "ddp"
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
    ]
    # The same train command as above (its first item is the interpreter); later flags win.
    cmd = [
        *launcher,
        *train_cmd(tiny_data, tiny_split, out, epochs=1)[1:],
        "--batch-size",
        "4",
    ]
    env = {**os.environ, "PROTLOC_CACHE_DIR": str(cache_dir), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "device cpu x2" in proc.stderr
    state = load_checkpoint(str(out / "checkpoint.pt"))
    assert state["complete"] and state["epochs_done"] == 1
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.pt",
        "metrics.json",
        "report.html",
        "snapshots.json",
        "timing.json",
        "training_curves.png",
    ]


def test_history_holds_the_training_curves(cycle0):
    """Per optimizer step: loss, lr and gradient norm; per epoch (val_every 1): validation."""
    out, metrics, _ = cycle0
    saved = json.loads((out / "metrics.json").read_text())
    history = saved["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    steps = [s for h in history for s in h["steps"]]
    assert [s["step"] for s in steps] == list(range(1, len(steps) + 1))
    assert steps[0]["lr"] == pytest.approx(TINY_CYCLE.get("lr_max", 0.2))
    assert steps[-1]["lr"] < steps[0]["lr"] and all(s["grad_norm"] > 0 for s in steps)
    assert all("val" in h for h in history)  # every epoch validated
    assert history[-1]["val"]["macro_f1_at_0.5"] == metrics["val"]["macro_f1_at_0.5"]


@pytest.mark.slow
def test_val_every_zero_validates_only_at_the_end(tiny_data, tiny_split, tmp_path, cache_dir):
    cfg = _cfg(size=80, epochs=2, val_every=0)
    metrics = train_cycle(
        cfg, str(tiny_split / "manifest.parquet"), _data(tiny_data), out=str(tmp_path)
    )
    assert "val" not in metrics["history"][0] and "val" in metrics["history"][1]


@pytest.mark.slow
def test_pretrained_weights_through_s3_start_the_first_cycle(
    tiny_data, tiny_split, tmp_path, cache_dir, bucket
):
    """`pretrained` as an s3:// object (a state dict of torchvision's inception_v3 layout): the
    first cycle starts from it (a learning rate of 1e-12 leaves the weights where they
    started); a file of another architecture and a missing object are refused, naming them."""
    import torchvision

    from protloc import storage
    from protloc.model.network import create_model
    from protloc.steps import train_step

    tv = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    buf = io.BytesIO()
    torch.save(tv.state_dict(), buf)
    uri = f"{bucket}/weights/inception_v3.pth"
    storage.write_bytes(uri, buf.getvalue())
    still = {
        **{"lr_max": 1e-12, "lr_min": 0.0, "momentum": 0.0, "weight_decay": 0.0},
        **{"epochs": 1, "size": 80, "batch_size": 8, "val_every": 0, "arch": "inception_v3"},
    }
    out = tmp_path / "from-imagenet"
    train_step(
        _cfg(**still, pretrained=uri), data_root=str(tiny_data), split=str(tiny_split), out=str(out)
    )
    model = load_checkpoint(str(out / "checkpoint.pt"))["model"]
    rgb = tv.Conv2d_1a_3x3.conv.weight.detach()
    assert torch.allclose(model["stem.0.conv.weight"][:, :3], rgb, atol=1e-6)
    assert torch.allclose(model["stem.0.conv.weight"][:, 3], rgb[:, :2].mean(dim=1), atol=1e-6)
    scratch = create_model("inception_v3").state_dict()[
        "stem.0.conv.weight"
    ]  # what the cycle would start from
    assert not torch.allclose(scratch[:, :3], rgb, atol=1e-3)

    buf = io.BytesIO()
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), buf)
    storage.write_bytes(f"{bucket}/weights/resnet18.pth", buf.getvalue())
    for name, error, message in (
        ("resnet18.pth", ArtifactError, "[0-9]+ of [0-9]+ inception_v3 tensors are missing"),
        ("missing.pth", ConfigError, "no such file"),
    ):
        with pytest.raises(error, match=rf"pretrained weights {bucket}/weights/{name}: {message}"):
            train_step(
                _cfg(**still, pretrained=f"{bucket}/weights/{name}"),
                data_root=str(tiny_data),
                split=str(tiny_split),
                out=str(tmp_path / name),
            )


@pytest.mark.slow
def test_ranks_of_a_node_build_the_image_cache_once(tiny_data, tiny_split, tmp_path):
    """Local rank 0 decodes while the other ranks wait at the barrier, then open its cache."""
    from functools import partial

    from protloc.distributed import launch
    from tests import ranks

    ids = list(read_manifest(str(tiny_split / "manifest.parquet")).frame["id"])
    probe = partial(ranks.build_cache_once_per_node, str(tiny_data), ids, str(tmp_path / "c"))
    assert launch(probe, 2) == [1, 0]
    assert len(list((tmp_path / "c").glob("*.u8"))) == 1


@pytest.mark.slow
def test_killed_two_rank_cycle_resumes(tiny_data, tiny_split, tmp_path, cache_dir):
    """--gpus 2 (two gloo ranks on the CPU): the pod killed outright after the first epoch's
    checkpoint (every process of it, as Kubernetes does), then the same command again: it
    resumes after that epoch with 2 ranks and ends complete."""
    out = tmp_path / "out"
    cmd = [*train_cmd(tiny_data, tiny_split, out), "--gpus", "2"]
    env = {**os.environ, "PROTLOC_CACHE_DIR": str(cache_dir), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stderr=subprocess.DEVNULL, start_new_session=True
    )
    ckpt = out / "checkpoint.pt"
    deadline = time.time() + 180
    while time.time() < deadline and not ckpt.exists():
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks
    proc.wait()
    done_before = load_checkpoint(str(ckpt))["epochs_done"]
    assert 1 <= done_before < 3
    rerun = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"resuming cycle 0 from {ckpt} after epoch {done_before} of 3" in rerun.stderr
    assert "device cpu x2" in rerun.stderr and "weights identical on 2 ranks" in rerun.stderr
    state = load_checkpoint(str(ckpt))
    assert state["complete"] and state["epochs_done"] == 3
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3]
