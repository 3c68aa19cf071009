"""Submit step: the Kaggle submission CSV.

python -m components.submit --predictions URI --thresholds URI --sample-submission URI --out URI
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from protloc import cli
from protloc.submission import run_submit


def main(argv: Sequence[str] | None = None):
    p = argparse.ArgumentParser(prog="python -m components.submit", description=__doc__)
    p.add_argument("--predictions", required=True)
    p.add_argument("--thresholds", required=True, help="thresholds.json")
    p.add_argument("--sample-submission", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    return run_submit(a.predictions, a.thresholds, a.sample_submission, a.out)


if __name__ == "__main__":
    sys.exit(cli.run(main))
