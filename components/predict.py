"""Predict: a model bundle applied to a folder of RGBY images (any size; PNG, JPEG or TIFF;
local or s3://): predictions.parquet (probabilities) and labels.csv (class indices and names).

    python -m components.predict --model URI --images URI [--ids CSV] --out URI

--help lists every flag; they are derived, like the KFP component's inputs, from
protloc.config and protloc.steps.
"""

import sys

from components.factory import kfp_component as _kfp_component
from protloc import cli

main = cli.step_main("predict")


def kfp_component(image: str):
    """The predict step as a KFP component on ``image`` (a step of a pipeline of your own)."""
    return _kfp_component("predict", image)


if __name__ == "__main__":
    sys.exit(cli.run(main))
