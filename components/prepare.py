"""Prepare step: every sample of --split's manifest and every test id decoded once into a store
of uint8 shards (--out), which train and infer read with --store instead of decoding PNGs.

python -m components.prepare --help lists every flag; they are derived, like the KFP
component's inputs, from protloc.config and protloc.steps.
"""

import sys

from components.factory import kfp_component as _kfp_component
from protloc import cli

main = cli.step_main("prepare")


def kfp_component(image: str):
    """The prepare step as a KFP component on ``image``."""
    return _kfp_component("prepare", image)


if __name__ == "__main__":
    sys.exit(cli.run(main))
