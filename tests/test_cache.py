from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from protloc.data.cache import build_cache, wait_until_durable
from protloc.data.hpa import load_sample, read_labels
from protloc.data.identity import DataListing
from protloc.errors import DataError, StorageError
from protloc.storage import lock
from tests.conftest import ROOT, train_cmd


def _ids(tiny_data, n=10):
    return list(read_labels(str(tiny_data / "train.csv"))["id"][:n])


def test_cache_builds_once_and_matches_decoded_images(tiny_data, cache_dir, caplog):
    ids = _ids(tiny_data)
    cache = build_cache(DataListing(str(tiny_data)), "train", ids, 80, cache_dir)
    assert cache.array.shape == (10, 4, 80, 80) and cache.path.stat().st_size == 10 * 4 * 80 * 80
    for i in (0, 9):
        assert np.array_equal(cache.array[i], load_sample(str(tiny_data), "train", ids[i], size=80))
    mtime = cache.path.stat().st_mtime_ns
    again = build_cache(DataListing(str(tiny_data)), "train", ids, 80, cache_dir)
    assert again.path == cache.path and again.path.stat().st_mtime_ns == mtime
    assert any("image cache hit" in r.message for r in caplog.records)
    other = build_cache(
        DataListing(str(tiny_data)), "train", ids, 96, cache_dir
    )  # another size, another file
    assert other.path != cache.path and other.array.shape[-1] == 96


