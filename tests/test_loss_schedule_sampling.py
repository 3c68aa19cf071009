import itertools

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from protloc.data.sampling import epoch_indices
from protloc.errors import ConfigError
from protloc.model.loss import bce_loss, soft_f1_from_probs, soft_f1_loss
from protloc.train.schedule import PAPER_TABLE_1, cosine_lr, paper_schedule, parse_schedule


def test_soft_f1_on_hard_predictions_is_one_minus_sklearn_macro_f1():
    rng = np.random.default_rng(0)
    y = (rng.random((64, 28)) < 0.15).astype(np.float32)
    y[:, 5] = 0  # a class without positives
    pred = (rng.random((64, 28)) < 0.2).astype(np.float32)
    pred[:, 7] = 0  # a class never predicted
    ours = float(soft_f1_from_probs(torch.from_numpy(pred).double(), torch.from_numpy(y).double()))
    ref = f1_score(y, pred, average="macro", zero_division=0)
    assert ours == pytest.approx(1 - ref, abs=1e-6)


def test_soft_f1_gradient_is_finite_even_without_positives():
    logits = torch.randn(8, 28, requires_grad=True)
    targets = torch.zeros(8, 28)
    targets[0, :3] = 1  # only three classes have a positive in this batch
    loss = soft_f1_loss(logits, targets)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert logits.grad[:, :3].abs().sum() > 0
    # A class with no positive in the batch has F1 0 whatever p: no gradient, and no NaN.
    assert (logits.grad[:, 3:] == 0).all()


def test_bce_matches_torch():
    logits, targets = torch.randn(5, 28), (torch.rand(5, 28) < 0.3).float()
    assert torch.allclose(bce_loss(logits, targets), torch.nn.BCEWithLogitsLoss()(logits, targets))


def test_cosine_lr_starts_at_max_ends_at_min():
    total = 37
    lrs = [cosine_lr(s, total, 0.05, 0.0005) for s in range(total)]
    assert lrs[0] == pytest.approx(0.05) and lrs[-1] == pytest.approx(0.0005)
    assert all(a >= b for a, b in itertools.pairwise(lrs))


def test_schedule_is_the_paper_table_and_validates():
    assert [(c.size, c.batch_size) for c in paper_schedule()] == list(PAPER_TABLE_1)
    assert PAPER_TABLE_1[0] == (221, 48) and PAPER_TABLE_1[-1] == (512, 8)
    assert [c.size for c in parse_schedule("96:16:2,128:8:1")] == [96, 128]
    for text, msg in [
        ("128:8:1,96:16:2", "sizes must increase"),
        ("96:0:1", r"schedule cycle 1: batch_size must be in \[2, 4096\], got 0"),
        ("96:1:1", "batch_size must be in"),  # BatchNorm cannot train on one image
        ("64:8:1", r"size must be in \[75, 4096\], got 64"),
        ("96:8", "not size:batch:epochs"),
        ("", "empty"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            parse_schedule(text)


def test_epoch_indices_draw_expected_counts_and_differ_per_epoch():
    w = np.array([0.5] * 100 + [1.0] * 50 + [5.0] * 4)
    a, b = epoch_indices(w, 0, 0), epoch_indices(w, 0, 1)
    assert np.array_equal(a, epoch_indices(w, 0, 0))  # deterministic for (seed, epoch)
    for idx in (a, b):
        counts = np.bincount(idx, minlength=len(w))
        assert (counts[:100] <= 1).all() and counts[:100].sum() == 50  # exactly half
        assert (counts[100:150] == 1).all() and (counts[150:] == 5).all()
    assert set(a[a < 100]) != set(b[b < 100])  # a different half each epoch
    mean = np.mean(
        [np.bincount(epoch_indices(w, 0, e), minlength=len(w))[:100] for e in range(200)], axis=0
    )
    assert np.abs(mean - 0.5).max() < 0.15


def test_eta_reads_like_a_person_would_say_it():
    from protloc.progress import eta

    assert eta(0, 10, 5.0) == "ETA ?"
    assert eta(5, 10, 5.0) == "ETA 5s"
    assert eta(1, 14, 5.0) == "ETA 1m05s"
    assert eta(1, 1000, 10.0) == "ETA 2h46m"
    assert eta(10, 10, 3.0) == "ETA 0s"
