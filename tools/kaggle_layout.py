"""The real competition layout without its 17 GB of images: the real ``train.csv`` and
``sample_submission.csv`` of ``tests/data/hpa/``, and for each of their 42,774 samples four
channel files hard-linked to the real 512-px channel PNGs shipped there, each channel
from the files of that colour (so every file is a
real, decodable HPA image). What ``pipeline.py check-data`` is shown on where the download is
not at hand.

    python -m tools.kaggle_layout OUT
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import shutil
import sys
from pathlib import Path

from tests.conftest import HPA

CHANNELS = ("red", "green", "blue", "yellow")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tools.kaggle_layout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("out", type=Path, help="folder to create (replaced)")
    out = ap.parse_args(argv).out
    shutil.rmtree(out, ignore_errors=True)
    # Each channel's real files, copied once (then hard-linked: same file system, no space).
    (out / ".real").mkdir(parents=True)
    sources = {}
    for c in CHANNELS:
        files = sorted((HPA / "real_channels").glob(f"*_{c}.png"))
        sources[c] = itertools.cycle([shutil.copy(f, out / ".real") for f in files])
    for name, split in (("train.csv", "train"), ("sample_submission.csv", "test")):
        (out / split).mkdir(parents=True)
        shutil.copyfile(HPA / name, out / name)
        with open(HPA / name, newline="") as f:
            ids = [row["Id"] for row in csv.DictReader(f)]
        for sample_id in ids:
            for c in CHANNELS:
                os.link(next(sources[c]), out / split / f"{sample_id}_{c}.png")
        print(f"{split}/: {len(ids)} samples, {4 * len(ids)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
