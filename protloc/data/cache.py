"""The image cache: decode and resize a set of samples once into a memory-mapped uint8 file.

Decoding four PNGs and resizing them costs ~12 ms per 512-px sample per core; a fast GPU
consumes well over 1,000 samples/s. So before the first epoch each step decodes its samples once
into ``{cache_dir}/{key}.u8`` (N x 4 x S x S bytes, C order) plus ``{key}.json`` (the ids), keyed
by (data root, split, ids, size). Later epochs, later cycles at the same size and inference reuse
it; data loader workers read it through the page cache with no decoding at all.

A cache file only appears under its final name when it is complete: it is built under a
temporary name (space reserved up front with posix_fallocate, so a full disk fails at once with a
clear error instead of a SIGBUS later) and renamed. Bad samples stop the build with the Id and
channel, or with ``skip_bad`` are left out and listed.

Training does not wait for the disk: a finished cache is used from the page cache at once and
written to disk (fsync) by a background thread, which then marks it ``durable`` in its
``.json`` (the process waits for it before exiting). Waiting would cost more than reading the store (a 1-GB cache took 8.6 s to flush on
this project's test machine, against 1.2 s to fetch it). A cache not yet durable records the
machine's boot id; after a restart (a crash could have lost its pages) it is built again. Where
the boot id is unknown (not Linux) the build flushes before it returns, as before.

The key covers everything that changes the cache's bytes: data root, split, ids, size,
``skip_bad`` and the identity of every image file (``protloc.data.identity``), so images fixed
or regenerated in place are decoded again. A build killed outright (SIGKILL) leaves its
temporary file; the next build in the folder removes it (``protloc.storage.lock``: only files
with protloc's prefix whose writer no longer holds their lock).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from protloc.data.fill import fill
from protloc.data.identity import DataListing
from protloc.data.store import Store
from protloc.errors import DataError, StorageError
from protloc.storage import lock

log = logging.getLogger(__name__)

CACHE_FORMAT = 2
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_syncing: list[threading.Thread] = []


def default_cache_dir() -> Path:
    """``$PROTLOC_CACHE_DIR``, else ``~/.cache/protloc``."""
    return Path(os.environ.get("PROTLOC_CACHE_DIR") or Path.home() / ".cache" / "protloc")


def cache_key(
    root: str, split: str, ids: list[str], size: int, skip_bad: bool, identity: str
) -> str:
    """A short stable key for everything that changes a cache's bytes."""
    h = hashlib.sha256(
        json.dumps([CACHE_FORMAT, str(root), split, size, skip_bad, identity]).encode()
    )
    for sample_id in ids:
        h.update(sample_id.encode() + b"\n")
    return h.hexdigest()[:24]


# Temporary files of protloc before 0.1's flock locks: {24-hex key}.u8.tmp.{pid}. An hour old,
# no build of that protloc still writes one.
_LEGACY_TMP = re.compile(r"^[0-9a-f]{24}\.(u8|json)\.tmp\.\d+$")
_LEGACY_AGE_S = 3600.0


def remove_orphans(cache_dir: Path) -> int:
    """Delete the temporary files of builds that no longer run; returns how many."""
    removed = lock.remove_orphans(cache_dir)
    for tmp in cache_dir.iterdir():
        if _LEGACY_TMP.match(tmp.name):
            with contextlib.suppress(OSError):
                if time.time() - tmp.stat().st_mtime > _LEGACY_AGE_S:
                    size = tmp.stat().st_size
                    tmp.unlink()
                    removed.append((tmp.name, size))
    for name, size in removed:
        log.info("removed %s (%s) left by a killed build", name, _size(size))
    return len(removed)


@dataclass
class ImageCache:
    """A finished cache: ``ids[i]``'s image is ``array[i]`` (4, size, size) uint8."""

    path: Path
    ids: list[str]
    size: int
    skipped: list[str] = field(default_factory=list)
    _array: np.ndarray | None = field(default=None, repr=False)

    @property
    def array(self) -> np.ndarray:
        """The (N, 4, S, S) memmap, opened lazily (so the object pickles cheaply to workers)."""
        if self._array is None:
            shape = (len(self.ids), 4, self.size, self.size)
            self._array = np.memmap(self.path, dtype=np.uint8, mode="r", shape=shape)
        return self._array

    def __len__(self) -> int:
        return len(self.ids)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_array"] = None
        return state

    @property
    def nbytes(self) -> int:
        return len(self.ids) * 4 * self.size * self.size


