"""A local run's summary: per-cycle and ensemble F1, step times, where the files are.

Read from the step folders a finished run left (``metrics.json``, ``thresholds.json``,
``timing.json``); ``pipeline.py local`` prints it and writes it to ``last_summary.json``.
"""

from __future__ import annotations

import json
from pathlib import Path


def summarize(outputs: dict[str, Path], new_runs: list[Path], wall: float) -> dict:
    """Per-cycle and ensemble F1, where the files are, which steps ran and for how long."""
    snapshots = json.loads((outputs["last_cycle"] / "snapshots.json").read_text())["snapshots"]
    cycles = []
    for uri in snapshots:
        folder = Path(uri).parent
        metrics = json.loads((folder / "metrics.json").read_text())
        cycles.append(
            {
                "cycle": metrics["cycle"] + 1,
                "size": metrics["size"],
                "epochs": metrics["epochs"],
                "val_macro_f1_at_0.5": metrics["val"]["macro_f1_at_0.5"],
                "folder": str(folder),
            }
        )
    thr = json.loads((outputs["thresholds"] / "thresholds.json").read_text())
    folders = {
        "split": outputs["split"],
        **{f"train cycle {c['cycle']}": Path(c["folder"]) for c in cycles},
        "infer": outputs["predictions"],
        "thresholds": outputs["thresholds"],
        "submit": outputs["submission"],
    }
    steps = []
    for name, folder in folders.items():
        timing = json.loads((folder / "timing.json").read_text())
        ran = any(str(folder).startswith(str(run)) for run in new_runs)
        steps.append(
            {
                "step": name,
                "seconds": timing["seconds"],
                "ran": ran,
                "code_version": timing["code_version"],
            }
        )
    return {
        "cycles": cycles,
        "ensemble": {
            "macro_f1_at_0.5": thr["macro_f1_at_0.5"],
            "macro_f1_at_thresholds": thr["macro_f1"],
            "alpha": thr["alpha"],
            "crossfit_macro_f1": thr["comparison"]["per_class_alpha"]["crossfit"],
        },
        "steps": steps,
        "wall_seconds": round(wall, 1),
        "submission": str(outputs["submission"] / "submission.csv"),
        "plots": [
            str(p) for key in ("split", "thresholds") for p in sorted(outputs[key].glob("*.png"))
        ],
    }


def format_summary(s: dict) -> str:
    """The table `make demo` prints: per-cycle and ensemble F1, step times, where files are."""
    out = [
        "",
        "protloc run summary",
        "",
        f"{'cycle':>5} {'size':>5} {'epochs':>6}  val macro F1 at 0.5",
    ]
    out += [
        f"{c['cycle']:>5} {c['size']:>5} {c['epochs']:>6}  {c['val_macro_f1_at_0.5']:.4f}"
        for c in s["cycles"]
    ]
    e = s["ensemble"]
    out += [
        f"ensemble of {len(s['cycles'])} snapshots: macro F1 {e['macro_f1_at_0.5']:.4f} at 0.5, "
        f"{e['macro_f1_at_thresholds']:.4f} at fitted thresholds (alpha {e['alpha']:g}; "
        f"2-fold cross-fit {e['crossfit_macro_f1']:.4f})",
        "",
        f"{'step':<16} {'seconds':>8}  ",
    ]
    out += [
        f"{st['step']:<16} {st['seconds']:>8.1f}  {'ran' if st['ran'] else 'served from cache'}"
        for st in s["steps"]
    ]
    out += [
        f"pipeline wall time {s['wall_seconds']:.1f} s",
        "",
        f"submission: {s['submission']}",
        "plots:",
    ]
    out += [f"  {p}" for p in s["plots"]]
    return "\n".join(out)
