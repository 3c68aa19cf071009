"""The sample store: each image decoded once by prepare, read by train and infer instead."""

import json

import numpy as np
import pytest
import zstandard

from protloc import storage
from protloc.config import PrepareConfig
from protloc.data.cache import build_cache
from protloc.data.identity import DataListing
from protloc.data.manifest import read_manifest
from protloc.data.store import open_store
from protloc.errors import ArtifactError, ConfigError, DataError
from protloc.steps import prepare_step


def _ids(tiny_split):
    return list(read_manifest(str(tiny_split / "manifest.parquet")).frame["id"])


def test_cache_from_the_store_is_the_cache_from_the_pngs(tiny_data, tiny_split, tmp_path):
    """At the store's size and smaller: byte for byte what decoding the PNGs gives, so a
    cycle trains the same either way; the test ids are in the store too."""
    prepare_step(PrepareConfig(store_size=96, shard_samples=7, workers=2), data_root=str(tiny_data),
                 split=str(tiny_split), out=str(tmp_path / "store"))  # fmt: skip
    store = open_store(str(tmp_path / "store"))
    doc = json.loads((tmp_path / "store" / "store.json").read_text())
    assert len(doc["splits"]["train"]["shards"]) == -(-len(_ids(tiny_split)) // 7)
    ids = _ids(tiny_split)[::-1]  # any order
    for size in (96, 80):
        decoded = build_cache(
            DataListing(str(tiny_data)), "train", ids, size, tmp_path / "a", workers=2
        )
        stored = build_cache(
            DataListing(str(tiny_data)), "train", ids, size, tmp_path / "b", store=store
        )
        assert stored.ids == decoded.ids and np.array_equal(stored.array, decoded.array), size
    test_ids = sorted(p.name.split("_")[0] for p in (tiny_data / "test").glob("*_red.png"))
    a = build_cache(DataListing(str(tiny_data)), "test", test_ids, 80, tmp_path / "a", workers=2)
    b = build_cache(DataListing(str(tiny_data)), "test", test_ids, 80, tmp_path / "b", store=store)
    assert np.array_equal(a.array, b.array)
    with pytest.raises(ConfigError, match="holds 96-px samples: it cannot serve 112 px"):
        build_cache(DataListing(str(tiny_data)), "train", ids, 112, tmp_path / "b", store=store)
    with pytest.raises(ArtifactError, match="has no train sample 'not-an-id'"):
        build_cache(
            DataListing(str(tiny_data)), "train", ["not-an-id"], 80, tmp_path / "b", store=store
        )


def test_a_store_below_the_images_size_says_where_it_differs_from_decoding(
    tiny_data, tiny_split, tmp_path, caplog
):
    """Item: a store of 96-px images kept at 80 px served its smaller sizes resized twice,
    differing from decoding in a third of the pixels, while the docs said byte for byte. At the
    store's size it is exact; at every other size of the schedule the run now says it differs."""
    import logging

    cfg = PrepareConfig(store_size=88, extra_sizes="80", shard_samples=16)
    prepare_step(cfg, data_root=str(tiny_data), split=str(tiny_split), out=str(tmp_path / "s"))
    store = open_store(str(tmp_path / "s"))
    assert store.doc["decoded_max"] == 96 and store.sizes == [80, 88]
    ids, listing = _ids(tiny_split), DataListing(str(tiny_data))
    for size in (88, 80):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="protloc.data.store"):
            stored = build_cache(listing, "train", ids, size, tmp_path / "b", store=store)
        decoded = build_cache(listing, "train", ids, size, tmp_path / "a", workers=2)
        said = "resized twice and differ slightly from decoding" in caplog.text
        same = np.array_equal(stored.array, decoded.array)
        assert same != said and same == (size == 88), (size, same, said)


def test_a_cycle_fetches_its_own_sizes_shards(tiny_data, tiny_split, tmp_path):
    """With extra sizes the store holds each shard at every scheduled size: a cache at an extra
    size reads only those shards (the largest size's are deleted here) and is byte for byte
    the cache decoding gives."""
    prepare_step(PrepareConfig(store_size=96, extra_sizes="80,88", shard_samples=16, workers=2),
                 data_root=str(tiny_data), split=str(tiny_split), out=str(tmp_path / "store"))  # fmt: skip
    store = open_store(str(tmp_path / "store"))
    assert store.sizes == [80, 88, 96]
    names = sorted(p.name for p in (tmp_path / "store").glob("train-00000*"))
    assert names == ["train-00000-80px.u8.zst", "train-00000-88px.u8.zst", "train-00000.u8.zst"]
    frame = (tmp_path / "store" / "train-00000-80px.u8.zst").read_bytes()
    assert zstandard.frame_content_size(frame) == 16 * 4 * 80 * 80 > len(frame)  # compressed
    for big in (tmp_path / "store").glob("train-?????.u8.zst"):
        big.unlink()
    ids = _ids(tiny_split)
    for size in (80, 88):
        decoded = build_cache(
            DataListing(str(tiny_data)), "train", ids, size, tmp_path / "a", workers=2
        )
        stored = build_cache(
            DataListing(str(tiny_data)), "train", ids, size, tmp_path / "b", store=store
        )
        assert np.array_equal(stored.array, decoded.array), size
    with pytest.raises(ConfigError, match="extra_sizes must be distinct sizes in"):
        PrepareConfig(store_size=96, extra_sizes="80,96")
    with pytest.raises(ConfigError, match="extra_sizes must be comma-separated whole numbers"):
        PrepareConfig(store_size=96, extra_sizes="80,x")


