"""The sample store: every labelled and test sample decoded once, as uint8 shards.

Decoding four PNGs costs ~12 ms per 512-px sample and core, and without a store every train task
and the infer task decode every image again (8 times for the Table-1 schedule). The prepare step
decodes each sample once, at the schedule's largest size (the native 512 px for HPA's Table 1),
into shards of (n, 4, S, S) uint8 arrays, ``{split}-{k:05d}.u8.zst``, with an index
(``index.parquet``: id, split, shard, row) and ``store.json`` (size, shard files and each one's
SHA-256 at every size, skipped ids, the labels' SHA-256). Every fetch checks a shard's SHA-256,
and a cache built from a store is keyed by all of them (:attr:`Store.identity`), so a store
prepared again from changed images never meets a cache of the old pixels. A task then fetches only the shards it needs, in parallel, and derives its
cycle's size from the uint8 arrays: a resize, never a PNG decode.

Each shard is one Zstandard frame (level 1): on real HPA channels it is 2.1x smaller than the raw
arrays, about the size of the PNGs, and decompresses at ~780 MB/s per core, ~8x the ~95 MB/s of
pixels PNG decoding gives (``docs/benchmarks.md``). Fetching and writing the store are bound by bytes, so this
halves both; level 3 and above compress no smaller on these images, only slower.

The resize is the one the PNG path does (Pillow bilinear with ``reducing_gap=2.0``), so a store
at the native size gives the same cache bytes, and so the same training, as decoding the PNGs.
A store below its images' size is exact at its own size only; ``store.json`` records the largest
side a sample was decoded at, and a task served another size from such a store says it differs.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice

import numpy as np
import pandas as pd
import zstandard
from PIL import Image

from protloc import schemas, storage
from protloc.config import PrepareConfig
from protloc.cpus import compute_threads
from protloc.data.hpa import decode_samples, resize_channel
from protloc.data.identity import DataListing
from protloc.errors import ArtifactError, ConfigError, DataError
from protloc.folders import STORE, STORE_INDEX
from protloc.progress import eta
from protloc.schemas import StoreDoc

log = logging.getLogger(__name__)

STORE_FORMAT = 3  # 1: raw shards (``.u8``); 2: no per-shard SHA-256
FETCHES = 4  # shards downloaded at once
LEVEL = 1  # Zstandard's level: ~400 MB/s per core to compress, and no larger than level 3


def shard_name(split: str, k: int, size: int | None = None) -> str:
    """Shard k of a split at the store's size, or at one of its extra sizes."""
    return f"{split}-{k:05d}.u8.zst" if size is None else f"{split}-{k:05d}-{size}px.u8.zst"


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
    storage.write_json(storage.join(out, STORE), doc)


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
        self.in_flight = {"file": shard_name(split, len(shards)), "count": len(kept)}
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


@dataclass
class Store:
    """A finished store: where it is, its size and which shard and row hold each id."""

    uri: str
    size: int
    doc: dict
    index: pd.DataFrame

    @property
    def sizes(self) -> list[int]:
        """Every size it holds shards at (its size, and the extra sizes)."""
        return [int(x) for x in self.doc.get("sizes", [self.size])]

    @property
    def identity(self) -> str:
        """What the store's bytes are: the SHA-256 of its index and of every shard at every
        size. It keys the image caches built from it, so a store prepared again from changed
        images never meets a cache of the old pixels."""
        shards = {split: part["shards"] for split, part in sorted(self.doc["splits"].items())}
        content = json.dumps([self.size, self.sizes, self.doc["index_sha256"], shards])
        return hashlib.sha256(content.encode()).hexdigest()

    def skipped(self, split: str) -> list[str]:
        return list(self.doc["splits"].get(split, {}).get("skipped", []))


def open_store(uri: str) -> Store:
    """Read ``store.json`` and the index of the store folder ``uri``."""
    where = storage.join(uri, STORE)
    doc = storage.read_json(where)
    found = doc.get("format") if isinstance(doc, dict) else None
    if found != STORE_FORMAT:
        raise ArtifactError(
            f"{where}: not a protloc store of format {STORE_FORMAT} (found {found!r}): "
            "run prepare again"
        )
    checked = schemas.parse(StoreDoc, where, doc)
    for split, part in checked.splits.items():
        for k, shard in enumerate(part.shards):
            if set(shard.sha256) != {str(s) for s in checked.sizes}:
                raise ArtifactError(
                    f"{where}: splits.{split}.shards[{k}].sha256 must name sizes {checked.sizes}"
                )
    raw = storage.read_bytes(storage.join(uri, STORE_INDEX))
    if hashlib.sha256(raw).hexdigest() != checked.index_sha256:
        raise ArtifactError(f"{storage.join(uri, STORE_INDEX)}: does not match {STORE} (changed?)")
    return Store(uri, checked.size, doc, pd.read_parquet(io.BytesIO(raw)))


def require_same_data(store: Store, fingerprint: str, root: str) -> None:
    """Refuse a store prepared from other data than ``root`` and the external roots hold now
    (images fixed, blanked or regenerated since: its pixels would be the old ones)."""
    then = store.doc.get("data_fingerprint", "")
    if then and then != fingerprint:
        raise ArtifactError(
            f"store {store.uri} was prepared from other data than {root} holds now "
            f"(fingerprint {then} then, {fingerprint} now): run prepare again"
        )
    for external, then in store.doc.get("external_fingerprints", {}).items():
        now = DataListing(external).fingerprint()
        if now != then:
            raise ArtifactError(
                f"store {store.uri} was prepared from other data than the external root "
                f"{external} holds now (fingerprint {then} then, {now} now): run prepare again"
            )


