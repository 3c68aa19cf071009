"""Never a wrong result in silence: one test per row of issue 15's table (rows 1-11), each
failing on the code before the fix, plus a property test over every CLI's parameter parsing.
Row 1's pipeline-level half (a data root changed under the same URI is not served from KFP's
cache) is in test_pipeline.py, on the kfp.local runs there."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import pipeline
from protloc import storage
from protloc.cli import parse_step
from protloc.config import SplitConfig, ThresholdsConfig, TrainConfig
from protloc.data.cache import build_cache
from protloc.errors import ArtifactError, ConfigError, DataError, ProtlocError, StorageError
from protloc.evaluate import predictions
from protloc.evaluate.thresholds import read_thresholds
from protloc.steps import STEPS, read_snapshot_list, submit_step, thresholds_step, train_step
from protloc.synthetic.predictions import structured_predictions
from tests.conftest import ROOT, TINY_CYCLE, free_port, mark_complete, run_python, train_cmd
from tests.pod import Artifact

_run = run_python


def _one_line_error(proc, *needles: str) -> None:
    """Exit 2, no traceback, the last line 'error: ...' holding every needle."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), last
    for needle in needles:
        assert needle in last, (needle, last)


@pytest.fixture
def data(tiny_data, tmp_path) -> Path:
    """A private copy of tiny_data that a test may change."""
    return Path(shutil.copytree(tiny_data, tmp_path / "data"))


# ----------------------------------------------------------------------------- 1. image cache


def test_image_cache_notices_changed_images_and_skip_bad(data, tmp_path):
    ids = sorted(p.name.rsplit("_", 1)[0] for p in (data / "train").glob("*_red.png"))[:6]
    cache_dir = tmp_path / "cache"
    first = build_cache(str(data), "train", ids, 64, cache_dir, workers=1)
    before = first.array[2].copy()
    # Regenerated in place: the same file name, other pixels.
    Image.fromarray(np.full((96, 96), 200, np.uint8)).save(data / "train" / f"{ids[2]}_green.png")
    second = build_cache(str(data), "train", ids, 64, cache_dir, workers=1)
    assert second.path != first.path
    assert not np.array_equal(second.array[2], before)  # the new pixels, not the cached ones

    bad = data / "train" / f"{ids[4]}_blue.png"
    good = bad.read_bytes()
    bad.write_bytes(b"not a png")
    skipping = build_cache(str(data), "train", ids, 64, cache_dir, workers=1, skip_bad=True)
    assert skipping.skipped == [ids[4]]
    bad.write_bytes(good)  # fixed, and --skip-bad dropped: the sample is back
    fixed = build_cache(str(data), "train", ids, 64, cache_dir, workers=1)
    assert fixed.ids == ids and fixed.skipped == []


def test_a_task_refuses_data_changed_after_the_run_started(data, tmp_path):
    """The fingerprint taken at submit/local time is checked again where the task runs."""
    from components.factory import run_task
    from protloc.data.identity import data_fingerprint
    from protloc.version import code_version

    then = data_fingerprint(str(data))
    Image.fromarray(np.zeros((96, 96), np.uint8)).save(next((data / "test").glob("*_red.png")))
    args = {**SplitConfig().to_dict(), "data_root": str(data), "data_fingerprint": then,
            "code_version": code_version(), "out": Artifact(str(tmp_path / "split"), str(tmp_path / "split"))}  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        run_task("split", args)
    assert exc.value.code == 2
    error = (tmp_path / "split" / "error.txt").read_text()
    assert f"changed since the run was started (fingerprint {then} then" in error
    assert not (tmp_path / "split" / "manifest.parquet").exists()


