"""Errors protloc raises for bad input, bad configuration or an unreachable store.

Each one carries a message that names the culprit (file, id, column, parameter or URI); CLIs
print the message without a traceback and exit with status 2.
"""


class ProtlocError(Exception):
    """Base class: a problem the user can fix, reported without a traceback."""


class ConfigError(ProtlocError, ValueError):
    """A parameter is out of range or inconsistent; raised before any work starts."""


class StorageError(ProtlocError):
    """A store operation failed: missing object or bucket, no access, endpoint down."""


class DataError(ProtlocError):
    """An input data file (labels CSV, channel image) is missing, malformed or inconsistent."""


class ArtifactError(ProtlocError):
    """An artifact passed between steps (manifest, checkpoint, predictions, thresholds) is invalid
    or does not match the others."""
