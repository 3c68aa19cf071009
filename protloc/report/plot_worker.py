"""Render figures in a second process, so a step's matplotlib import and drawing (about 1.5 s
cold) overlap with its own reading and computing. The thresholds step uses it to stay under 2 s.

A plain ``python -c`` child reading pickled jobs on stdin (not multiprocessing's spawn, which
would re-import the parent's main module first; not fork, the parent may hold BLAS threads).
This module imports nothing heavy; only the child imports matplotlib (protloc.report.plots).
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from typing import Any

from protloc.errors import ArtifactError

_CHILD = "from protloc.report.plot_worker import serve; serve()"


class BackgroundPlots:
    """Start the helper now; ``render`` queues a figure; ``close`` waits and raises on failure.
    As a context manager it stops the helper if the step fails before ``close``."""

    def __init__(self) -> None:
        self._jobs: list[tuple[str, str, tuple]] = []
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def __enter__(self) -> BackgroundPlots:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and self._proc.poll() is None:  # the step failed: no figures
            self._proc.kill()
            self._proc.communicate()

    def render(self, figure: str, uri: str, *args: Any) -> None:
        """Write ``protloc.report.plots.<figure>(*args)`` to ``uri``."""
        self._jobs.append((figure, uri, args))

    def close(self) -> None:
        out, err = self._proc.communicate(pickle.dumps(self._jobs))
        if self._proc.returncode != 0 or out.strip() != b"ok":
            detail = (out + err).decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise ArtifactError(f"could not write the figures: {detail[0]}")


def serve() -> None:
    """The child: import matplotlib and warm up while the parent computes, then draw."""
    from protloc import storage
    from protloc.report import plots

    plots.warm_up()
    jobs = pickle.loads(sys.stdin.buffer.read())
    for figure, uri, args in jobs:
        storage.write_bytes(uri, getattr(plots, figure)(*args))
    sys.stdout.write("ok\n")
