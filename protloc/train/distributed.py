"""Process-group helpers for training under torchrun (WORLD_SIZE > 1); one process otherwise."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


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
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
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
