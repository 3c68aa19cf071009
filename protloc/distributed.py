"""Process-group helpers: N ranks on one node (torchrun, or :func:`launch` from a step's front
door with ``gpus`` N), one process otherwise.

Only one node: at HPA scale (31,072 images, ~105,000 with HPAv18) a full Table-1 schedule is
hours on one 8-GPU node (docs/benchmarks.md), so multi-node training is out of scope; a larger data
set would launch its train tasks as a Kubeflow Trainer (PyTorchJob) from a KFP task.
"""

from __future__ import annotations

import logging
import math
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

import torch

log = logging.getLogger(__name__)

# Ranks wait at a barrier while local rank 0 builds the node's image cache: at 512 px that is
# ~33 GB of decoding (~105,000 samples at ~12 ms per sample and core, 8 cores: ~3 min, far more
# from slow object storage). NCCL's default of 10 min would cut it off.
TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class Dist:
    """This process's place in the group."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one process that logs progress and writes files."""
        return self.rank == 0


def init_distributed() -> Dist:
    """Join the process group torchrun describes in the environment (NCCL on CUDA, else gloo)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", timeout=TIMEOUT)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank)


def barrier(d: Dist) -> None:
    """Wait for every rank (no-op for one process)."""
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()


def teardown(d: Dist) -> None:
    """Leave the process group; without it gloo can keep the processes from exiting."""
    if d.world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()


def device_for(d: Dist) -> torch.device:
    """This rank's GPU, or the CPU."""
    return (
        torch.device(f"cuda:{d.local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    )


def launch(fn: Callable[..., Any], nprocs: int, *args: Any) -> Any:
    """Run ``fn(*args)`` in ``nprocs`` ranks on this node, as ``torchrun --standalone`` would
    (torch's elastic agent, c10d rendezvous on localhost, no restarts); returns rank 0's result.

    A rank's failure ends them all and is raised here. ``fn`` and ``args`` must pickle.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from protloc.errors import ProtlocError

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nprocs,
        run_id=uuid.uuid4().hex,
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.5,
    )
    log.info("launching %d ranks on this node", nprocs)
    # The agent logs a failed rank's whole traceback; the rank already logged its error line.
    agent_log = logging.getLogger("torch.distributed.elastic")
    level = agent_log.level
    agent_log.setLevel(logging.CRITICAL)
    try:
        results = elastic_launch(config, _call_rank)(fn, args)
    except ChildFailedError as exc:
        # The ranks logged their own error; a protloc error keeps its one line.
        first = exc.get_first_failure()[1]
        message = str(first.message.get("message", first.message)).strip().splitlines()
        text = message[-1] if message else f"rank {first.local_rank} failed"
        for cls in (ProtlocError, *ProtlocError.__subclasses__()):
            if text.startswith(f"{cls.__name__}: "):
                raise cls(text.split(": ", 1)[1]) from None
        raise ProtlocError(f"one of {nprocs} ranks failed: {text}") from None
    finally:
        agent_log.setLevel(level)
    return results[0]


def _call_rank(fn: Callable[..., Any], args: tuple) -> Any:
    """What each launched rank runs (module level, so it pickles to the spawned process); an
    exception is recorded for the agent (its type and message reach :func:`launch`)."""
    from torch.distributed.elastic.multiprocessing.errors import record

    from protloc.process import is_main, start

    start()  # the ranks of this node share its CPUs (LOCAL_WORLD_SIZE)
    result = record(fn)(*args)
    return result if is_main() else None


def launches(gpus: int) -> bool:
    """True where a step's front door must start ``gpus`` ranks of itself (it is not already
    one of them); refuses more ranks than the node has GPUs."""
    if gpus == 1 or "WORLD_SIZE" in os.environ:
        return False
    check_devices(gpus)
    return True


def in_ranks(front_door: Callable[..., Any], cfg: Any, **kwargs: Any) -> Any:
    """``front_door(cfg, **kwargs)`` in ``cfg.gpus`` ranks; rank 0's result."""
    return launch(partial(front_door, cfg, **kwargs), cfg.gpus)


def check_devices(n: int) -> None:
    """Refuse more ranks than the node has GPUs (on a machine without GPUs, gloo ranks share
    the CPU: that is for tests and laptops)."""
    if torch.cuda.is_available() and torch.cuda.device_count() < n:
        from protloc.errors import ConfigError

        raise ConfigError(f"gpus {n}: this node has {torch.cuda.device_count()} GPU(s)")


def node_first(d: Dist, build: Callable[[], Any]) -> Any:
    """``build()`` once per node: local rank 0 first while the others wait at a barrier, then
    the others (whose ``build`` finds the result, e.g. a cache hit)."""
    if d.world == 1:
        return build()
    result = build() if d.local_rank == 0 else None
    barrier(d)
    return result if d.local_rank == 0 else build()


def lr_scale(rule: str, world: int) -> float:
    """The learning-rate factor for ``world`` ranks: N (linear), sqrt(N) (sqrt) or 1 (none)."""
    return {"none": 1.0, "linear": float(world), "sqrt": math.sqrt(world)}[rule]


def check_in_sync(d: Dist, model: torch.nn.Module) -> float:
    """Every rank's weights must be identical (DDP keeps them so): compare a checksum of the
    parameters across ranks and refuse to go on if they differ; returns the checksum."""
    with torch.no_grad():
        total = sum(float(p.double().sum()) for p in model.parameters())
    if d.world == 1:
        return total
    import torch.distributed as dist

    sums: list[Any] = [None] * d.world
    dist.all_gather_object(sums, total)
    if max(sums) - min(sums) > 1e-9 * max(1.0, abs(total)):
        from protloc.errors import ProtlocError

        raise ProtlocError(f"the ranks' weights diverged: checksums {sums}")
    return total
