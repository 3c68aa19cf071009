"""A step's output folder is whole or refused: the completion marker, the lock, a rerun into a
finished folder with other inputs, and output folders checked before the work."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from protloc import storage
from protloc.config import ThresholdsConfig, TrainConfig
from protloc.errors import ArtifactError
from protloc.evaluate import predictions
from protloc.steps import STEPS, submit_step, thresholds_step, train_step
from protloc.synthetic.predictions import structured_predictions
from tests.conftest import TINY_CYCLE, mark_complete, one_line_error, run_python, train_cmd
from tests.pod import Artifact


def test_finished_cycle_with_other_inputs_is_refused_not_reused(
    cycle0, tiny_data, tiny_split, weighted_split, data
):
    out, _, _ = cycle0
    mtime = (out / "checkpoint.pt").stat().st_mtime_ns
    cfg = TrainConfig(**TINY_CYCLE)
    with pytest.raises(ArtifactError, match=r"made from other inputs \(manifest_sha256"):
        train_step(cfg, data_root=str(tiny_data), split=str(tiny_split), out=str(out))
    Image.fromarray(np.zeros((96, 96), np.uint8)).save(next((data / "train").glob("*_green.png")))
    with pytest.raises(ArtifactError, match=r"made from other inputs \(images"):
        train_step(cfg, data_root=str(data), split=str(weighted_split), out=str(out))
    with pytest.raises(ArtifactError, match=r"settings jitter: 0.1 then, 0.2 now"):
        train_step(
            TrainConfig(**{**TINY_CYCLE, "jitter": 0.2}),
            data_root=str(tiny_data),
            split=str(weighted_split),
            out=str(out),
        )
    # Refused before the folder was touched: still complete, checkpoint unchanged.
    assert (out / "timing.json").is_file()
    assert (out / "checkpoint.pt").stat().st_mtime_ns == mtime


@pytest.fixture
def scored(tmp_path) -> dict[str, Path]:
    """A data root (sample submission), a split folder and an infer folder, all finished."""
    probs, y = structured_predictions(240, seed=1)
    ids = [f"v{i:03d}" for i in range(200)] + [f"t{i:03d}" for i in range(40)]
    root = tmp_path / "root"
    root.mkdir()
    pd.DataFrame({"Id": ids[200:], "Predicted": "0"}).to_csv(
        root / "sample_submission.csv", index=False
    )
    split = tmp_path / "split"
    split.mkdir()
    labels = [list(np.flatnonzero(r)) or [0] for r in y[:200]]
    frame = pd.DataFrame({"id": ids[:200], "labels": labels, "fold": "val", "weight": 0.0})
    frame = pd.concat(
        [frame, pd.DataFrame({"id": ["x"], "labels": [[0]], "fold": "train", "weight": 1.0})]
    )
    frame["weight"] = frame["weight"].astype(np.float32)
    from protloc.data.manifest import write_manifest

    write_manifest(frame.reset_index(drop=True), {}, str(split / "manifest.parquet"))
    infer = tmp_path / "infer"
    infer.mkdir()
    from protloc.evaluate.ensemble import snapshot_name

    one = snapshot_name(0, 96, -1)  # one snapshot: its rows and the ensemble's are the same
    rows = pd.concat(
        [
            predictions.frame(part, split_name, name, p)
            for name in (one, "ensemble")
            for part, split_name, p in (
                (ids[:200], "val", probs[:200]),
                (ids[200:], "test", probs[200:]),
            )
        ]
    )
    predictions.write_predictions(rows, str(infer / "predictions.parquet"))
    return {"root": root, "split": mark_complete(split), "infer": mark_complete(infer)}


def test_killed_step_leaves_its_folder_unmarked_and_readers_refuse_it(
    scored, tmp_path, monkeypatch
):
    out = tmp_path / "thr"
    thresholds_step(
        ThresholdsConfig(alpha="0"),
        split=str(scored["split"]),
        predictions=str(scored["infer"]),
        out=str(out),
    )
    assert (out / "timing.json").is_file()

    from protloc.report import plot_worker

    def killed(self, *args, **kwargs):
        raise KeyboardInterrupt  # the process dies after thresholds.json, before the plots

    monkeypatch.setattr(plot_worker.BackgroundPlots, "render", killed)
    with pytest.raises(KeyboardInterrupt):
        thresholds_step(
            ThresholdsConfig(alpha="0.5"),
            split=str(scored["split"]),
            predictions=str(scored["infer"]),
            out=str(out),
        )
    assert json.loads((out / "thresholds.json").read_text())["alpha"] == 0.5  # half-written
    assert not (out / "timing.json").exists()  # ... and marked so
    with pytest.raises(ArtifactError, match=r"--thresholds .*thr: not a finished step folder"):
        submit_step(
            STEPS["submit"].config(),
            data_root=str(scored["root"]),
            predictions=str(scored["infer"]),
            thresholds=str(out),
            out=str(tmp_path / "sub"),
        )
    # A killed split: its partial folder is refused by train.
    partial = tmp_path / "split-partial"
    shutil.copytree(scored["split"], partial)
    (partial / "timing.json").unlink()
    with pytest.raises(ArtifactError, match=r"--split .*split-partial: not a finished step"):
        train_step(
            TrainConfig(**TINY_CYCLE),
            data_root=str(scored["root"]),
            split=str(partial),
            out=str(tmp_path / "t"),
        )


def test_two_runs_into_one_out_cannot_interleave(scored, tmp_path):
    out = tmp_path / "thr"
    out.mkdir()
    hold = "import sys, time; from protloc.folders import locked\n"
    hold += "with locked(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", hold, str(out)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"held"
        cmd = ["-m", "components.thresholds", "--split", str(scored["split"])]
        cmd += ["--predictions", str(scored["infer"]), "--out", str(out)]
        one_line_error(run_python(cmd), f"being written by another protloc run (pid {holder.pid} ")
        assert not (out / "thresholds.json").exists()
    finally:
        holder.kill()  # SIGKILL: the kernel drops its lock, the file stays
        holder.wait()
    assert (out / ".protloc.lock").is_file()
    ok = run_python(cmd)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert (out / "timing.json").is_file() and not (out / ".protloc.lock").exists()


@pytest.mark.slow
@pytest.mark.parametrize("where", ["out", "cache"])
def test_unusable_output_or_cache_folder_fails_before_the_work(
    tiny_data, tiny_split, tmp_path, where
):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = blocker if where == "out" else tmp_path / "out"
    cmd = [*train_cmd(tiny_data, tiny_split, out)[1:]]
    if where == "cache":
        cmd += ["--cache-dir", str(blocker)]
    proc = run_python(cmd)
    one_line_error(proc, f"{blocker}: a file is in the way")
    assert "image cache" not in proc.stderr and "epoch" not in proc.stderr  # no work started
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o500)
    if os.geteuid() != 0:  # root writes anywhere; the file case above is what CI can check
        proc = run_python([*train_cmd(tiny_data, tiny_split, read_only / "out")[1:]])
        one_line_error(proc, "permission denied")


def test_a_later_task_removes_the_finished_cycles_work_checkpoints(bucket):
    """On a cluster a train task keeps its per-epoch checkpoints in work/ beside its output
    artifact (a retried pod resumes there); once the next cycle (or infer) has read that
    artifact, it is complete and the checkpoints go."""
    from components.task import _remove_finished_work
    from protloc.steps import STEPS

    task = f"{bucket}/pipeline-root/run-1/train"
    for name in ("cycle0-96px-abc/checkpoint.pt", "cycle0-96px-abc/metrics.json"):
        storage.write_bytes(f"{task}/work/{name}", b"x")
    storage.write_bytes(f"{task}/out/checkpoint.pt", b"the artifact")
    previous = Artifact(path="/tmp/unused", uri=f"{task}/out")
    _remove_finished_work(STEPS["train"], {"previous": previous, "work_root": "s3://mine/work"})
    assert len(storage.list_files(f"{task}/work")) == 2  # an explicit work root is the user's
    _remove_finished_work(STEPS["infer"], {"last_cycle": previous})
    assert storage.list_files(f"{task}/work") == []
    assert storage.exists(f"{task}/out/checkpoint.pt")
