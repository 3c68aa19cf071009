"""Retries of object-store calls (S3, GCS, Azure) with exponential backoff and jitter: each
call is one attempt in the store's client library, and the attempts are counted here.

``PROTLOC_STORAGE_ATTEMPTS`` (default 5, at most 20) attempts, the first delay
``PROTLOC_STORAGE_BACKOFF_S`` (default 0.5 s, at most 60 s), doubled after each failure up to
60 s a wait; a value that is not a number in its range is refused naming the variable.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable
from typing import TypeVar

from protloc.errors import ConfigError, StorageError

log = logging.getLogger("protloc.storage")

T = TypeVar("T")
ATTEMPTS_ENV = "PROTLOC_STORAGE_ATTEMPTS"
BACKOFF_ENV = "PROTLOC_STORAGE_BACKOFF_S"
MAX_DELAY_S = 60.0  # one wait at most: 20 attempts then take under half an hour


def env_setting(name: str, default: str, kind: type, high: float) -> float:
    """The environment variable ``name`` as a number in (0, high]; anything else is refused
    naming the variable."""
    text = os.environ.get(name, default).strip() or default
    try:
        value = kind(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= high):
        raise ConfigError(f"{name} must be a positive {kind.__name__} up to {high:g}, got {text!r}")
    return value


def retrying(
    uri: str,
    what: str,
    fn: Callable[[], T],
    classify: Callable[[BaseException], tuple[bool, StorageError]],
    attempts: int | None = None,
) -> T:
    """Run one store operation; ``classify`` maps an exception to (transient, the error to
    raise). Transient failures are retried (``attempts`` times, default the setting), anything
    else raised at once."""
    # Bounded: hours of retries are a hang, not a retry.
    attempts = attempts or int(env_setting(ATTEMPTS_ENV, "5", int, high=20))
    delay = env_setting(BACKOFF_ENV, "0.5", float, high=MAX_DELAY_S)
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except StorageError:
            raise
        except Exception as exc:
            transient, error = classify(exc)
            if not transient:
                raise error from None
            if attempt == attempts:
                raise StorageError(f"{error} after {attempts} attempts to {what}") from None
            log.warning(
                "%s %s failed (%s), attempt %d/%d; retrying in %.1f s",
                what,
                uri,
                type(exc).__name__,
                attempt,
                attempts,
                delay,
            )
            time.sleep(delay * (1 + 0.25 * random.random()))
            delay = min(2 * delay, MAX_DELAY_S)
    raise AssertionError("unreachable")
