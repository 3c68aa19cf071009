"""Run a command while other processes keep every core busy: how the suite is shown to pass on
a loaded machine (a developer's, where CI runs).

    python -m tools.busy [--hogs N] -- make test

Starts N (default: the CPUs this process may use) processes that spin at full speed, runs the
command, stops them, and exits with the command's status.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time


def _spin() -> None:
    x = 0
    while True:
        x = (x * 1103515245 + 12345) % 2**31


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.busy", description=__doc__)
    ap.add_argument("--hogs", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("give the command to run after --")
    hogs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.hogs)]
    for h in hogs:
        h.start()
    t0 = time.perf_counter()
    try:
        rc = subprocess.call(command)
    finally:
        for h in hogs:
            h.terminate()
    print(
        f"tools.busy: {' '.join(command)} exited {rc} after {time.perf_counter() - t0:.0f} s "
        f"with {args.hogs} busy process(es) beside it",
        file=sys.stderr,
    )
    return rc


if __name__ == "__main__":
    sys.exit(main())
