"""What a KFP train pod runs (the body of components/train.py's component), as a script the
reliability tests can kill: ``python -m tests.pod SPLIT_DIR DATA_ROOT OUT WORK_ROOT``.

Each run is a fresh pod: its own empty ``OUT`` folder and image cache; only ``WORK_ROOT``
(durable storage, s3:// in the tests) survives between attempts.
"""

import sys
from collections.abc import Sequence

from protloc import cli
from protloc.config import TrainConfig
from protloc.steps import train_step

CONFIG = {"size": 80, "batch_size": 8, "epochs": 3, "workers": 0, "log_every": 1}


def main(argv: Sequence[str] | None) -> None:
    split_dir, data_root, out, work_root = argv if argv is not None else sys.argv[1:]
    train_step(split_dir, data_root, out, out, TrainConfig(**CONFIG), "test", None, work_root)


if __name__ == "__main__":
    sys.exit(cli.run(main, sys.argv[1:]))
