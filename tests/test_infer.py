import numpy as np
import pytest
import torch

from protloc.config import InferConfig, TrainConfig
from protloc.data.hpa import read_test_ids
from protloc.data.identity import DataListing
from protloc.data.manifest import read_manifest
from protloc.errors import ArtifactError, ConfigError
from protloc.evaluate.infer import run_infer
from protloc.evaluate.predictions import ENSEMBLE, PROB_COLUMNS, read_predictions
from protloc.train.cycle import train_cycle
from tests.conftest import TINY_CYCLE


def _infer(tiny_split, tiny_data, snapshots, out, **settings):
    """run_infer on tiny_data's validation fold and test ids."""
    return run_infer(
        InferConfig(**{"workers": 0, **settings}),
        str(tiny_split / "manifest.parquet"),
        DataListing(str(tiny_data)),
        snapshots,
        out=str(out),
    )


@pytest.fixture(scope="module")
def two_snapshots(cycle0, tiny_data, tiny_split, tmp_path_factory):
    out0, _, _ = cycle0
    out1 = tmp_path_factory.mktemp("cycle1")
    cfg = TrainConfig(**{**TINY_CYCLE, "size": 112, "epochs": 1, "cycle": 1})
    manifest = str(tiny_split / "manifest.parquet")
    train_cycle(
        cfg, manifest, DataListing(str(tiny_data)), init=str(out0 / "checkpoint.pt"), out=str(out1)
    )
    return [str(out0 / "checkpoint.pt"), str(out1 / "checkpoint.pt")]


def test_ensemble_predictions_follow_the_contract(
    two_snapshots, tiny_data, tiny_split, tmp_path, caplog
):
    rows = _infer(tiny_split, tiny_data, two_snapshots, tmp_path, tta=2, infer_batch_size=8)
    back = read_predictions(str(tmp_path / "predictions.parquet"))
    assert back.shape == rows.shape
    val_ids = list(read_manifest(str(tiny_split / "manifest.parquet")).fold("val")["id"])
    test_ids = read_test_ids(str(tiny_data / "sample_submission.csv"))
    assert set(back["snapshot"]) == {"cycle0_96px", "cycle1_112px", ENSEMBLE}
    for split, ids in (("val", val_ids), ("test", test_ids)):
        part = back[back["split"] == split]
        assert len(part) == 3 * len(ids)
        per_snap = [
            part[part["snapshot"] == s].set_index("id").loc[ids, list(PROB_COLUMNS)].to_numpy()
            for s in ("cycle0_96px", "cycle1_112px")
        ]
        ens = (
            part[part["snapshot"] == ENSEMBLE]
            .set_index("id")
            .loc[ids, list(PROB_COLUMNS)]
            .to_numpy()
        )
        assert np.allclose(ens, (per_snap[0] + per_snap[1]) / 2, atol=1e-6)
        assert not np.allclose(per_snap[0], per_snap[1])  # each snapshot at its own size
    assert back[list(PROB_COLUMNS)].dtypes.eq(np.float32).all()
    assert any("images/s" in r.message for r in caplog.records)


@pytest.mark.slow
def test_tta_averages_the_outputs_over_the_first_tta_transforms(
    two_snapshots, tiny_data, tiny_split, tmp_path, monkeypatch
):
    """tta t: the mean of the model's probabilities over D4 transforms 0..t-1 of each image.
    Every transform but the identity is replaced by a blank image here (the transforms are
    test_data.py's), so a tiny model that barely looks at its input still shows the mean:
    with p the image's and q the blank's probability, tta 1 gives p, 2 gives (p + q) / 2 and
    8 gives (p + 7 q) / 8 (float32 sums: a few ulps)."""
    from protloc.model import inference

    seen: set[int] = set()

    def blank_but_identity(x, k):
        seen.add(k)
        return x if k == 0 else torch.zeros_like(x)

    monkeypatch.setattr(inference, "d4_torch", blank_but_identity)
    probs = {
        t: _infer(tiny_split, tiny_data, two_snapshots[:1], tmp_path / str(t), tta=t)[
            list(PROB_COLUMNS)
        ].to_numpy(np.float64)
        for t in (1, 2, 8)
    }
    assert seen == set(range(8))
    p, q = probs[1], 2 * probs[2] - probs[1]
    assert np.allclose(probs[8], (p + 7 * q) / 8, rtol=0, atol=1e-6)
    assert np.abs(p - q).max() > 1e-3  # the blank image is told apart: the check has teeth
    with pytest.raises(ConfigError, match=r"tta must be in \[1, 8\], got 9"):
        InferConfig(tta=9)


def test_unfinished_or_missing_snapshot_refused(tiny_data, tiny_split, tmp_path):
    with pytest.raises(ArtifactError, match=r"nope\.pt"):
        _infer(tiny_split, tiny_data, [str(tmp_path / "nope.pt")], tmp_path)


def test_infer_refuses_a_split_of_another_fold_assignment(cycle0, tiny_data, tmp_path):
    """Item: infer with another seed's split and a cycle trained on the first exited 0, and some
    "validation" ids were that model's training samples."""
    from protloc.config import SplitConfig
    from protloc.data.split import run_split

    other = tmp_path / "other-split"
    cfg = SplitConfig(val_fraction=0.25, rare_below=5, seed=SplitConfig().seed + 1)
    run_split(cfg, str(tiny_data / "train.csv"), out=str(other))
    with pytest.raises(ArtifactError, match="trained on a split that assigns samples to folds"):
        _infer(other, tiny_data, [str(cycle0[0] / "checkpoint.pt")], tmp_path)


@pytest.mark.slow
def test_two_ranks_predict_what_one_does(
    two_snapshots, tiny_data, tiny_split, tmp_path, monkeypatch
):
    """gpus 2: each rank predicts every other id, rank 0 gathers them into one predictions
    file: the same rows, in the same order, with the probabilities one process gives.

    What could differ is only float32 accumulation order: the number of threads a convolution
    is split over, and the batch an image is predicted in (a rank's batches hold other images).
    Both are pinned (one thread everywhere, batches of one image), so nothing differs and the
    probabilities must be equal bit for bit, on a quiet or a busy machine."""
    import json

    import torch

    from protloc.steps import infer_step
    from tests.conftest import mark_complete

    (tmp_path / "chain").mkdir()
    chain = mark_complete(tmp_path / "chain")
    (chain / "snapshots.json").write_text(json.dumps({"snapshots": two_snapshots}))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = _infer(
            tiny_split, tiny_data, two_snapshots, tmp_path / "one", tta=2, infer_batch_size=1
        )
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what the ranks' torch sizes its pool by
    cfg = InferConfig(workers=0, tta=2, infer_batch_size=1, gpus=2)
    scores = infer_step(
        cfg, data_root=str(tiny_data), split=str(tiny_split), last_cycle=str(chain),
        out=str(tmp_path / "two"),
    )  # fmt: skip
    two = read_predictions(str(tmp_path / "two" / "predictions.parquet"))
    keys = ["snapshot", "split", "id"]
    assert two[keys].equals(one[keys])
    assert np.array_equal(two[list(PROB_COLUMNS)].to_numpy(), one[list(PROB_COLUMNS)].to_numpy())
    assert set(scores["val_macro_f1_at_0.5"]) == {"cycle0_96px", "cycle1_112px", ENSEMBLE}
