"""One API over local paths and object stores, the stores through fsspec: ``s3://bucket/key``
(s3fs), ``gs://bucket/key`` (gcsfs) and ``az://container/key`` or ``abfs://container/key``
(adlfs).

Local writes are atomic (temporary file in the target folder, then ``os.replace``). Object writes
are atomic by the stores' own semantics: a single upload, or an S3 multipart upload that only
becomes visible when it is completed (s3fs aborts it on failure). Transient errors are retried
with exponential backoff (``protloc.storage.retry``); a missing object or bucket, missing
credentials or an unreachable endpoint end in one :class:`StorageError` that names the URI (and
the endpoint), never a credential. ``storage.fs`` and ``storage.s3`` say where each store's
endpoint and credentials come from.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from protloc.errors import ArtifactError, StorageError
from protloc.storage import fs
from protloc.storage.local import atomic_local_path as _atomic_local_path
from protloc.storage.local import local_error as _local_error
from protloc.storage.local import local_path as _local
from protloc.storage.local import local_path as local_path
from protloc.storage.s3 import MULTIPART_THRESHOLD

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- URIs


def is_s3(uri: str) -> bool:
    """True for ``s3://`` URIs."""
    return str(uri).startswith("s3://")


def is_remote(uri: str) -> bool:
    """True for a URI of an object store (``s3://``, ``gs://``, ``az://``, ``abfs://``)."""
    return "://" in str(uri) and fs.scheme(uri) in fs.SCHEMES


def join(base: str, *parts: str) -> str:
    """Join URI parts with '/', for S3 and local paths alike."""
    base = str(base)
    if not is_remote(base):
        return str(_local(base).joinpath(*parts))
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{str(part).strip('/')}"
    return out


