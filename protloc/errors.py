"""Errors protloc raises for bad input, bad configuration or an unreachable store.

Each one carries a message that names the culprit (file, id, column, parameter or URI); CLIs
print the message without a traceback and exit with status 2. A message never shows a URL's
user info or query string (``protloc.redact``), however it was built.
"""

from protloc.redact import redact_text


class ProtlocError(Exception):
    """Base class: a problem the user can fix, reported without a traceback."""

    def __str__(self) -> str:
        return redact_text(super().__str__())


class ConfigError(ProtlocError, ValueError):
    """A parameter is out of range or inconsistent; raised before any work starts."""


class StorageError(ProtlocError):
    """A store operation failed: missing object or bucket, no access, endpoint down."""


class DataError(ProtlocError):
    """An input data file (labels CSV, channel image) is missing, malformed or inconsistent."""


class ArtifactError(ProtlocError):
    """An artifact passed between steps (manifest, checkpoint, predictions, thresholds) is invalid
    or does not match the others."""