def test_pretrained_weights_are_part_of_the_fingerprint(data, tmp_path):
    """Weights replaced under the same URI change the run's fingerprint (so KFP's cache misses)
    and a train task started before the change refuses them, naming the file."""
    from components.factory import run_task
    from protloc.config import TrainConfig
    from protloc.data.identity import data_fingerprint, run_fingerprint
    from protloc.version import code_version

    weights = tmp_path / "inception_v3.pth"
    weights.write_bytes(b"first weights")
    then = run_fingerprint(str(data), str(weights))
    assert then.startswith(data_fingerprint(str(data)) + "+") and len(then) == 33
    weights.write_bytes(b"other weights")
    assert run_fingerprint(str(data), str(weights)) != then
    out = Artifact(str(tmp_path / "train"), str(tmp_path / "train"))
    args = {**TrainConfig(size=80, batch_size=8, epochs=1).to_dict(), "pretrained": str(weights),
            "data_root": str(data), "data_fingerprint": then, "code_version": code_version(),
            "split": out, "previous": None, "out": out}  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        run_task("train", args)
    assert exc.value.code == 2
    error = (tmp_path / "train" / "error.txt").read_text()
    assert f"the pretrained weights {weights} changed since the run was started" in error


# ----------------------------------------------------------------------------- 2. train rerun


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


# ----------------------------------------------------------------------------- 3. whole folders


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
    rows = pd.concat(
        [
            predictions.frame(ids[:200], "val", "ensemble", probs[:200]),
            predictions.frame(ids[200:], "test", "ensemble", probs[200:]),
        ]
    )
    predictions.write_predictions(rows, str(infer / "predictions.parquet"))
    return {"root": root, "split": mark_complete(split), "infer": mark_complete(infer)}


def test_killed_step_leaves_its_folder_unmarked_and_readers_refuse_it(
    scored, tmp_path, monkeypatch
):
    out = tmp_path / "thr"
    thresholds_step(
        ThresholdsConfig(alpha=0.0),
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
            ThresholdsConfig(alpha=0.5),
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
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".protloc.lock").write_text(str(holder.pid))
        cmd = ["-m", "components.thresholds", "--split", str(scored["split"])]
        cmd += ["--predictions", str(scored["infer"]), "--out", str(out)]
        _one_line_error(_run(cmd), f"being written by another protloc run (pid {holder.pid})")
        assert not (out / "thresholds.json").exists()
    finally:
        holder.kill()
        holder.wait()
    ok = _run(cmd)  # the holder is gone: its lock is taken over
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert (out / "timing.json").is_file() and not (out / ".protloc.lock").exists()


# ----------------------------------------------------------------------------- 4. NaN, strict JSON


def test_nan_and_absurd_values_are_refused_and_json_is_strict(tmp_path, cycle0):
    for flag in ("--clip-norm", "--lr-max", "--jitter"):
        with pytest.raises(ConfigError, match="must be a finite number"):
            parse_step(
                STEPS["train"],
                [
                    "--data-root",
                    "d",
                    "--split",
                    "s",
                    "--out",
                    "o",
                    "--size",
                    "96",
                    "--batch-size",
                    "8",
                    "--epochs",
                    "1",
                    flag,
                    "nan",
                ],
            )
    for bad in ('"0.5"', "true", "NaN"):
        path = tmp_path / f"t{len(bad)}.json"
        path.write_text('{"thresholds": [' + ", ".join([bad] + ["0.5"] * 27) + "]}")
        with pytest.raises(ArtifactError, match=r"class 0|not valid JSON"):
            read_thresholds(str(path))
    with pytest.raises(StorageError, match="non-standard JSON"):
        storage.write_json(str(tmp_path / "x.json"), {"alpha": float("nan")})
    out, _, _ = cycle0

    def strict(name):
        raise ValueError(name)

    for f in out.glob("*.json"):
        json.loads(f.read_text(), parse_constant=strict)  # every file protloc wrote parses


# ----------------------------------------------------------------------------- 5. substitutions


