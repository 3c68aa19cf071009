"""The predictions contract (no torch): Parquet, one row per (id, split, snapshot).

Columns: ``id`` (string), ``split`` ('val' or 'test'), ``snapshot`` (a snapshot name or
'ensemble'), ``fold`` (int8: the chain of cycles that made the row, -1 for a holdout run and for
the test ensemble over folds) and ``p0``..``p27`` (float32 sigmoid probabilities). With K folds,
'val' rows are out-of-fold: each labelled sample is predicted by the one chain that held it
out. Readable by pandas, pyarrow, duckdb and polars. A file written before ``fold`` existed reads
with fold -1.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from protloc import storage
from protloc.classes import NUM_CLASSES
from protloc.errors import ArtifactError

ENSEMBLE = "ensemble"
SPLITS = ("val", "test")
PROB_COLUMNS: tuple[str, ...] = tuple(f"p{c}" for c in range(NUM_CLASSES))
SCHEMA = pa.schema(
    [pa.field("id", pa.string()), pa.field("split", pa.string()), pa.field("snapshot", pa.string())]
    + [pa.field("fold", pa.int8())]
    + [pa.field(c, pa.float32()) for c in PROB_COLUMNS]
)


def frame(
    ids: list[str], split: str, snapshot: str, probs: np.ndarray, fold: int = -1
) -> pd.DataFrame:
    """Rows for one snapshot's probabilities (N, 28) on one split."""
    out = pd.DataFrame(np.asarray(probs, dtype=np.float32), columns=list(PROB_COLUMNS))
    out.insert(0, "fold", np.int8(fold))
    out.insert(0, "snapshot", snapshot)
    out.insert(0, "split", split)
    out.insert(0, "id", list(ids))
    return out


def write_predictions(rows: pd.DataFrame, uri: str) -> None:
    """Write atomically to a local path or s3:// URI."""
    table = pa.Table.from_pandas(rows[list(SCHEMA.names)], schema=SCHEMA, preserve_index=False)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    storage.write_bytes(uri, buf.getvalue())


def read_predictions(uri: str) -> pd.DataFrame:
    """Read and validate; any problem is an ArtifactError naming the file, column and id."""
    data = storage.read_bytes(uri)
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ArtifactError(f"{uri}: not a readable Parquet predictions file ({exc})") from None
    rows = table.to_pandas()
    if "fold" not in rows.columns:  # written before K folds existed
        rows.insert(3, "fold", np.int8(-1))
    return validate(rows, str(uri))


def validate(rows: pd.DataFrame, source: str) -> pd.DataFrame:
    """Check columns, types, values and uniqueness of a predictions frame."""
    missing = [c for c in SCHEMA.names if c not in rows.columns]
    if missing:
        raise ArtifactError(f"{source}: predictions lack column(s) {', '.join(missing[:5])}")
    for col in ("id", "split", "snapshot"):
        if rows[col].isna().any() or not all(isinstance(v, str) for v in rows[col]):
            raise ArtifactError(f"{source}: predictions column {col!r} must hold strings")
    bad_split = ~rows["split"].isin(SPLITS)
    if bad_split.any():
        raise ArtifactError(
            f"{source}: predictions column 'split' has {rows['split'][bad_split].iloc[0]!r}; expected val or test"
        )
    if not pd.api.types.is_integer_dtype(rows["fold"]) or (rows["fold"] < -1).any():
        raise ArtifactError(f"{source}: predictions column 'fold' must hold integers >= -1")
    for col in PROB_COLUMNS:
        if not pd.api.types.is_float_dtype(rows[col]):
            raise ArtifactError(
                f"{source}: predictions column {col!r} has type {rows[col].dtype}, expected float"
            )
    probs = rows[list(PROB_COLUMNS)].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(probs) | (probs < 0) | (probs > 1)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ArtifactError(
            f"{source}: predictions column {PROB_COLUMNS[c]!r} has {probs[r, c]} for id "
            f"{rows['id'].iloc[r]!r} ({rows['split'].iloc[r]}, {rows['snapshot'].iloc[r]}); "
            f"probabilities must be finite and in [0, 1]"
        )
    dup = rows.duplicated(["id", "split", "snapshot"])
    if dup.any():
        r = int(np.flatnonzero(dup.to_numpy())[0])
        raise ArtifactError(
            f"{source}: id {rows['id'].iloc[r]!r} appears twice for {rows['split'].iloc[r]}/{rows['snapshot'].iloc[r]}"
        )
    return rows.reset_index(drop=True)


def select(rows: pd.DataFrame, split: str, snapshot: str = ENSEMBLE) -> pd.DataFrame:
    """The rows of one split and snapshot, in stored order."""
    out = rows[(rows["split"] == split) & (rows["snapshot"] == snapshot)].reset_index(drop=True)
    return out


def probabilities(rows: pd.DataFrame) -> np.ndarray:
    """The (N, 28) probability matrix of a frame."""
    return rows[list(PROB_COLUMNS)].to_numpy(dtype=np.float64)
