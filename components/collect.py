"""Collect step (K-fold runs): the folds' predictions as one predictions folder.

python -m components.collect --help lists every flag; they are derived, like the KFP component's
inputs, from protloc.config and protloc.steps.
"""

import sys

from components.factory import kfp_component as _kfp_component
from protloc import cli

main = cli.step_main("collect")


def kfp_component(image: str):
    """The collect step as a KFP component on ``image``."""
    return _kfp_component("collect", image)


if __name__ == "__main__":
    sys.exit(cli.run(main))
