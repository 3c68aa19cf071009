"""`pipeline.py check-data`: a data root checked before a run, and the plan of a run on it
(tasks, disk, projected time); the named schedules."""

from __future__ import annotations

import pytest

import pipeline
from protloc.data.check import check_data_root
from protloc.data.hpa import labels_uri, read_labels
from protloc.plan import FORWARD_GFLOPS, STORE_CODEC_RATIO, forward_gflops, plan_run
from protloc.train.schedule import (
    PAPER_TABLE_1,
    SCHEDULES,
    paper_schedule,
    parse_schedule,
    schedule_from,
)
from tests.conftest import one_line_error, run_python


def test_named_schedules():
    assert schedule_from("paper") == paper_schedule()
    assert [(c.size, c.batch_size) for c in schedule_from(" paper ")] == list(PAPER_TABLE_1)
    assert schedule_from("demo") == parse_schedule(SCHEDULES["demo"])
    assert schedule_from("96:8:1") == parse_schedule("96:8:1")
    with pytest.raises(Exception, match="or give a schedule's name: paper, demo"):
        schedule_from("papr")


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["local"], "demo"),
        (["local", "--data-root", "/data/hpa"], "paper"),
        (["compile"], "paper"),
        (["submit", "--host", "http://x", "--data-root", "s3://b/d"], "paper"),
    ],
)
def test_the_default_schedule_is_the_papers_except_for_the_demo(argv, name, caplog):
    args = pipeline.parser().parse_args(argv)
    with caplog.at_level("INFO"):
        assert pipeline.default_schedule(args) == name
    assert f"schedule {name} ({SCHEDULES[name]})" in caplog.text


def test_the_plan_is_the_layouts_arithmetic(tiny_data):
    labels = read_labels(labels_uri(str(tiny_data)))
    schedule = parse_schedule("96:8:2,128:8:1")
    plan = plan_run(schedule, labels, test=12, folds=1, tta=2)
    raw, packed = plan.store_bytes()
    assert raw == (64 + 12) * 4 * (96 * 96 + 128 * 128)
    assert packed == pytest.approx(raw / STORE_CODEC_RATIO)
    assert plan.train_cache_bytes() == 64 * 4 * 128 * 128
    assert plan.infer_cache_bytes() == (plan.val + 12) * 4 * (96 * 96 + 128 * 128)
    assert plan.tasks() == {"split": 1, "prepare": 1, "train": 2, "infer": 1, "thresholds": 1,
                            "submit": 1, "bundle": 1}  # fmt: skip
    folds = plan_run(schedule, labels, test=12, folds=2, tta=2)
    assert folds.tasks()["train"] == 4 and folds.tasks()["collect"] == 1
    assert folds.val == 32
    # GPU work grows with the epochs: one more epoch of the first cycle, more train hours
    longer = plan_run(parse_schedule("96:8:3,128:8:1"), labels, test=12, tta=2)
    assert (
        longer.gpu_hours()[0] > plan.gpu_hours()[0] and longer.gpu_hours()[1] == plan.gpu_hours()[1]
    )
    assert plan.wall_hours(8) < plan.wall_hours(1)


@pytest.mark.slow
def test_the_flops_table_is_what_torch_counts():
    """The plan's FLOPs per image are torch's FlopCounterMode count of the network's forward
    pass (to the table's 2 decimals); between the sizes the line through their square roots
    stays within 6 % of the count."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from protloc.model.network import create_model

    model = create_model().eval()

    def counted(size: int) -> float:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.zeros(1, 4, size, size))
        return counter.get_total_flops() / 1e9

    for size in (221, 512):
        assert counted(size) == pytest.approx(FORWARD_GFLOPS[size], abs=0.005)
    for size in (160, 352):
        assert forward_gflops(size) == pytest.approx(counted(size), rel=0.06)


def test_check_data_on_a_whole_root(tiny_data):
    proc = run_python(["pipeline.py", "check-data", str(tiny_data), "--schedule", "96:8:1"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "train.csv: 64 labelled samples" in out and "12 test samples" in out
    assert "all 64 samples have 4 channels" in out and "all 12 samples have 4 channels" in out
    assert "16 samples decoded, every channel: 96x96 8-bit L PNG x64" in out
    assert "tasks: 7 (1 split, 1 prepare, 1 train, 1 infer" in out
    assert "projected wall time" in out


def test_check_data_names_what_is_missing_or_broken(data):
    ids = read_labels(labels_uri(str(data)))["id"].tolist()
    (data / "train" / f"{ids[3]}_yellow.png").unlink()
    for sample_id in ids:  # every sampled file that decodes badly is found
        (data / "train" / f"{sample_id}_blue.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    report = check_data_root(str(data), sample=4)
    assert report.splits[0].missing == {ids[3]: ["yellow"]}
    assert len(report.bad) == 4 and all("corrupt or not an image" in b for b in report.bad)
    proc = run_python(["pipeline.py", "check-data", str(data), "--sample", "2"])
    one_line_error(proc, str(data), "1 samples lack channel files", "2 sampled files")
    assert f"{ids[3]} (yellow)" in proc.stdout


def test_check_data_without_a_label_file_names_it(data):
    (data / "train.csv").unlink()
    proc = run_python(["pipeline.py", "check-data", str(data)])
    one_line_error(proc, str(data / "train.csv"))
