import errno
import os

import numpy as np
import pytest

from protloc.data.cache import build_cache, wait_until_durable
from protloc.data.hpa import load_sample, read_labels
from protloc.errors import DataError, StorageError


def _ids(tiny_data, n=10):
    return list(read_labels(str(tiny_data / "train.csv"))["id"][:n])


def test_cache_builds_once_and_matches_decoded_images(tiny_data, cache_dir, caplog):
    ids = _ids(tiny_data)
    cache = build_cache(str(tiny_data), "train", ids, 80, cache_dir)
    assert cache.array.shape == (10, 4, 80, 80) and cache.path.stat().st_size == 10 * 4 * 80 * 80
    for i in (0, 9):
        assert np.array_equal(cache.array[i], load_sample(str(tiny_data), "train", ids[i], size=80))
    mtime = cache.path.stat().st_mtime_ns
    again = build_cache(str(tiny_data), "train", ids, 80, cache_dir)
    assert again.path == cache.path and again.path.stat().st_mtime_ns == mtime
    assert any("image cache hit" in r.message for r in caplog.records)
    other = build_cache(str(tiny_data), "train", ids, 96, cache_dir)  # another size, another file
    assert other.path != cache.path and other.array.shape[-1] == 96


def test_bad_sample_stops_build_and_leaves_no_partial_file(tiny_data, tmp_path, cache_dir):
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    ids = _ids(tiny_data, 6)
    for f in (tiny_data / "train").iterdir():
        if f.name.split("_")[0] in ids:
            (data / "train" / f.name).write_bytes(f.read_bytes())
    green = data / "train" / f"{ids[3]}_green.png"
    green.write_bytes(green.read_bytes()[:200])  # truncated in the middle of the set
    with pytest.raises(DataError, match=rf"sample '{ids[3]}' channel green .*truncated"):
        build_cache(str(data), "train", ids, 80, cache_dir)
    assert list(cache_dir.iterdir()) == []
    cache = build_cache(str(data), "train", ids, 80, cache_dir, skip_bad=True)
    assert cache.skipped == [ids[3]] and cache.ids == ids[:3] + ids[4:]
    assert cache.array.shape[0] == 5
    assert np.array_equal(cache.array[3], load_sample(str(data), "train", ids[4], size=80))
    wait_until_durable()  # its .json is rewritten once the data is on disk
    assert sorted(p.suffix for p in cache_dir.iterdir()) == [".json", ".u8"]


def test_disk_full_is_a_clear_error_and_leaves_nothing(tiny_data, cache_dir, monkeypatch):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(StorageError, match=r"disk full: the image cache needs 0.3 MB in"):
        build_cache(str(tiny_data), "train", _ids(tiny_data), 80, cache_dir)
    assert list(cache_dir.iterdir()) == []


def test_cache_reaches_disk_in_the_background_and_a_restart_before_that_rebuilds_it(
    tiny_data, cache_dir, monkeypatch, caplog
):
    import json

    from protloc.data import cache as cache_mod

    ids = _ids(tiny_data, 4)
    monkeypatch.setattr(cache_mod, "boot_id", lambda: "boot-1")
    cache = build_cache(str(tiny_data), "train", ids, 80, cache_dir)
    meta_path = cache.path.with_suffix(".json")
    cache_mod.wait_until_durable()
    meta = json.loads(meta_path.read_text())
    assert meta["durable"] is True and meta["boot_id"] == "boot-1"
    # A cache the machine restarted under before it was on disk could hold lost pages.
    meta_path.write_text(json.dumps({**meta, "durable": False}))
    monkeypatch.setattr(cache_mod, "boot_id", lambda: "boot-2")
    mtime = cache.path.stat().st_mtime_ns
    rebuilt = build_cache(str(tiny_data), "train", ids, 80, cache_dir)
    assert rebuilt.path == cache.path and rebuilt.path.stat().st_mtime_ns != mtime
    assert any("not on disk yet when the machine restarted" in r.message for r in caplog.records)
    cache_mod.wait_until_durable()
    # Once durable, a restart keeps it.
    caplog.clear()
    monkeypatch.setattr(cache_mod, "boot_id", lambda: "boot-3")
    build_cache(str(tiny_data), "train", ids, 80, cache_dir)
    assert any("image cache hit" in r.message for r in caplog.records)


def test_without_a_boot_id_the_build_flushes_and_is_durable_at_once(
    tiny_data, cache_dir, monkeypatch
):
    import json

    from protloc.data import cache as cache_mod

    monkeypatch.setattr(cache_mod, "boot_id", lambda: "")
    flushed = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: flushed.append(fd) or real_fsync(fd))
    cache = build_cache(str(tiny_data), "train", _ids(tiny_data, 3), 80, cache_dir)
    assert flushed and json.loads(cache.path.with_suffix(".json").read_text())["durable"] is True
