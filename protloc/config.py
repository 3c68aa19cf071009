"""The train step's settings (no torch: the pipeline reads the defaults at compile time)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from protloc.errors import ConfigError
from protloc.schedule import MIN_SIZE

LOSSES = ("soft_f1", "bce")
NORM_TYPES = {"l2": 2.0, "l1": 1.0, "inf": math.inf}
# Fields that do not change the result: a rerun may change them and still resume.
_OPERATIONAL = {"workers", "cache_dir", "log_every", "skip_bad"}


@dataclass(frozen=True)
class TrainConfig:
    """One cycle's settings (stored, resolved, in every checkpoint)."""

    size: int
    batch_size: int
    epochs: int
    cycle: int = 0
    lr_max: float = 0.2  # measured: bench/learnability.py, soft F1 (see bench/README.md)
    lr_min: float = 0.0005
    momentum: float = 0.9
    weight_decay: float = 1e-4
    clip_norm: float = 10.0
    clip_norm_type: str = "l2"
    loss: str = "soft_f1"
    seed: int = 0
    dropout: float = 0.5
    jitter: float = 0.1
    init: str | None = None
    pretrained: str | None = None
    workers: int = 2
    cache_dir: str | None = None
    log_every: int = 20
    skip_bad: bool = False

    def validate(self) -> None:
        """Raise ConfigError naming the first bad parameter."""
        if self.size < MIN_SIZE:
            raise ConfigError(
                f"size {self.size} px is under Inception-v3's minimum of {MIN_SIZE} px"
            )
        for name in ("batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr_max > 0 or not 0 <= self.lr_min <= self.lr_max:
            raise ConfigError(
                f"need 0 <= lr_min <= lr_max and lr_max > 0, got lr_max={self.lr_max}, lr_min={self.lr_min}"
            )
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.clip_norm < 0:
            raise ConfigError(f"clip_norm must be >= 0 (0 = off), got {self.clip_norm}")
        if self.clip_norm_type not in NORM_TYPES:
            raise ConfigError(
                f"clip_norm_type must be one of {', '.join(NORM_TYPES)}, got {self.clip_norm_type!r}"
            )
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if not 0 <= self.jitter < 1:
            raise ConfigError(f"jitter must be in [0, 1), got {self.jitter}")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")

    def result_fields(self) -> dict[str, Any]:
        """The fields that determine the result (compared when resuming)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _OPERATIONAL}
