# Written by hand (it has no step config): the DAG's first task, never cached.
"""fingerprint: the run's data fingerprint, and the check that the images run this code.

``fingerprint`` below is the KFP component (``components.component("fingerprint", image)``);
``python -m components.fingerprint --data-root URI`` prints the same fingerprint. It runs in the
GPU image on a CPU node, so an image of other code stops the run here, once, before any GPU pod
starts; every data-reading task takes its output, so KFP's cache misses when the data changed,
for runs from ``submit``, from a YAML uploaded in the UI and from ``local`` alike.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from protloc import process


def fingerprint(data_root: str, external: str, pretrained: str, code_version: str) -> str:
    """The data fingerprint of the data root, the external roots and the pretrained weights.

    Args:
        data_root: data root: train.csv, sample_submission.csv, train/ and test/ images (a local folder, s3://, gs:// or az://).
        external: the split's external data roots, comma-separated (empty: none).
        pretrained: the train step's pretrained weights (empty: none).
        code_version: protloc code version the pipeline was compiled for (package version + source hash); the task refuses to run other code

    Returns:
        the fingerprint: labels, test ids and image listings (+ external, + weights' SHA-256)
    """
    from components.task import run_fingerprint

    return run_fingerprint(dict(locals()))


def main(argv: Sequence[str] | None = None) -> None:
    from protloc.steps.data import fingerprint_step

    p = argparse.ArgumentParser(prog="python -m components.fingerprint", description=__doc__)
    p.add_argument("--data-root", required=True, metavar="URI", help="the data root")
    p.add_argument("--external", default="", help="external data roots, comma-separated")
    p.add_argument("--pretrained", default="", metavar="URI", help="pretrained weights")
    args = p.parse_args(argv)
    found = fingerprint_step(
        data_root=args.data_root, external=args.external, pretrained=args.pretrained
    )
    print(found)  # noqa: T201 - the command's output


if __name__ == "__main__":
    sys.exit(process.run(main))
