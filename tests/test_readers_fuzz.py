"""Fuzz-style tests: hundreds of mutated labels CSVs, manifests and predictions files.

Every input must end in either a valid result or a clean ProtlocError (the CLIs turn those into
one line and exit 2); never another exception from deep inside csv, pyarrow or pandas, never a
hang. Mutations are seeded, so a failure names a case that reproduces.
"""

from __future__ import annotations

import io
import random
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from protloc.classes import NUM_CLASSES
from protloc.data.hpa import parse_labels
from protloc.data.manifest import read_manifest, to_bytes
from protloc.errors import ProtlocError
from protloc.evaluate import predictions as preds

CASES = 300  # per reader
SECONDS_PER_CASE = 5


@contextmanager
def deadline(seconds: int, case: str) -> Iterator[None]:
    """Fail the case (instead of hanging the suite) if it runs longer than ``seconds``."""

    def fire(signum, frame):
        raise TimeoutError(f"{case}: still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ----------------------------------------------------------------------------- byte mutations

HUGE = [
    b"99999999999999999999999999",
    b"-1",
    b"1e308",
    b"nan",
    b"inf",
    b"28",
    b"3.5",
    b"\x00",
    b"x" * 100_000,
]


def _truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def _flip(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def _insert(data: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(data) + 1)
    return data[:at] + rng.choice([*HUGE, bytes(rng.randrange(256) for _ in range(16))]) + data[at:]


def _delete_span(data: bytes, rng: random.Random) -> bytes:
    a = rng.randrange(len(data))
    return data[:a] + data[a + rng.randint(1, 64) :]


def _duplicate_span(data: bytes, rng: random.Random) -> bytes:
    a = rng.randrange(len(data))
    b = min(len(data), a + rng.randint(1, 256))
    return data[:b] + data[a:b] + data[b:]


BYTE_MUTATIONS: list[Callable[[bytes, random.Random], bytes]] = [
    _truncate,
    _flip,
    _insert,
    _delete_span,
    _duplicate_span,
]


# ----------------------------------------------------------------------------- labels CSV

LABELS = (
    b"Id,Target\n"
    b"00070df0-bbc3-11e8-b2bc-ac1f6b6435d0,16 0\n"
    b"000a6c98-bb9b-11e8-b2b9-ac1f6b6435d0,7 1 2 0\n"
    b"000a9596-bbc4-11e8-b2bc-ac1f6b6435d0,5\n"
    b"000c99ba-bba4-11e8-b2b9-ac1f6b6435d0,1\n"
    b"001838f8-bbca-11e8-b2bc-ac1f6b6435d0,18\n"
)


def _labels_semantic(rng: random.Random) -> bytes:
    """Well-formed CSV with bad content: wrong types, huge values, encodings, columns."""
    text = LABELS.decode()
    choice = rng.randrange(9)
    if choice == 0:
        return text.encode("utf-16")
    if choice == 1:
        return text.replace("16 0", "16 0 \u00e9").encode("latin-1")
    if choice == 2:
        return text.replace("Target", "Targets").encode()
    if choice == 3:
        return text.replace("7 1 2 0", rng.choice(HUGE).decode("latin-1")).encode()
    if choice == 4:
        return text.replace(",5\n", ",5,extra\n").encode()
    if choice == 5:
        return (text + text.splitlines()[1] + "\n").encode()  # duplicate Id
    if choice == 6:
        return text.replace("Id,Target", "Target,Id").encode()  # swapped: Ids are not Ids
    if choice == 7:
        return text.replace("\n", "\r").encode()
    return b'Id,Target\n"unterminated,1\n'


def _check_labels(frame: pd.DataFrame) -> None:
    assert frame["id"].is_unique and len(frame) > 0
    for labels in frame["labels"]:
        assert labels and all(0 <= c < NUM_CLASSES for c in labels)


# ----------------------------------------------------------------------------- Parquet files


def _manifest_frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "id": [f"id{i:03d}" for i in range(40)],
            "labels": [
                sorted({int(c) for c in rng.integers(0, NUM_CLASSES, 2)}) for _ in range(40)
            ],
            "fold": ["train"] * 30 + ["val"] * 10,
            "weight": [1.0] * 30 + [0.0] * 10,
        }
    )


