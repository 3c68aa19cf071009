"""Filling an image cache file: each sample's bytes at its row, from the store or by decoding.

The rows are written with ``pwrite`` into a file whose space is reserved: copying into the page
cache costs no page faults, which made filling a 1-GB cache from the store 1.4x slower through a
memory map (docs/benchmarks.md). Threads may write rows at once.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from protloc.data.hpa import decode_samples
from protloc.data.identity import DataListing
from protloc.data.store import Store, fill_from_store
from protloc.errors import DataError
from protloc.progress import eta

log = logging.getLogger("protloc.data.cache")


def _write_rows(fd: int, sample_bytes: int) -> Callable[[int, np.ndarray], None]:
    """``write(i, sample)``: the sample's bytes at row i of the open cache file ``fd``.

    pwrite, not a memory map: copying into the page cache costs no page faults, which made
    filling a 1-GB cache from the store 1.4x slower (docs/benchmarks.md); threads may call it."""

    def write(i: int, sample: np.ndarray) -> None:
        view = memoryview(np.ascontiguousarray(sample, dtype=np.uint8)).cast("B")
        offset, done = i * sample_bytes, 0
        while done < len(view):
            done += os.pwrite(fd, view[done:], offset + done)

    return write


def _decode_into(
    write: Callable[[int, np.ndarray], None],
    data: DataListing,
    split: str,
    ids: list[str],
    size: int,
    workers: int,
    skip_bad: bool,
) -> tuple[list[str], list[str]]:
    """Decode ``ids`` into rows 0, 1, ... in order; returns (kept, skipped) ids."""
    t0 = time.perf_counter()
    kept: list[str] = []
    skipped: list[str] = []
    every = max(1, len(ids) // 10)
    extensions = data.extensions(split, ids)
    samples = decode_samples(data.root, split, ids, size, workers, skip_bad, extensions)
    for n, (sample_id, sample) in enumerate(samples, 1):
        if sample is None:
            skipped.append(sample_id)
        else:
            write(len(kept), sample)
            kept.append(sample_id)
        if n % every == 0 or n == len(ids):
            elapsed = time.perf_counter() - t0
            log.info(
                "image cache %s at %d px: %d/%d samples (%.0f samples/s, %s)",
                split,
                size,
                n,
                len(ids),
                n / max(elapsed, 1e-9),
                eta(n, len(ids), elapsed),
            )
    return kept, skipped


def _fill_from_store(
    write: Callable[[int, np.ndarray], None],
    store: Store,
    split: str,
    ids: list[str],
    size: int,
    workers: int,
    skip_bad: bool,
) -> list[str]:
    """:func:`protloc.data.store.fill_from_store` with the cache's progress lines."""
    t0, done = time.perf_counter(), 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        elapsed = time.perf_counter() - t0
        log.info(
            "image cache %s at %d px from the store: %d/%d samples (%.0f samples/s, %s)",
            split,
            size,
            done,
            len(ids),
            done / max(elapsed, 1e-9),
            eta(done, len(ids), elapsed),
        )

    return fill_from_store(
        store, split, ids, size, write, workers=workers, skip_bad=skip_bad, progress=progress
    )


def fill(
    path: Path,
    data: DataListing,
    split: str,
    ids: list[str],
    size: int,
    workers: int,
    skip_bad: bool,
    store: Store | None,
) -> tuple[list[str], list[str]]:
    """Write the samples of ``ids`` into the reserved file ``path`` (from the store, or by
    decoding) and cut it to the kept ones; returns (kept, skipped) ids."""
    sample_bytes = 4 * size * size
    fd = os.open(path, os.O_WRONLY)
    try:
        write = _write_rows(fd, sample_bytes)
        if store is not None:
            skipped = _fill_from_store(write, store, split, ids, size, workers, skip_bad)
            left_out = set(skipped)
            kept = [i for i in ids if i not in left_out]
        else:
            kept, skipped = _decode_into(write, data, split, ids, size, workers, skip_bad)
        if not kept:
            raise DataError(f"every sample in {data.root}/{split} was bad; nothing to cache")
        if skipped:
            os.ftruncate(fd, len(kept) * sample_bytes)
    finally:
        os.close(fd)
    return kept, skipped
