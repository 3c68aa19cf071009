"""Random crops with scale jitter (``protloc.data.crops``) and a cycle that trains on them."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from protloc.data.cache import ImageCache
from protloc.data.crops import Crop, random_crop, source_size
from protloc.data.dataset import CachedImages
from protloc.data.transforms import D4_SIZE, d4
from protloc.errors import ConfigError


def _sample(side: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (4, side, side), dtype=np.uint8)


def _find(window: np.ndarray, x: np.ndarray) -> list[tuple[int, int]]:
    """Every (top, left) where ``window`` sits in ``x`` exactly."""
    s = window.shape[1]
    return [
        (t, left)
        for t in range(x.shape[1] - s + 1)
        for left in range(x.shape[2] - s + 1)
        if np.array_equal(x[:, t : t + s, left : left + s], window)
    ]


def test_a_crop_without_jitter_is_a_window_of_the_sample_and_covers_it():
    x = _sample(24)
    rng = np.random.default_rng(1)
    corners = set()
    for _ in range(200):
        window = random_crop(x, Crop(16), rng)
        assert window.shape == (4, 16, 16) and window.dtype == np.uint8
        found = _find(window, x)
        assert len(found) == 1
        corners |= set(found)
    # 9 x 9 corners are possible: 200 draws reach the far ones, so the window is not stuck
    assert {0, 8} <= {t for t, _ in corners} and {0, 8} <= {left for _, left in corners}


def test_a_jittered_crop_is_resized_to_the_size_and_its_scale_varies():
    """Windows resized from another side are not a 16-px window of the sample; with jitter
    0.5 some are (factor in [0.5, 1.5], rounding to 16 for about 1 in 16 draws)."""
    x = _sample(40)
    rng = np.random.default_rng(2)
    exact = 0
    for _ in range(100):
        window = random_crop(x, Crop(16, jitter=0.5), rng)
        assert window.shape == (4, 16, 16) and window.dtype == np.uint8
        exact += bool(_find(window, x))
    assert 0 < exact < 30


def test_a_window_larger_than_the_sample_is_capped_at_the_sample():
    x = _sample(16)
    out = random_crop(x, Crop(16, jitter=0.5), np.random.default_rng(3))
    assert out.shape == (4, 16, 16)
    full = random_crop(x, Crop(16), np.random.default_rng(3))
    assert np.array_equal(full, x) and full is not x


def test_the_source_size_is_crop_times_the_size_capped_at_the_store():
    assert source_size(80, 1.5, 128) == 120
    assert source_size(96, 1.5, 128) == 128
    assert source_size(128, 1.5, 128) == 128
    assert source_size(80, 1.0, 128) == 80
    assert source_size(80, 1.0, None) == 80
    # A store below the cycle's size is not a cap: the store refuses the size where it is read.
    assert source_size(512, 1.0, 256) == 512
    assert source_size(512, 1.25, 256) == 512


def test_a_crop_without_a_store_is_refused_naming_the_setting():
    """Decoding at crop x size would upscale past the images' own size where a store stops."""
    with pytest.raises(ConfigError, match=r"crop 1\.5 .*pass a store, or set crop 1"):
        source_size(80, 1.5, None)


def _cache(tmp_path, side: int, n: int = 6) -> ImageCache:
    array = np.stack([_sample(side, seed) for seed in range(n)])
    path = tmp_path / f"c{side}.u8"
    array.tofile(path)
    return ImageCache(path, [f"s{i}" for i in range(n)], side)


def test_without_a_crop_an_item_is_its_d4_transform_as_before(tmp_path):
    """The D4 draw comes first from the item's generator, so crop=1 trains on the same bytes."""
    cache = _cache(tmp_path, 16)
    data = CachedImages(cache, np.arange(6), augment=True, seed=5, epoch=2)
    cropped = CachedImages(cache, np.arange(6), augment=True, seed=5, epoch=2, crop=Crop(16))
    for i in range(6):
        k = int(np.random.default_rng([5, 2, i]).integers(D4_SIZE))
        expected = d4(np.array(cache.array[i]), k)
        assert np.array_equal(data[i].numpy(), expected)
        assert np.array_equal(cropped[i].numpy(), expected)  # a whole-sample window


