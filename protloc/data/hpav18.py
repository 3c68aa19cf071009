"""Fetch HPAv18 external images from the Human Protein Atlas image server into a data root.

    python -m protloc.data.hpav18 --labels HPAv18RBGY_wodpl.csv --out DATA_ROOT
        [--base-url http://v18.proteinatlas.org/images] [--workers 16] [--retries 5]
        [--file-timeout 300]

The labels CSV (``Id,Target``, the list the 2018 competitors shared) names the samples; an Id
``10580_1610_C1_1`` lives at ``{base_url}/10580/1610_C1_1_{colour}.jpg``, one colour-coded RGB
JPEG per channel. The data root it writes is what the split step's ``external`` reads:
``train.csv`` (the labels, copied) and ``train/{Id}_{colour}.jpg``.

Resumable (a file already there that decodes is kept), parallel (``--workers`` downloads at
once), retried with backoff (connection errors, 5xx, 429, truncated bodies), each file given
``--file-timeout`` seconds in all, its attempts included, however slowly its bytes come, every file
verified (its Content-Length when sent, then a full JPEG decode) and written atomically. The
ids that still fail after the retries are listed at the end and the command exits 2, having
kept everything it fetched.
"""

from __future__ import annotations

import argparse
import http.client
import io
import logging
import math
import random
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image

from protloc import storage
from protloc.classes import CHANNELS
from protloc.data.hpa import labels_uri, parse_labels
from protloc.errors import ConfigError, DataError
from protloc.progress import eta

log = logging.getLogger(__name__)

BASE_URL = "http://v18.proteinatlas.org/images"
TIMEOUT_S = 30  # no byte for this long: the connection is given up (per read)
FILE_TIMEOUT_S = 300.0  # one file's whole transfer, however slowly its bytes arrive
CHUNK = 1 << 16
# Set when the download is stopped (SIGTERM, Ctrl-C, an error): transfers end at their next read.
_STOP = threading.Event()


def image_url(base_url: str, sample_id: str, colour: str) -> str:
    """``{base}/{first part}/{the rest}_{colour}.jpg`` for an Id like ``10580_1610_C1_1``."""
    folder, sep, rest = sample_id.partition("_")
    if not sep or not rest:
        raise DataError(f"HPAv18 Id {sample_id!r} is not <antibody>_<plate>_<well>_<field>")
    return f"{base_url.rstrip('/')}/{folder}/{rest}_{colour}.jpg"


def verified(data: bytes) -> bool:
    """True when ``data`` is a whole JPEG (decoded fully, so truncation shows)."""
    try:
        img = Image.open(io.BytesIO(data))
        if img.format != "JPEG":
            return False
        img.load()
    except Exception:  # any decoder failure means: not a usable image
        return False
    return True


@dataclass
class Outcome:
    uri: str
    fetched: bool  # False: already there and whole
    error: str = ""


def _read_body(response, end: float, deadline_s: float) -> bytes:
    """The response's body, read in chunks: refused past the monotonic time ``end`` (a server
    that trickles a byte at a time never trips a per-read timeout) or once the download stops."""
    expected = response.headers.get("Content-Length")
    if expected is not None and not expected.strip().isdigit():
        raise http.client.HTTPException(f"Content-Length {expected!r} is not a byte count")
    parts = []
    while chunk := response.read1(CHUNK):
        parts.append(chunk)
        if _STOP.is_set():
            raise InterruptedError("download stopped")
        if time.monotonic() > end:
            raise TimeoutError(f"not whole after {deadline_s:g} s")
    data = b"".join(parts)
    if expected is not None and len(data) != int(expected):
        raise http.client.IncompleteRead(data, int(expected) - len(data))
    return data


def _short(exc: http.client.IncompleteRead) -> str:
    got = len(exc.partial)
    if exc.expected is None:  # a chunked body that broke off
        return f"{got} bytes, then the body ended"
    return f"{got} of {got + exc.expected} bytes"


