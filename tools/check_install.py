"""A plain install runs the pipeline commands: a fresh venv, ``pip install .`` (no extras), then
``compile``, ``submit`` (to a stand-in KFP API on 127.0.0.1) and, with torch added, a tiny
``local`` run with kfp.local's SubprocessRunner. What a user who skips the Makefile meets.

    python -m tools.check_install [--venv build/plain-venv] [--torch "torch==2.14.1 ..."]

Run from the repository root (`make check-install`; CI runs it). Exits non-zero at the first
command that fails, with its output.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("$", shlex.join(cmd), flush=True)
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True, check=False, **kwargs)
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
    print("\n".join(f"  {line}" for line in tail), f"\n  ({time.monotonic() - start:.0f} s)")
    if proc.returncode != 0:
        print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")
        raise SystemExit(f"failed ({proc.returncode}): {shlex.join(cmd)}")
    return proc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tools.check_install",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--venv", default="build/plain-venv", help="the venv to create (replaced)")
    ap.add_argument(
        "--torch",
        default="torch==2.14.1 torchvision==0.29.1",
        help="what `pip install` adds for the local run",
    )
    args = ap.parse_args(argv)
    venv = ROOT / args.venv
    work = venv.parent / "plain-run"
    shutil.rmtree(venv, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    run([sys.executable, "-m", "venv", str(venv)])
    py = str(venv / "bin" / "python")
    run([py, "-m", "pip", "install", "--quiet", "."])
    run([py, "pipeline.py", "compile", "-o", str(work / "pipeline.yaml")])
    # submit, against the stand-in KFP API of the tests (run by the dev venv's interpreter)
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_kfp"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        url = fake.stdout.readline().strip()
        out = run(
            [
                py,
                "pipeline.py",
                "submit",
                "--host",
                url,
                "--data-root",
                "s3://data/hpa",
                "--no-cache",
            ]
        )
        assert "started run" in out.stdout, out.stdout
    finally:
        fake.kill()
        fake.wait()
    run([py, "pipeline.py", "local", "--help"])
    run([py, "-m", "pip", "install", "--quiet", *args.torch.split()])
    data = work / "data"
    run(
        [
            py,
            "-m",
            "protloc.synthetic",
            "--out",
            str(data),
            "--n-train",
            "40",
            "--n-test",
            "6",
            "--size",
            "96",
            "--seed",
            "1",
            "--temper",
            "0.8",
        ]
    )
    out = run(
        [
            py,
            "pipeline.py",
            "local",
            "--data-root",
            str(data),
            "--root",
            str(work / "root"),
            "--schedule",
            "80:8:1",
            "--rare-below",
            "0",
            "--tta",
            "1",
            "--workers",
            "0",
        ]
    )
    assert "submission" in out.stdout, out.stdout
    print("a plain install compiles, submits and runs locally")
    return 0


if __name__ == "__main__":
    sys.exit(main())
