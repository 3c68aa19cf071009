"""Google Cloud Storage (``gs://``) and Azure Blob Storage (``az://``, ``abfs://``) through
fsspec (gcsfs, adlfs): one filesystem per scheme and credentials, every call retried on
transient errors with exponential backoff and jitter; any other failure is one
:class:`StorageError` naming the URI and the endpoint, never a credential.

Credentials are found as each cloud's SDK finds them, never in a file protloc writes: GCS from
Application Default Credentials (workload identity on GKE, ``GOOGLE_APPLICATION_CREDENTIALS``),
or none against ``STORAGE_EMULATOR_HOST``; Azure from ``AZURE_STORAGE_CONNECTION_STRING``, or
``AZURE_STORAGE_ACCOUNT_NAME`` with a key, a SAS token or Azure AD (workload identity). Writes
are single-object uploads, visible whole or not at all (a GCS upload and an Azure block-list
commit are atomic).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from protloc.errors import StorageError
from protloc.redact import redact_url
from protloc.storage.retry import retrying

log = logging.getLogger("protloc.storage")

T = TypeVar("T")

# URI scheme -> fsspec protocol (and the optional package that implements it)
SCHEMES = {"gs": ("gcs", "gcsfs"), "az": ("az", "adlfs"), "abfs": ("abfs", "adlfs")}
_ENV = ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT",
        "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_NAME",
        "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN")  # fmt: skip


def scheme(uri: str) -> str:
    return str(uri).split("://", 1)[0]


def endpoint(uri: str) -> str:
    """The service a URI goes to, for messages (no credential)."""
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


def filesystem(uri: str) -> Any:
    """The fsspec filesystem of ``uri``'s scheme for the current environment (rebuilt when a
    credential or endpoint variable changes). Its listings are never cached: a step must see
    objects another process wrote a moment ago."""
    protocol, package = SCHEMES[scheme(uri)]
    key = (protocol, *(os.environ.get(k) for k in _ENV))
    with _lock:
        fs = _filesystems.get(key)
        if fs is None:
            # The Azure SDK logs every request's URL and headers at INFO: user info included.
            logging.getLogger("azure").setLevel(logging.WARNING)
            try:
                import fsspec

                fs = fsspec.filesystem(protocol, skip_instance_cache=True, use_listings_cache=False)
            except ImportError:
                raise StorageError(
                    f"{uri}: {scheme(uri)}:// needs the {package} package (pip install {package})"
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
    """(is_transient, the error to raise) for an exception from gcsfs or adlfs."""
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
                       "ServerDisconnectedError", "ClientOSError")  # fmt: skip
    if isinstance(exc, (ConnectionError, TimeoutError)) or name in transient_names:
        return True, StorageError(f"{uri}: cannot reach {where} ({name})")
    return False, StorageError(f"{uri}: {name} from {where}")


def call(uri: str, what: str, fn: Callable[[Any, str], T]) -> T:
    """``fn(filesystem, path)`` for ``uri``, retried on transient errors. gcsfs retries every
    call itself (6 attempts, backoff up to 32 s) and is not retried again on top."""
    fs, p = filesystem(uri), path(uri)
    attempts = 1 if scheme(uri) == "gs" else None
    return retrying(uri, what, lambda: fn(fs, p), lambda exc: _classify(exc, uri), attempts)


def identity(info: dict[str, Any]) -> str:
    """``size:version`` of an object from its listing entry: the GCS generation, the Azure
    ETag (either changes whenever the object is written)."""
    version = info.get("generation") or info.get("etag") or info.get("md5Hash") or ""
    return f"{info.get('size', 0)}:{str(version).strip(chr(34))}"


def is_file(fs: Any, p: str) -> bool:
    """Whether an object is at ``p``; any other failure is raised (fsspec's ``isfile`` would
    answer False for a denied request or an endpoint that is down)."""
    try:
        return fs.info(p).get("type") == "file"
    except FileNotFoundError:
        return False


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