def _rows_of(
    store: Store, split: str, ids: list[str], size: int, skip_bad: bool
) -> tuple[pd.DataFrame, list[str]]:
    """(shard and row of each kept id, in ``ids``' order; the ids the store left out as bad).
    An id the store does not hold, a size above the store's and, without ``skip_bad``, a bad
    id are refused, named."""
    if size > store.size:
        raise ConfigError(
            f"store {store.uri} holds {store.size}-px samples: it cannot serve {size} px "
            f"(prepare it at the schedule's largest size)"
        )
    where = store.index[store.index["split"] == split].set_index("id")
    bad = set(store.skipped(split))
    missing = [i for i in ids if i not in where.index and i not in bad]
    if missing:
        raise ArtifactError(
            f"store {store.uri} has no {split} sample {missing[0]!r} "
            f"({len(missing)} missing): it was prepared from another manifest or data root"
        )
    left_out = [i for i in ids if i in bad]
    if left_out and not skip_bad:
        raise DataError(
            f"sample {left_out[0]!r}: unreadable, left out of the store {store.uri} by prepare "
            f"(skip_bad); set skip_bad here too, or fix the image and prepare again"
        )
    return where.loc[[i for i in ids if i not in bad]], left_out


def _fetch_shard(store: Store, split: str, k: int, side: int) -> np.ndarray:
    """Shard k of ``split`` at ``side`` px, checked (the SHA-256 ``store.json`` recorded, then
    its Zstandard checksum) and unpacked."""
    files = store.doc["splits"][split]["shards"]
    name = files[k]["file"] if side == store.size else shard_name(split, k, side)
    uri = storage.join(store.uri, name)
    expected = files[k]["count"] * 4 * side * side
    data = storage.read_bytes(uri)
    if hashlib.sha256(data).hexdigest() != files[k]["sha256"][str(side)]:
        raise ArtifactError(f"{uri}: not the shard {STORE} recorded (its SHA-256 differs)")
    try:
        # A decompressor per call: they are not thread-safe (and release the GIL).
        raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=expected)
    except zstandard.ZstdError as exc:
        raise ArtifactError(f"{uri}: not a Zstandard frame of the store ({exc})") from None
    if len(raw) != expected:
        raise ArtifactError(f"{uri}: {len(raw)} bytes, not {files[k]['count']} samples")
    return np.frombuffer(raw, dtype=np.uint8).reshape(files[k]["count"], 4, side, side)


def _warn_if_inexact(store: Store, size: int) -> None:
    """Say so where the store's samples at ``size`` are not what decoding gives: a store below
    its images' size holds resized samples, and any other size is then resized twice (the
    decode path resizes once, from the decoded image)."""
    decoded = int(store.doc.get("decoded_max", store.size))
    if size != store.size and decoded > store.size:
        log.warning(
            "store %s holds %d-px samples resized from images of up to %d px: at %d px they are "
            "resized twice and differ slightly from decoding the images (prepare the store at "
            "%d px for the same bytes)",
            store.uri,
            store.size,
            decoded,
            size,
            decoded,
        )


def fill_from_store(
    store: Store,
    split: str,
    ids: list[str],
    size: int,
    write: Callable[[int, np.ndarray], None],
    *,
    workers: int,
    skip_bad: bool,
    progress: Callable[[int], None],
) -> list[str]:
    """Hand ``ids``' samples at ``size`` px to ``write(row, sample)``, rows in ``ids``' order
    with bad ones left out (called from several threads at once), from the shards that hold
    them: each fetched once, several at a time, resized by ``workers`` threads. Returns the
    ids the store left out as bad; without ``skip_bad`` such an id stops it, named, as
    decoding it would. An id the store does not hold is refused."""
    rows, left_out = _rows_of(store, split, ids, size, skip_bad)
    _warn_if_inexact(store, size)
    position = {sample_id: n for n, sample_id in enumerate(rows.index)}
    # The cycle's own size when the store holds it (no resize), else the largest.
    side = size if size in store.sizes else store.size

    def fetch(k: int) -> np.ndarray:
        return _fetch_shard(store, split, k, side)

    def place(args: tuple[np.ndarray, str, int]) -> None:
        shard, sample_id, row = args
        write(position[sample_id], resize(shard[row], size))

    shards = iter(sorted(set(rows["shard"])))
    threads = compute_threads(workers)
    with ThreadPoolExecutor(FETCHES) as fetcher, ThreadPoolExecutor(threads) as resizer:
        # At most FETCHES shards in flight: a test set at 512 px is ~12 GB.
        pending = deque((k, fetcher.submit(fetch, k)) for k in islice(shards, FETCHES))
        while pending:
            k, future = pending.popleft()
            shard = future.result()
            following = next(shards, None)
            if following is not None:
                pending.append((following, fetcher.submit(fetch, following)))
            part = rows[rows["shard"] == k]
            jobs = [(shard, i, r) for i, r in zip(part.index, part["row"], strict=True)]
            list(resizer.map(place, jobs))
            progress(len(jobs))
    return left_out


def resize(sample: np.ndarray, size: int) -> np.ndarray:
    """A (4, S, S) uint8 sample at ``size`` px, resized as decoding the PNGs would be."""
    if sample.shape[-1] == size:
        return sample
    return np.stack(
        [np.asarray(resize_channel(Image.fromarray(c), size), dtype=np.uint8) for c in sample]
    )
