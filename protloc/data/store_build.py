"""Building the sample store (the prepare step): decode every sample once into compressed
shards, each written in the background while the next one decodes, then the index and
``store.json`` (its format and the reading side are in ``protloc.data.store``)."""

from __future__ import annotations

import hashlib
import io
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pandas as pd
import zstandard

from protloc import schemas, storage
from protloc.config import PrepareConfig
from protloc.cpus import compute_threads
from protloc.data.hpa import decode_samples
from protloc.data.identity import DataListing
from protloc.data.store import LEVEL, STORE_FORMAT, ids_digest, resize, shard_name
from protloc.errors import DataError
from protloc.folders import STORE, STORE_INDEX
from protloc.progress import eta
from protloc.schemas import StoreDoc

log = logging.getLogger("protloc.data.store")


def build_store(
    cfg: PrepareConfig,
    data: DataListing,
    ids_by_split: dict[str, list[str]],
    *,
    external: dict[str, list[str]],
    labels_sha256: str,
    data_fingerprint: str,
    external_fingerprints: dict[str, str] | None = None,
    out: str,
) -> dict:
    """Decode every id of ``ids_by_split`` (the ``train`` and ``test`` folders of ``data``'s
    root), and of ``external`` (data root -> ids of its ``train`` folder, stored as ``train``
    samples), at ``cfg.store_size`` px into shards in ``out``; returns the ``store.json``
    document, which records ``data_fingerprint`` (the data root's, when it was read) and
    ``external_fingerprints`` (each external root's) so a store of older images is refused
    later. Each shard is also written at every one of the config's
    extra sizes (resized from the store size as a cycle would), so a task fetches its cycle's
    bytes, not the largest size's."""
    size = cfg.store_size
    doc: dict = {
        "format": STORE_FORMAT,
        "size": size,
        "sizes": sorted({size, *cfg.sizes()}),
        "labels_sha256": labels_sha256,
        "data_fingerprint": data_fingerprint,
        "external_fingerprints": dict(external_fingerprints or {}),
        "splits": {},
    }
    t0 = time.perf_counter()
    parts = [(split, data, ids) for split, ids in ids_by_split.items()]
    parts += [("train", DataListing(root), ids) for root, ids in external.items()]
    writer = _ShardWriter(out, cfg)
    try:
        _decode_into_shards(cfg, parts, writer)
    finally:
        writer.shutdown()
    doc["splits"] = {
        split: {"shards": writer.shards[split], "skipped": writer.skipped[split]}
        for split in writer.shards
    }
    doc["decoded_max"] = writer.decoded_max
    _write_index(out, writer.index, doc)
    log.info(
        "store: %d samples at %d px in %d shards, %.1f s",
        len(writer.index),
        size,
        sum(len(s["shards"]) for s in doc["splits"].values()),
        time.perf_counter() - t0,
    )
    return doc


