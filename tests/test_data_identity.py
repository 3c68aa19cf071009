"""What a data root is, by its listing: a task started under one fingerprint refuses data or
pretrained weights changed since (the pipeline-level half, KFP's cache missing on changed data,
is in test_pipeline.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from protloc.config import SplitConfig, TrainConfig
from protloc.data.identity import DataListing
from tests.conftest import one_line_error, run_python
from tests.pod import Artifact


def test_a_task_refuses_data_changed_after_the_run_started(data, tmp_path):
    """The fingerprint the run started with (its fingerprint task's) is checked again where each
    task runs."""
    from components.task import run_task
    from protloc.data.identity import data_fingerprint
    from protloc.version import code_version

    then = data_fingerprint(str(data))
    Image.fromarray(np.zeros((96, 96), np.uint8)).save(next((data / "test").glob("*_red.png")))
    args = {**SplitConfig().to_dict(), "data_root": str(data), "data_fingerprint": then,
            "code_version": code_version(), "out": Artifact(str(tmp_path / "split"), str(tmp_path / "split"))}  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        run_task("split", args)
    assert exc.value.code == 2
    error = (tmp_path / "split" / "error.txt").read_text()
    assert f"changed since the run was started (fingerprint {then} then" in error
    assert not (tmp_path / "split" / "manifest.parquet").exists()


def test_pretrained_weights_are_part_of_the_fingerprint(data, tmp_path):
    """Weights replaced under the same URI change the run's fingerprint (so KFP's cache misses)
    and a train task started before the change refuses them, naming the file."""
    from components.task import run_task
    from protloc.data.identity import data_fingerprint, run_fingerprint
    from protloc.version import code_version

    weights = tmp_path / "inception_v3.pth"
    weights.write_bytes(b"first weights")
    then = run_fingerprint(DataListing(str(data)), str(weights))
    assert then.startswith("fp-" + data_fingerprint(str(data)) + "+") and len(then) == 36
    weights.write_bytes(b"other weights")
    assert run_fingerprint(DataListing(str(data)), str(weights)) != then
    out = Artifact(str(tmp_path / "train"), str(tmp_path / "train"))
    args = {**TrainConfig(size=80, batch_size=8, epochs=1).to_dict(), "pretrained": str(weights),
            "data_root": str(data), "data_fingerprint": then, "code_version": code_version(),
            "split": out, "previous": None, "out": out}  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        run_task("train", args)
    assert exc.value.code == 2
    error = (tmp_path / "train" / "error.txt").read_text()
    assert f"the pretrained weights {weights} changed since the run was started" in error


def test_the_fingerprint_task_refuses_a_data_root_it_cannot_use(tmp_path, data):
    """The DAG's first task: a missing data root, labels or images stop the run there, in one
    line; a whole data root gives the fingerprint every data-reading task is keyed by."""
    from protloc.data.identity import DataListing, run_fingerprint
    from protloc.errors import DataError
    from protloc.steps.data import fingerprint_step

    with pytest.raises(
        DataError, match=r"data root .*nope: no .*nope/train.csv \(the labels file\)"
    ):
        fingerprint_step(data_root=str(tmp_path / "nope"))
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    (empty / "train.csv").write_text("Id,Target\na,1\n")
    with pytest.raises(DataError, match=r"no images in .*empty/train"):
        fingerprint_step(data_root=str(empty))
    assert fingerprint_step(data_root=str(data)) == run_fingerprint(DataListing(str(data)))
    proc = run_python(["-m", "components.fingerprint", "--data-root", str(tmp_path / "nope")])
    one_line_error(proc, "no ", "train.csv (the labels file)")
    proc = run_python(["-m", "components.fingerprint", "--data-root", str(data)])
    assert proc.returncode == 0 and proc.stdout.strip() == fingerprint_step(data_root=str(data))
