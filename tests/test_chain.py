"""`python -m components.chain`: compose's one command for the schedule-shaped middle of the
DAG (prepare, every fold's cycles and infer, collect), each step its own process."""

from __future__ import annotations

import pytest

from components import chain as chain_cli
from protloc.data.manifest import read_manifest
from protloc.evaluate.predictions import read_predictions, select
from protloc.folders import require_complete
from tests.conftest import one_line_error, run_python


def test_extra_flags_reach_the_steps_that_take_them():
    extra = ["--workers", "2", "--tta", "4", "--skip-bad", "--lr-max=0.1"]
    assert chain_cli._accepts("infer", extra) == ["--workers", "2", "--tta", "4"]
    assert chain_cli._accepts("train", extra) == ["--workers", "2", "--skip-bad", "--lr-max=0.1"]
    assert chain_cli._accepts("prepare", extra) == ["--workers", "2", "--skip-bad"]


def test_the_chain_wires_folds_cycles_and_collect_as_the_dag(monkeypatch):
    calls: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(chain_cli, "_run", lambda step, args: calls.append((step, args)))
    final = chain_cli.chain("D", "S", "R", "80:8:1,96:8:2", 2, ["--tta", "2"])
    assert final == "R/predictions"
    assert [c[0] for c in calls] == ["prepare"] + ["train", "train", "infer"] * 2 + ["collect"]
    prepare = calls[0][1]
    assert prepare[prepare.index("--store-size") + 1] == "96"
    assert prepare[prepare.index("--extra-sizes") + 1] == "80"
    second = calls[2][1]  # fold 0, cycle 2: warm-started from cycle 1, its own size and epochs
    assert second[second.index("--previous") + 1] == "R/fold0/train-1"
    assert second[second.index("--epochs") + 1] == "2" and second[second.index("--fold") + 1] == "0"
    infer = calls[6][1]
    assert infer[infer.index("--last-cycle") + 1] == "R/fold1/train-2" and "--tta" in infer
    assert calls[-1][1] == ["--split", "S", "--predictions", "R/fold0/infer", "R/fold1/infer",
                            "--out", "R/predictions"]  # fmt: skip


@pytest.mark.slow
def test_a_holdout_chain_writes_whole_predictions(tiny_data, tiny_split, tmp_path, cache_dir):
    run = tmp_path / "run"
    proc = run_python(["-m", "components.chain", "--data-root", str(tiny_data),
                       "--split", str(tiny_split), "--run", str(run), "--schedule", "80:8:1",
                       "--", "--workers", "0", "--tta", "1"], timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == str(run / "predictions")
    require_complete(str(run / "predictions"), "predictions")
    rows = read_predictions(str(run / "predictions" / "predictions.parquet"))
    held_out = read_manifest(str(tiny_split / "manifest.parquet")).fold("val")["id"]
    assert len(select(rows, "test")) == 12  # tiny_data's test ids
    assert sorted(select(rows, "val")["id"]) == sorted(held_out)


def test_a_flag_no_step_takes_is_refused(tmp_path):
    proc = run_python(["-m", "components.chain", "--data-root", str(tmp_path), "--split", "S",
                       "--run", str(tmp_path / "run"), "--schedule", "demo", "--",
                       "--wokers", "2", "--no-skip-bad"])  # fmt: skip
    one_line_error(proc, "no prepare, train or infer setting is called --wokers")
    assert not (tmp_path / "run").exists()


def test_a_failing_step_stops_the_chain_in_one_line(tiny_data, tmp_path):
    proc = run_python(["-m", "components.chain", "--data-root", str(tiny_data),
                       "--split", str(tmp_path / "no-split"), "--run", str(tmp_path / "run"),
                       "--schedule", "demo"])  # fmt: skip
    one_line_error(proc, "the prepare step failed")
    assert not (tmp_path / "run" / "predictions").exists()