def _write_index(out: str, index: list[tuple[str, str, int, int]], doc: dict) -> None:
    """index.parquet, then store.json with the index's SHA-256 (written last: the store's
    readers check the one against the other)."""
    frame = pd.DataFrame(index, columns=["id", "split", "shard", "row"])
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    storage.write_bytes(storage.join(out, STORE_INDEX), buf.getvalue())
    doc["index_sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    schemas.write(StoreDoc, storage.join(out, STORE), doc)


def _decode_into_shards(
    cfg: PrepareConfig, parts: list[tuple[str, DataListing, list[str]]], writer: _ShardWriter
) -> None:
    """Decode each part's (split, its data root's listing, ids) samples in chunks of
    ``cfg.shard_samples`` and hand each chunk to ``writer``."""
    t0, total, done = time.perf_counter(), sum(len(ids) for _, _, ids in parts), 0
    for split, src, ids in parts:
        if not ids:
            continue
        extensions = src.extensions(split, ids)  # one listing per folder
        for k, start in enumerate(range(0, len(ids), cfg.shard_samples)):
            chunk = ids[start : start + cfg.shard_samples]
            decoded: dict[str, int] = {}
            arrays, bad = _decode(
                src.root, split, chunk, cfg.store_size, extensions, cfg.workers, cfg.skip_bad,
                decoded,
            )  # fmt: skip
            writer.decoded_max = max([writer.decoded_max, *decoded.values()])
            left_out = set(bad)
            writer.add(split, [i for i in chunk if i not in left_out], arrays, bad)
            del arrays  # the writer's thread holds the shard now, only until it is written
            done += len(chunk)
            _log_progress(split, cfg.store_size, done, total, k, t0)
        if not writer.shards[split]:
            raise DataError(f"every sample in {src.root}/{split} was bad; nothing to store")
    writer.finish()


def _log_progress(split: str, size: int, done: int, total: int, k: int, t0: float) -> None:
    elapsed = time.perf_counter() - t0
    log.info(
        "store %s at %d px: %d/%d samples, shard %d (%.1f samples/s, %s)",
        split,
        size,
        done,
        total,
        k,
        done / max(elapsed, 1e-9),
        eta(done, total, elapsed),
    )


class _ShardWriter:
    """Shards written in order, each resized, compressed and uploaded in a background thread
    while the next one decodes; keeps the index rows and each split's shard list."""

    def __init__(self, out: str, cfg: PrepareConfig) -> None:
        self.out, self.extra_sizes = out, cfg.sizes()
        self.uploader = ThreadPoolExecutor(1)
        self.resizer = ThreadPoolExecutor(compute_threads(cfg.workers))
        # The checksum (xxHash64) makes a damaged shard an error, not wrong pixels.
        self.compressor = zstandard.ZstdCompressor(
            level=LEVEL, threads=compute_threads(cfg.workers), write_checksum=True
        )
        self.upload: Future | None = None
        self.in_flight: dict | None = None  # the shard entry whose digests the upload returns
        self.decoded_max = 0  # the largest side a sample was decoded at, before its resize
        self.index: list[tuple[str, str, int, int]] = []
        self.shards: dict[str, list[dict]] = {}
        self.skipped: dict[str, list[str]] = {}

    def add(self, split: str, kept: list[str], arrays: list[np.ndarray], bad: list[str]) -> None:
        """One decoded chunk: ``kept`` ids (``arrays`` in their order), ``bad`` ids left out."""
        shards = self.shards.setdefault(split, [])
        self.skipped.setdefault(split, []).extend(bad)
        if not kept:
            return
        self.finish()  # one shard in flight at a time
        self.upload = self.uploader.submit(
            _write_shard,
            self.out,
            split,
            len(shards),
            arrays,
            self.extra_sizes,
            self.resizer,
            self.compressor,
        )
        self.index += [(i, split, len(shards), row) for row, i in enumerate(kept)]
        self.in_flight = {
            "file": shard_name(split, len(shards)),
            "count": len(kept),
            "ids_sha256": ids_digest(kept),
        }
        shards.append(self.in_flight)

    def finish(self) -> None:
        """Wait for the shard in flight (its error is raised here) and record its digests."""
        if self.upload is not None:
            self.in_flight["sha256"] = self.upload.result()
            self.upload = self.in_flight = None

    def shutdown(self) -> None:
        self.uploader.shutdown()
        self.resizer.shutdown()


def _write_shard(
    out: str,
    split: str,
    k: int,
    arrays: list[np.ndarray],
    extra_sizes: tuple[int, ...],
    resizer: ThreadPoolExecutor,
    compressor: zstandard.ZstdCompressor,
) -> dict[str, str]:
    """Shard k of ``split`` at the store's size and at each extra size (resized as a cycle
    would), each compressed and written to ``out``; returns each size's SHA-256."""
    size = arrays[0].shape[-1]
    digests = {str(size): _write_frame(storage.join(out, shard_name(split, k)), arrays, compressor)}
    for extra in extra_sizes:
        smaller = list(resizer.map(lambda a, s=extra: resize(a, s), arrays))
        uri = storage.join(out, shard_name(split, k, extra))
        digests[str(extra)] = _write_frame(uri, smaller, compressor)
    return digests


def _write_frame(uri: str, arrays: list[np.ndarray], compressor: zstandard.ZstdCompressor) -> str:
    """The arrays, in order, as one Zstandard frame: fed one by one, so the shard is never
    stacked into one more copy (that copy cost 0.4 s per 134-MB shard here). Returns the
    frame's SHA-256."""
    frame = compressor.compressobj(size=sum(a.nbytes for a in arrays))
    parts = [frame.compress(np.ascontiguousarray(a)) for a in arrays]
    parts.append(frame.flush())
    data = b"".join(parts)
    storage.write_bytes(uri, data)
    return hashlib.sha256(data).hexdigest()


def _decode(
    root: str,
    split: str,
    ids: list[str],
    size: int,
    extensions: dict[str, str | None],
    workers: int,
    skip_bad: bool,
    decoded: dict[str, int],
) -> tuple[list[np.ndarray], list[str]]:
    """The samples of ``ids`` at ``size`` px, and the ids left out as bad (with ``skip_bad``;
    else the first bad one stops it, named)."""
    arrays, bad = [], []
    samples = decode_samples(root, split, ids, size, workers, skip_bad, extensions, decoded)
    for sample_id, sample in samples:
        if sample is None:
            bad.append(sample_id)
        else:
            arrays.append(sample)
    return arrays, bad