def fetch_one(
    url: str, uri: str, retries: int, backoff_s: float, file_timeout_s: float = FILE_TIMEOUT_S
) -> Outcome:
    """One file: kept if already whole, else downloaded with retries and verified, all within
    ``file_timeout_s`` (its attempts and their waits included)."""
    if storage.exists(uri) and verified(storage.read_bytes(uri)):
        return Outcome(uri, fetched=False)
    end = time.monotonic() + file_timeout_s
    last = ""
    for attempt in range(retries + 1):
        wait = backoff_s * 2 ** (attempt - 1) * (0.5 + random.random()) if attempt else 0.0
        if _STOP.wait(min(wait, max(0.0, end - time.monotonic()))):
            return Outcome(uri, fetched=False, error=f"{url}: download stopped")
        if time.monotonic() > end:
            last = f"not whole after {file_timeout_s:g} s ({last})" if last else last
            break
        try:
            timeout = max(0.1, min(TIMEOUT_S, end - time.monotonic()))
            with urllib.request.urlopen(url, timeout=timeout) as response:
                data = _read_body(response, end, file_timeout_s)
            if not verified(data):
                last = "not a whole JPEG"
                continue
            storage.write_bytes(uri, data)
            return Outcome(uri, fetched=True)
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
            if exc.code < 500 and exc.code != 429:  # 404, 403: retrying will not help
                break
        except http.client.IncompleteRead as exc:
            last = _short(exc)
        except InterruptedError:
            return Outcome(uri, fetched=False, error=f"{url}: download stopped")
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            last = f"{type(exc).__name__}: {exc}"
    return Outcome(uri, fetched=False, error=f"{url}: {last}")


@contextmanager
def _stop_on_exit(pool: ThreadPoolExecutor) -> Iterator[None]:
    """On SIGTERM, Ctrl-C or an error, stop every transfer at its next read and drop the queued
    ones, so the process ends in seconds instead of waiting for the slowest server."""
    try:
        yield
    except BaseException:
        _STOP.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise


def download(
    labels_csv: str,
    out: str,
    base_url: str = BASE_URL,
    workers: int = 16,
    retries: int = 5,
    backoff_s: float = 1.0,
    file_timeout_s: float = FILE_TIMEOUT_S,
) -> list[str]:
    """Fetch every channel of every Id of ``labels_csv`` into ``out``; returns the failures
    (one line each, naming the URL), after writing ``{out}/train.csv``."""
    raw = storage.read_bytes(labels_csv)
    labels = parse_labels(raw, source=labels_csv)  # refuses a malformed list before any fetch
    jobs = [
        (image_url(base_url, i, c), storage.join(out, "train", f"{i}_{c}.jpg"))
        for i in labels["id"]
        for c in CHANNELS
    ]
    t0, done, fetched, failures = time.perf_counter(), 0, 0, []
    every = max(1, len(jobs) // 20)
    _STOP.clear()
    with ThreadPoolExecutor(max(1, workers)) as pool, _stop_on_exit(pool):
        for outcome in pool.map(
            lambda job: fetch_one(*job, retries, backoff_s, file_timeout_s), jobs
        ):
            done += 1
            fetched += outcome.fetched
            if outcome.error:
                failures.append(outcome.error)
                log.warning("failed: %s", outcome.error)
            if done % every == 0 or done == len(jobs):
                elapsed = time.perf_counter() - t0
                log.info(
                    "HPAv18: %d/%d files (%d fetched, %d kept, %d failed; %.1f files/s, %s)",
                    done,
                    len(jobs),
                    fetched,
                    done - fetched - len(failures),
                    len(failures),
                    done / max(elapsed, 1e-9),
                    eta(done, len(jobs), elapsed),
                )
    storage.write_bytes(labels_uri(out), raw)
    return failures


def main(argv: Sequence[str] | None = None) -> None:
    """The command line; a failure is a DataError (``protloc.process.run`` prints it, exit 2)."""
    p = argparse.ArgumentParser(prog="python -m protloc.data.hpav18", description=__doc__)
    p.add_argument("--labels", required=True, help="Id,Target CSV of the HPAv18 samples")
    p.add_argument(
        "--out", required=True, help="data root to write (a local folder, s3://, gs:// or az://)"
    )
    p.add_argument("--base-url", default=BASE_URL, help=f"image server (default {BASE_URL})")
    p.add_argument("--workers", type=int, default=16, help="downloads at once (default 16)")
    p.add_argument("--retries", type=int, default=5, help="retries per file (default 5)")
    p.add_argument(
        "--file-timeout",
        type=float,
        default=FILE_TIMEOUT_S,
        help=f"seconds one file may take in all, however slowly it arrives (default {FILE_TIMEOUT_S:g})",
    )
    args = p.parse_args(argv)
    if args.workers < 1 or args.retries < 0:
        raise ConfigError("--workers must be >= 1 and --retries >= 0")
    if not (math.isfinite(args.file_timeout) and args.file_timeout > 0):
        raise ConfigError(
            f"--file-timeout must be a number of seconds > 0, got {args.file_timeout}"
        )
    failures = download(
        args.labels,
        args.out,
        args.base_url,
        args.workers,
        args.retries,
        file_timeout_s=args.file_timeout,
    )
    if failures:
        raise DataError(
            f"{len(failures)} file(s) failed after {args.retries} retries (run again to "
            f"resume; everything fetched is kept); first: {failures[0]}"
        )


if __name__ == "__main__":
    from protloc import process

    sys.exit(process.run(main))
