"""The manifest contract: Parquet, one row per labelled sample.

Columns: ``id`` (string), ``labels`` (list<int8>), ``fold`` ('train' or 'val'), ``weight``
(float32, expected draws per epoch; 0 for validation rows), ``fold_index`` (int8): -1 in a
holdout manifest; in a K-fold manifest the fold (0..F-1) whose chain holds the sample out (-1: a
sample every chain trains on, e.g. external data), every row's ``fold`` is 'train' and every row
has its weight; and ``source`` (string): '' for the data root's samples, else the external data
root the sample's images and labels come from. :meth:`Manifest.chain` gives the train/val
view one chain of cycles sees. The split parameters, a SHA-256 of the labels file and the class
names are stored as JSON in the schema metadata under ``protloc``. A manifest written before
``fold_index`` existed reads as a holdout manifest.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from protloc import storage
from protloc.classes import CLASS_NAMES, NUM_CLASSES
from protloc.data.hpa import parse_labels
from protloc.errors import ArtifactError

FOLDS = ("train", "val")
log = logging.getLogger(__name__)

_META_KEY = b"protloc"
SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("labels", pa.list_(pa.int8()), nullable=False),
        pa.field("fold", pa.string(), nullable=False),
        pa.field("weight", pa.float32(), nullable=False),
        pa.field("fold_index", pa.int8(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
    ]
)
COMPETITION = ""  # source of the data root's samples; an external sample's is its data root
HOLDOUT = -1  # fold_index of every row of a holdout manifest


@dataclass
class Manifest:
    """A manifest's rows and its metadata (split parameters, labels hash, class names)."""

    frame: pd.DataFrame
    meta: dict[str, Any]

    def fold(self, name: str) -> pd.DataFrame:
        """The rows of one fold, index reset."""
        return self.frame[self.frame["fold"] == name].reset_index(drop=True)

    @property
    def folds(self) -> int:
        """F of a K-fold manifest, 1 for a holdout."""
        return int(self.frame["fold_index"].max()) + 1 if self.kfold else 1

    @property
    def assignment_sha256(self) -> str:
        """The SHA-256 of which sample is in which fold (source, id, fold, fold index): what a
        model's held-out rows depend on, unlike the weights. Checkpoints record it; infer
        refuses a manifest that assigns otherwise."""
        cols = ["source", "id", "fold", "fold_index"]
        rows = sorted("\t".join(map(str, r)) for r in self.frame[cols].itertuples(index=False))
        return hashlib.sha256("\n".join(rows).encode()).hexdigest()

    @property
    def kfold(self) -> bool:
        return bool((self.frame["fold_index"] >= 0).any())

    def held_out(self) -> pd.DataFrame:
        """The rows predictions are scored and thresholds fitted on: the validation rows of a
        holdout; the rows of a K-fold manifest some chain holds out (each predicted by it)."""
        if not self.kfold:
            return self.fold("val")
        return self.frame[self.frame["fold_index"] >= 0].reset_index(drop=True)

    @property
    def external(self) -> dict[str, list[str]]:
        """External data root -> the ids of its samples (empty without external data)."""
        part = self.frame[self.frame["source"] != COMPETITION]
        return {str(src): list(g["id"]) for src, g in part.groupby("source", sort=True)}

    def chain(self, fold: int) -> Manifest:
        """The manifest one chain of cycles sees: for ``fold`` k of a K-fold manifest, fold k's
        rows are its validation rows (weight 0) and the others its training rows; ``fold`` -1
        of a holdout manifest is the manifest itself. Any other pairing is refused."""
        if fold == HOLDOUT:
            if self.kfold:
                raise ArtifactError(
                    f"the manifest has {self.folds} folds: a chain must name its fold "
                    f"(fold 0..{self.folds - 1}), not -1"
                )
            return self
        if not self.kfold:
            raise ArtifactError(f"fold {fold} asked of a holdout manifest (fold must be -1)")
        if fold >= self.folds:
            raise ArtifactError(f"fold {fold} asked of a manifest of {self.folds} folds")
        held = (self.frame["fold_index"] == fold).to_numpy()
        frame = self.frame.copy()
        frame["fold"] = np.where(held, "val", "train")
        frame["weight"] = np.where(held, 0.0, frame["weight"]).astype(np.float32)
        return Manifest(frame=frame, meta=self.meta)