def test_items_cropped_from_a_larger_cache_are_the_size_and_reproducible(tmp_path):
    cache = _cache(tmp_path, 24)
    make = lambda: CachedImages(cache, np.arange(6), augment=True, seed=1, crop=Crop(16, 0.2))  # noqa: E731
    first, again = make(), make()
    for i in range(6):
        assert first[i].shape == (4, 16, 16)
        assert np.array_equal(first[i].numpy(), again[i].numpy())


@pytest.mark.slow
def test_a_cycle_with_crops_trains_on_windows_of_larger_samples(
    tiny_data, tiny_split, tmp_path, cache_dir, caplog
):
    """crop 1.5 at 80 px from a 96-px store: the windows come from 96-px samples (120 capped at
    the store), validation sees 80-px ones, and the cycle trains and validates to finite
    figures."""
    from protloc.config import PrepareConfig, TrainConfig
    from protloc.data.identity import DataListing
    from protloc.data.store import open_store
    from protloc.steps.data import prepare_step
    from protloc.train.cycle import train_cycle

    from .conftest import TEST_ARCH

    prepare_step(PrepareConfig(store_size=96, extra_sizes="80", workers=2),
                 data_root=str(tiny_data), split=str(tiny_split), out=str(tmp_path / "store"))  # fmt: skip
    cfg = TrainConfig(
        size=80, batch_size=8, epochs=1, workers=0, arch=TEST_ARCH, crop=1.5, crop_jitter=0.2
    )
    with caplog.at_level(logging.INFO, logger="protloc"):
        metrics = train_cycle(
            cfg,
            str(tiny_split / "manifest.parquet"),
            DataListing(str(tiny_data)),
            store=open_store(str(tmp_path / "store")),
            out=str(tmp_path / "cycle"),
        )
    assert "random 80-px crops of 96-px samples, window side +- 0.2" in caplog.text
    caches = [json.loads(p.read_text()) for p in cache_dir.glob("*.json")]
    sizes = sorted((c["size"], len(c["ids"])) for c in caches)
    manifest = pd.read_parquet(tiny_split / "manifest.parquet")
    n_val = int((manifest["fold"] == "val").sum())
    assert sizes == [(80, n_val), (96, len(manifest) - n_val)]
    assert np.isfinite(metrics["history"][0]["loss"])


def test_a_checkpoint_is_resumed_only_with_the_crop_it_was_trained_with():
    """Crops change what a cycle trains on: a checkpoint of other crop settings is refused, and
    one written before crops existed counts as crop 1, no jitter."""
    from protloc.config import TrainConfig
    from protloc.errors import ArtifactError
    from protloc.train.resume import check_resumable

    def cfg(**kw):
        return TrainConfig(size=80, batch_size=8, epochs=1, **kw)

    old = cfg().to_dict()
    for key in ("crop", "crop_jitter", "pool"):
        old.pop(key)
    state = {"config": old, "init": ""}
    check_resumable(state, cfg(), "", None, "ck.pt")  # the defaults: the same cycle
    with pytest.raises(ArtifactError, match=r"ck\.pt holds a cycle with crop=1\.0, .* crop=1\.25"):
        check_resumable(state, cfg(crop=1.25), "", None, "ck.pt")
    with pytest.raises(ArtifactError, match=r"crop_jitter=0\.0, this run asks crop_jitter=0\.1"):
        check_resumable(state, cfg(crop_jitter=0.1), "", None, "ck.pt")


def test_each_rank_draws_the_transform_one_process_gives_the_same_draw(tmp_path):
    """Rank r holds every world-th draw from r on; its i-th item is draw i x world + r, with that
    draw's D4 transform and window, not the i-th item's of every other rank."""
    cache = _cache(tmp_path, 24, n=8)
    rows = np.arange(8)
    crop = Crop(16, 0.2)
    one = CachedImages(cache, rows, augment=True, seed=3, epoch=1, crop=crop)
    ranks = [
        CachedImages(cache, rows[r::2], augment=True, seed=3, epoch=1, crop=crop, rank=r, world=2)
        for r in range(2)
    ]
    for r in range(2):
        for i in range(4):
            assert np.array_equal(ranks[r][i].numpy(), one[i * 2 + r].numpy())