def _chunks(uri: str) -> dict[str, int]:
    """s3fs's part size: a multipart upload from MULTIPART_THRESHOLD (two parts) on."""
    return {"chunksize": MULTIPART_THRESHOLD // 2} if is_s3(uri) else {}


# ----------------------------------------------------------------------------- public API


def read_bytes(uri: str) -> bytes:
    """The whole content of a file or object."""
    if is_remote(uri):
        return fs.call(uri, "read", lambda f, p: f.cat_file(p))
    try:
        return _local(uri).read_bytes()
    except OSError as exc:
        raise _local_error(uri, exc) from None


def read_text(uri: str, encoding: str = "utf-8") -> str:
    """The content of a text file; an undecodable file is a StorageError naming it."""
    data = read_bytes(uri)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise StorageError(f"{uri}: not valid {encoding} text (byte {exc.start})") from None


def write_bytes(uri: str, data: bytes) -> None:
    """Write atomically: readers see the old content or the whole new one, never a part."""
    if is_remote(uri):
        # S3: one PUT below MULTIPART_THRESHOLD, a multipart upload above it
        fs.call(uri, "write", lambda f, p: f.pipe_file(p, data, **_chunks(uri)))
        return
    path = _local(uri)
    try:
        with _atomic_local_path(path) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise _local_error(uri, exc) from None


def write_text(uri: str, text: str) -> None:
    """Write a UTF-8 text file atomically."""
    write_bytes(uri, text.encode("utf-8"))


def read_json(uri: str) -> Any:
    """A JSON file's value; a file that is not JSON is an ArtifactError naming it."""
    try:
        return json.loads(read_text(uri))
    except ValueError as exc:
        raise ArtifactError(f"{uri}: not JSON ({exc})") from None


def parent(uri: str) -> str:
    """The folder (or prefix) ``uri`` is in: ``s3://b/run/x/checkpoint.pt`` -> ``s3://b/run/x``."""
    return uri.rstrip("/").rsplit("/", 1)[0]


def write_json(uri: str, obj: object) -> None:
    """Write strict JSON (NaN and infinities refused: other readers cannot parse them)."""
    try:
        text = json.dumps(obj, indent=2, allow_nan=False)
    except ValueError as exc:
        raise StorageError(f"{uri}: refusing to write non-standard JSON ({exc})") from None
    write_text(uri, text + "\n")


def delete(uri: str) -> None:
    """Remove a file or object if it exists."""
    if is_remote(uri):
        fs.call(uri, "delete", fs.remove)
        return
    try:
        _local(uri).unlink(missing_ok=True)
    except OSError as exc:
        raise _local_error(uri, exc) from None


def delete_tree(uri: str) -> int:
    """Remove every file or object under the folder or prefix ``uri``; returns how many."""
    files = list_files(uri)
    for f in files:
        delete(f)
    if not is_remote(uri):
        shutil.rmtree(_local(uri), ignore_errors=True)
    return len(files)


def check_writable_folder(uri: str, what: str = "output folder") -> bool:
    """Fail now, naming ``uri``, if a local folder cannot be created or written (a file in the
    way, no permission); in an object store the bucket must exist. Run before long work starts. Returns
    whether it created the folder."""
    if is_remote(uri):
        bucket = fs.path(uri).split("/", 1)[0]
        if not fs.call(uri, "check", lambda f, _: fs.is_bucket(f, bucket)):
            raise StorageError(
                f"{what} {uri}: bucket {bucket} does not exist at {fs.endpoint(uri)}"
            )
        return False
    path = _local(uri)
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".protloc-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except FileExistsError:
        raise StorageError(f"{what} {uri}: a file is in the way, not a folder") from None
    except NotADirectoryError:
        raise StorageError(f"{what} {uri}: a file is in the way, not a folder") from None
    except PermissionError:
        raise StorageError(f"{what} {uri}: permission denied (cannot write there)") from None
    except OSError as exc:
        raise StorageError(f"{what} {uri}: cannot write there ({exc.strerror or exc})") from None
    return created


def remove_empty_folder(uri: str) -> None:
    """Remove a local folder if it holds no file (no-op in object stores: no folders there)."""
    if is_remote(uri):
        return
    path = _local(uri)
    if path.is_dir() and not any(p.is_file() for p in path.rglob("*")):
        shutil.rmtree(path, ignore_errors=True)


def listing(uri: str) -> dict[str, str]:
    """The files directly in the folder or prefix ``uri``: name -> identity,
    ``size:mtime_ns:ctime_ns`` locally (the change time, which no user can set back, catches a
    file rewritten with its mtime restored), ``size:ETag`` on S3, ``size:generation`` on GCS, ``size:ETag`` on Azure (one listing
    call per page of objects, no object is read)."""
    if is_remote(uri):
        return fs.call(uri, "list", fs.files_in)
    root = _local(uri)
    if not root.is_dir():
        return {}
    out = {}
    with os.scandir(root) as entries:
        for e in entries:
            if e.is_file():
                st = e.stat()
                out[e.name] = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
    return out


def exists(uri: str) -> bool:
    """True if a file or object exists at ``uri``."""
    if is_remote(uri):
        return fs.call(uri, "check", fs.is_file)
    return _local(uri).is_file()


def upload_file(local_path: str | os.PathLike, uri: str) -> None:
    """Copy a local file to ``uri`` (multipart above 16 MB on S3; atomic either way)."""
    src = Path(local_path)
    if not src.is_file():
        raise StorageError(f"{src}: no such file to upload to {uri}")
    if is_remote(uri):
        fs.call(uri, "upload", lambda f, p: f.put_file(str(src), p, **_chunks(uri)))
        return
    dst = _local(uri)
    if dst.resolve() == src.resolve():
        return
    try:
        with _atomic_local_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    except OSError as exc:
        raise _local_error(uri, exc) from None


def download_file(uri: str, local_path: str | os.PathLike) -> Path:
    """Copy ``uri`` to a local file atomically; returns the local path."""
    dst = Path(local_path)
    if is_remote(uri):

        def get(f: Any, p: str) -> None:
            with _atomic_local_path(dst) as tmp:
                f.get_file(p, str(tmp))

        fs.call(uri, "download", get)
        return dst
    src = _local(uri)
    if not src.is_file():
        raise StorageError(f"{uri}: no such file")
    if dst.exists() and dst.resolve() == src.resolve():
        return dst
    with _atomic_local_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return dst


def list_files(uri: str) -> list[str]:
    """Every file or object under the folder or prefix ``uri`` (recursive), as full URIs, sorted."""
    if is_remote(uri):
        prefix = f"{fs.scheme(uri)}://"
        return fs.call(uri, "list", lambda f, p: sorted(prefix + k for k in f.find(p)))
    root = _local(uri)
    if not root.is_dir():
        return []
    return sorted(str(p) for p in root.rglob("*") if p.is_file())


def _parallel(fn: Callable[[tuple[str, str]], None], jobs: list[tuple[str, str]]) -> None:
    workers = min(16, max(1, len(jobs)))
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(fn, jobs):
            pass


def upload_dir(local_dir: str | os.PathLike, uri: str) -> int:
    """Copy every file under a local folder to ``uri``/relative path; returns the file count."""
    root = Path(local_dir)
    if not root.is_dir():
        raise StorageError(f"{root}: no such folder to upload to {uri}")
    jobs = [
        (str(p), join(uri, p.relative_to(root).as_posix()))
        for p in sorted(root.rglob("*"))
        if p.is_file()
    ]
    _parallel(lambda job: upload_file(job[0], job[1]), jobs)
    return len(jobs)


def download_dir(uri: str, local_dir: str | os.PathLike) -> int:
    """Copy every file under ``uri`` into a local folder; returns the file count."""
    files = list_files(uri)
    if not files:
        raise StorageError(f"{uri}: no files under this prefix")
    base = str(uri).rstrip("/")
    root = Path(local_dir)
    jobs = [(f, str(root / f[len(base) :].lstrip("/"))) for f in files]
    _parallel(lambda job: download_file(job[0], job[1]), jobs)
    return len(jobs)
