"""The SGDR schedule: Table 1 of the paper, cosine annealing within a cycle."""

import itertools

import pytest

from protloc.errors import ConfigError
from protloc.train.schedule import PAPER_TABLE_1, cosine_lr, paper_schedule, parse_schedule


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