def test_a_same_size_rewrite_with_its_mtime_set_back_is_not_served_from_cache(
    tiny_data, tmp_path, cache_dir
):
    """Item: a channel file rewritten with other pixels of the same byte size and its mtime set
    back kept its identity (size:mtime_ns) and was served from the old cache; the identity
    holds the change time too, which nothing sets back."""
    ids = _ids(tiny_data, 4)
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    for f in (tiny_data / "train").iterdir():
        if f.name.split("_")[0] in ids:
            (data / "train" / f.name).write_bytes(f.read_bytes())
    red = data / "train" / f"{ids[0]}_red.png"
    # Uncompressed PNGs: the file's size depends on the image's shape alone.
    Image.fromarray(np.zeros((96, 96), np.uint8)).save(red, compress_level=0)
    old = build_cache(DataListing(str(data)), "train", ids, 80, cache_dir)
    st, size = red.stat(), red.stat().st_size
    time.sleep(0.05)  # past the kernel's coarse clock tick, so the change time moves
    Image.fromarray(np.full((96, 96), 200, np.uint8)).save(red, compress_level=0)
    os.utime(red, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert red.stat().st_size == size and red.stat().st_mtime_ns == st.st_mtime_ns
    new = build_cache(DataListing(str(data)), "train", ids, 80, cache_dir)
    assert new.path != old.path
    assert (new.array[0, 0] == 200).all() and (old.array[0, 0] == 0).all()


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
        build_cache(DataListing(str(data)), "train", ids, 80, cache_dir)
    assert list(cache_dir.iterdir()) == []
    cache = build_cache(DataListing(str(data)), "train", ids, 80, cache_dir, skip_bad=True)
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
        build_cache(DataListing(str(tiny_data)), "train", _ids(tiny_data), 80, cache_dir)
    assert list(cache_dir.iterdir()) == []


def test_cache_reaches_disk_in_the_background_and_a_restart_before_that_rebuilds_it(
    tiny_data, cache_dir, monkeypatch, caplog
):
    import json

    from protloc.data import cache as cache_mod

    ids = _ids(tiny_data, 4)
    monkeypatch.setattr(cache_mod, "boot_id", lambda: "boot-1")
    cache = build_cache(DataListing(str(tiny_data)), "train", ids, 80, cache_dir)
    meta_path = cache.path.with_suffix(".json")
    cache_mod.wait_until_durable()
    meta = json.loads(meta_path.read_text())
    assert meta["durable"] is True and meta["boot_id"] == "boot-1"
    # A cache the machine restarted under before it was on disk could hold lost pages.
    meta_path.write_text(json.dumps({**meta, "durable": False}))
    monkeypatch.setattr(cache_mod, "boot_id", lambda: "boot-2")
    mtime = cache.path.stat().st_mtime_ns
    rebuilt = build_cache(DataListing(str(tiny_data)), "train", ids, 80, cache_dir)
    assert rebuilt.path == cache.path and rebuilt.path.stat().st_mtime_ns != mtime
    assert any("not on disk yet when the machine restarted" in r.message for r in caplog.records)
    cache_mod.wait_until_durable()
    # Once durable, a restart keeps it.
    caplog.clear()
    monkeypatch.setattr(cache_mod, "boot_id", lambda: "boot-3")
    build_cache(DataListing(str(tiny_data)), "train", ids, 80, cache_dir)
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
    cache = build_cache(DataListing(str(tiny_data)), "train", _ids(tiny_data, 3), 80, cache_dir)
    assert flushed and json.loads(cache.path.with_suffix(".json").read_text())["durable"] is True


def test_image_cache_notices_changed_images_and_skip_bad(data, tmp_path):
    ids = sorted(p.name.rsplit("_", 1)[0] for p in (data / "train").glob("*_red.png"))[:6]
    cache_dir = tmp_path / "cache"
    first = build_cache(DataListing(str(data)), "train", ids, 64, cache_dir, workers=1)
    before = first.array[2].copy()
    # Regenerated in place: the same file name, other pixels.
    Image.fromarray(np.full((96, 96), 200, np.uint8)).save(data / "train" / f"{ids[2]}_green.png")
    second = build_cache(DataListing(str(data)), "train", ids, 64, cache_dir, workers=1)
    assert second.path != first.path
    assert not np.array_equal(second.array[2], before)  # the new pixels, not the cached ones

    bad = data / "train" / f"{ids[4]}_blue.png"
    good = bad.read_bytes()
    bad.write_bytes(b"not a png")
    skipping = build_cache(
        DataListing(str(data)), "train", ids, 64, cache_dir, workers=1, skip_bad=True
    )
    assert skipping.skipped == [ids[4]]
    bad.write_bytes(good)  # fixed, and --skip-bad dropped: the sample is back
    fixed = build_cache(DataListing(str(data)), "train", ids, 64, cache_dir, workers=1)
    assert fixed.ids == ids and fixed.skipped == []


@pytest.mark.slow
def test_orphaned_cache_files_are_removed_and_sigterm_cleans_up(data, tiny_split, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    orphan = cache / f"{lock.TEMP_PREFIX}12345.1.abc.u8"  # a killed build's: nobody locks it
    orphan.write_bytes(b"\0" * 1_000_000)
    old = time.time() - 2 * lock.ORPHAN_MIN_AGE_S
    os.utime(orphan, (old, old))
    ids = sorted(p.name.rsplit("_", 1)[0] for p in (data / "train").glob("*_red.png"))[:3]
    build_cache(DataListing(str(data)), "train", ids, 64, cache, workers=1)
    assert not orphan.exists()
    assert not list(cache.glob(f"{lock.TEMP_PREFIX}*"))  # the build's own were renamed

    # SIGTERM (what Kubernetes and Docker send) mid-training: a clean exit, the lock released.
    out = tmp_path / "out"
    env = {**os.environ, "PROTLOC_CACHE_DIR": str(cache)}
    cmd = [*train_cmd(data, tiny_split, out, epochs=3), "--log-every", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    lines = []
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        if "epoch 1/3 step 2/" in line:
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=60)[1]
    assert proc.returncode == 128 + signal.SIGTERM, "".join(lines) + rest
    assert "Traceback" not in rest
    assert not (out / ".protloc.lock").exists()
    assert not list(cache.glob(f"{lock.TEMP_PREFIX}*"))


_FULL_DISK = """
import json, os, sys
from protloc.data.cache import build_cache, wait_until_durable
from protloc.data.identity import DataListing
from protloc.data.hpa import read_labels
from protloc.errors import StorageError
root, cache = sys.argv[1], sys.argv[2]
ids = list(read_labels(root + "/train.csv")["id"])
result = {}
try:
    build_cache(DataListing(root), "train", ids, 96, cache)       # 64 x 4 x 96 x 96 = 2.4 MB > 1 MB
except StorageError as exc:
    result["error"] = str(exc)
result["after_failure"] = sorted(os.listdir(cache))
small = build_cache(DataListing(root), "train", ids[:8], 96, cache)  # 0.3 MB: fits once nothing is left over
result["small"] = len(small.ids)
wait_until_durable()  # its .json is rewritten once the data is on disk
result["after_success"] = sorted(p.rsplit(".", 1)[-1] for p in os.listdir(cache))
print(json.dumps(result))
"""


def test_disk_full_on_a_real_1mb_tmpfs(tiny_data, tmp_path):
    """A real full file system: a 1 MB tmpfs mounted in a private mount namespace (`unshare`,
    no root needed where user namespaces are allowed)."""
    cache = tmp_path / "tmpfs"
    cache.mkdir()
    script = tmp_path / "full.py"
    script.write_text(_FULL_DISK)
    shell = (
        f"mount -t tmpfs -o size=1m tmpfs {cache} && "
        f"exec {sys.executable} {script} {tiny_data} {cache}"
    )
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", shell],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["error"].startswith("disk full: the image cache needs 2.4 MB in")
    assert result["after_failure"] == []
    assert result["small"] == 8 and result["after_success"] == ["json", "u8"]
