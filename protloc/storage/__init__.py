"""One API over local paths and ``s3://bucket/key`` URIs.

Local writes are atomic (temporary file in the target folder, then ``os.replace``). S3 writes are
atomic by S3's own semantics: a single PUT, or a multipart upload that only becomes visible when it
is completed (s3transfer aborts it on failure). Transient S3 errors are retried with exponential
backoff; a missing object or bucket, missing credentials or an unreachable endpoint end in one
:class:`StorageError` that names the URI (and the endpoint), never a credential.

The endpoint comes from ``AWS_ENDPOINT_URL`` (MinIO, moto) or boto3's defaults. Retries are set by
``PROTLOC_S3_ATTEMPTS`` (default 5) and ``PROTLOC_S3_BACKOFF_S`` (first delay, default 0.5 s).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from protloc.errors import ArtifactError, StorageError
from protloc.storage.s3 import MISSING_CODES, MULTIPART_THRESHOLD, client, with_retries

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- URIs


def is_s3(uri: str) -> bool:
    """True for ``s3://`` URIs."""
    return str(uri).startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``."""
    rest = str(uri)[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise StorageError(f"{uri}: not a valid s3:// URI (no bucket)")
    return bucket, key


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _local(uri: str) -> Path:
    """A local path; a URI of another or a malformed scheme (``s3:/b/k``, ``gs://``) is refused
    here, so it never becomes a local folder named ``s3:``."""
    uri = str(uri)
    if uri.startswith("file://"):
        return Path(uri[len("file://") :])
    if not uri.strip():
        raise StorageError("empty path: give a local path or an s3://bucket/key URI")
    if _SCHEME.match(uri):
        raise StorageError(
            f"{uri}: not a local path and not an s3://bucket/key URI (only s3:// is supported)"
        )
    return Path(uri)


def join(base: str, *parts: str) -> str:
    """Join URI parts with '/', for S3 and local paths alike."""
    base = str(base)
    if not is_s3(base):
        return str(_local(base).joinpath(*parts))
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{str(part).strip('/')}"
    return out


# ----------------------------------------------------------------------------- local helpers

# mkstemp creates files 0600; finished files get the mode a plain open() would give them.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


@contextmanager
def _atomic_local_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it into place, else remove it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _FILE_MODE)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _local_error(uri: str, exc: OSError) -> StorageError:
    if isinstance(exc, FileNotFoundError):
        return StorageError(f"{uri}: no such file")
    if isinstance(exc, IsADirectoryError):
        return StorageError(f"{uri}: is a folder, expected a file")
    if isinstance(exc, PermissionError):
        return StorageError(f"{uri}: permission denied")
    return StorageError(f"{uri}: {exc.strerror or exc}")


# ----------------------------------------------------------------------------- public API


def read_bytes(uri: str) -> bytes:
    """The whole content of a file or object."""
    if not is_s3(uri):
        try:
            return _local(uri).read_bytes()
        except OSError as exc:
            raise _local_error(uri, exc) from None
    bucket, key = split_s3(uri)

    def get() -> bytes:
        return client().get_object(Bucket=bucket, Key=key)["Body"].read()

    return with_retries(uri, "read", get)


def read_text(uri: str, encoding: str = "utf-8") -> str:
    """The content of a text file; an undecodable file is a StorageError naming it."""
    data = read_bytes(uri)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise StorageError(f"{uri}: not valid {encoding} text (byte {exc.start})") from None


def write_bytes(uri: str, data: bytes) -> None:
    """Write atomically: readers see the old content or the whole new one, never a part."""
    if not is_s3(uri):
        path = _local(uri)
        try:
            with _atomic_local_path(path) as tmp:
                tmp.write_bytes(data)
        except OSError as exc:
            raise _local_error(uri, exc) from None
        return
    bucket, key = split_s3(uri)
    with_retries(uri, "write", lambda: client().put_object(Bucket=bucket, Key=key, Body=data))


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
    if not is_s3(uri):
        try:
            _local(uri).unlink(missing_ok=True)
        except OSError as exc:
            raise _local_error(uri, exc) from None
        return
    bucket, key = split_s3(uri)
    with_retries(uri, "delete", lambda: client().delete_object(Bucket=bucket, Key=key))


def delete_tree(uri: str) -> int:
    """Remove every file or object under the folder or prefix ``uri``; returns how many."""
    files = list_files(uri)
    for f in files:
        delete(f)
    if not is_s3(uri):
        shutil.rmtree(_local(uri), ignore_errors=True)
    return len(files)


def check_writable_folder(uri: str, what: str = "output folder") -> bool:
    """Fail now, naming ``uri``, if a local folder cannot be created or written (a file in the
    way, no permission); on S3 the bucket must exist. Run before long work starts. Returns
    whether it created the folder."""
    if is_s3(uri):
        bucket, _ = split_s3(uri)
        with_retries(uri, "check", lambda: client().head_bucket(Bucket=bucket))
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


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (the owner of a lock or temporary file)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


def remove_empty_folder(uri: str) -> None:
    """Remove a local folder if it holds no file (no-op on S3, where folders do not exist)."""
    if is_s3(uri):
        return
    path = _local(uri)
    if path.is_dir() and not any(p.is_file() for p in path.rglob("*")):
        shutil.rmtree(path, ignore_errors=True)


def listing(uri: str) -> dict[str, str]:
    """The files directly in the folder or prefix ``uri``: name -> identity, ``size:mtime_ns``
    locally, ``size:ETag`` on S3 (one LIST call per 1,000 objects, no object is read)."""
    if not is_s3(uri):
        root = _local(uri)
        if not root.is_dir():
            return {}
        out = {}
        with os.scandir(root) as entries:
            for e in entries:
                if e.is_file():
                    st = e.stat()
                    out[e.name] = f"{st.st_size}:{st.st_mtime_ns}"
        return out
    bucket, prefix = split_s3(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""

    def list_all() -> dict[str, str]:
        out: dict[str, str] = {}
        paginator = client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            for obj in page.get("Contents", []):
                out[obj["Key"][len(prefix) :]] = f"{obj['Size']}:{obj['ETag'].strip(chr(34))}"
        return out

    return with_retries(uri, "list", list_all)


def exists(uri: str) -> bool:
    """True if a file or object exists at ``uri``."""
    if not is_s3(uri):
        return _local(uri).is_file()
    bucket, key = split_s3(uri)

    def head() -> bool:
        from botocore.exceptions import ClientError

        try:
            client().head_object(Bucket=bucket, Key=key)
            return True
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in MISSING_CODES:
                return False
            raise

    return with_retries(uri, "check", head)


def upload_file(local_path: str | os.PathLike, uri: str) -> None:
    """Copy a local file to ``uri`` (multipart above 16 MB on S3; atomic either way)."""
    src = Path(local_path)
    if not src.is_file():
        raise StorageError(f"{src}: no such file to upload to {uri}")
    if not is_s3(uri):
        dst = _local(uri)
        if dst.resolve() == src.resolve():
            return
        try:
            with _atomic_local_path(dst) as tmp:
                shutil.copyfile(src, tmp)
        except OSError as exc:
            raise _local_error(uri, exc) from None
        return
    from boto3.s3.transfer import TransferConfig

    bucket, key = split_s3(uri)
    config = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, use_threads=True)
    with_retries(uri, "upload", lambda: client().upload_file(str(src), bucket, key, Config=config))


def download_file(uri: str, local_path: str | os.PathLike) -> Path:
    """Copy ``uri`` to a local file atomically; returns the local path."""
    dst = Path(local_path)
    if not is_s3(uri):
        src = _local(uri)
        if not src.is_file():
            raise StorageError(f"{uri}: no such file")
        if dst.exists() and dst.resolve() == src.resolve():
            return dst
        with _atomic_local_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        return dst
    from boto3.s3.transfer import TransferConfig

    bucket, key = split_s3(uri)
    config = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, use_threads=True)

    def fetch() -> None:
        with _atomic_local_path(dst) as tmp:
            client().download_file(bucket, key, str(tmp), Config=config)

    with_retries(uri, "download", fetch)
    return dst


def list_files(uri: str) -> list[str]:
    """Every file or object under the folder or prefix ``uri`` (recursive), as full URIs, sorted."""
    if not is_s3(uri):
        root = _local(uri)
        if not root.is_dir():
            return []
        return sorted(str(p) for p in root.rglob("*") if p.is_file())
    bucket, prefix = split_s3(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""

    def list_all() -> list[str]:
        out: list[str] = []
        paginator = client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            out.extend(f"s3://{bucket}/{obj['Key']}" for obj in page.get("Contents", []))
        return sorted(out)

    return with_retries(uri, "list", list_all)


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