def test_a_damaged_shard_is_refused_naming_it(tiny_data, tiny_split, tmp_path):
    prepare_step(PrepareConfig(store_size=80, shard_samples=16, workers=2), data_root=str(tiny_data),
                 split=str(tiny_split), out=str(tmp_path / "store"))  # fmt: skip
    store = open_store(str(tmp_path / "store"))
    shard = tmp_path / "store" / "train-00001.u8.zst"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit flipped (the recorded SHA-256 finds it)
    shard.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"train-00001\.u8\.zst: not the shard store\.json"):
        build_cache(
            DataListing(str(tiny_data)), "train", _ids(tiny_split), 80, tmp_path / "c", store=store
        )
    assert not list((tmp_path / "c").glob("*.u8"))  # no cache under its final name


def test_store_on_s3(tiny_data, tiny_split, tmp_path, bucket):
    """Prepared into s3:// (moto) and read back from there: the same cache bytes."""
    uri = f"{bucket}/run/prepare"
    prepare_step(PrepareConfig(store_size=96, shard_samples=16, workers=2), data_root=str(tiny_data),
                 split=str(tiny_split), out=uri)  # fmt: skip
    assert storage.exists(f"{uri}/store.json") and storage.exists(f"{uri}/timing.json")
    ids = _ids(tiny_split)
    decoded = build_cache(DataListing(str(tiny_data)), "train", ids, 80, tmp_path / "a", workers=2)
    stored = build_cache(
        DataListing(str(tiny_data)), "train", ids, 80, tmp_path / "b", store=open_store(uri)
    )
    assert np.array_equal(stored.array, decoded.array)


