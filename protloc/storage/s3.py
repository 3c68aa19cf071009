"""The S3 side of ``protloc.storage.fs``: the s3fs options (endpoint, region, timeouts) from the
environment, and boto's errors mapped to one :class:`StorageError` naming the URI and the
endpoint, never a credential.

The endpoint comes from ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (SeaweedFS, MinIO,
moto) or AWS's defaults; credentials as botocore finds them (``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY``, a profile, an IAM role or IRSA web identity). Connect and read
timeouts are ``PROTLOC_S3_CONNECT_TIMEOUT_S`` (default 5 s) and ``PROTLOC_S3_READ_TIMEOUT_S``
(default 60 s), each at most 600 s.
"""

from __future__ import annotations

import os
from typing import Any

from protloc.errors import StorageError
from protloc.redact import redact_url
from protloc.storage.retry import env_setting

# Above this size an upload is a multipart upload (parts of half of it), which S3 makes
# visible only when it is completed: whole or not at all either way.
MULTIPART_THRESHOLD = 16 * 1024 * 1024
CONNECT_TIMEOUT_ENV = "PROTLOC_S3_CONNECT_TIMEOUT_S"
READ_TIMEOUT_ENV = "PROTLOC_S3_READ_TIMEOUT_S"
ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
       "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_PROFILE", CONNECT_TIMEOUT_ENV,
       READ_TIMEOUT_ENV)  # fmt: skip
_TRANSIENT_CODES = {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout",
                    "RequestTimeoutException", "Throttling", "ThrottlingException", "500", "502",
                    "503", "504"}  # fmt: skip
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
_DENIED_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403",
                 "ExpiredToken", "InvalidToken"}  # fmt: skip


def _endpoint_url() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def endpoint() -> str:
    """The S3 endpoint in use, for messages (never includes credentials)."""
    url = _endpoint_url()
    return redact_url(url) if url else "AWS S3"


def options() -> dict[str, Any]:
    """s3fs's arguments for the current environment: one attempt a request in botocore (and in
    s3fs, ``fs.filesystem``), so that ``PROTLOC_STORAGE_ATTEMPTS`` counts every attempt; a
    multipart upload that fails is aborted by s3fs and made again whole."""
    return {
        "endpoint_url": _endpoint_url(),
        "client_kwargs": {"region_name": os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"},
        "config_kwargs": {
            "retries": {"max_attempts": 1, "mode": "standard"},
            "connect_timeout": env_setting(CONNECT_TIMEOUT_ENV, "5", float, high=600),
            "read_timeout": env_setting(READ_TIMEOUT_ENV, "60", float, high=600),
            "s3": {"addressing_style": "path"},  # SeaweedFS, MinIO and moto need path style
            "max_pool_connections": 32,
        },
    }


def classify(exc: BaseException, uri: str) -> tuple[bool, StorageError]:
    """(is_transient, the error to raise) for an exception from s3fs: s3fs turns boto's
    ClientError into an OSError whose cause is the ClientError, whose code is read here."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        PartialCredentialsError,
    )
    from botocore.exceptions import ConnectionError as BotoConnectionError

    cause = exc.__cause__ if isinstance(exc.__cause__, ClientError) else exc
    if isinstance(cause, (NoCredentialsError, PartialCredentialsError)):
        return False, StorageError(
            f"{uri}: no S3 credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        )
    if isinstance(cause, ClientError):
        code = str(cause.response.get("Error", {}).get("Code", ""))
        if code == "NoSuchBucket":
            return False, StorageError(f"{uri}: bucket does not exist at {endpoint()}")
        if code in _MISSING_CODES:
            return False, StorageError(f"{uri}: no such object at {endpoint()}")
        if code in _DENIED_CODES:
            return False, StorageError(
                f"{uri}: access denied by {endpoint()} ({code}); check the S3 credentials"
            )
        if code in _TRANSIENT_CODES:
            return True, StorageError(f"{uri}: {endpoint()} kept failing ({code})")
        return False, StorageError(f"{uri}: S3 error {code} from {endpoint()}")
    if isinstance(exc, FileNotFoundError):
        return False, StorageError(f"{uri}: no such object at {endpoint()}")
    if isinstance(exc, PermissionError):
        return False, StorageError(
            f"{uri}: access denied by {endpoint()}; check the S3 credentials"
        )
    if isinstance(exc, (BotoConnectionError, BotoCoreError, ConnectionError, TimeoutError)) or (
        type(exc).__name__ in ("ClientOSError", "ServerDisconnectedError", "ClientPayloadError")
    ):
        return True, StorageError(
            f"{uri}: cannot reach S3 endpoint {endpoint()} ({type(exc).__name__})"
        )
    return False, StorageError(f"{uri}: {type(exc).__name__} from {endpoint()}")
