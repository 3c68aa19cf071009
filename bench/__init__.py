"""protloc's benchmarks, run as modules from the repository root (figures in docs/benchmarks.md).

- ``bench.speed``: every performance case against its yardstick; ``make bench`` runs them all
  in one table (``python -m bench.speed.run``).
- ``bench.decisions``: the experiments that chose defaults (gradient clipping, the loss and
  learning rate, the resampling rule, the thresholds' alpha, out-of-fold thresholds).
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository root (tests/data lives under it)
