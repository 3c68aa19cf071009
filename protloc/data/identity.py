"""What a data set's contents are, without reading them: the identity of every image file.

An image file's identity is ``size:mtime_ns`` on a local disk and ``size:ETag`` on S3, read from
one folder listing (``storage.listing``: a stat per file locally, one LIST request per 1,000
objects on S3; no image is opened). A file fixed, regenerated or replaced in place changes it; a
file only touched (same bytes, new mtime) changes it too, which costs a rebuild, never a wrong
result. Content hashes would avoid that but mean reading every image (~17 GB for HPA) at every
step; the listing of the 124,288 training PNGs is 125 LIST requests.

Two uses: the image cache and the train step key their work by :func:`images_identity`, and the
pipeline passes :func:`data_fingerprint` to every task that reads the data root, so KFP's cache
(which keys a task by its arguments) misses when the data under the same URI changed.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from protloc import storage
from protloc.data.hpa import labels_uri, sample_submission_uri


def _by_id(files: dict[str, str]) -> dict[str, list[tuple[str, str]]]:
    """``{Id}_{colour}.{ext}`` files grouped by Id."""
    out: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for name, ident in files.items():
        stem = name.rsplit(".", 1)[0]
        sample_id, sep, _ = stem.rpartition("_")
        if sep:
            out[sample_id].append((name, ident))
    return out


def images_identity(root: str, split: str, ids: list[str]) -> str:
    """A hash of the identities of ``ids``' channel files under ``{root}/{split}/``."""
    grouped = _by_id(storage.listing(storage.join(root, split)))
    h = hashlib.sha256()
    for sample_id in ids:
        h.update(sample_id.encode() + b"\0")
        for name, ident in sorted(grouped.get(sample_id, [])):
            h.update(f"{name}={ident}\0".encode())
    return h.hexdigest()[:24]


def data_fingerprint(root: str) -> str:
    """A hash of the labels, the test id list and the listing of ``train/`` and ``test/``."""
    h = hashlib.sha256()
    for uri in (labels_uri(root), sample_submission_uri(root)):
        h.update(storage.read_bytes(uri) if storage.exists(uri) else b"(none)")
        h.update(b"\0")
    for split in ("train", "test"):
        for name, ident in sorted(storage.listing(storage.join(root, split)).items()):
            h.update(f"{split}/{name}={ident}\0".encode())
    return h.hexdigest()[:16]


def file_digest(uri: str) -> str:
    """The first 16 hex digits of a file's SHA-256 (e.g. the pretrained weights, ~100 MB)."""
    return hashlib.sha256(storage.read_bytes(uri)).hexdigest()[:16]


def external_fingerprint(external: str) -> str:
    """One hash of the :func:`data_fingerprint` of every external data root ('' for none)."""
    from protloc.config import external_roots

    roots = external_roots(external)
    if not roots:
        return ""
    h = hashlib.sha256()
    for root in roots:
        h.update(f"{root}={data_fingerprint(root)}\0".encode())
    return h.hexdigest()[:16]


def run_fingerprint(root: str, pretrained: str = "", external: str = "") -> str:
    """What a run's tasks are keyed by besides their settings: :func:`data_fingerprint`, then
    ``/`` and :func:`external_fingerprint` when the run has external data, then ``+`` and
    :func:`file_digest` of the pretrained weights when a run starts from them (their URI alone
    would let weights replaced under the same name be served from cache)."""
    fingerprint = data_fingerprint(root)
    if external.strip():
        fingerprint += "/" + external_fingerprint(external)
    return f"{fingerprint}+{file_digest(pretrained)}" if pretrained else fingerprint


def require_unchanged(
    expected: str, root: str, pretrained: str, step: str, external: str | None = None
) -> None:
    """Refuse to run when the data root (the external roots, for a task that reads them; the
    pretrained weights, for a task that reads them) is not what :func:`run_fingerprint` saw
    when the run was started."""
    from protloc.errors import ConfigError

    data_part, _, weights_part = expected.partition("+")
    data_part, _, external_part = data_part.partition("/")
    now = external_fingerprint(external) if external is not None else external_part
    if now != external_part:
        raise ConfigError(
            f"{step}: the external data {external!r} changed since the run was started "
            f"(fingerprint {external_part or '(none)'} then, {now or '(none)'} now): start a "
            "new run"
        )
    now = data_fingerprint(root)
    if now != data_part:
        raise ConfigError(
            f"{step}: the data under {root} changed since the run was started "
            f"(fingerprint {data_part} then, {now} now): start a new run"
        )
    if weights_part and pretrained:
        now = file_digest(pretrained)
        if now != weights_part:
            raise ConfigError(
                f"{step}: the pretrained weights {pretrained} changed since the run was started "
                f"(SHA-256 {weights_part}... then, {now}... now): start a new run"
            )
