"""Split step: {data_root}/train.csv -> manifest.parquet, stats.json and two plots.

python -m components.split --help lists every flag; they are derived, like the KFP component's
inputs, from protloc.config and protloc.steps.
"""

import sys

from components.factory import kfp_component as _kfp_component
from protloc import cli

main = cli.step_main("split")


def kfp_component(image: str):
    """The split step as a KFP component on ``image``."""
    return _kfp_component("split", image)


if __name__ == "__main__":
    sys.exit(cli.run(main))
