"""Write a complete synthetic data set in the Kaggle HPA layout (local folder or s3://).

```
train.csv  train/{Id}_{red,green,blue,yellow}.png  test/...  sample_submission.csv
test_labels.csv   (the hidden truth for the test ids, for evaluation)
```

Each sample is drawn from its own generator seeded by (seed, split, index), so the output is
byte-identical for a seed whatever the number of worker processes.
"""

from __future__ import annotations

import io
import logging
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from protloc import storage
from protloc.classes import CHANNELS
from protloc.data.hpa import LABELS_CSV, TEST_IDS_CSV
from protloc.errors import ConfigError
from protloc.synthetic.labels import draw_label_sets
from protloc.synthetic.render import render_sample

log = logging.getLogger(__name__)

_SPLIT_CODE = {"train": 0, "test": 1}


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate."""

    n_train: int
    n_test: int
    size: int = 512
    seed: int = 0
    temper: float = 0.0

    def validate(self) -> None:
        if self.n_train < 1:
            raise ConfigError(f"n_train must be >= 1, got {self.n_train}")
        if self.n_test < 0:
            raise ConfigError(f"n_test must be >= 0, got {self.n_test}")
        if not 32 <= self.size <= 4096:
            raise ConfigError(f"size must be in 32..4096 px, got {self.size}")


def encode_png(channel: np.ndarray) -> bytes:
    """An 8-bit grayscale PNG; fast zlib settings (RLE strategy), lossless."""
    buf = io.BytesIO()
    Image.fromarray(channel, mode="L").save(buf, format="PNG", compress_level=1, compress_type=3)
    return buf.getvalue()


def _ids(n: int, seed: int, split: str) -> list[str]:
    rng = np.random.default_rng([seed, _SPLIT_CODE[split], 7])
    return [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n)]


def _labels(
    spec: SyntheticSpec, split: str, n: int, labels_source: pd.DataFrame | None
) -> list[list[int]]:
    rng = np.random.default_rng([spec.seed, _SPLIT_CODE[split], 11])
    return draw_label_sets(n, rng, spec.temper, labels_source)


def _write_one(job: tuple[str, str, int, list[int], int, int]) -> None:
    folder, sample_id, index, labels, size, seed = job
    split = Path(folder).name
    rng = np.random.default_rng([seed, _SPLIT_CODE[split], 13, index])
    image = render_sample(labels, size, rng)
    for channel, plane in zip(CHANNELS, image, strict=True):
        storage.write_bytes(str(Path(folder) / f"{sample_id}_{channel}.png"), encode_png(plane))


def _target(labels: list[int]) -> str:
    return " ".join(str(c) for c in labels)


def generate(
    spec: SyntheticSpec,
    out: str,
    workers: int = 1,
    labels_source: pd.DataFrame | None = None,
) -> dict[str, float]:
    """Write the data set to ``out``; returns timing figures.

    ``labels_source`` (id, labels), if given, replaces the embedded real label-set table.
    """
    spec.validate()
    storage.check_writable_folder(out)  # a file in the way, no permission: one line, now
    staging = None
    local_root = out
    if storage.is_remote(out):
        staging = tempfile.TemporaryDirectory(prefix="protloc-synthetic-")
        local_root = staging.name
    try:
        t0 = time.perf_counter()
        frames = {}
        jobs = []
        for split, n in (("train", spec.n_train), ("test", spec.n_test)):
            ids, labels = _ids(n, spec.seed, split), _labels(spec, split, n, labels_source)
            frames[split] = pd.DataFrame({"Id": ids, "Target": [_target(x) for x in labels]})
            folder = Path(local_root) / split
            folder.mkdir(parents=True, exist_ok=True)
            jobs += [
                (str(folder), i, k, lab, spec.size, spec.seed)
                for k, (i, lab) in enumerate(zip(ids, labels, strict=True))
            ]
        _write_images(jobs, workers, t0)
        images_s = time.perf_counter() - t0
        _write_tables(Path(local_root), frames)
        if staging is not None:
            count = storage.upload_dir(local_root, out)
            log.info("uploaded %d files to %s", count, out)
        total = time.perf_counter() - t0
        rate = len(jobs) / images_s if images_s > 0 else float("inf")
        log.info(
            "wrote %d train + %d test samples at %d px to %s in %.1f s (%.1f samples/s)",
            spec.n_train,
            spec.n_test,
            spec.size,
            out,
            total,
            rate,
        )
        return {"samples": len(jobs), "seconds": total, "samples_per_s": rate}
    finally:
        if staging is not None:
            staging.cleanup()


def _write_images(jobs: list[tuple], workers: int, t0: float) -> None:
    """Every sample's four channel PNGs, in ``workers`` processes (same bytes either way)."""
    done = 0
    report_every = max(1, len(jobs) // 10)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for _ in pool.map(_write_one, jobs, chunksize=8):
                done += 1
                if done % report_every == 0:
                    _progress(done, len(jobs), t0)
        return
    for job in jobs:
        _write_one(job)
        done += 1
        if done % report_every == 0:
            _progress(done, len(jobs), t0)


def _write_tables(root: Path, frames: dict[str, pd.DataFrame]) -> None:
    """train.csv, the hidden test labels and sample_submission.csv, as Kaggle lays them out."""
    storage.write_text(
        str(root / LABELS_CSV), frames["train"].to_csv(index=False, lineterminator="\n")
    )
    test = frames["test"]
    storage.write_text(str(root / "test_labels.csv"), test.to_csv(index=False, lineterminator="\n"))
    sub = pd.DataFrame({"Id": test["Id"], "Predicted": "0"})
    storage.write_text(str(root / TEST_IDS_CSV), sub.to_csv(index=False, lineterminator="\n"))


def _progress(done: int, total: int, t0: float) -> None:
    dt = time.perf_counter() - t0
    log.info("synthetic: %d/%d samples (%.1f samples/s)", done, total, done / dt if dt else 0.0)
