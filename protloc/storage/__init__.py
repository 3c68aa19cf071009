"""One API over local paths and object stores: ``s3://bucket/key`` (boto3), ``gs://bucket/key``
(gcsfs) and ``az://container/key`` or ``abfs://container/key`` (adlfs).

Local writes are atomic (temporary file in the target folder, then ``os.replace``). Object writes
are atomic by the stores' own semantics: a single upload, or an S3 multipart upload that only
becomes visible when it is completed (s3transfer aborts it on failure). Transient errors are
retried with exponential backoff (``protloc.storage.retry``); a missing object or bucket, missing
credentials or an unreachable endpoint end in one :class:`StorageError` that names the URI (and
the endpoint), never a credential. ``storage.s3`` and ``storage.fs`` say where each store's
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
from protloc.storage.s3 import MISSING_CODES, MULTIPART_THRESHOLD, client, with_retries
from protloc.storage.s3 import endpoint as s3_endpoint

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- URIs


def is_s3(uri: str) -> bool:
    """True for ``s3://`` URIs."""
    return str(uri).startswith("s3://")


def _is_fs(uri: str) -> bool:
    return fs.scheme(uri) in fs.SCHEMES and "://" in str(uri)


def is_remote(uri: str) -> bool:
    """True for a URI of an object store (``s3://``, ``gs://``, ``az://``, ``abfs://``)."""
    return is_s3(uri) or _is_fs(uri)


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``."""
    rest = str(uri)[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise StorageError(f"{uri}: not a valid s3:// URI (no bucket)")
    return bucket, key


def join(base: str, *parts: str) -> str:
    """Join URI parts with '/', for S3 and local paths alike."""
    base = str(base)
    if not is_remote(base):
        return str(_local(base).joinpath(*parts))
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{str(part).strip('/')}"
    return out


# ----------------------------------------------------------------------------- public API


def read_bytes(uri: str) -> bytes:
    """The whole content of a file or object."""
    if _is_fs(uri):
        return fs.call(uri, "read", lambda f, p: f.cat_file(p))
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
    if _is_fs(uri):
        fs.call(uri, "write", lambda f, p: f.pipe_file(p, data))
        return
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
    if _is_fs(uri):
        fs.call(uri, "delete", fs.remove)
        return
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
    if not is_remote(uri):
        shutil.rmtree(_local(uri), ignore_errors=True)
    return len(files)


def check_writable_folder(uri: str, what: str = "output folder") -> bool:
    """Fail now, naming ``uri``, if a local folder cannot be created or written (a file in the
    way, no permission); on S3 the bucket must exist. Run before long work starts. Returns
    whether it created the folder."""
    if _is_fs(uri):
        bucket = fs.path(uri).split("/", 1)[0]
        if not fs.call(uri, "check", lambda f, _: f.exists(bucket)):
            raise StorageError(
                f"{what} {uri}: bucket {bucket} does not exist at {fs.endpoint(uri)}"
            )
        return False
    if is_s3(uri):
        bucket, _ = split_s3(uri)

        def head() -> None:
            from botocore.exceptions import ClientError

            try:
                client().head_bucket(Bucket=bucket)
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) in MISSING_CODES:
                    raise StorageError(
                        f"{what} {uri}: bucket {bucket} does not exist at {s3_endpoint()}"
                    ) from None
                raise

        with_retries(uri, "check", head)
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
    if _is_fs(uri):
        return fs.call(uri, "list", fs.files_in)
    if not is_s3(uri):
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
    if _is_fs(uri):
        return fs.call(uri, "check", fs.is_file)
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
    if _is_fs(uri):
        fs.call(uri, "upload", lambda f, p: f.put_file(str(src), p))
        return
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
    if _is_fs(uri):

        def get(f: Any, p: str) -> None:
            with _atomic_local_path(dst) as tmp:
                f.get_file(p, str(tmp))

        fs.call(uri, "download", get)
        return dst
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
    if _is_fs(uri):
        prefix = f"{fs.scheme(uri)}://"
        return fs.call(uri, "list", lambda f, p: sorted(prefix + k for k in f.find(p)))
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
