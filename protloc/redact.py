"""URLs as they may be printed: without user info (``user:password@``) or a query string
(``?token=...``), in error lines, logs and ``error.txt``."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """``http://admin:pw@host:8080/p?token=x`` -> ``http://host:8080/p``; text that is not a URL
    with a scheme is returned as it is."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.scheme or not parts.netloc:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
