"""The S3 side of ``protloc.storage``: one boto3 client per endpoint and credentials, and every
call retried on transient errors with exponential backoff and jitter; any other failure is one
:class:`StorageError` naming the URI and the endpoint, never a credential.

The endpoint comes from ``AWS_ENDPOINT_URL`` (SeaweedFS, MinIO, moto) or boto3's defaults;
retries as every store's (``protloc.storage.retry``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from protloc.errors import StorageError
from protloc.redact import redact_url
from protloc.storage.retry import retrying

log = logging.getLogger("protloc.storage")

T = TypeVar("T")

MULTIPART_THRESHOLD = 16 * 1024 * 1024
_TRANSIENT_CODES = {
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeoutException",
    "Throttling",
    "ThrottlingException",
    "500",
    "502",
    "503",
    "504",
}
MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
_DENIED_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "403",
    "ExpiredToken",
    "InvalidToken",
}


def endpoint() -> str:
    """The S3 endpoint in use, for messages (never includes credentials)."""
    url = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return redact_url(url) if url else "AWS S3"


# ----------------------------------------------------------------------------- the S3 client

_clients: dict[tuple, object] = {}
_clients_lock = threading.Lock()


def client():
    """A boto3 S3 client for the current endpoint, shared by threads (boto3 clients are
    thread-safe), rebuilt when the endpoint or credentials env changes."""
    import boto3
    from botocore.config import Config

    key = (
        os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"),
        os.environ.get("AWS_ACCESS_KEY_ID"),
        os.environ.get("AWS_SECRET_ACCESS_KEY"),
        os.environ.get("AWS_DEFAULT_REGION"),
    )
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            config = Config(
                # protloc retries itself (with logging); botocore retries once more inside a call
                # so a multipart part that hiccups does not restart the whole upload.
                retries={"max_attempts": 2, "mode": "standard"},
                connect_timeout=float(os.environ.get("PROTLOC_S3_CONNECT_TIMEOUT_S", "5")),
                read_timeout=float(os.environ.get("PROTLOC_S3_READ_TIMEOUT_S", "60")),
                s3={"addressing_style": "path"},  # MinIO and moto need path-style addressing
                max_pool_connections=32,
            )
            session = boto3.session.Session()
            client = session.client(
                "s3",
                endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3")
                or os.environ.get("AWS_ENDPOINT_URL"),
                region_name=os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
                config=config,
            )
            _clients[key] = client
        return client


def _classify(exc: BaseException, uri: str) -> tuple[bool, StorageError]:
    """(is_transient, the error to raise) for an exception from boto3."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        PartialCredentialsError,
    )
    from botocore.exceptions import (
        ConnectionError as BotoConnectionError,
    )

    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return False, StorageError(
            f"{uri}: no S3 credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        )
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code == "NoSuchBucket":
            return False, StorageError(f"{uri}: bucket does not exist at {endpoint()}")
        if code in MISSING_CODES:
            return False, StorageError(f"{uri}: no such object at {endpoint()}")
        if code in _DENIED_CODES:
            return False, StorageError(
                f"{uri}: access denied by {endpoint()} ({code}); check the S3 credentials"
            )
        if code in _TRANSIENT_CODES:
            return True, StorageError(f"{uri}: {endpoint()} kept failing ({code})")
        return False, StorageError(f"{uri}: S3 error {code} from {endpoint()}")
    if isinstance(exc, S3UploadFailedError):
        text = str(exc)
        if "NoSuchBucket" in text:
            return False, StorageError(f"{uri}: bucket does not exist at {endpoint()}")
        if any(code in text for code in ("AccessDenied", "InvalidAccessKeyId", "Signature")):
            return False, StorageError(f"{uri}: access denied by {endpoint()}")
        return True, StorageError(f"{uri}: upload to {endpoint()} kept failing")
    if isinstance(exc, (BotoConnectionError, BotoCoreError, ConnectionError, TimeoutError)):
        return True, StorageError(
            f"{uri}: cannot reach S3 endpoint {endpoint()} ({type(exc).__name__})"
        )
    return False, StorageError(f"{uri}: {type(exc).__name__} from {endpoint()}")


def with_retries(uri: str, what: str, fn: Callable[[], T]) -> T:
    """Run one S3 operation, retrying transient failures (protloc.storage.retry)."""
    return retrying(uri, what, fn, lambda exc: _classify(exc, uri))
