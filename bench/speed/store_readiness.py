"""Data readiness of one train task: decoding the PNGs (the old path) against reading the
prepare step's store (the new one), both from S3 (moto's server on 127.0.0.1), on N real-size
samples (512 px, 4 channels: the 20 real HPA channel files of tests/data/hpa, reused under N
ids); and the prepare step's own rate against plain decoding. The store holds every size
asked for (its extra sizes), so a smaller size also reports the old way of reading the largest
size's shards and resizing them.

Readiness here is the seconds from nothing to a finished image cache at the cycle's size: what
a train task does before its first optimizer step besides building the model (~1 s on either
path). Every build starts from an empty cache folder, after the previous build's cache reached
the disk (a cache is written to disk in the background while training runs: not timed here, as
a task does not wait for it either).

    .venv/bin/python -m bench.speed.store_readiness [--samples 1000] [--sizes 221,512] [--workers 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from bench import ROOT
from protloc import storage
from protloc.config import PrepareConfig
from protloc.data.cache import build_cache, wait_until_durable
from protloc.data.hpa import CHANNELS
from protloc.data.identity import DataListing
from protloc.data.store import open_store
from protloc.data.store_build import build_store

REAL = ROOT / "tests" / "data" / "hpa" / "real_channels"


def _moto() -> tuple[subprocess.Popen, str]:
    """moto's S3 server as its own process on a free port of 127.0.0.1 (as S3 is another
    machine: it does not share this process's interpreter), test credentials in the env."""
    import socket

    import boto3

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
    )
    client = boto3.client("s3", endpoint_url=endpoint)
    for _ in range(100):
        try:
            client.create_bucket(Bucket="bench")
            break
        except Exception:  # not listening yet
            time.sleep(0.1)
    return server, "s3://bench"


def upload(root: str, n: int) -> list[str]:
    """N samples under ``{root}/train/``: each channel one of the 5 real files of its colour."""
    files = {c: sorted(REAL.glob(f"*_{c}.png")) for c in CHANNELS}
    data = {c: [f.read_bytes() for f in fs] for c, fs in files.items()}
    ids = [f"s{i:05d}" for i in range(n)]

    def put(i: int) -> None:
        for c in CHANNELS:
            blob = data[c][i % len(data[c])]
            storage.write_bytes(storage.join(root, "train", f"{ids[i]}_{c}.png"), blob)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(n)))
    return ids


def _timed(root: str, ids: list[str], size: int, folder: Path, workers: int, store=None) -> float:
    """Seconds to build one cache in an empty ``folder``; then its disk writes finish (so the
    next build starts quiet, as a task does) and the folder is removed (tmpfs is memory)."""
    t0 = time.perf_counter()
    build_cache(DataListing(root), "train", ids, size, folder, workers=workers, store=store)
    seconds = time.perf_counter() - t0
    wait_until_durable()
    shutil.rmtree(folder)
    return seconds


def run(samples: int, sizes: list[int], workers: int, shard_samples: int) -> dict:
    """Old and new readiness per size, with the image cache on the disk and in memory (tmpfs,
    when /dev/shm exists); the prepare step's time; the shards' bytes against the raw arrays'."""
    server, bucket = _moto()
    try:
        root = f"{bucket}/data"
        t0 = time.perf_counter()
        ids = upload(root, samples)
        out: dict = {"samples": samples, "workers": workers, "upload_s": time.perf_counter() - t0}
        store_uri = f"{bucket}/store"
        t0 = time.perf_counter()
        extra = ",".join(str(s) for s in sorted(set(sizes) - {max(sizes)}))
        cfg = PrepareConfig(
            store_size=max(sizes), extra_sizes=extra, shard_samples=shard_samples, workers=workers
        )
        build_store(
            cfg,
            DataListing(root),
            {"train": ids},
            external={},
            labels_sha256="",
            data_fingerprint="",
            out=store_uri,
        )
        out["prepare_s"] = time.perf_counter() - t0
        out["shard_samples"] = shard_samples
        # The listing's identity starts with the object's size: nothing is downloaded again.
        out["shard_bytes"] = sum(
            int(ident.split(":")[0])
            for name, ident in storage.listing(store_uri).items()
            if ".u8" in name
        )
        out["raw_bytes"] = samples * 4 * sum(s * s for s in sizes)  # every size, uncompressed
        store = open_store(store_uri)
        largest = replace(store, doc={**store.doc, "sizes": [store.size]})  # the old layout
        with contextlib.ExitStack() as stack:
            places = {"": Path(stack.enter_context(tempfile.TemporaryDirectory()))}
            if Path("/dev/shm").is_dir():
                places["mem_"] = Path(
                    stack.enter_context(tempfile.TemporaryDirectory(dir="/dev/shm"))
                )
            for size in sizes:
                for tag, where in places.items():
                    args = (root, ids, size, where / str(size), workers)
                    out[f"old_{tag}{size}_s"] = _timed(*args)
                    out[f"new_{tag}{size}_s"] = _timed(*args, open_store(store_uri))
                    if size < max(sizes) and not tag:  # the largest size's shards, resized
                        out[f"new_resized_{size}_s"] = _timed(*args, largest)
    finally:
        server.terminate()
        server.wait()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--sizes", default="221,512")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--shard-samples", type=int, default=128)
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    out = run(args.samples, sizes, args.workers, args.shard_samples)
    for size in sizes:
        old, new = out[f"old_{size}_s"], out[f"new_{size}_s"]
        resized = out.get(f"new_resized_{size}_s")
        line = f"{size} px, cache on disk: decode PNGs {old:.1f} s, read the store {new:.1f} s: "
        line += f"{old / new:.1f}x" + (
            f" (resizing the largest shards: {resized:.1f} s)" if resized else ""
        )
        if f"new_mem_{size}_s" in out:
            old_m, new_m = out[f"old_mem_{size}_s"], out[f"new_mem_{size}_s"]
            line += f"; cache in memory: {old_m:.1f} s / {new_m:.1f} s: {old_m / new_m:.1f}x"
        print(line)
    per_core_prepare = args.samples / out["prepare_s"] / args.workers
    per_core_decode = args.samples / out[f"old_{max(sizes)}_s"] / args.workers
    print(
        f"prepare: {per_core_prepare:.1f} samples/s per core; plain decoding at {max(sizes)} px "
        f"{per_core_decode:.1f}; shards {out['shard_bytes'] / 1e6:.0f} MB, "
        f"{out['raw_bytes'] / out['shard_bytes']:.2f}x smaller than the raw arrays"
    )
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
