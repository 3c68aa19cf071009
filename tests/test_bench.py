"""The GPU benchmark cannot run here (no CUDA device), so its code paths run on the CPU on a
tiny case, to keep the script working until a GPU machine runs it for real."""

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_gpu_benchmark_code_paths_run_on_the_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    args = ["--device", "cpu", "--sizes", "80", "--steps", "1", "--workers", "0,1"]
    args += ["--batch", "2", "--cache-samples", "8", "--no-compile", "--no-max-batch"]
    proc = subprocess.run(
        [sys.executable, "bench/gpu.py", *args, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = json.loads(out.read_text())["sizes"]
    assert row["size"] == 80 and row["batch"] == 2
    assert row["fp32_img_s"] > 0 and row["bf16_cl_img_s"] > 0
    assert set(row["idle_fraction"]) == {"0", "1"}
    assert all(0 <= v <= 1 for v in row["idle_fraction"].values())