MANIFEST = to_bytes(_manifest_frame(), {"labels_sha256": "0" * 64})


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _manifest_semantic(rng: random.Random) -> bytes:
    frame = _manifest_frame()
    choice = rng.randrange(10)
    if choice == 0:
        frame["labels"] = frame["labels"].astype(str)
    elif choice == 1:
        frame["weight"] = ["heavy"] * len(frame)
    elif choice == 2:
        frame.loc[3, "weight"] = rng.choice([1e30, -1.0, float("nan"), float("inf")])
    elif choice == 3:
        frame.at[5, "labels"] = [rng.choice([-1, 28, 127, 10**6])]
    elif choice == 4:
        frame.at[5, "labels"] = []
    elif choice == 5:
        frame["id"] = range(len(frame))
    elif choice == 6:
        frame.loc[7, "fold"] = rng.choice(["test", "", "TRAIN"])
    elif choice == 7:
        frame.loc[8, "id"] = frame.loc[9, "id"]
    elif choice == 8:
        frame = frame.drop(columns=[rng.choice(["id", "labels", "fold", "weight"])])
    else:
        table = pa.Table.from_pandas(_manifest_frame(), preserve_index=False)
        meta = rng.choice([b"{not json", b"[1, 2]", b'{"class_names": ["a", "b"]}', b"\xff\xfe"])
        return _parquet(table.replace_schema_metadata({b"protloc": meta}))
    return _parquet(pa.Table.from_pandas(frame, preserve_index=False))


def _check_manifest(uri: str) -> None:
    m = read_manifest(uri)
    assert m.frame["id"].is_unique and set(m.frame["fold"]) <= {"train", "val"}


def _predictions_frame() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    probs = rng.random((20, NUM_CLASSES)).astype(np.float32)
    return pd.concat(
        [
            preds.frame([f"id{i:03d}" for i in range(10)], "val", "ensemble", probs[:10]),
            preds.frame([f"t{i:03d}" for i in range(10)], "test", "ensemble", probs[10:]),
        ],
        ignore_index=True,
    )


def _predictions_bytes(frame: pd.DataFrame) -> bytes:
    return _parquet(pa.Table.from_pandas(frame, preserve_index=False))


PREDICTIONS = _predictions_bytes(_predictions_frame())


def _predictions_semantic(rng: random.Random) -> bytes:
    frame = _predictions_frame()
    choice = rng.randrange(8)
    col = f"p{rng.randrange(NUM_CLASSES)}"
    if choice == 0:
        frame[col] = frame[col].astype(str)
    elif choice == 1:
        frame[col] = frame[col].astype(np.float64)
        frame.loc[rng.randrange(20), col] = rng.choice([1e308, -0.5, float("nan"), float("-inf")])
    elif choice == 2:
        frame = frame.drop(columns=[col])
    elif choice == 3:
        frame.loc[2, "split"] = rng.choice(["train", "", "VAL"])
    elif choice == 4:
        frame["id"] = range(len(frame))
    elif choice == 5:
        frame.loc[1, "id"] = frame.loc[0, "id"]
    elif choice == 6:
        frame[col] = (frame[col] * 255).astype(np.uint8)
    else:
        frame.loc[4, "snapshot"] = None
    return _predictions_bytes(frame)


def _check_predictions(uri: str) -> None:
    rows = preds.read_predictions(uri)
    p = preds.probabilities(rows)
    assert np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()


# ----------------------------------------------------------------------------- the runs


def _mutants(seed: int, original: bytes, semantic: Callable[[random.Random], bytes]):
    rng = random.Random(seed)
    for i in range(CASES):
        if i % 3 == 0:
            yield i, semantic(rng)
        else:
            data = original
            for _ in range(rng.randint(1, 3)):
                mutate = rng.choice(BYTE_MUTATIONS) if data else _insert
                data = mutate(data, rng)
            yield i, data


def _fuzz(name: str, cases, read: Callable[[bytes, str], None]) -> dict[str, int]:
    outcomes = {"valid": 0, "refused": 0}
    for i, data in cases:
        case = f"{name} case {i}"
        with deadline(SECONDS_PER_CASE, case):
            try:
                read(data, case)
            except ProtlocError as exc:
                assert str(exc).strip(), f"{case}: empty error message"
                outcomes["refused"] += 1
            except Exception as exc:
                pytest.fail(f"{case}: {type(exc).__name__} escaped: {exc!r:.300}")
            else:
                outcomes["valid"] += 1
    return outcomes


def test_labels_parser_fuzz():
    outcomes = _fuzz(
        "labels",
        _mutants(11, LABELS, _labels_semantic),
        lambda data, case: _check_labels(parse_labels(data, case)),
    )
    assert sum(outcomes.values()) == CASES
    assert outcomes["refused"] > CASES // 3, outcomes


@pytest.mark.parametrize(
    "name, original, semantic, check",
    [
        ("manifest", MANIFEST, _manifest_semantic, _check_manifest),
        ("predictions", PREDICTIONS, _predictions_semantic, _check_predictions),
    ],
)
def test_parquet_readers_fuzz(tmp_path, name, original, semantic, check):
    path = tmp_path / f"{name}.parquet"

    def read(data: bytes, case: str) -> None:
        path.write_bytes(data)
        check(str(path))

    outcomes = _fuzz(name, _mutants(23, original, semantic), read)
    assert sum(outcomes.values()) == CASES
    assert outcomes["refused"] > CASES // 2, outcomes