def _open_existing(base: Path, size: int) -> ImageCache | None:
    data, meta_path = base.with_suffix(".u8"), base.with_suffix(".json")
    if not (data.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    if not meta.get("durable") and meta.get("boot_id") != boot_id():
        log.warning(
            "image cache %s was not on disk yet when the machine restarted; rebuilding", data
        )
        return None
    cache = ImageCache(data, list(meta["ids"]), size, list(meta.get("skipped", [])))
    if data.stat().st_size != cache.nbytes:
        log.warning("image cache %s has the wrong size; rebuilding", data)
        return None
    return cache


def boot_id() -> str:
    """This boot of the machine (Linux's random boot id); '' where unknown."""
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


def _write_meta(path: Path, meta: dict) -> None:
    with lock.temporary(path) as tmp:
        tmp.write_text(json.dumps(meta))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_durable(data: Path, meta_path: Path, meta: dict) -> None:
    """fsync a published cache, then mark it durable (run in a background thread)."""
    try:
        _fsync(data)
        _write_meta(meta_path, {**meta, "durable": True})
    except OSError:
        pass  # removed or replaced meanwhile: whoever did that owns it now


def wait_until_durable(timeout: float | None = None) -> None:
    """Wait for this process's caches to reach the disk (tests; a caller about to exit)."""
    while _syncing:
        _syncing.pop().join(timeout)


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:.1f} MB"


def _reserve(path: Path, nbytes: int, cache_dir: Path) -> None:
    with open(path, "wb") as f:
        try:
            if nbytes:
                os.posix_fallocate(f.fileno(), 0, nbytes)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageError(
                    f"disk full: the image cache needs {_size(nbytes)} in {cache_dir} "
                    f"(set PROTLOC_CACHE_DIR to a larger disk)"
                ) from None
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            f.truncate(nbytes)  # file systems without fallocate


def _build(
    base: Path,
    data: DataListing,
    split: str,
    ids: list[str],
    size: int,
    cache_dir: Path,
    workers: int,
    skip_bad: bool,
    store: Store | None,
) -> dict:
    """Fill ``{base}.u8`` under a temporary name, publish it and its ``.json``; returns the
    metadata written (its ids, the skipped ids and, until it is durable, the boot id)."""
    try:
        with lock.temporary(base.with_suffix(".u8")) as tmp:
            _reserve(tmp, len(ids) * 4 * size * size, cache_dir)
            kept, skipped = fill(tmp, data, split, ids, size, workers, skip_bad, store)
            machine = boot_id()
            if not machine:
                _fsync(tmp)  # no way to tell a restart: pay for the disk now
            meta = {
                "root": data.root,
                "split": split,
                "size": size,
                "ids": kept,
                "skipped": skipped,
                "durable": not machine,
                "boot_id": machine,
            }
        _write_meta(base.with_suffix(".json"), meta)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageError(f"disk full while writing the image cache in {cache_dir}") from None
        raise
    return meta


def build_cache(
    data: DataListing,
    split: str,
    ids: list[str],
    size: int,
    cache_dir: str | Path | None = None,
    workers: int = 4,
    skip_bad: bool = False,
    store: Store | None = None,
) -> ImageCache:
    """Return the cache of ``ids`` at ``size`` px, building it first if needed: from the
    prepare step's ``store`` when given (no PNG decoded), else by decoding the images of
    ``data`` (the task's listing of its data root)."""
    root = data.root
    if not ids:
        raise DataError(f"no samples to cache from {root}/{split}")
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    remove_orphans(cache_dir)
    # A store made from these images holds their bytes: its identity keys the cache instead.
    identity = f"store {store.identity}" if store else data.images_identity(split, ids)
    base = cache_dir / cache_key(root, split, ids, size, skip_bad, identity)
    found = _open_existing(base, size)
    if found is not None:
        log.info("image cache hit: %d samples at %d px (%s)", len(found), size, found.path.name)
        return found

    t0 = time.perf_counter()
    meta = _build(base, data, split, ids, size, cache_dir, workers, skip_bad, store)
    kept, skipped, machine = meta["ids"], meta["skipped"], meta["boot_id"]
    cache = ImageCache(base.with_suffix(".u8"), kept, size, skipped)
    if machine:
        # Not a daemon: the process waits for it at exit (long done after any training), so
        # it never leaves a half-written temporary .json behind.
        sync = threading.Thread(
            target=_make_durable, args=(cache.path, base.with_suffix(".json"), meta)
        )
        sync.start()
        _syncing.append(sync)
    log.info(
        "image cache built: %d samples at %d px, %.1f MB, %.1f s",
        len(kept),
        size,
        cache.nbytes / 1e6,
        time.perf_counter() - t0,
    )
    return cache
