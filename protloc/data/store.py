"""The sample store: every labelled and test sample decoded once, as uint8 shards.

Decoding four PNGs costs ~12 ms per 512-px sample and core, and without a store every train task
and the infer task decode every image again (8 times for the Table-1 schedule). The prepare step
decodes each sample once, at the schedule's largest size (the native 512 px for HPA's Table 1),
into shards of (n, 4, S, S) uint8 arrays, ``{split}-{k:05d}.u8.zst``, with an index
(``index.parquet``: id, split, shard, row) and ``store.json`` (size, shard files and each one's
SHA-256 at every size, the SHA-256 of each shard's ids in row order, skipped ids, the labels'
SHA-256). Opening a store checks every index row against its shard's ids digest (rows swapped or
moved between ids are refused, even with the index's own hash rewritten), every fetch checks a
shard's SHA-256,
and a cache built from a store is keyed by all of them (:attr:`Store.identity`), so a store
prepared again from changed images never meets a cache of the old pixels. A task then fetches
only the shards it needs, in parallel, and derives its cycle's size from the uint8 arrays: a
resize, never a PNG decode. Building a store: ``protloc.data.store_build``.

Each shard is one Zstandard frame (level 1): on real HPA channels it is 2.1x smaller than the raw
arrays, about the size of the PNGs, and decompresses at ~780 MB/s per core, ~8x the ~95 MB/s of
pixels PNG decoding gives (``docs/benchmarks.md``). Fetching and writing the store are bound by
bytes, so this halves both; level 3 and above compress no smaller on these images, only slower.

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
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice

import numpy as np
import pandas as pd
import zstandard
from PIL import Image

from protloc import schemas, storage
from protloc.cpus import compute_threads
from protloc.data.hpa import resize_channel
from protloc.data.identity import DataListing
from protloc.errors import ArtifactError, ConfigError, DataError
from protloc.folders import STORE, STORE_INDEX
from protloc.schemas import StoreDoc

log = logging.getLogger(__name__)

STORE_FORMAT = 4  # 1: raw shards (``.u8``); 2: no per-shard SHA-256; 3: no per-shard ids digest
FETCHES = 4  # shards downloaded at once
LEVEL = 1  # Zstandard's level: ~400 MB/s per core to compress, and no larger than level 3


def ids_digest(ids: list[str]) -> str:
    """The SHA-256 of a shard's ids in row order: what binds each id to its pixels."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def shard_name(split: str, k: int, size: int | None = None) -> str:
    """Shard k of a split at the store's size, or at one of its extra sizes."""
    return f"{split}-{k:05d}.u8.zst" if size is None else f"{split}-{k:05d}-{size}px.u8.zst"


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
    index_uri = storage.join(uri, STORE_INDEX)
    raw = storage.read_bytes(index_uri)
    if hashlib.sha256(raw).hexdigest() != checked.index_sha256:
        raise ArtifactError(f"{index_uri}: does not match {STORE} (changed?)")
    index = pd.read_parquet(io.BytesIO(raw))
    _check_rows(index, checked, index_uri)
    return Store(uri, checked.size, doc, index)


def _check_rows(index: pd.DataFrame, doc: StoreDoc, index_uri: str) -> None:
    """Refuse an index whose rows do not hold, shard by shard and in row order, the ids that
    ``store.json`` recorded for each shard (an id pointing at another sample's pixels)."""
    try:
        groups = dict(
            iter(index.sort_values(["split", "shard", "row"]).groupby(["split", "shard"]))
        )
    except KeyError as exc:
        raise ArtifactError(f"{index_uri}: no column {exc.args[0]!r}") from None
    for split, part in doc.splits.items():
        for k, shard in enumerate(part.shards):
            rows = groups.pop((split, k), index.iloc[:0])
            if rows["row"].tolist() != list(range(shard.count)) or (
                ids_digest(rows["id"].astype(str).tolist()) != shard.ids_sha256
            ):
                raise ArtifactError(
                    f"{index_uri}: the rows of {split} shard {shard.file} are not the ids "
                    f"{STORE} recorded for it (rows swapped or changed): run prepare again"
                )
    if groups:
        (split, k), _ = next(iter(groups.items()))
        raise ArtifactError(f"{index_uri}: rows point at {split} shard {k}, which {STORE} lacks")


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
