"""The sample store: every labelled and test sample decoded once, as uint8 shards.

Decoding four PNGs costs ~12 ms per 512-px sample and core, and without a store every train task
and the infer task decode every image again (8 times for the Table-1 schedule). The prepare step
decodes each sample once, at the schedule's largest size (the native 512 px for HPA's Table 1),
into shards of (n, 4, S, S) uint8 arrays, ``{split}-{k:05d}.u8.zst``, with an index
(``index.parquet``: id, split, shard, row) and ``store.json`` (size, shard files, skipped ids,
the labels' SHA-256). A task then fetches only the shards it needs, in parallel, and derives its
cycle's size from the uint8 arrays: a resize, never a PNG decode.

Each shard is one Zstandard frame (level 1): on real HPA channels it is 2.1x smaller than the raw
arrays, about the size of the PNGs, and decompresses at ~780 MB/s per core, ~8x the ~95 MB/s of
pixels PNG decoding gives (``bench/README.md``). Fetching and writing the store are bound by bytes, so this
halves both; level 3 and above compress no smaller on these images, only slower.

The resize is the one the PNG path does (Pillow bilinear with ``reducing_gap=2.0``), so a store
at the native size gives the same cache bytes, and so the same training, as decoding the PNGs.
"""

from __future__ import annotations

import hashlib
import io
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

from protloc import storage
from protloc.data.hpa import decode_samples, resize_channel, sample_extensions
from protloc.errors import ArtifactError, ConfigError, DataError
from protloc.progress import eta

log = logging.getLogger(__name__)

STORE = "store.json"
INDEX = "index.parquet"
STORE_FORMAT = 2  # 1: raw shards (``.u8``)
FETCHES = 4  # shards downloaded at once
LEVEL = 1  # Zstandard's level: ~400 MB/s per core to compress, and no larger than level 3


def shard_name(split: str, k: int, size: int | None = None) -> str:
    """Shard k of a split at the store's size, or at one of its extra sizes."""
    return f"{split}-{k:05d}.u8.zst" if size is None else f"{split}-{k:05d}-{size}px.u8.zst"


