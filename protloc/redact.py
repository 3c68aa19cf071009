"""URLs as they may be printed: without user info (``user:password@``) or a query string
(``?token=...``), in error lines, logs and ``error.txt``.

Every :class:`protloc.errors.ProtlocError` message and every log line of a protloc process
passes through :func:`redact_text`, so a secret in an endpoint (``AWS_ENDPOINT_URL``, ``--host``,
an Azure connection string's ``BlobEndpoint``) is never printed, wherever the message was built.
Only web URLs (``http``, ``https``) are rewritten: in ``abfs://container@account...`` the part
before ``@`` names a container, not a user.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# A URL runs to whitespace, a quote or an angle bracket (user info and queries may hold ',' and
# ';'); punctuation that ends a sentence after it is given back (:func:`_redact_match`).
_WEB_URL = re.compile(r"\bhttps?://[^\s'\"<>]+", re.IGNORECASE)


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
    try:
        port = parts.port
    except ValueError:  # not a number: keep what follows the host as it was, minus user info
        port = parts.netloc.rpartition("@")[2].partition(":")[2] or None
    if port is not None:
        host = f"{host}:{port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def redact_text(text: str) -> str:
    """``text`` with every web URL in it redacted (:func:`redact_url`)."""
    if "://" not in text:
        return text
    return _WEB_URL.sub(_redact_match, text)


def _redact_match(match: re.Match) -> str:
    url = match.group(0)
    body = url.rstrip(".,;:)]")  # a sentence's punctuation after the URL is not part of it
    return redact_url(body) + url[len(body) :]
