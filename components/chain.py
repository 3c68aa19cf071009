# Written by hand (no KFP component: the DAG wires these steps itself).
"""chain: the schedule-shaped middle of the DAG as one command, for docker compose.

``python -m components.chain --data-root URI --split DIR --run PREFIX --schedule NAME|S:B:E,...
[--folds F] [-- FLAG ...]`` runs, each step as its own process (as the DAG's tasks): prepare (the
store at every size of the schedule), then for each fold every train cycle warm-started from the
last and its infer task, then collect when F >= 2. The final predictions land in
``PREFIX/predictions`` (what thresholds, submit and bundle read), each step's folder beside it
(``PREFIX/prepare``, ``PREFIX/fold0/train-1``, ...). Flags after ``--`` go to the prepare,
train and infer tasks that take them (e.g. ``-- --workers 2 --tta 4``); one none takes is
refused. A step whose folder is complete is
run again: its result is the same for the same inputs.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from collections.abc import Sequence

from protloc import process, storage
from protloc.config import SplitConfig
from protloc.errors import ConfigError
from protloc.steps import STEPS, extra_sizes
from protloc.train.schedule import SCHEDULES, format_schedule, schedule_from

log = logging.getLogger("protloc.chain")


def _flags(step: str) -> set[str]:
    """The setting flags of ``step``'s command line (a boolean's ``--no-`` form too)."""
    params = STEPS[step].config.params()
    return {p.flag for p in params} | {"--no-" + p.flag[2:] for p in params if p.type is bool}


def check_extra(extra: list[str]) -> None:
    """Refuse a flag after ``--`` that neither prepare, train nor infer takes (a typo would
    otherwise reach no step)."""
    known = _flags("prepare") | _flags("train") | _flags("infer")
    unknown = [f for f in extra if f.startswith("--") and f.split("=", 1)[0] not in known]
    if unknown:
        raise ConfigError(f"no prepare, train or infer setting is called {', '.join(unknown)}")


def _accepts(step: str, extra: list[str]) -> list[str]:
    """The ``--flag value`` pairs of ``extra`` that ``step``'s command line takes."""
    names = _flags(step)
    out, i = [], 0
    while i < len(extra):
        flag = extra[i]
        takes_value = i + 1 < len(extra) and not extra[i + 1].startswith("--")
        if flag.split("=", 1)[0] in names:
            out += extra[i : i + 2] if takes_value else [flag]
        i += 2 if takes_value else 1
    return out


def _run(step: str, args: list[str]) -> None:
    cmd = [sys.executable, "-m", f"components.{step}", *args]
    log.info("%s: %s", step, " ".join(args))
    if subprocess.run(cmd, check=False).returncode != 0:
        raise ConfigError(f"the {step} step failed (its error is above): {' '.join(args)}")


def chain(data_root: str, split: str, run: str, schedule: str, folds: int, extra: list[str]) -> str:
    """Prepare, the cycles and infer of every fold, collect; returns the predictions folder."""
    cycles = schedule_from(schedule)
    log.info("schedule %s, %d fold(s), under %s", format_schedule(cycles), folds, run)
    common = ["--data-root", data_root, "--split", split]
    store = storage.join(run, "prepare")
    sizes = [c.size for c in cycles]
    _run("prepare", [*common, "--out", store, "--store-size", str(max(sizes)),
                     "--extra-sizes", extra_sizes(sizes), *_accepts("prepare", extra)])  # fmt: skip
    final = storage.join(run, "predictions")
    per_fold = []
    for fold in range(folds) if folds > 1 else [-1]:
        where = storage.join(run, f"fold{fold}") if folds > 1 else run
        previous: list[str] = []
        for i, c in enumerate(cycles):
            out = storage.join(where, f"train-{i + 1}")
            _run("train", [*common, "--store", store, "--out", out, "--cycle", str(i),
                           "--fold", str(fold), "--size", str(c.size), "--batch-size",
                           str(c.batch_size), "--epochs", str(c.epochs), *previous,
                           *_accepts("train", extra)])  # fmt: skip
            previous = ["--previous", out]
        infer = final if folds == 1 else storage.join(where, "infer")
        _run("infer", [*common, "--store", store, "--last-cycle", previous[1], "--out", infer,
                       "--fold", str(fold), *_accepts("infer", extra)])  # fmt: skip
        per_fold.append(infer)
    if folds > 1:
        _run("collect", ["--split", split, "--predictions", *per_fold, "--out", final])
    return final


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m components.chain",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data-root", required=True, metavar="URI", help="the data root")
    p.add_argument("--split", required=True, metavar="DIR", help="the split step's output")
    p.add_argument("--run", required=True, metavar="PREFIX", help="folder or URI of the run")
    names = "; ".join(f"{k}: {v}" for k, v in SCHEDULES.items())
    p.add_argument("--schedule", required=True, help=f"a name ({names}) or size:batch:epochs,...")
    p.add_argument("--folds", type=int, default=1, help="1: the holdout; F >= 2: F chains")
    p.add_argument("extra", nargs="*", help="-- then flags for the train and infer tasks")
    args = p.parse_args(argv)
    SplitConfig(folds=args.folds)  # refuses a bad --folds, naming it
    check_extra(args.extra)
    final = chain(args.data_root, args.split, args.run, args.schedule, args.folds, args.extra)
    sys.stdout.write(final + "\n")  # the predictions folder, for a script to read


if __name__ == "__main__":
    sys.exit(process.run(main))
