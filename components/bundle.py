"""Bundle step: the model bundle (the chosen snapshots, thresholds, normalisation, TTA, class names).

python -m components.bundle --help lists every flag; they are derived, like the KFP component's
inputs, from protloc.config and protloc.steps.
"""

import sys

from components.factory import kfp_component as _kfp_component
from protloc import cli

main = cli.step_main("bundle")


def kfp_component(image: str):
    """The bundle step as a KFP component on ``image``."""
    return _kfp_component("bundle", image)


if __name__ == "__main__":
    sys.exit(cli.run(main))
