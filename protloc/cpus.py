"""How many CPUs this process may use, and every thread pool sized to that.

torch, OpenMP and BLAS size their pools from the machine's cores, not from what the process may
use: a pod limited to 8 CPUs on a 96-core node starts 96 threads, and two tasks of a kfp.local
run on one laptop each start one per core. The share here is the CPUs the process may run on
(its affinity), capped by the cgroup's CPU quota (a Kubernetes CPU limit), divided among the
processes that run on them at once: the ranks of a task on one node (``LOCAL_WORLD_SIZE``) and
the tasks a runner starts at once on one machine (``PROTLOC_TASKS_PER_MACHINE``, which
``pipeline.py local`` sets for the folds it runs in parallel).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

TASKS_ENV = "PROTLOC_TASKS_PER_MACHINE"
THREAD_ENVS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (v2 ``cpu.max`` or v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``); None when there is none."""
    try:
        text = (root / "cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def _positive(name: str) -> int:
    text = os.environ.get(name, "1").strip() or "1"
    try:
        value = int(text)
    except ValueError:
        from protloc.errors import ConfigError

        raise ConfigError(f"{name} must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        from protloc.errors import ConfigError

        raise ConfigError(f"{name} must be a whole number >= 1, got {text!r}")
    return value


def cpu_share(root: Path = Path("/sys/fs/cgroup")) -> int:
    """The CPUs one process may use: affinity capped by the cgroup quota, divided among the
    ranks on this node and the tasks on this machine (at least 1)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quota = cgroup_quota(root)
    if quota is not None:
        cpus = min(cpus or 1, max(1, math.ceil(quota)))
    sharers = _positive("LOCAL_WORLD_SIZE") * _positive(TASKS_ENV)
    return max(1, (cpus or 1) // sharers)


def limit_threads(threads: int | None = None) -> int:
    """Size torch's intra- and inter-op pools, OpenMP and BLAS to ``threads`` (default: this
    process's :func:`cpu_share`); the environment tells libraries not loaded yet and the
    processes this one starts. Returns the number."""
    n = threads or cpu_share()
    for name in THREAD_ENVS:
        os.environ[name] = str(n)
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(n)
        # torch allows one inter-op setting, before inter-op work starts: later, it keeps its size
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(n)
    from threadpoolctl import threadpool_limits  # scikit-learn's dependency: always there

    threadpool_limits(n)
    return n


def compute_threads(workers: int) -> int:
    """Threads for CPU-bound work (decoding, resizing, compressing) given a ``workers``
    setting: no more than this process's share of the CPUs, at least 1."""
    return max(1, min(workers, cpu_share()))
