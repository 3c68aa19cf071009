"""The Kaggle HPA layout: strict label CSV parsing and loading one RGBY sample.

```
<root>/train.csv                         Id,Target  (Target: space-separated ints 0..27)
<root>/train/{Id}_{red,green,blue,yellow}.png   (.jpg and .tif work too)
<root>/test/{Id}_{...}.png
<root>/sample_submission.csv             Id,Predicted
```

``root`` is a local folder or ``s3://bucket/prefix``. No torch here: the split step uses it.
"""

from __future__ import annotations

import csv
import functools
import io
import logging
import re
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from protloc import storage
from protloc.classes import CHANNELS, NUM_CLASSES
from protloc.cpus import compute_threads
from protloc.errors import DataError, StorageError

log = logging.getLogger(__name__)

EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")

# Kaggle's channel PNGs are 512x512; refuse absurd sizes instead of exhausting memory.
Image.MAX_IMAGE_PIXELS = 16384 * 16384


LABELS_CSV = "train.csv"  # Id,Target: the labelled samples of a data root
TEST_IDS_CSV = "sample_submission.csv"  # Id,Predicted: the test ids, in submission order


def labels_uri(root: str) -> str:
    """Where the training labels of a data root live."""
    return storage.join(root, LABELS_CSV)


def sample_submission_uri(root: str) -> str:
    """Where the test id list of a data root lives."""
    return storage.join(root, TEST_IDS_CSV)


# ----------------------------------------------------------------------------- label CSV