def test_invalid_values_are_refused_not_replaced(tmp_path):
    _one_line_error(
        _run(["pipeline.py", "local", "--schedule", "", "--root", str(tmp_path)]),
        "schedule is empty",
    )
    _one_line_error(
        _run(["pipeline.py", "local", "--tta", "0", "--root", str(tmp_path)]),
        "tta must be in [1, 8], got 0",
    )
    # A value given with the demo data is kept, even 0; only what is not given is overridden.
    assert pipeline.demo_values({"rare_below": 0})["rare_below"] == 0
    assert pipeline.demo_values({})["rare_below"] == pipeline.DEMO_OVERRIDES["rare_below"]
    proc = _run(["-m", "components.split", "--data-root", str(tmp_path), "--out", "s3:/bucket/x"])
    _one_line_error(proc, "s3:/bucket/x: not a local path and not an s3://bucket/key URI")
    assert not (ROOT / "s3:").exists()


# ----------------------------------------------------------------------------- 6. empty fold


def test_split_refuses_an_empty_validation_fold(tmp_path):
    # Eight real-looking label sets for which iterstrat puts no sample in validation at 0.25.
    rows = ["s0,2", "s1,18", "s2,7 26", "s3,17 21 26", "s4,1", "s5,1 11 13", "s6,12", "s7,13"]
    (tmp_path / "train.csv").write_text("Id,Target\n" + "\n".join(rows) + "\n")
    split = ["-m", "components.split", "--data-root", str(tmp_path)]
    proc = _run([*split, "--out", str(tmp_path / "out"), "--val-fraction", "0.25"])
    _one_line_error(proc, "split 8 samples into 8 train and 0 validation")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- 7. outputs checked


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
    proc = _run(cmd)
    _one_line_error(proc, f"{blocker}: a file is in the way")
    assert "image cache" not in proc.stderr and "epoch" not in proc.stderr  # no work started
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o500)
    if os.geteuid() != 0:  # root writes anywhere; the file case above is what CI can check
        proc = _run([*train_cmd(tiny_data, tiny_split, read_only / "out")[1:]])
        _one_line_error(proc, "permission denied")


# ----------------------------------------------------------------------------- 8. killed builds


def test_orphaned_cache_files_are_removed_and_sigterm_cleans_up(data, tiny_split, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = cache / f"abc.u8.tmp.{dead.pid}"
    orphan.write_bytes(b"\0" * 1_000_000)
    mine = cache / f"def.u8.tmp.{os.getpid()}"  # a build still running: left alone
    mine.write_bytes(b"\0")
    ids = sorted(p.name.rsplit("_", 1)[0] for p in (data / "train").glob("*_red.png"))[:3]
    build_cache(str(data), "train", ids, 64, cache, workers=1)
    assert not orphan.exists() and mine.exists()

    # SIGTERM (what Kubernetes and Docker send) mid-training: a clean exit, the lock released.
    out = tmp_path / "out"
    env = {**os.environ, "PROTLOC_CACHE_DIR": str(cache)}
    cmd = [*train_cmd(data, tiny_split, out, epochs=3), "--log-every", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    lines = []
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        if "epoch 1/3 step 2/" in line:
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=60)[1]
    assert proc.returncode == 128 + signal.SIGTERM, "".join(lines) + rest
    assert "Traceback" not in rest
    assert not (out / ".protloc.lock").exists()
    assert not list(cache.glob(f"*.tmp.{proc.pid}"))


# ----------------------------------------------------------------------------- 9. skip-bad, infer


def test_skip_bad_training_then_infer_is_a_clean_error(data, tmp_path):
    split = tmp_path / "split"
    assert (
        _run(
            [
                "-m",
                "components.split",
                "--data-root",
                str(data),
                "--out",
                str(split),
                "--val-fraction",
                "0.25",
                "--rare-below",
                "0",
            ]
        ).returncode
        == 0
    )
    from protloc.data.manifest import read_manifest

    victim = read_manifest(str(split / "manifest.parquet")).fold("val")["id"].iloc[0]
    (data / "train" / f"{victim}_red.png").write_bytes(b"broken")
    env = {**os.environ, "PROTLOC_CACHE_DIR": str(tmp_path / "cache")}
    train = [*train_cmd(data, split, tmp_path / "t", epochs=1)[1:], "--skip-bad"]
    trained = _run(train, env)
    assert trained.returncode == 0, trained.stderr[-2000:]
    infer = [
        "-m",
        "components.infer",
        "--data-root",
        str(data),
        "--split",
        str(split),
        "--last-cycle",
        str(tmp_path / "t"),
        "--out",
        str(tmp_path / "i"),
        "--tta",
        "1",
        "--workers",
        "0",
    ]
    proc = _run(infer, env)
    _one_line_error(proc, victim, "red")
    assert "images/s" not in proc.stderr  # stopped before predicting anything
    assert not (tmp_path / "i" / "predictions.parquet").exists()


# ----------------------------------------------------------------------------- 10. one-line errors


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--seed", "-1"], "seed must be in [0, 4294967295], got -1"),
        (["--seed", str(2**40)], "seed must be in [0, 4294967295]"),
        (["--batch-size", "1"], "batch_size must be in [2, 4096], got 1"),
        (["--log-every", "0"], "log_every must be in [1, 1000000], got 0"),
        (["--lr-max", "1e9"], "lr_max must be in (0, 10], got 1000000000.0"),
    ],
)
def test_bad_train_flags_are_one_line_errors(tiny_data, tiny_split, tmp_path, flags, message):
    proc = _run([*train_cmd(tiny_data, tiny_split, tmp_path / "o")[1:], *flags])
    _one_line_error(proc, message)
    assert not (tmp_path / "o").exists()


