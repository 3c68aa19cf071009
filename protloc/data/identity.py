"""What a data set's contents are, without reading them: the identity of every image file.

An image file's identity is ``size:mtime_ns:ctime_ns`` on a local disk and ``size:ETag`` on S3
(``size:generation`` on GCS), read from one folder listing (``storage.listing``: a stat per file
locally, one LIST request per 1,000 objects on S3; no image is opened). A file fixed, regenerated
or replaced in place changes it, even one of the same size with its mtime set back (the kernel
sets the change time, ``ctime``, on every write, rename and ``utime``, and nothing sets it back).
A file only touched, its mode changed, or a data root copied elsewhere changes it too, which costs
a rebuild, never a wrong result. Content hashes would avoid that but mean reading every image (~17 GB for HPA) at every
step; the listing of the 124,288 training PNGs is 125 LIST requests.

A task lists each image folder of a data root once: :class:`DataListing` holds the listings
and answers every question a task asks of them (each sample's extension, the identity of a set
of samples, the data root's fingerprint). The image cache and the train step key their work by
:meth:`DataListing.images_identity`, and the pipeline passes :meth:`DataListing.fingerprint` to
every task that reads the data root, so KFP's cache (which keys a task by its arguments) misses
when the data under the same URI changed.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from protloc import storage
from protloc.data.hpa import EXTENSIONS, labels_uri, sample_submission_uri
from protloc.errors import ConfigError

SPLITS = ("train", "test")
# A run's fingerprint starts with it, so no runner reads it as a number: kfp.local hands a task
# output that looks like one (16 hex digits can be all digits, or 1e5...) to a ParallelFor's
# tasks as a float.
PREFIX = "fp-"


class DataListing:
    """One data root's image folders, each listed at most once (on first use)."""

    def __init__(self, root: str) -> None:
        self.root = str(root)
        self._files: dict[str, dict[str, str]] = {}
        self._fingerprint = ""

    def __repr__(self) -> str:
        return f"DataListing({self.root!r})"

    def files(self, split: str) -> dict[str, str]:
        """The files directly in ``{root}/{split}``: name -> identity."""
        if split not in self._files:
            self._files[split] = storage.listing(storage.join(self.root, split))
        return self._files[split]

    def extensions(self, split: str, ids: list[str]) -> dict[str, str | None]:
        """Each id's image extension (PNG, JPEG and TIFF samples can mix); None for an id
        without a red channel file (loading it names it)."""
        names = self.files(split)
        return {i: next((e for e in EXTENSIONS if f"{i}_red{e}" in names), None) for i in ids}

    def images_identity(self, split: str, ids: list[str]) -> str:
        """A hash of the identities of ``ids``' channel files under ``{root}/{split}/``."""
        grouped = _by_id(self.files(split))
        h = hashlib.sha256()
        for sample_id in ids:
            h.update(sample_id.encode() + b"\0")
            for name, ident in sorted(grouped.get(sample_id, [])):
                h.update(f"{name}={ident}\0".encode())
        return h.hexdigest()[:24]

    def fingerprint(self) -> str:
        """A hash of the labels, the test id list and the listing of ``train/`` and ``test/``
        (taken once: a task checks it and keys its store by it)."""
        if self._fingerprint:
            return self._fingerprint
        h = hashlib.sha256()
        for uri in (labels_uri(self.root), sample_submission_uri(self.root)):
            h.update(storage.read_bytes(uri) if storage.exists(uri) else b"(none)")
            h.update(b"\0")
        for split in SPLITS:
            for name, ident in sorted(self.files(split).items()):
                h.update(f"{split}/{name}={ident}\0".encode())
        self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint


def _by_id(files: dict[str, str]) -> dict[str, list[tuple[str, str]]]:
    """``{Id}_{colour}.{ext}`` files grouped by Id."""
    out: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for name, ident in files.items():
        stem = name.rsplit(".", 1)[0]
        sample_id, sep, _ = stem.rpartition("_")
        if sep:
            out[sample_id].append((name, ident))
    return out


def data_fingerprint(root: str) -> str:
    """:meth:`DataListing.fingerprint` of a data root listed now."""
    return DataListing(root).fingerprint()


def file_digest(uri: str) -> str:
    """The first 16 hex digits of a file's SHA-256 (e.g. the pretrained weights, ~100 MB)."""
    return hashlib.sha256(storage.read_bytes(uri)).hexdigest()[:16]


def external_fingerprint(external: str) -> str:
    """One hash of the :func:`data_fingerprint` of every external data root ('' for none)."""
    from protloc.setting_lists import external_roots

    roots = external_roots(external)
    if not roots:
        return ""
    h = hashlib.sha256()
    for root in roots:
        h.update(f"{root}={data_fingerprint(root)}\0".encode())
    return h.hexdigest()[:16]


def run_fingerprint(data: DataListing, pretrained: str = "", external: str = "") -> str:
    """What a run's tasks are keyed by besides their settings: the data root's fingerprint, then
    ``/`` and :func:`external_fingerprint` when the run has external data, then ``+`` and
    :func:`file_digest` of the pretrained weights when a run starts from them (their URI alone
    would let weights replaced under the same name be served from cache)."""
    fingerprint = PREFIX + data.fingerprint()
    if external.strip():
        fingerprint += "/" + external_fingerprint(external)
    return f"{fingerprint}+{file_digest(pretrained)}" if pretrained else fingerprint


def require_unchanged(
    expected: str, data: DataListing, pretrained: str, step: str, external: str | None = None
) -> None:
    """Refuse to run when the data root (the external roots, for a task that reads them; the
    pretrained weights, for a task that reads them) is not what :func:`run_fingerprint` saw
    when the run was started ('' expected: nothing to check)."""
    if not expected:
        return
    data_part, _, weights_part = expected.removeprefix(PREFIX).partition("+")
    data_part, _, external_part = data_part.partition("/")
    now = external_fingerprint(external) if external is not None else external_part
    if now != external_part:
        raise ConfigError(
            f"{step}: the external data {external!r} changed since the run was started "
            f"(fingerprint {external_part or '(none)'} then, {now or '(none)'} now): start a "
            "new run"
        )
    now = data.fingerprint()
    if now != data_part:
        raise ConfigError(
            f"{step}: the data under {data.root} changed since the run was started "
            f"(fingerprint {data_part} then, {now} now): start a new run"
        )
    if weights_part and pretrained:
        now = file_digest(pretrained)
        if now != weights_part:
            raise ConfigError(
                f"{step}: the pretrained weights {pretrained} changed since the run was started "
                f"(SHA-256 {weights_part}... then, {now}... now): start a new run"
            )
