"""Train step: one SGDR cycle at one image size, warm-started from --previous.

Run it again with the same arguments after an interruption: it resumes from the last completed
epoch; on a finished cycle it does nothing. Under torchrun it trains on every GPU of the node.

python -m components.train --help lists every flag; they are derived, like the KFP component's
inputs, from protloc.config and protloc.steps.
"""

import sys

from components.factory import kfp_component as _kfp_component
from protloc import cli

main = cli.step_main("train")


def kfp_component(image: str):
    """The train step as a KFP component on ``image``."""
    return _kfp_component("train", image)


if __name__ == "__main__":
    sys.exit(cli.run(main))
