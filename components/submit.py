"""Submit step: the Kaggle submission CSV for {data_root}/sample_submission.csv's ids.

python -m components.submit --help lists every flag; they are derived, like the KFP component's
inputs, from protloc.config and protloc.steps.
"""

import sys

from components.factory import kfp_component as _kfp_component
from protloc import cli

main = cli.step_main("submit")


def kfp_component(image: str):
    """The submit step as a KFP component on ``image``."""
    return _kfp_component("submit", image)


if __name__ == "__main__":
    sys.exit(cli.run(main))
