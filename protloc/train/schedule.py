"""The progressive-resizing SGDR schedule: data the pipeline reads at compile time (no torch).

Each cycle is one cosine-annealing run (lr_max -> lr_min) at one image size, warm-started from
the previous cycle; every cycle's final weights are a snapshot of the ensemble.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from protloc.errors import ConfigError

# The paper's Table 1: (image size, batch size on an 11 GB GPU).
PAPER_TABLE_1: tuple[tuple[int, int], ...] = (
    (221, 48),
    (256, 36),
    (296, 27),
    (320, 20),
    (384, 15),
    (440, 11),
    (512, 8),
)
# The paper does not give epochs per cycle; 6 is our default (see README: projected wall time).
DEFAULT_EPOCHS_PER_CYCLE = 6


@dataclass(frozen=True)
class Cycle:
    """One SGDR cycle: image size, batch size, epochs."""

    size: int
    batch_size: int
    epochs: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def paper_schedule(epochs: int = DEFAULT_EPOCHS_PER_CYCLE) -> list[Cycle]:
    """Table 1 of the paper as cycles of ``epochs`` epochs each."""
    return [Cycle(size, batch, epochs) for size, batch in PAPER_TABLE_1]


# Schedules by name (``--schedule NAME``): the paper's Table 1, and the demo's short one that
# trains the synthetic demo data in minutes on a laptop's CPU.
SCHEDULES: dict[str, str] = {
    "paper": ",".join(f"{s}:{b}:{DEFAULT_EPOCHS_PER_CYCLE}" for s, b in PAPER_TABLE_1),
    "demo": "96:16:5,128:16:2,160:16:1",
}


def schedule_from(text: str) -> list[Cycle]:
    """A schedule by name (:data:`SCHEDULES`) or written out as size:batch:epochs,..."""
    return parse_schedule(SCHEDULES.get(text.strip(), text))


def parse_schedule(text: str) -> list[Cycle]:
    """'96:16:2,128:16:1' (size:batch:epochs, comma-separated) -> validated cycles."""
    cycles = []
    for i, part in enumerate(p for p in text.replace(" ", "").split(",") if p):
        fields = part.split(":")
        if len(fields) != 3 or not all(f.lstrip("-").isdigit() for f in fields):
            raise ConfigError(
                f"schedule entry {i + 1} {part!r} is not size:batch:epochs (or give a "
                f"schedule's name: {', '.join(SCHEDULES)})"
            )
        cycles.append(Cycle(*map(int, fields)))
    validate_schedule(cycles)
    return cycles


def format_schedule(cycles: list[Cycle]) -> str:
    """Inverse of parse_schedule."""
    return ",".join(f"{c.size}:{c.batch_size}:{c.epochs}" for c in cycles)


def validate_schedule(cycles: list[Cycle]) -> None:
    """Every cycle a valid TrainConfig (size, batch, epochs), sizes strictly increasing."""
    from protloc.config import TrainConfig

    if not cycles:
        raise ConfigError("schedule is empty: give at least one size:batch:epochs cycle")
    for i, c in enumerate(cycles, start=1):
        try:
            TrainConfig(size=c.size, batch_size=c.batch_size, epochs=c.epochs, cycle=i - 1)
        except ConfigError as exc:
            raise ConfigError(f"schedule cycle {i}: {exc}") from None
    for i in range(1, len(cycles)):
        if cycles[i].size <= cycles[i - 1].size:
            raise ConfigError(
                f"schedule sizes must increase: cycle {i + 1} size {cycles[i].size} "
                f"after {cycles[i - 1].size}"
            )


def cosine_lr(step: int, total_steps: int, lr_max: float, lr_min: float) -> float:
    """Cosine annealing within one cycle: lr_max at step 0, lr_min at step total_steps - 1."""
    if total_steps <= 1:
        return lr_max
    t = min(max(step, 0), total_steps - 1) / (total_steps - 1)
    return lr_min + 0.5 * (lr_max - lr_min) * (1.0 + math.cos(math.pi * t))
