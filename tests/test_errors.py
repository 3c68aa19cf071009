"""Bad values are refused where they are parsed, and every failure is one line naming the
culprit: NaN and out-of-range values, strict JSON, values never replaced, one-line errors of the
commands, and a property test over every command line's parameters."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest

import pipeline
from protloc import storage
from protloc.cli import parse_step
from protloc.config import SplitConfig
from protloc.data.identity import DataListing
from protloc.errors import ArtifactError, ConfigError, DataError, ProtlocError, StorageError
from protloc.evaluate.thresholds import read_thresholds
from protloc.folders import read_snapshot_list
from protloc.steps import STEPS
from tests.conftest import (
    ROOT,
    free_port,
    one_line_error,
    run_python,
    thresholds_doc,
    train_cmd,
)


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
        rest = json.dumps(thresholds_doc([0.5] * 27))
        path.write_text(rest.replace('"thresholds": [', f'"thresholds": [{bad}, '))
        with pytest.raises(ArtifactError, match=r"thresholds\[0\]: Input should be|not valid JSON"):
            read_thresholds(str(path))
    with pytest.raises(StorageError, match="non-standard JSON"):
        storage.write_json(str(tmp_path / "x.json"), {"alpha": float("nan")})
    out, _, _ = cycle0

    def strict(name):
        raise ValueError(name)

    for f in out.glob("*.json"):
        json.loads(f.read_text(), parse_constant=strict)  # every file protloc wrote parses


def test_invalid_values_are_refused_not_replaced(tmp_path):
    one_line_error(
        run_python(["pipeline.py", "local", "--schedule", "", "--root", str(tmp_path)]),
        "schedule is empty",
    )
    one_line_error(
        run_python(["pipeline.py", "local", "--tta", "0", "--root", str(tmp_path)]),
        "tta must be in [1, 8], got 0",
    )
    # A value given with the demo data is kept, even 0; only what is not given is overridden.
    assert pipeline.demo_values({"rare_below": 0})["rare_below"] == 0
    assert pipeline.demo_values({})["rare_below"] == pipeline.DEMO_OVERRIDES["rare_below"]
    proc = run_python(
        ["-m", "components.split", "--data-root", str(tmp_path), "--out", "s3:/bucket/x"]
    )
    one_line_error(proc, "s3:/bucket/x: not a local path and not a supported URI (s3://bucket/key")
    assert not (ROOT / "s3:").exists()


def test_split_refuses_an_empty_validation_fold(tmp_path):
    # Eight real-looking label sets for which iterstrat puts no sample in validation at 0.25.
    rows = ["s0,2", "s1,18", "s2,7 26", "s3,17 21 26", "s4,1", "s5,1 11 13", "s6,12", "s7,13"]
    (tmp_path / "train.csv").write_text("Id,Target\n" + "\n".join(rows) + "\n")
    split = ["-m", "components.split", "--data-root", str(tmp_path)]
    proc = run_python([*split, "--out", str(tmp_path / "out"), "--val-fraction", "0.25"])
    one_line_error(proc, "split 8 samples into 8 train and 0 validation")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_skip_bad_training_then_infer_is_a_clean_error(data, tmp_path):
    split = tmp_path / "split"
    assert (
        run_python(
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
    trained = run_python(train, env)
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
    proc = run_python(infer, env)
    one_line_error(proc, victim, "red")
    assert "images/s" not in proc.stderr  # stopped before predicting anything
    assert not (tmp_path / "i" / "predictions.parquet").exists()


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
    proc = run_python([*train_cmd(tiny_data, tiny_split, tmp_path / "o")[1:], *flags])
    one_line_error(proc, message)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_pipeline_errors_are_one_line(data, tmp_path):
    # A step that fails under kfp.local: which step, and its own one-line error. A bad image
    # stops the prepare step, before any train task.
    victim = sorted((data / "train").glob("*_yellow.png"))[5]
    victim.write_bytes(victim.read_bytes()[:40])  # truncated
    proc = run_python(
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
    one_line_error(proc, "step prepare failed:", victim.name.rsplit("_", 1)[0], "yellow")
    assert "RuntimeError" not in proc.stderr
    # --root that is a file; compile into a folder that does not exist yet.
    (tmp_path / "f").write_text("x")
    one_line_error(
        run_python(
            ["pipeline.py", "local", "--data-root", str(data), "--root", str(tmp_path / "f")]
        ),
        "--root",
        "a file is in the way",
    )
    made = run_python(["pipeline.py", "compile", "-o", str(tmp_path / "new" / "dir" / "p.yaml")])
    assert made.returncode == 0 and (tmp_path / "new" / "dir" / "p.yaml").is_file()
    host = f"http://127.0.0.1:{free_port()}"
    one_line_error(
        run_python(
            ["pipeline.py", "submit", "--host", host, "--data-root", str(data)], timeout=120
        ),
        f"--host {host}: cannot reach a KFP API",
    )


def test_messages_name_the_real_problem(data, tmp_path):
    from protloc.data.hpa import load_sample, read_labels

    first = sorted(p.name.rsplit("_", 1)[0] for p in (data / "train").glob("*_red.png"))[0]
    red = data / "train" / f"{first}_red.png"
    red.unlink()
    red.mkdir()
    with pytest.raises(DataError, match=rf"{first}_red.png is a folder, not an image file"):
        ext = DataListing(str(data)).extensions("train", [first])[first]
        load_sample(str(data), "train", first, ext=ext)
    train_dir = tmp_path / "t"
    train_dir.mkdir()
    (train_dir / "snapshots.json").write_text('{"snapshots": "/:"}')
    with pytest.raises(
        ArtifactError, match=r"snapshots.json: snapshots: Input should be a valid list"
    ):
        read_snapshot_list(str(train_dir))
    bad = tmp_path / "train.csv"
    bad.write_text('Id,Target\na,1\nb,2\n"c,3\nd,4\n')
    with pytest.raises(DataError, match="not a valid CSV at line 4"):
        read_labels(str(bad))


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


def test_a_secret_in_an_endpoint_or_host_is_never_printed(tmp_path):
    """Item: ``AWS_ENDPOINT_URL=http://user:PASSWORD@...`` and ``submit --host
    http://admin:PASSWORD@...?token=...`` printed the password in error lines and logs."""
    port = free_port()  # nothing listens: every command fails reaching it
    secret_url = f"http://user:PASSWORD@127.0.0.1:{port}/?token=TOKEN"
    env = {**os.environ, "AWS_ENDPOINT_URL": secret_url, "PROTLOC_STORAGE_ATTEMPTS": "1"}
    env.update(AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s")
    split = run_python(
        ["-m", "components.split", "--data-root", "s3://b/d", "--out", str(tmp_path / "o")],
        env=env,
    )
    one_line_error(split, f"127.0.0.1:{port}")
    submit_cmd = ["pipeline.py", "submit", "--pipeline-root", "s3://b/r", "--data-root", "s3://b/d"]
    submit = run_python([*submit_cmd, "--host", secret_url], env=env)
    one_line_error(submit, f"127.0.0.1:{port}", "a query string or fragment is not part of")
    no_query = run_python([*submit_cmd, "--host", secret_url.partition("?")[0]], env=env)
    one_line_error(no_query, f"--host http://127.0.0.1:{port}/: cannot reach a KFP API")
    for proc in (split, submit, no_query):
        assert "PASSWORD" not in proc.stderr + proc.stdout and "TOKEN" not in proc.stderr
    # However a message is built, and in a log line of any library:
    assert "PASSWORD" not in str(StorageError(f"cannot reach {secret_url}: refused"))
    assert str(StorageError("abfs://container@account.dfs.core.windows.net/x")).startswith(
        "abfs://container@"  # a container, not a user: kept
    )


ENV_MUTANTS = ["", " ", "abc", "0", "-1", "1.5", "nan", "inf", "-inf", "1e309", "99999999999",
               "0x10", "1_000", "\u0663", "7 ", " 3", "None", "true", "[]", "1e3", "2"]  # fmt: skip


@pytest.mark.parametrize(
    "name", ["PROTLOC_STORAGE_ATTEMPTS", "PROTLOC_STORAGE_BACKOFF_S", "PROTLOC_TASKS_PER_MACHINE",
             "LOCAL_WORLD_SIZE", "PROTLOC_S3_CONNECT_TIMEOUT_S", "PROTLOC_S3_READ_TIMEOUT_S"],
)  # fmt: skip
def test_every_environment_setting_is_a_valid_value_or_a_one_line_refusal(name, monkeypatch):
    """Item: settings read from the environment gave tracebacks (``PROTLOC_S3_ATTEMPTS=abc``);
    each one, fed fixed and seeded mutants, now gives a value in its range or a ConfigError
    naming it."""
    from protloc.cpus import cpu_share
    from protloc.storage import s3
    from protloc.storage.retry import retrying

    def read() -> object:
        if name.startswith("PROTLOC_STORAGE"):
            return retrying("s3://b/k", "read", lambda: "ok", lambda exc: (False, exc))
        if name.startswith("PROTLOC_S3"):
            timeouts = s3.options()["config_kwargs"]
            assert 0 < timeouts["connect_timeout"] <= 600 and 0 < timeouts["read_timeout"] <= 600
            return "ok"
        return cpu_share()

    rng = random.Random(name)
    seeded = ["".join(rng.choice("0123456789.-+eE x") for _ in range(rng.randint(1, 6)))
              for _ in range(30)]  # fmt: skip
    for value in ENV_MUTANTS + seeded:
        monkeypatch.setenv(name, value)
        try:
            got = read()
        except ConfigError as exc:
            assert name in str(exc) and "\n" not in str(exc), str(exc)
            continue
        assert got == "ok" or (isinstance(got, int) and got >= 1), (value, got)