def test_pipeline_errors_are_one_line(data, tmp_path):
    # A step that fails under kfp.local: which step, and its own one-line error. A bad image
    # stops the prepare step, before any train task.
    victim = sorted((data / "train").glob("*_yellow.png"))[5]
    victim.write_bytes(victim.read_bytes()[:40])  # truncated
    proc = _run(
        [
            "pipeline.py",
            "local",
            "--data-root",
            str(data),
            "--root",
            str(tmp_path / "r"),
            "--schedule",
            "80:8:1",
            "--workers",
            "0",
            "--rare-below",
            "0",
        ]
    )
    _one_line_error(proc, "step prepare failed:", victim.name.rsplit("_", 1)[0], "yellow")
    assert "RuntimeError" not in proc.stderr
    # --root that is a file; compile into a folder that does not exist yet.
    (tmp_path / "f").write_text("x")
    _one_line_error(
        _run(["pipeline.py", "local", "--data-root", str(data), "--root", str(tmp_path / "f")]),
        "--root",
        "a file is in the way",
    )
    made = _run(["pipeline.py", "compile", "-o", str(tmp_path / "new" / "dir" / "p.yaml")])
    assert made.returncode == 0 and (tmp_path / "new" / "dir" / "p.yaml").is_file()
    host = f"http://127.0.0.1:{free_port()}"
    _one_line_error(
        _run(["pipeline.py", "submit", "--host", host, "--data-root", str(data)], timeout=120),
        f"--host {host}: cannot reach a KFP API",
    )


# ----------------------------------------------------------------------------- 11. messages


def test_messages_name_the_real_problem(data, tmp_path):
    from protloc.data.hpa import load_sample, read_labels, sample_extensions

    first = sorted(p.name.rsplit("_", 1)[0] for p in (data / "train").glob("*_red.png"))[0]
    red = data / "train" / f"{first}_red.png"
    red.unlink()
    red.mkdir()
    with pytest.raises(DataError, match=rf"{first}_red.png is a folder, not an image file"):
        ext = sample_extensions(str(data), "train", [first])[first]
        load_sample(str(data), "train", first, ext=ext)
    train_dir = tmp_path / "t"
    train_dir.mkdir()
    (train_dir / "snapshots.json").write_text('{"snapshots": "/:"}')
    with pytest.raises(ArtifactError, match="'snapshots' must be a list of checkpoint URIs"):
        read_snapshot_list(str(train_dir))
    bad = tmp_path / "train.csv"
    bad.write_text('Id,Target\na,1\nb,2\n"c,3\nd,4\n')
    with pytest.raises(DataError, match="not a valid CSV at line 4"):
        read_labels(str(bad))