def test_bad_image_is_found_and_named_by_prepare(tiny_data, tiny_split, tmp_path):
    """A corrupt PNG stops prepare naming the id and channel; with skip_bad it is left out
    and listed, and a train cache without skip_bad refuses it by name, as decoding would."""
    import shutil

    data = shutil.copytree(tiny_data, tmp_path / "data")
    bad = _ids(tiny_split)[3]
    (data / "train" / f"{bad}_green.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    cfg = PrepareConfig(store_size=96, shard_samples=8, workers=2)
    with pytest.raises(DataError, match=rf"sample '{bad}' channel green"):
        prepare_step(cfg, data_root=str(data), split=str(tiny_split), out=str(tmp_path / "s1"))
    assert not (tmp_path / "s1" / "timing.json").exists()
    out = str(tmp_path / "s2")
    prepare_step(PrepareConfig(store_size=96, shard_samples=8, workers=2, skip_bad=True),
                 data_root=str(data), split=str(tiny_split), out=out)  # fmt: skip
    store = open_store(out)
    assert store.skipped("train") == [bad]
    ids = _ids(tiny_split)
    with pytest.raises(DataError, match=rf"sample '{bad}': unreadable, left out of the store"):
        build_cache(DataListing(str(data)), "train", ids, 80, tmp_path / "c", store=store)
    cache = build_cache(
        DataListing(str(data)), "train", ids, 80, tmp_path / "c", skip_bad=True, store=store
    )
    assert cache.skipped == [bad] and len(cache) == len(ids) - 1
    decoded = build_cache(
        DataListing(str(data)), "train", ids, 80, tmp_path / "d", workers=2, skip_bad=True
    )
    assert np.array_equal(cache.array, decoded.array)


def test_a_changed_index_is_refused(tiny_data, tiny_split, tmp_path):
    out = tmp_path / "store"
    prepare_step(PrepareConfig(store_size=96), data_root=str(tiny_data), split=str(tiny_split),
                 out=str(out))  # fmt: skip
    (out / "index.parquet").write_bytes((out / "index.parquet").read_bytes() + b"x")
    with pytest.raises(ArtifactError, match=r"index\.parquet: does not match store\.json"):
        open_store(str(out))


def test_a_store_of_older_images_is_refused(tiny_data, tiny_split, tmp_path, cache_dir):
    """An image regenerated after prepare: a train step given that store stops before any
    work, naming the store, instead of training on the old pixels."""
    import shutil

    from PIL import Image

    from protloc.config import TrainConfig
    from protloc.steps import train_step

    data = shutil.copytree(tiny_data, tmp_path / "data")
    store = str(tmp_path / "store")
    prepare_step(PrepareConfig(store_size=96), data_root=str(data), split=str(tiny_split),
                 out=store)  # fmt: skip
    Image.fromarray(np.zeros((96, 96), np.uint8)).save(next((data / "train").glob("*_red.png")))
    cfg = TrainConfig(size=80, batch_size=8, epochs=1, workers=0)
    with pytest.raises(ArtifactError, match=r"was prepared from other data .* run prepare again"):
        train_step(cfg, data_root=str(data), split=str(tiny_split), out=str(tmp_path / "t"),
                   store=store)  # fmt: skip
    assert not (tmp_path / "t").exists()


def test_a_store_prepared_again_from_changed_images_never_meets_the_old_cache(
    tiny_data, tiny_split, tmp_path
):
    """Item: with a store, the image cache was keyed by the store's size and index hash, which
    do not change with the pixels: a store prepared again from a regenerated image served the
    old cache (same probabilities, same submission)."""
    import shutil

    from PIL import Image

    data = shutil.copytree(tiny_data, tmp_path / "data")
    ids = _ids(tiny_split)
    cfg = PrepareConfig(store_size=96, shard_samples=16)
    first = str(tmp_path / "store1")
    prepare_step(cfg, data_root=str(data), split=str(tiny_split), out=first)
    listing = DataListing(str(data))
    old = build_cache(listing, "train", ids, 96, tmp_path / "c", store=open_store(first))
    changed = ids[0]
    Image.fromarray(np.full((96, 96), 255, np.uint8)).save(data / "train" / f"{changed}_red.png")
    second = str(tmp_path / "store2")
    prepare_step(cfg, data_root=str(data), split=str(tiny_split), out=second)
    new = build_cache(listing, "train", ids, 96, tmp_path / "c", store=open_store(second))
    assert new.path != old.path  # another key: built from the new store
    row = new.ids.index(changed)
    assert (new.array[row, 0] == 255).all() and not (old.array[row, 0] == 255).all()


def test_a_foreign_shard_of_the_same_layout_is_refused(tiny_data, tiny_split, tmp_path):
    """Item: a whole, valid shard of the same layout in another's place (16 samples at 80 px:
    a copy, a mix-up) was read as that shard's pixels; store.json records each shard's
    SHA-256 and every fetch checks it."""
    store = tmp_path / "store"
    prepare_step(PrepareConfig(store_size=80, shard_samples=16), data_root=str(tiny_data),
                 split=str(tiny_split), out=str(store))  # fmt: skip
    shards = store.glob("train-0000[01].u8.zst")
    zero, one = sorted(shards)
    assert [f["count"] for f in open_store(str(store)).doc["splits"]["train"]["shards"][:2]] == [
        16,
        16,
    ]
    one.write_bytes(zero.read_bytes())
    with pytest.raises(ArtifactError, match=r"train-00001\.u8\.zst: not the shard store\.json"):
        build_cache(
            DataListing(str(tiny_data)), "train", _ids(tiny_split), 80, tmp_path / "c",
            store=open_store(str(store)),
        )  # fmt: skip


@pytest.mark.parametrize("second", [1, 20], ids=["same shard", "another shard"])
def test_index_rows_swapped_with_the_index_hash_rewritten_are_refused(
    tiny_data, tiny_split, tmp_path, second
):
    """Item: two index rows' ids swapped (in a shard, or between shards) with store.json's index
    hash rewritten to match gave each id the other's pixels; store.json records each shard's ids
    digest and opening the store checks every row against it."""
    import hashlib

    import pandas as pd

    store = tmp_path / "store"
    prepare_step(PrepareConfig(store_size=80, shard_samples=16), data_root=str(tiny_data),
                 split=str(tiny_split), out=str(store))  # fmt: skip
    index = pd.read_parquet(store / "index.parquet")
    a, b = index.index[0], index.index[second]
    index.loc[[a, b], "id"] = index.loc[[b, a], "id"].to_numpy()
    index.to_parquet(store / "index.parquet", index=False)
    doc = json.loads((store / "store.json").read_text())
    doc["index_sha256"] = hashlib.sha256((store / "index.parquet").read_bytes()).hexdigest()
    (store / "store.json").write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match=r"index\.parquet: the rows of train shard train-0000"):
        open_store(str(store))


def test_store_json_mutants_are_refused_in_one_line(tiny_data, tiny_split, tmp_path):
    """Item: a store.json changed with its index hash kept gave tracebacks; its schema
    (``protloc.schemas.StoreDoc``) refuses each mutant in one line naming the file."""
    import random

    from protloc.errors import ProtlocError
    from tests.test_artifact_schemas import _mutate, _write

    store = tmp_path / "store"
    prepare_step(PrepareConfig(store_size=80, shard_samples=16), data_root=str(tiny_data),
                 split=str(tiny_split), out=str(store))  # fmt: skip
    good = json.loads((store / "store.json").read_text())
    rng, refused = random.Random("store.json"), 0
    for _ in range(100):
        _write(store / "store.json", _mutate(good, rng))
        try:
            open_store(str(store))
        except ProtlocError as exc:
            refused += 1
            assert "\n" not in str(exc) and "store.json" in str(exc), str(exc)
    assert refused > 0