def _csv_rows(
    text: str, source: str, required: tuple[str, ...]
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a small CSV, checked for the required columns."""
    if not text.strip():
        raise DataError(f"{source}: file is empty")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[list[str]] = []
    try:
        rows.extend(reader)
    except csv.Error as exc:
        # line_num is the physical line the reader stopped at; the bad row starts after the
        # last good one (an unterminated quote runs to the end of the file).
        raise DataError(
            f"{source}: not a valid CSV at line {len(rows) + 1} (read up to line "
            f"{reader.line_num}: {exc})"
        ) from None
    header = [h.strip() for h in rows[0]]
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(
            f"{source}: missing column(s) {', '.join(missing)} (header is {','.join(header)!r})"
        )
    return header, rows[1:]


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{source}: not UTF-8 text (bad byte at offset {exc.start})") from None


@functools.lru_cache(maxsize=8192)
def _valid_target(text: str) -> tuple[int, ...] | None:
    """The sorted classes of a well-formed Target, else None. Cached: HPA's 31k rows hold only
    577 distinct label sets, so a labels file is parsed ~4x faster (measured at 124k rows)."""
    tokens = text.split()
    if not tokens or not all(t.isascii() and t.isdigit() and len(t) <= 3 for t in tokens):
        return None
    values = [int(t) for t in tokens]
    if len(set(values)) != len(values) or not all(0 <= v < NUM_CLASSES for v in values):
        return None
    return tuple(sorted(values))


def parse_target(target: str, where: str) -> list[int]:
    """Parse a Target cell ('7 1 2 0') into sorted unique class indices; ``where`` names the row."""
    valid = _valid_target(target)
    if valid is not None:
        return list(valid)
    text = target.strip()
    if not text:
        raise DataError(f"{where}: empty Target")
    out: list[int] = []
    for token in text.split():
        if not re.fullmatch(r"\d{1,3}", token):
            raise DataError(
                f"{where}: malformed Target {target!r} (token {token!r} is not a class index)"
            )
        value = int(token)
        if not 0 <= value < NUM_CLASSES:
            raise DataError(
                f"{where}: class {value} in Target {target!r} is outside 0..{NUM_CLASSES - 1}"
            )
        if value in out:
            raise DataError(f"{where}: class {value} repeated in Target {target!r}")
        out.append(value)
    return sorted(out)


def parse_labels(data: bytes, source: str = "labels") -> pd.DataFrame:
    """Parse a Kaggle ``train.csv`` strictly into a frame with columns ``id`` and ``labels``.

    Every problem names the file, the line and the Id: a missing column, a duplicate Id, an empty
    or malformed Target, a class outside 0..27.
    """
    header, rows = _csv_rows(_decode(data, source), source, ("Id", "Target"))
    id_col, target_col = header.index("Id"), header.index("Target")
    ids: list[str] = []
    labels: list[list[int]] = []
    first_line: dict[str, int] = {}
    for line_no, row in enumerate(rows, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue  # a blank line, e.g. at the end of the file
        if len(row) != len(header):
            raise DataError(f"{source} line {line_no}: {len(row)} fields, header has {len(header)}")
        sample_id = row[id_col].strip()
        where = f"{source} line {line_no} (Id {sample_id!r})"
        if not sample_id or not _ID_RE.match(sample_id):
            raise DataError(f"{where}: invalid Id")
        if sample_id in first_line:
            raise DataError(f"{where}: duplicate Id, first seen on line {first_line[sample_id]}")
        first_line[sample_id] = line_no
        labels.append(parse_target(row[target_col], where))
        ids.append(sample_id)
    if not ids:
        raise DataError(f"{source}: no label rows")
    return pd.DataFrame({"id": ids, "labels": labels})


def read_labels(uri: str) -> pd.DataFrame:
    """Read and strictly parse a labels CSV from a local path or ``s3://`` URI."""
    return parse_labels(storage.read_bytes(uri), source=str(uri))


def read_test_ids(uri: str) -> list[str]:
    """The Ids of a ``sample_submission.csv``, in file order, checked for duplicates."""
    source = str(uri)
    header, rows = _csv_rows(_decode(storage.read_bytes(uri), source), source, ("Id",))
    id_col = header.index("Id")
    ids: list[str] = []
    seen: dict[str, int] = {}
    for line_no, row in enumerate(rows, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        sample_id = row[id_col].strip() if id_col < len(row) else ""
        if not sample_id or not _ID_RE.match(sample_id):
            raise DataError(f"{source} line {line_no}: invalid Id {sample_id!r}")
        if sample_id in seen:
            raise DataError(
                f"{source} line {line_no} (Id {sample_id!r}): duplicate Id, "
                f"first seen on line {seen[sample_id]}"
            )
        seen[sample_id] = line_no
        ids.append(sample_id)
    if not ids:
        raise DataError(f"{source}: no Ids")
    return ids


def labels_to_matrix(labels: pd.Series | list[list[int]]) -> np.ndarray:
    """Label lists -> a (N, 28) uint8 indicator matrix."""
    lists = list(labels)
    y = np.zeros((len(lists), NUM_CLASSES), dtype=np.uint8)
    rows = np.repeat(np.arange(len(lists)), [len(x) for x in lists])
    cols = np.fromiter((c for x in lists for c in x), dtype=np.int64, count=len(rows))
    y[rows, cols] = 1
    return y


# ----------------------------------------------------------------------------- images


def channel_uri(root: str, split: str, sample_id: str, channel: str, ext: str = ".png") -> str:
    """``{root}/{split}/{Id}_{channel}{ext}``."""
    return storage.join(root, split, f"{sample_id}_{channel}{ext}")


def _no_red_channel(root: str, split: str, sample_id: str) -> DataError:
    for ext in EXTENSIONS:
        uri = channel_uri(root, split, sample_id, "red", ext)
        if not storage.is_remote(uri) and Path(uri).is_dir():
            return DataError(f"sample {sample_id!r}: {uri} is a folder, not an image file")
    return DataError(
        f"sample {sample_id!r}: no red channel file under {storage.join(root, split)} "
        f"(looked for {', '.join(sample_id + '_red' + e for e in EXTENSIONS)})"
    )


# HPAv18's colour-coded JPEGs keep each channel in its display colour's planes.
_PLANES = {"red": (0,), "green": (1,), "blue": (2,), "yellow": (0, 1)}
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
# Below this brightest value a 16-bit file without a MaxSampleValue tag holds 12-bit (or less)
# data: scaled as 16-bit it would be near black, so it is refused, file by file.
_LOW_DEPTH_MAX = 4096


def decode_channel(
    data: bytes, sample_id: str, channel: str, source: str, size: int | None = None
) -> Image.Image:
    """Decode one channel file into an 8-bit grayscale Pillow image.

    Grayscale files are taken as they are. A colour file holds the channel in the planes of its
    display colour (HPAv18: red R, green G, blue B, yellow the mean of R and G), never its
    luminance. A JPEG is decoded reduced by a power of two (Pillow's ``draft``) when ``size`` is
    given and the file is at least twice as large. 16-bit images are scaled by their real bit
    depth: the TIFF's MaxSampleValue when it has one, else 16 bits. Refused, by name: files of
    several pages (a stack), 32-bit integer and floating-point pixels, and a 16-bit file without
    MaxSampleValue whose brightest pixel is 1..4095 (12-bit data that 16-bit scaling would turn
    near black; a blank channel is fine).
    """
    where = f"sample {sample_id!r} channel {channel} ({source})"
    if not data:
        raise DataError(f"{where}: file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if size is not None and img.format == "JPEG":
                img.draft(img.mode, (size, size))
            img.load()  # decode now, so truncation shows here and not later
            pages = getattr(img, "n_frames", 1)
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        kind = "truncated" if "truncated" in str(exc).lower() else "corrupt or not an image"
        raise DataError(f"{where}: {kind} ({type(exc).__name__}: {exc})") from None
    if pages > 1:
        raise DataError(
            f"{where}: a file of {pages} pages; protloc reads one image per channel file "
            "(write each page to its own file)"
        )
    return _to_channel(img, channel, where)


def _to_channel(img: Image.Image, channel: str, where: str) -> Image.Image:
    """The 8-bit plane of ``channel`` in a decoded image of any supported mode."""
    if img.mode == "L":
        return img
    if img.mode in _WIDE_MODES:
        return _scale_wide(img, where)
    if img.mode in ("1", "LA"):
        return img.convert("L")
    if img.mode in ("RGB", "RGBA", "RGBX", "P", "PA", "CMYK", "YCbCr"):
        rgb = np.asarray(img if img.mode in ("RGB", "RGBA", "RGBX") else img.convert("RGB"))
        planes = _PLANES[channel]
        if len(planes) == 1:
            plane = rgb[..., planes[0]]
        else:  # the mean of two planes, rounded half up
            plane = ((rgb[..., 0].astype(np.uint16) + rgb[..., 1] + 1) // 2).astype(np.uint8)
        return Image.fromarray(np.ascontiguousarray(plane), mode="L")
    raise DataError(f"{where}: pixel mode {img.mode} is not supported (8- or 16-bit gray, RGB)")


def _scale_wide(img: Image.Image, where: str) -> Image.Image:
    """A 16-bit image to 0..255 by its bit depth."""
    tags = getattr(img, "tag_v2", {})
    bits = tags.get(258)
    bits = max(bits) if isinstance(bits, tuple) else bits
    # Pillow's 32-bit integer mode: a PNG's is 16-bit data (older Pillows open those as "I")
    if img.mode == "I" and img.format != "PNG" and (bits or 32) > 16:
        raise DataError(
            f"{where}: 32-bit integer pixels are not supported (8- or 16-bit gray, RGB)"
        )
    arr = np.asarray(img).astype(np.uint32)
    max_value = tags.get(281) or tags.get(341)  # MaxSampleValue, SMaxSampleValue
    if isinstance(max_value, tuple):
        max_value = max(max_value)
    if not max_value:
        max_value = (1 << int(bits or 16)) - 1
        if 0 < arr.max() < _LOW_DEPTH_MAX:  # a blank channel (all 0) is fine either way
            raise DataError(
                f"{where}: a 16-bit image whose brightest pixel is {int(arr.max())}: it holds "
                "12-bit (or fewer) data, which scaled as 16-bit would be near black; record its "
                "depth in the TIFF MaxSampleValue tag (4095 for 12-bit) or write 8-bit files"
            )
    max_value = int(max_value)
    if arr.max() > max_value:
        raise DataError(
            f"{where}: pixel value {int(arr.max())} exceeds the file's maximum sample value "
            f"{max_value}"
        )
    scaled = (arr * 255 + max_value // 2) // max_value
    return Image.fromarray(scaled.astype(np.uint8), mode="L")


def load_sample(
    root: str,
    split: str,
    sample_id: str,
    size: int | None = None,
    ext: str | None = ".png",
    decoded: dict[str, int] | None = None,
) -> np.ndarray:
    """One sample as a uint8 array (4, H, W) in R, G, B, Y order; resized to (size, size) if given.
    ``decoded``, if given, gets ``decoded[sample_id]``: the side it was decoded at (unresized).

    ``ext`` None: the sample has no red channel file (a DataError naming it). A missing, empty,
    truncated or corrupt channel file, or channels of different sizes, raise a DataError naming
    the Id and the channel.
    """
    if ext is None:
        raise _no_red_channel(root, split, sample_id)
    images: list[Image.Image] = []
    for channel in CHANNELS:
        uri = channel_uri(root, split, sample_id, channel, ext)
        try:
            data = storage.read_bytes(uri)
        except StorageError as exc:
            raise DataError(
                f"sample {sample_id!r} channel {channel}: cannot read ({exc})"
            ) from None
        images.append(decode_channel(data, sample_id, channel, uri, size))
    sizes = {img.size for img in images}
    if len(sizes) > 1:
        detail = ", ".join(
            f"{c} {img.size[0]}x{img.size[1]}" for c, img in zip(CHANNELS, images, strict=True)
        )
        raise DataError(f"sample {sample_id!r}: channels differ in size ({detail})")
    if decoded is not None:
        decoded[sample_id] = max(images[0].size)
    if size is not None and images[0].size != (size, size):
        images = [resize_channel(img, size) for img in images]
    return np.stack([np.asarray(img, dtype=np.uint8) for img in images])


def resize_channel(img: Image.Image, size: int) -> Image.Image:
    """One channel at ``size`` x ``size`` px: the one resize of the PNG path and the store (so
    a cache made from the store holds the bytes decoding gives)."""
    # reducing_gap lets Pillow shrink by an integer factor first: much faster, same look.
    return img.resize((size, size), Image.BILINEAR, reducing_gap=2.0)


def decode_samples(
    root: str,
    split: str,
    ids: list[str],
    size: int,
    workers: int,
    skip_bad: bool,
    extensions: dict[str, str | None],
    decoded: dict[str, int] | None = None,
) -> Iterator[tuple[str, np.ndarray | None]]:
    """``(id, sample)`` for ``ids`` in order, each decoded at ``size`` px by one of ``workers``
    threads (Pillow releases the GIL while decoding). A bad sample stops it with its DataError,
    or with ``skip_bad`` comes as ``(id, None)``, logged. ``extensions``: id -> its files'
    extension (``protloc.data.identity.DataListing.extensions``); ``decoded``: see
    :func:`load_sample`."""

    def load(sample_id: str) -> np.ndarray | DataError:
        try:
            ext = extensions[sample_id]
            return load_sample(root, split, sample_id, size=size, ext=ext, decoded=decoded)
        except DataError as exc:
            if not skip_bad:
                raise
            return exc

    with ThreadPoolExecutor(compute_threads(workers)) as pool:
        for sample_id, result in zip(ids, pool.map(load, ids), strict=True):
            if isinstance(result, DataError):
                log.warning("skipping bad sample: %s", result)
                yield sample_id, None
            else:
                yield sample_id, result