# ----------------------------------------------------------------------------- property: parsers


def _candidates(p, rng: random.Random) -> list[str]:
    pool = [
        "nan",
        "NaN",
        "inf",
        "-inf",
        "1e309",
        "-1",
        "0",
        "1",
        "2",
        "0.5",
        "1.5",
        "abc",
        "",
        " ",
        "1e-320",
        "True",
        "3.0",
        "0x10",
        "1_000",
        str(2**31),
        str(2**64),
        "-0",
    ]
    if p.spec.choices:
        pool += list(p.spec.choices) + [c.upper() for c in p.spec.choices]
    if p.spec.low is not None:
        pool += [repr(p.spec.low), repr(p.spec.low - 1), repr(p.spec.high or 0)]
    return [rng.choice(pool) for _ in range(5)]


@pytest.mark.parametrize("name", list(STEPS))
def test_every_cli_parameter_parses_to_a_valid_value_or_a_one_line_error(name):
    """Seeded random values for every setting of every step: each ends in a config whose value
    is exactly the one given (finite, in range) or in a one-line refusal; never a traceback, and
    never a silent substitution."""
    step = STEPS[name]
    rng = random.Random(name)
    base = ["--out", "o"]
    for i in step.inputs:
        base += [f"--{i.name.replace('_', '-')}", "d"]
    if step.reads_data_root:
        base += ["--data-root", "r"]
    if name == "train":
        base += ["--size", "96", "--batch-size", "8", "--epochs", "1"]
    if name == "prepare":
        base += ["--store-size", "96"]
    if name == "predict":
        base += ["--images", "imgs"]
    outcomes = {"ok": 0, "refused": 0}
    if not step.config.params():  # submit: no settings; another step's flag is refused
        with pytest.raises(SystemExit):
            parse_step(step, [*base, "--alpha", "0.1"])
        return
    for p in step.config.params():
        if p.type is bool or (p.type is str and not p.spec.choices):
            continue
        for text in _candidates(p, rng):
            try:
                cfg, _ = parse_step(step, [*base, p.flag, text])
            except SystemExit as exc:  # argparse: usage line + one-line error, exit 2
                assert exc.code == 2
                outcomes["refused"] += 1
                continue
            except ProtlocError as exc:
                assert p.name in str(exc) and "\n" not in str(exc)
                outcomes["refused"] += 1
                continue
            value = getattr(cfg, p.name)
            assert value == p.type(text) if p.type is not int else value == int(text, 10)
            if p.type is float:
                assert np.isfinite(value)
            outcomes["ok"] += 1
    assert outcomes["refused"] > 0 and outcomes["ok"] > 0


def test_pipeline_parameters_refuse_what_the_steps_refuse():
    rng = random.Random(7)
    for p in pipeline.pipeline_params():
        if p.type is str:
            continue
        for text in ["nan", "inf", "-1", "1e309"] + [str(rng.uniform(-5, 5)) for _ in range(3)]:
            value = p.type(float(text)) if p.type is int and np.isfinite(float(text)) else None
            value = float(text) if p.type is float else value
            if value is None:
                continue
            try:
                pipeline.arguments({"data_root": "x", p.name: value}, [pipeline.Cycle(96, 8, 1)])
            except ConfigError as exc:
                assert p.name in str(exc)
            else:
                assert np.isfinite(value)
    with pytest.raises(ConfigError, match="seed must be int, got True"):
        SplitConfig(seed=True)  # type: ignore[arg-type]
