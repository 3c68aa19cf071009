"""The GPU benchmark cannot run here (no CUDA device), so its code paths run on the CPU on a
tiny case, to keep the script working until a GPU machine runs it for real."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_gpu_benchmark_code_paths_run_on_the_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    args = ["--device", "cpu", "--archs", "efficientnet_b0", "--sizes", "80", "--steps", "1"]
    args += ["--workers", "0,1"]
    args += ["--batch", "2", "--cache-samples", "8", "--no-compile", "--no-max-batch"]
    proc = subprocess.run(
        [sys.executable, "-m", "bench.speed.gpu", *args, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = json.loads(out.read_text())["sizes"]
    assert row["arch"] == "efficientnet_b0" and row["size"] == 80 and row["batch"] == 2
    assert row["fp32_img_s"] > 0 and row["bf16_cl_img_s"] > 0
    assert set(row["idle_fraction"]) == {"0", "1"}
    assert all(0 <= v <= 1 for v in row["idle_fraction"].values())


def test_gpu_check_says_what_it_measures_and_refuses_a_machine_without_cuda(tmp_path):
    script = str(ROOT / "tools" / "gpu_check.sh")
    usage = subprocess.run(["bash", script, "--help"], capture_output=True, text=True, check=True)
    assert "images/s of every registered architecture at 512 px" in usage.stdout
    env = {"PATH": "/usr/bin:/bin", "PY": sys.executable, "OUT": str(tmp_path / "out")}
    proc = subprocess.run(["bash", script], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 1 and "gpu-check: no CUDA device" in proc.stderr
    assert not (tmp_path / "out" / "speed.json").exists()


@pytest.mark.slow
def test_store_readiness_benchmark_runs(tmp_path):
    """bench.speed.store_readiness on 12 samples through its own moto server: both paths build
    a cache at both sizes, on the disk and in memory (the figures themselves are make bench's,
    not asserted here)."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.speed.store_readiness", "--samples", "12",
         "--sizes", "96,128", "--workers", "2", "--shard-samples", "5"],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert out["samples"] == 12 and out["shard_samples"] == 5
    for key in ("old_96_s", "old_128_s", "new_96_s", "new_128_s", "new_mem_96_s", "prepare_s"):
        assert out[key] > 0, key
    assert (
        "96 px, cache on disk: decode PNGs" in proc.stdout
        and "128 px, cache on disk" in proc.stdout
    )
    assert out["raw_bytes"] == 12 * 4 * (96 * 96 + 128 * 128) and out["shard_bytes"] > 0


@pytest.mark.slow
def test_resampling_table_on_the_real_labels():
    """bench.decisions.resampling: the class rule halves both dominant classes, the sample rule
    cuts them by far less, and neither touches the x5 rare classes."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.decisions.resampling"],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {line.split("|")[1].strip(): line.split("|") for line in proc.stdout.splitlines()}
    assert len([k for k in rows if k[:1].isdigit()]) == 28
    assert rows["0 Nucleoplasm"][5].strip() == "-17%" and rows["0 Nucleoplasm"][7].strip() == "-50%"
    assert rows["25 Cytosol"][5].strip() == "-21%" and rows["25 Cytosol"][7].strip() == "-50%"
    for rare in ("8 Peroxisomes", "27 Rods & rings"):
        assert rows[rare][5].strip() == rows[rare][7].strip() == "+0%"


def test_levers_pairs_each_arm_with_the_baseline_seed_by_seed(tmp_path, capsys):
    """bench.decisions.levers: the paired difference is taken seed by seed (an arm whose runs
    are the baseline's in another order differs though its mean is the same), and a folder
    without a finished run's summary is named."""
    from bench.decisions import levers

    def runs(name: str, figures: list[float]) -> str:
        folders = []
        for i, f in enumerate(figures):
            folder = tmp_path / f"{name}{i}"
            folder.mkdir()
            doc = {"ensemble": {"crossfit_macro_f1": f, "macro_f1_at_0.5": f / 2}}
            (folder / "last_summary.json").write_text(json.dumps(doc))
            folders.append(str(folder))
        return ",".join(folders)

    base = runs("b", [0.10, 0.20, 0.30])
    better = runs("x", [0.12, 0.21, 0.29])
    shuffled = runs("s", [0.30, 0.10, 0.20])
    assert (
        levers.main(["--arm", f"base={base}", "--arm", f"x={better}", "--arm", f"s={shuffled}"])
        == 0
    )
    rows = {
        line.split("|")[1].strip(): line.split("|") for line in capsys.readouterr().out.splitlines()
    }
    assert rows["base"][2].strip() == "0.2000 +- 0.1000" and rows["base"][3].strip() == "0"
    assert rows["x"][3].strip() == "+0.0067 +- 0.0153" and rows["x"][4].strip() == "2 of 3"
    mean, sd = rows["s"][3].split("+-")
    assert rows["s"][2].strip() == "0.2000 +- 0.1000" and abs(float(mean)) < 1e-4
    assert sd.strip() == "0.1732"  # seed by seed: +0.2, -0.1, -0.1
    assert rows["x"][5].strip() == "0.1033 +- 0.0425"
    (tmp_path / "b1" / "last_summary.json").write_text("{}")
    with pytest.raises(SystemExit, match=r"b1/last_summary.json: not a finished run's summary"):
        levers.main(["--arm", f"base={base}"])
