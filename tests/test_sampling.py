"""Per-epoch sample lists from the manifest's weights, and the progress lines' ETA."""

import numpy as np

from protloc.data.sampling import epoch_indices


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
