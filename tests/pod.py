"""What a KFP train pod runs (the body of the train component: ``components.task.run_task``
with the task's arguments), as a script the reliability tests can kill:
``python -m tests.pod SPLIT_DIR DATA_ROOT OUT OUT_URI``.

Each run is a fresh pod: its own empty local ``OUT`` folder (the artifact's ``.path``) and image
cache; ``OUT_URI`` is the artifact's ``.uri`` on S3, the same for every retry of the task, as
KFP gives it. No work root is set: the default (a work/ folder beside the artifact) is what
survives between attempts.
"""

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from components.task import run_task
from protloc import process
from protloc.config import TrainConfig
from protloc.version import code_version
from tests.conftest import TEST_ARCH

CONFIG = {"size": 80, "batch_size": 8, "epochs": 3, "workers": 0, "log_every": 1}
CONFIG["arch"] = TEST_ARCH


@dataclass
class Artifact:
    """What KFP hands a component for an artifact: its local path and its URI."""

    path: str
    uri: str
    metadata: dict = field(default_factory=dict)

    def log_metric(self, name: str, value: float) -> None:  # as kfp.dsl.Metrics does
        self.metadata[name] = value


def main(argv: Sequence[str] | None) -> None:
    split_dir, data_root, out, out_uri = argv if argv is not None else sys.argv[1:]
    defaults = TrainConfig(**CONFIG).to_dict()
    args = {
        **defaults,
        "split": Artifact(split_dir, split_dir),
        "previous": None,
        "store": None,
        "data_root": data_root,
        "code_version": code_version(),
        "out": Artifact(out, out_uri),
        "metrics": Artifact(f"{out}.metrics.json", ""),
        "page": Artifact(f"{out}.page.html", ""),
    }
    run_task("train", args)


if __name__ == "__main__":
    sys.exit(process.run(main, sys.argv[1:]))
