"""Object stores through fsspec: S3 (``s3://``, s3fs), Google Cloud Storage (``gs://``, gcsfs)
and Azure Blob Storage (``az://``, ``abfs://``, adlfs). One filesystem per scheme, credentials
and process; every call is one attempt in the library and retried here on transient errors
(``protloc.storage.retry``); any other failure is one :class:`StorageError` naming the URI and
the endpoint, never a credential.

Credentials are found as each cloud's SDK finds them, never in a file protloc writes: S3 as
botocore does (``storage.s3``); GCS from Application Default Credentials (workload identity on
GKE, ``GOOGLE_APPLICATION_CREDENTIALS``), or none against ``STORAGE_EMULATOR_HOST``; Azure from
``AZURE_STORAGE_CONNECTION_STRING``, or ``AZURE_STORAGE_ACCOUNT_NAME`` with a key, a SAS token or
Azure AD (workload identity). Writes are single-object uploads or S3 multipart uploads, visible
whole or not at all (a PUT, a completed multipart upload, a GCS upload and an Azure block-list
commit are atomic).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from protloc.errors import ConfigError, StorageError
from protloc.redact import redact_text, redact_url
from protloc.storage.local import local_error
from protloc.storage.retry import retrying
from protloc.storage.s3 import ENV as S3_ENV
from protloc.storage.s3 import classify as s3_classify
from protloc.storage.s3 import endpoint as s3_endpoint
from protloc.storage.s3 import options as s3_options

log = logging.getLogger("protloc.storage")

T = TypeVar("T")

# URI scheme -> fsspec protocol (and the optional package that implements it)
SCHEMES = {"s3": ("s3", "s3fs"), "gs": ("gcs", "gcsfs"), "az": ("az", "adlfs"),
           "abfs": ("abfs", "adlfs")}  # fmt: skip
_ENV = ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT",
        "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_NAME",
        "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN", *S3_ENV)  # fmt: skip


def scheme(uri: str) -> str:
    return str(uri).split("://", 1)[0]


def endpoint(uri: str) -> str:
    """The service a URI goes to, for messages (no credential)."""
    if scheme(uri) == "s3":
        return s3_endpoint()
    if scheme(uri) == "gs":
        host = os.environ.get("STORAGE_EMULATOR_HOST")
        return redact_url(host) if host else "Google Cloud Storage"
    text = os.environ.get("AZURE_STORAGE_CONNECTION_STRING", "")
    fields = dict(f.split("=", 1) for f in text.split(";") if "=" in f)
    if "BlobEndpoint" in fields:
        return redact_url(fields["BlobEndpoint"])
    account = fields.get("AccountName") or os.environ.get("AZURE_STORAGE_ACCOUNT_NAME", "")
    return f"Azure Blob Storage account {account}" if account else "Azure Blob Storage"


_filesystems: dict[tuple, Any] = {}
_lock = threading.Lock()


# gcsfs's methods that retry themselves (each request 6 times, about 31 s of waits, fixed when
# the class is defined): requests, and the two ways a file is downloaded.
_GCSFS_RETRYING = ("_request", "_get_file_request", "_get_file_concurrent")


@functools.cache
def _one_attempt_gcs() -> type:
    """gcsfs's filesystem with each of its retrying methods run once: protloc's own loop, set by
    ``PROTLOC_STORAGE_ATTEMPTS`` as for S3 and Azure, retries the whole call instead. A gcsfs
    whose methods look otherwise keeps its own retries (said once in the log)."""
    import gcsfs
    from gcsfs.core import GCSFileSystem  # not the experimental zonal/HNS class that gcsfs
    from gcsfs.retry import retry_request  # exports: its bucket lookup retries for 60 s

    once = {}
    for name in _GCSFS_RETRYING:
        method = getattr(GCSFileSystem, name, None)
        if method is not None and hasattr(method, "__wrapped__"):
            once[name] = retry_request(retries=1)(method.__wrapped__)
        elif method is not None:
            log.warning("gcsfs %s: %s retries itself", gcsfs.__version__, name)
    return type("OneAttemptGCS", (GCSFileSystem,), once)


def _create(protocol: str) -> Any:
    import fsspec

    common = {"skip_instance_cache": True, "use_listings_cache": False}
    if protocol == "s3":
        fs = fsspec.filesystem("s3", **common, **s3_options())
        fs.retries = 1  # one attempt a call (s3fs makes 5): protloc's loop retries the call
        return fs
    if protocol == "gcs":
        return _one_attempt_gcs()(**common)
    fs = fsspec.filesystem(protocol, **common)
    # adlfs builds its client with the Azure SDK's ExponentialRetry (3 retries waiting 15, 18
    # and 24 s) and takes no retry setting: one attempt a call, protloc's loop retries the call.
    policy = getattr(getattr(fs.service_client, "_config", None), "retry_policy", None)
    if hasattr(policy, "total_retries"):
        policy.total_retries = 0
    else:
        log.warning("adlfs: the Azure SDK's client retries itself")
    return fs


def filesystem(uri: str) -> Any:
    """The fsspec filesystem of ``uri``'s scheme for the current environment and process
    (rebuilt when a credential or endpoint variable changes, and in a forked child, whose
    parent's event loop is gone). Its listings are never cached: a step must see objects
    another process wrote a moment ago."""
    protocol, package = SCHEMES[scheme(uri)]
    key = (protocol, os.getpid(), *(os.environ.get(k) for k in _ENV))
    with _lock:
        fs = _filesystems.get(key)
        if fs is None:
            # The Azure SDK logs every request's URL and headers at INFO: user info included.
            logging.getLogger("azure").setLevel(logging.WARNING)
            # gcsfs logs each failed request with its traceback; protloc logs each attempt
            # and raises one line.
            logging.getLogger("gcsfs").setLevel(logging.CRITICAL)
            try:
                fs = _create(protocol)
            except ConfigError:  # a setting of protloc's (an S3 timeout), named as it is
                raise
            except ImportError:
                raise StorageError(
                    f"{uri}: {scheme(uri)}:// needs the {package} package (pip install {package})"
                ) from None
            except (ValueError, TypeError) as exc:  # e.g. adlfs without an account
                raise StorageError(
                    f"{uri}: cannot connect to {endpoint(uri)}: {redact_text(str(exc))}"
                ) from None
            _filesystems[key] = fs
        return fs


def path(uri: str) -> str:
    """``gs://bucket/a/b`` -> ``bucket/a/b`` (fsspec's path); a URI without a bucket is refused."""
    rest = str(uri).split("://", 1)[1]
    if not rest.split("/", 1)[0]:
        raise StorageError(f"{uri}: not a valid {scheme(uri)}:// URI (no bucket or container)")
    return rest.rstrip("/")


def _classify(exc: BaseException, uri: str) -> tuple[bool, StorageError]:
    """(is_transient, the error to raise) for an exception from s3fs, gcsfs or adlfs."""
    # the local side of a copy (fsspec's own paths are "bucket/key", never absolute)
    if isinstance(exc, OSError) and str(exc.filename or "").startswith(os.sep):
        return False, StorageError(f"{local_error(exc.filename, exc)} (copying {uri})")
    if scheme(uri) == "s3":
        return s3_classify(exc, uri)
    where = endpoint(uri)
    status = getattr(exc, "code", None) or getattr(exc, "status_code", None)
    name = type(exc).__name__
    if isinstance(exc, FileNotFoundError) or status == 404 or name == "ResourceNotFoundError":
        return False, StorageError(f"{uri}: no such object or bucket at {where}")
    denied = isinstance(exc, OSError) and str(exc).startswith(("Forbidden", "Unauthorized"))
    if (
        isinstance(exc, PermissionError)
        or status in (401, 403)
        or "Authentication" in name
        or denied
    ):
        return False, StorageError(f"{uri}: access denied by {where}; check the credentials")
    if isinstance(status, int) and (status >= 500 or status == 429):
        return True, StorageError(f"{uri}: {where} kept failing (HTTP {status})")
    transient_names = ("ServiceRequestError", "ServiceResponseError", "ClientConnectorError",
                       "ServerDisconnectedError", "ClientOSError", "TransportError",
                       "ClientPayloadError")  # fmt: skip
    if isinstance(exc, (ConnectionError, TimeoutError)) or name in transient_names:
        return True, StorageError(f"{uri}: cannot reach {where} ({name})")
    return False, StorageError(f"{uri}: {name} from {where}")


def call(uri: str, what: str, fn: Callable[[Any, str], T]) -> T:
    """``fn(filesystem, path)`` for ``uri``, retried on transient errors."""
    p = path(uri)
    fs = filesystem(uri)
    return retrying(uri, what, lambda: fn(fs, p), lambda exc: _classify(exc, uri))


def identity(info: dict[str, Any]) -> str:
    """``size:version`` of an object from its listing entry: the S3 ETag, the GCS generation,
    the Azure ETag (each changes whenever the object is written)."""
    version = (
        info.get("generation") or info.get("ETag") or info.get("etag") or info.get("md5Hash") or ""
    )
    return f"{info.get('size', 0)}:{str(version).strip(chr(34))}"


def is_file(fs: Any, p: str) -> bool:
    """Whether an object is at ``p``; any other failure is raised (fsspec's ``isfile`` would
    answer False for a denied request or an endpoint that is down)."""
    try:
        return fs.info(p).get("type") == "file"
    except FileNotFoundError:
        return False


def is_bucket(fs: Any, bucket: str) -> bool:
    """Whether ``bucket`` exists; any other failure is raised (s3fs's ``exists`` answers False
    for a denied request or an endpoint that is down)."""
    try:
        fs.info(bucket)
    except FileNotFoundError:
        return False
    return True


def remove(fs: Any, p: str) -> None:
    """Delete the object at ``p`` if there is one."""
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(p)


def files_in(fs: Any, folder: str) -> dict[str, str]:
    """The objects directly under ``folder``: name -> :func:`identity` ({} for none)."""
    try:
        entries = fs.ls(folder, detail=True)
    except FileNotFoundError:
        return {}
    return {
        e["name"].rstrip("/").rsplit("/", 1)[-1]: identity(e)
        for e in entries
        if e.get("type") == "file"
    }