def to_bytes(frame: pd.DataFrame, meta: dict[str, Any]) -> bytes:
    """Serialise a manifest frame (id, labels, fold, weight, fold_index) to Parquet bytes."""
    meta = {**meta, "class_names": list(CLASS_NAMES)}
    if "fold_index" not in frame.columns:  # a holdout frame made without it
        frame = frame.assign(fold_index=np.int8(HOLDOUT))
    if "source" not in frame.columns:  # the data root's samples only
        frame = frame.assign(source=COMPETITION)
    table = pa.Table.from_pandas(frame[list(SCHEMA.names)], schema=SCHEMA, preserve_index=False)
    table = table.replace_schema_metadata({_META_KEY: json.dumps(meta, sort_keys=True).encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def write_manifest(frame: pd.DataFrame, meta: dict[str, Any], uri: str) -> None:
    """Write a manifest atomically to a local path or s3:// URI."""
    storage.write_bytes(uri, to_bytes(frame, meta))


def read_manifest(uri: str) -> Manifest:
    """Read and validate a manifest; any problem is an ArtifactError naming the file and column."""
    return parse_manifest(storage.read_bytes(uri), uri)


def parse_manifest(data: bytes, uri: str) -> Manifest:
    """Validate a manifest already read from ``uri`` (for callers that also need its bytes)."""
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ArtifactError(
            f"{uri}: not a readable Parquet manifest ({type(exc).__name__}: {exc})"
        ) from None
    return _validate(table, str(uri))


def _compatible(got: pa.DataType, want: pa.DataType) -> bool:
    """Accept what other writers produce for the same content (pandas writes large_string, a
    float64 weight, a list of int64), not other kinds of data."""
    if pa.types.is_string(want):
        return pa.types.is_string(got) or pa.types.is_large_string(got)
    if pa.types.is_floating(want):
        return pa.types.is_floating(got)
    if pa.types.is_integer(want):
        return pa.types.is_integer(got)
    if pa.types.is_list(want):
        return (pa.types.is_list(got) or pa.types.is_large_list(got)) and pa.types.is_integer(
            got.value_type
        )
    return got == want


def _validate(table: pa.Table, uri: str) -> Manifest:
    if "fold_index" not in table.column_names:  # written before K folds existed: a holdout
        table = table.append_column(
            "fold_index", pa.array(np.full(table.num_rows, HOLDOUT, dtype=np.int8))
        )
    if "source" not in table.column_names:  # written before external data existed
        table = table.append_column("source", pa.array([COMPETITION] * table.num_rows))
    missing = [f.name for f in SCHEMA if f.name not in table.column_names]
    if missing:
        raise ArtifactError(f"{uri}: manifest lacks column(s) {', '.join(missing)}")
    for f in SCHEMA:
        got = table.schema.field(f.name).type
        if not _compatible(got, f.type):
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
    _check_rows(frame, uri)
    return Manifest(frame=frame, meta=meta)


def _check_rows(frame: pd.DataFrame, uri: str) -> None:
    """No nulls or repeated ids, known folds, sane weights and classes, some training rows;
    turns ``labels`` into lists of ints in place."""
    if (
        frame["id"].isna().any()
        or frame["fold"].isna().any()
        or frame["weight"].isna().any()
        or frame["labels"].isna().any()
        or frame["fold_index"].isna().any()
        or frame["source"].isna().any()
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
    index = frame["fold_index"].to_numpy()
    if index.min() < HOLDOUT:
        raise ArtifactError(f"{uri}: manifest column 'fold_index' is below -1")
    if index.max() >= 0:
        folds = int(index.max()) + 1
        empty = sorted(set(range(folds)) - set(index.tolist()))
        if empty or (frame["fold"] != "train").any():
            raise ArtifactError(
                f"{uri}: K-fold manifest is inconsistent: "
                + (f"fold {empty[0]} has no rows" if empty else "a row's 'fold' is not 'train'")
            )


def check_labels(manifest: Manifest, labels_uri: str, source: str = "manifest") -> None:
    """Refuse a manifest made from labels other than ``labels_uri``'s (if that file exists).

    The SHA-256 recorded by the split step is the fast path. When it differs (the manifest was
    made from a subset, or from another file), every manifest row must still be in the labels
    file with the same classes; the first one that is not is named.
    """
    if not storage.exists(labels_uri):
        log.warning("%s: no labels file at %s to check the manifest against", source, labels_uri)
        return
    raw = storage.read_bytes(labels_uri)
    recorded = manifest.meta.get("labels_sha256")
    digest = hashlib.sha256(raw).hexdigest()
    if recorded == digest:
        return
    labels_frame = parse_labels(raw, labels_uri)
    truth = dict(zip(labels_frame["id"], labels_frame["labels"], strict=True))
    own = manifest.frame[manifest.frame["source"] == COMPETITION]  # external rows: their roots'
    for sample_id, labels in zip(own["id"], own["labels"], strict=True):
        if sample_id not in truth or list(labels) != truth[sample_id]:
            now = truth.get(sample_id)
            raise ArtifactError(
                f"{source} was made from another labels file than {labels_uri}: id "
                f"{sample_id!r} has labels {list(labels)} in the manifest, "
                + (
                    f"{now} in the labels file"
                    if now is not None
                    else "and is not in the labels file"
                )
                + f" (labels sha256 {str(recorded)[:12]}... recorded, {digest[:12]}... now)"
            )
    log.info(
        "%s was made from another labels file than %s, but its %d rows agree with it",
        source,
        labels_uri,
        len(manifest.frame),
    )


def require_store_for_external(manifest: Manifest, store: object | None) -> None:
    """External samples are decoded by the prepare step only: a train or infer task reads them
    from its store, never from their roots (its caches come from one data root)."""
    roots = sorted(manifest.external)
    if roots and store is None:
        raise ArtifactError(
            f"the manifest has external samples (from {', '.join(roots)}): give the prepare "
            "step's store (--store), which decoded them"
        )
