"""Local files of ``protloc.storage``: paths, atomic writes, errors that name the file."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from protloc.errors import StorageError

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def local_path(uri: str) -> Path:
    """A local path; a URI of another or a malformed scheme (``s3:/b/k``, ``gs://``) is refused
    here, so it never becomes a local folder named ``s3:``."""
    uri = str(uri)
    if uri.startswith("file://"):
        return Path(uri[len("file://") :])
    if not uri.strip():
        raise StorageError("empty path: give a local path or a URI (s3://, gs://, az://)")
    if _SCHEME.match(uri):
        raise StorageError(
            f"{uri}: not a local path and not a supported URI (s3://bucket/key, "
            "gs://bucket/key, az://container/key, abfs://container/key)"
        )
    return Path(uri)


# mkstemp creates files 0600; finished files get the mode a plain open() would give them.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


@contextmanager
def atomic_local_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it into place, else remove it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _FILE_MODE)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def local_error(uri: str, exc: OSError) -> StorageError:
    if isinstance(exc, FileNotFoundError):
        return StorageError(f"{uri}: no such file")
    if isinstance(exc, IsADirectoryError):
        return StorageError(f"{uri}: is a folder, expected a file")
    if isinstance(exc, PermissionError):
        return StorageError(f"{uri}: permission denied")
    return StorageError(f"{uri}: {exc.strerror or exc}")
