"""Does a lever help? Finished runs of the same seeds, one arm per setting, against a baseline.

Each arm is a list of `pipeline.py local --root R` folders, one per seed (R/last_summary.json,
what the run printed). Per arm: the ensemble's 2-fold cross-fit macro F1 on the held-out rows
(the run's headline) as mean +- sd over the seeds, its paired difference from the first arm's
run of the same position (seed), in how many seeds it is ahead, and macro F1 at 0.5.

    .venv/bin/python -m bench.decisions.levers \\
        --arm "soft F1 (default)=runs/base_0,runs/base_1,runs/base_2" \\
        --arm "crop 1.25, jitter 0.1=runs/crop_0,runs/crop_1,runs/crop_2"

Result (docs/method.md, "Crops and pooling"; three seeds of the demo, 2 vCPUs, no GPU,
2026-12-03): defaults 0.1588 +- 0.0333; crop 1.25 with jitter 0.1 -0.0175 +- 0.0223 and pool
avgmax -0.0249 +- 0.0261 against them, each ahead in 1 of 3; on the same CPU, 2026-12-04
("Architectures"), efficientnet_b0 -0.0017 +- 0.0163 (1 of 3) and densenet121 +0.0368 +- 0.0417
(2 of 3). No default changed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

HEADLINE = "crossfit_macro_f1"
AT_HALF = "macro_f1_at_0.5"


def read_arm(folders: list[str]) -> dict[str, np.ndarray]:
    """The headline and the 0.5 figure of each run, in the order given."""
    rows = []
    for folder in folders:
        path = Path(folder) / "last_summary.json"
        try:
            ensemble = json.loads(path.read_text())["ensemble"]
        except (OSError, ValueError, KeyError) as exc:
            raise SystemExit(f"{path}: not a finished run's summary ({exc})") from None
        rows.append((ensemble[HEADLINE], ensemble[AT_HALF]))
    values = np.array(rows, dtype=np.float64)
    return {HEADLINE: values[:, 0], AT_HALF: values[:, 1]}


def compare(arms: dict[str, dict[str, np.ndarray]]) -> list[dict[str, object]]:
    """One row per arm: mean and sd of the headline, the paired difference from the first arm
    (mean, sd), seeds ahead of it, mean and sd at 0.5."""
    base = next(iter(arms.values()))[HEADLINE]
    out = []
    for name, arm in arms.items():
        if len(arm[HEADLINE]) != len(base):
            raise SystemExit(
                f"arm {name!r} has {len(arm[HEADLINE])} runs, the baseline {len(base)}"
            )
        diff = arm[HEADLINE] - base
        out.append(
            {
                "arm": name,
                "mean": arm[HEADLINE].mean(),
                "sd": arm[HEADLINE].std(ddof=1) if len(base) > 1 else 0.0,
                "diff": diff.mean(),
                "diff_sd": diff.std(ddof=1) if len(base) > 1 else 0.0,
                "ahead": int((diff > 0).sum()),
                "at_half": arm[AT_HALF].mean(),
                "at_half_sd": arm[AT_HALF].std(ddof=1) if len(base) > 1 else 0.0,
            }
        )
    return out


def table(rows: list[dict[str, object]], seeds: int) -> str:
    """The rows as the Markdown table docs/method.md shows."""
    lines = [
        "| arm | cross-fit macro F1 (mean +- sd) | minus the first arm, same seed | ahead in | "
        "macro F1 at 0.5 |",
        "|:---|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(rows):
        paired = "0" if i == 0 else f"{r['diff']:+.4f} +- {r['diff_sd']:.4f}"
        ahead = "-" if i == 0 else f"{r['ahead']} of {seeds}"
        lines.append(
            f"| {r['arm']} | {r['mean']:.4f} +- {r['sd']:.4f} | {paired} | {ahead} | "
            f"{r['at_half']:.4f} +- {r['at_half_sd']:.4f} |"
        )
    return "\n".join(lines)


def _arm(text: str) -> tuple[str, list[str]]:
    name, sep, folders = text.partition("=")
    if not sep or not name.strip() or not folders.strip():
        raise argparse.ArgumentTypeError(f"--arm must be NAME=FOLDER,FOLDER,..., got {text!r}")
    return name.strip(), [f.strip() for f in folders.split(",")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.decisions.levers", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--arm",
        type=_arm,
        action="append",
        required=True,
        help="NAME=FOLDER,FOLDER,...: one arm's runs, one per seed, in the same seed order for "
        "every arm; the first arm is the baseline",
    )
    args = parser.parse_args(argv)
    arms = {name: read_arm(folders) for name, folders in args.arm}
    seeds = len(next(iter(arms.values()))[HEADLINE])
    print(table(compare(arms), seeds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
