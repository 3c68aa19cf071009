"""Check a data root before a run: the layout, the label file, every image present, a sample
of images decoded (size and bit depth). What ``pipeline.py check-data ROOT`` prints."""

from __future__ import annotations

import io
import logging
import random
from collections import Counter
from dataclasses import dataclass, field

from PIL import Image

from protloc import storage
from protloc.classes import CHANNELS
from protloc.data.hpa import (
    decode_channel,
    labels_to_matrix,
    labels_uri,
    read_labels,
    read_test_ids,
    sample_submission_uri,
)
from protloc.data.identity import DataListing
from protloc.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class SplitReport:
    """One image folder (``train`` or ``test``) against the ids that need it."""

    split: str
    ids: int
    files: int
    missing: dict[str, list[str]] = field(default_factory=dict)  # id -> missing channels

    def line(self) -> str:
        if not self.missing:
            return f"{self.split}/: {self.files:,} files; all {self.ids:,} samples have 4 channels"
        shown = ", ".join(f"{i} ({'/'.join(c)})" for i, c in list(self.missing.items())[:5])
        return (
            f"{self.split}/: {self.files:,} files; {len(self.missing):,} of {self.ids:,} "
            f"samples lack channel files, e.g. {shown}"
        )


@dataclass
class DataReport:
    root: str
    labelled: int
    test: int
    class_counts: list[int]
    splits: list[SplitReport]
    image_kinds: Counter  # "512x512 8-bit L PNG" -> sampled channel files
    sampled: int
    bad: list[str]  # one line per sampled file that did not decode

    @property
    def ok(self) -> bool:
        return not self.bad and not any(s.missing for s in self.splits)

    @property
    def image_size(self) -> int | None:
        """The sampled images' side when they are square and all alike."""
        sizes = {k.split()[0] for k in self.image_kinds}
        if len(sizes) != 1:
            return None
        w, _, h = next(iter(sizes)).partition("x")
        return int(w) if w == h else None


def _missing(listing: DataListing, split: str, ids: list[str]) -> dict[str, list[str]]:
    names = listing.files(split)
    ext = listing.extensions(split, ids)
    out = {}
    for i in ids:
        if ext[i] is None:
            out[i] = list(CHANNELS)
            continue
        lacking = [c for c in CHANNELS if f"{i}_{c}{ext[i]}" not in names]
        if lacking:
            out[i] = lacking
    return out


def _kind(data: bytes) -> str:
    """'512x512 8-bit L PNG' for an image file's bytes."""
    with Image.open(io.BytesIO(data)) as img:
        bits = {"1": 1, "L": 8, "P": 8, "RGB": 8, "RGBA": 8}.get(img.mode, 16)
        if img.mode in ("I", "F"):
            bits = 32
        return f"{img.size[0]}x{img.size[1]} {bits}-bit {img.mode} {img.format}"


def check_data_root(root: str, sample: int = 16, seed: int = 0) -> DataReport:
    """Read the label file and test id list, list ``train/`` and ``test/`` once, and decode every
    channel of ``sample`` random samples of each split. Raises a DataError naming the file when
    the label file or the test id list is missing or malformed."""
    labels = read_labels(labels_uri(root))
    if not storage.exists(sample_submission_uri(root)):
        raise DataError(
            f"{sample_submission_uri(root)}: no test id list (Kaggle's sample_submission.csv)"
        )
    test_ids = read_test_ids(sample_submission_uri(root))
    listing = DataListing(root)
    wanted = {"train": list(labels["id"]), "test": test_ids}
    splits = []
    for split, ids in wanted.items():
        log.info("listing %s/ for %d samples", split, len(ids))
        splits.append(
            SplitReport(split, len(ids), len(listing.files(split)), _missing(listing, split, ids))
        )
    kinds: Counter = Counter()
    bad: list[str] = []
    rng = random.Random(seed)
    sampled = 0
    for report in splits:
        present = [i for i in wanted[report.split] if i not in report.missing]
        ext = listing.extensions(report.split, present)
        for sample_id in rng.sample(present, min(sample, len(present))):
            sampled += 1
            for channel in CHANNELS:
                uri = storage.join(root, report.split, f"{sample_id}_{channel}{ext[sample_id]}")
                try:
                    data = storage.read_bytes(uri)
                    decode_channel(data, sample_id, channel, uri)
                    kinds[_kind(data)] += 1
                except DataError as exc:
                    bad.append(str(exc))
    counts = labels_to_matrix(labels["labels"]).sum(axis=0).astype(int).tolist()
    return DataReport(root, len(labels), len(test_ids), counts, splits, kinds, sampled, bad)


def format_report(report: DataReport) -> str:
    """The report as ``check-data`` prints it."""
    counts = report.class_counts
    rarest = min(range(len(counts)), key=counts.__getitem__)
    lines = [
        f"data root {report.root}",
        f"  train.csv: {report.labelled:,} labelled samples; class sizes {max(counts):,} down to "
        f"{counts[rarest]:,} (class {rarest})",
        f"  sample_submission.csv: {report.test:,} test samples",
        *(f"  {s.line()}" for s in report.splits),
        f"  images: {report.sampled} samples decoded, every channel: "
        + ", ".join(f"{k} x{n}" for k, n in sorted(report.image_kinds.items())),
        *(f"  bad: {b}" for b in report.bad[:10]),
    ]
    if not report.ok:
        lines.append("  NOT READY: fix the files named above before a run")
    return "\n".join(lines)