def build_store(
    root: str,
    ids_by_split: dict[str, list[str]],
    size: int,
    out: str,
    *,
    shard_samples: int,
    workers: int,
    skip_bad: bool,
    labels_sha256: str,
    data_fingerprint: str = "",
    external: dict[str, list[str]] | None = None,
    extra_sizes: tuple[int, ...] = (),
) -> dict:
    """Decode every id of ``ids_by_split`` (``train`` and ``test`` folders of ``root``), and
    of ``external`` (data root -> ids of its ``train`` folder, stored as ``train`` samples) at
    ``size`` px into shards in ``out``; returns the ``store.json`` document, which records
    ``data_fingerprint`` (the data root's, when it was read) so a store of older images is
    refused later. Each shard is also written at every one of ``extra_sizes`` (resized from
    ``size`` as a cycle would), so a task fetches its cycle's bytes, not the largest size's."""
    doc: dict = {
        "format": STORE_FORMAT,
        "size": size,
        "sizes": sorted({size, *extra_sizes}),
        "labels_sha256": labels_sha256,
        "data_fingerprint": data_fingerprint,
        "splits": {},
    }
    index = []
    t0 = time.perf_counter()
    parts = [(split, root, ids) for split, ids in ids_by_split.items()]
    parts += [("train", ext_root, ids) for ext_root, ids in (external or {}).items()]
    total = sum(len(ids) for _, _, ids in parts)
    done = 0
    shards_of: dict[str, list[dict]] = {}
    skipped_of: dict[str, list[str]] = {}
    # One shard is resized, compressed and uploaded while the next one decodes.
    uploader = ThreadPoolExecutor(1)
    # The checksum (xxHash64) makes a damaged shard an error, not wrong pixels.
    compressor = zstandard.ZstdCompressor(level=LEVEL, threads=max(1, workers), write_checksum=True)
    resizer = ThreadPoolExecutor(max(1, workers))
    upload: Future | None = None
    for split, src, ids in parts:
        if not ids:
            continue
        extensions = sample_extensions(src, split, ids)  # one listing per folder
        shards = shards_of.setdefault(split, [])
        skipped = skipped_of.setdefault(split, [])
        for k, start in enumerate(range(0, len(ids), shard_samples)):
            chunk = ids[start : start + shard_samples]
            arrays, bad = _decode(src, split, chunk, size, extensions, workers, skip_bad)
            skipped += bad
            left_out = set(bad)
            kept = [i for i in chunk if i not in left_out]  # arrays are in this order
            if kept:
                if upload is not None:
                    upload.result()
                upload = uploader.submit(
                    _write_shard, out, split, len(shards), arrays, extra_sizes, resizer, compressor
                )
                del arrays
                index += [(i, split, len(shards), row) for row, i in enumerate(kept)]
                shards.append({"file": shard_name(split, len(shards)), "count": len(kept)})
            done += len(chunk)
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
        if not shards:
            raise DataError(f"every sample in {src}/{split} was bad; nothing to store")
        doc["splits"][split] = {"shards": shards, "skipped": skipped}
    if upload is not None:
        upload.result()
    uploader.shutdown()
    resizer.shutdown()
    frame = pd.DataFrame(index, columns=["id", "split", "shard", "row"])
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    storage.write_bytes(storage.join(out, INDEX), buf.getvalue())
    doc["index_sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    storage.write_json(storage.join(out, STORE), doc)
    log.info(
        "store: %d samples at %d px in %d shards, %.1f s",
        len(frame),
        size,
        sum(len(s["shards"]) for s in doc["splits"].values()),
        time.perf_counter() - t0,
    )
    return doc


def _write_shard(
    out: str,
    split: str,
    k: int,
    arrays: list[np.ndarray],
    extra_sizes: tuple[int, ...],
    resizer: ThreadPoolExecutor,
    compressor: zstandard.ZstdCompressor,
) -> None:
    """Shard k of ``split`` at the store's size and at each extra size (resized as a cycle
    would), each compressed and written to ``out``."""
    _write_frame(storage.join(out, shard_name(split, k)), arrays, compressor)
    for extra in extra_sizes:
        smaller = list(resizer.map(lambda a, s=extra: resize(a, s), arrays))
        _write_frame(storage.join(out, shard_name(split, k, extra)), smaller, compressor)


def _write_frame(uri: str, arrays: list[np.ndarray], compressor: zstandard.ZstdCompressor) -> None:
    """The arrays, in order, as one Zstandard frame: fed one by one, so the shard is never
    stacked into one more copy (that copy cost 0.4 s per 134-MB shard here)."""
    frame = compressor.compressobj(size=sum(a.nbytes for a in arrays))
    parts = [frame.compress(np.ascontiguousarray(a)) for a in arrays]
    parts.append(frame.flush())
    storage.write_bytes(uri, b"".join(parts))


def _decode(
    root: str,
    split: str,
    ids: list[str],
    size: int,
    extensions: dict[str, str | None],
    workers: int,
    skip_bad: bool,
) -> tuple[list[np.ndarray], list[str]]:
    """The samples of ``ids`` at ``size`` px, and the ids left out as bad (with ``skip_bad``;
    else the first bad one stops it, named)."""
    arrays, bad = [], []
    for sample_id, sample in decode_samples(root, split, ids, size, workers, skip_bad, extensions):
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
        """What the store's bytes are (its index and sizes): part of an image cache's key."""
        sizes = ",".join(map(str, self.sizes))
        return f"{self.size}:{sizes}:{self.doc['index_sha256']}"

    def skipped(self, split: str) -> list[str]:
        return list(self.doc["splits"].get(split, {}).get("skipped", []))


def open_store(uri: str) -> Store:
    """Read ``store.json`` and the index of the store folder ``uri``."""
    doc = storage.read_json(storage.join(uri, STORE))
    try:
        size = int(doc["size"])
        if doc.get("format") != STORE_FORMAT:
            raise ValueError(f"format {doc.get('format')!r}, this code reads {STORE_FORMAT}")
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{storage.join(uri, STORE)}: not a protloc store ({exc})") from None
    raw = storage.read_bytes(storage.join(uri, INDEX))
    if hashlib.sha256(raw).hexdigest() != doc.get("index_sha256"):
        raise ArtifactError(f"{storage.join(uri, INDEX)}: does not match {STORE} (changed?)")
    return Store(uri, size, doc, pd.read_parquet(io.BytesIO(raw)))


def require_same_data(store: Store, fingerprint: str, root: str) -> None:
    """Refuse a store prepared from other data than ``root`` holds now (images fixed or
    regenerated since: its pixels would be the old ones)."""
    then = store.doc.get("data_fingerprint", "")
    if then and then != fingerprint:
        raise ArtifactError(
            f"store {store.uri} was prepared from other data than {root} holds now "
            f"(fingerprint {then} then, {fingerprint} now): run prepare again"
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
    kept = [i for i in ids if i not in bad]
    rows = where.loc[kept]
    position = {sample_id: n for n, sample_id in enumerate(kept)}
    files = store.doc["splits"][split]["shards"]
    # The cycle's own size when the store holds it (no resize), else the largest.
    side = size if size in store.sizes else store.size

    def fetch(k: int) -> np.ndarray:
        name = files[k]["file"] if side == store.size else shard_name(split, k, side)
        uri = storage.join(store.uri, name)
        expected = files[k]["count"] * 4 * side * side
        try:
            # A decompressor per call: they are not thread-safe (and release the GIL).
            raw = zstandard.ZstdDecompressor().decompress(
                storage.read_bytes(uri), max_output_size=expected
            )
        except zstandard.ZstdError as exc:
            raise ArtifactError(f"{uri}: not a Zstandard frame of the store ({exc})") from None
        if len(raw) != expected:
            raise ArtifactError(f"{uri}: {len(raw)} bytes, not {files[k]['count']} samples")
        return np.frombuffer(raw, dtype=np.uint8).reshape(files[k]["count"], 4, side, side)

    def place(args: tuple[np.ndarray, str, int]) -> None:
        shard, sample_id, row = args
        write(position[sample_id], resize(shard[row], size))

    shards = iter(sorted(set(rows["shard"])))
    with ThreadPoolExecutor(FETCHES) as fetcher, ThreadPoolExecutor(max(1, workers)) as resizer:
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
