"""The manifest contract: Parquet, one row per labelled sample.

Columns: ``id`` (string), ``labels`` (list<int8>), ``fold`` ('train' or 'val'), ``weight``
(float32, expected draws per epoch; 0 for validation rows). The split parameters, a SHA-256 of
the labels file and the class names are stored as JSON in the schema metadata under ``protloc``.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from protloc import storage
from protloc.classes import CLASS_NAMES, NUM_CLASSES
from protloc.errors import ArtifactError

FOLDS = ("train", "val")
_META_KEY = b"protloc"
SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("labels", pa.list_(pa.int8()), nullable=False),
        pa.field("fold", pa.string(), nullable=False),
        pa.field("weight", pa.float32(), nullable=False),
    ]
)


@dataclass
class Manifest:
    """A manifest's rows and its metadata (split parameters, labels hash, class names)."""

    frame: pd.DataFrame
    meta: dict[str, Any]

    def fold(self, name: str) -> pd.DataFrame:
        """The rows of one fold, index reset."""
        return self.frame[self.frame["fold"] == name].reset_index(drop=True)


def to_bytes(frame: pd.DataFrame, meta: dict[str, Any]) -> bytes:
    """Serialise a manifest frame (id, labels, fold, weight) to Parquet bytes."""
    meta = {**meta, "class_names": list(CLASS_NAMES)}
    table = pa.Table.from_pandas(
        frame[["id", "labels", "fold", "weight"]], schema=SCHEMA, preserve_index=False
    )
    table = table.replace_schema_metadata({_META_KEY: json.dumps(meta, sort_keys=True).encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def write_manifest(frame: pd.DataFrame, meta: dict[str, Any], uri: str) -> None:
    """Write a manifest atomically to a local path or s3:// URI."""
    storage.write_bytes(uri, to_bytes(frame, meta))


def read_manifest(uri: str) -> Manifest:
    """Read and validate a manifest; any problem is an ArtifactError naming the file and column."""
    data = storage.read_bytes(uri)
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ArtifactError(
            f"{uri}: not a readable Parquet manifest ({type(exc).__name__}: {exc})"
        ) from None
    return _validate(table, str(uri))


def _validate(table: pa.Table, uri: str) -> Manifest:
    missing = [f.name for f in SCHEMA if f.name not in table.column_names]
    if missing:
        raise ArtifactError(f"{uri}: manifest lacks column(s) {', '.join(missing)}")
    for f in SCHEMA:
        got = table.schema.field(f.name).type
        ok = got == f.type or (
            f.name == "labels" and pa.types.is_list(got) and pa.types.is_integer(got.value_type)
        )
        if not ok:
            raise ArtifactError(
                f"{uri}: manifest column {f.name!r} has type {got}, expected {f.type}"
            )
    raw = (table.schema.metadata or {}).get(_META_KEY)
    try:
        meta = json.loads(raw) if raw else {}
    except (ValueError, UnicodeDecodeError):
        raise ArtifactError(f"{uri}: manifest metadata is not valid JSON") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"{uri}: manifest metadata is not a JSON object")
    names = meta.get("class_names")
    if names is not None and list(names) != list(CLASS_NAMES):
        raise ArtifactError(
            f"{uri}: manifest was made for {len(names)} other classes, not protloc's {NUM_CLASSES}"
        )
    frame = table.select([f.name for f in SCHEMA]).to_pandas()
    if (
        frame["id"].isna().any()
        or frame["fold"].isna().any()
        or frame["weight"].isna().any()
        or frame["labels"].isna().any()
    ):
        raise ArtifactError(f"{uri}: manifest has null values")
    dup = frame["id"].duplicated()
    if dup.any():
        raise ArtifactError(f"{uri}: manifest column 'id' repeats {frame['id'][dup].iloc[0]!r}")
    bad_fold = ~frame["fold"].isin(FOLDS)
    if bad_fold.any():
        raise ArtifactError(
            f"{uri}: manifest column 'fold' has {frame['fold'][bad_fold].iloc[0]!r} "
            f"(id {frame['id'][bad_fold].iloc[0]!r}); expected train or val"
        )
    weights = frame["weight"].to_numpy()
    if not np.isfinite(weights).all() or (weights < 0).any() or (weights > 1e3).any():
        raise ArtifactError(f"{uri}: manifest column 'weight' must hold finite values in [0, 1000]")
    frame["labels"] = [list(map(int, x)) for x in frame["labels"]]
    for sample_id, labels in zip(frame["id"], frame["labels"], strict=True):
        if not labels or min(labels) < 0 or max(labels) >= NUM_CLASSES:
            raise ArtifactError(
                f"{uri}: manifest column 'labels' of id {sample_id!r} is {labels}; "
                f"expected classes in 0..{NUM_CLASSES - 1}"
            )
    if not (frame["fold"] == "train").any():
        raise ArtifactError(f"{uri}: manifest has no training rows")
    return Manifest(frame=frame, meta=meta)


def check_labels_hash(manifest: Manifest, labels_sha256: str, labels_uri: str) -> None:
    """Refuse a manifest that was made from another labels file."""
    recorded = manifest.meta.get("labels_sha256")
    if recorded and recorded != labels_sha256:
        raise ArtifactError(
            f"manifest was made from a different labels file than {labels_uri} "
            f"(sha256 {recorded[:12]}... recorded, {labels_sha256[:12]}... now)"
        )
