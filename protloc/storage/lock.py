"""Local locks that hold under races and across PID namespaces, and temporary files protloc owns.

Both rest on ``flock``: the kernel holds the lock for as long as the process has the file open
and drops it when the process dies, however it dies. Nothing is decided from a pid written in a
file: a pid means nothing in another container (another PID namespace) or after the pid is
reused, and an empty file written by a process that has not yet recorded its pid looks
abandoned. Every process on one machine (containers sharing a volume included) sees the same
lock, and Linux NFS clients map ``flock`` to a lock the server keeps.

Temporary files carry the prefix :data:`TEMP_PREFIX` and stay locked by their writer until they
are renamed into place, so :func:`remove_orphans` deletes only files protloc named, whose writer
is gone: never another program's ``notes.tmp.1234``, never a live build's file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from protloc.errors import StorageError

log = logging.getLogger(__name__)

# Descriptors holding a lock: a forked child (a DataLoader worker) closes its copies, so the lock
# ends with this process, not with its longest-lived child.
_held: set[int] = set()


def _close_in_child() -> None:
    for fd in list(_held):
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_close_in_child)

TEMP_PREFIX = ".protloc-tmp."
# A writer locks its temporary file right after creating it; a file younger than this may be
# in that gap and is never taken for an orphan.
ORPHAN_MIN_AGE_S = 60.0


class LockHeldError(Exception):
    """``path`` is locked by a live process; ``holder`` is what it wrote there (for messages)."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is held by {holder or 'another process'}")
        self.path, self.holder = path, holder


def _try_lock(path: Path) -> int | None:
    """An open descriptor of ``path`` holding its lock, or None where a live process holds it."""
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return None
            raise
        # The previous holder unlinks the file while it still holds it: if the name now points
        # at another file (or none), the lock just taken is on a file no one else will open.
        try:
            now = os.stat(path)
        except FileNotFoundError:
            now = None
        mine = os.fstat(fd)
        if now is not None and (now.st_ino, now.st_dev) == (mine.st_ino, mine.st_dev):
            return fd
        os.close(fd)


@contextmanager
def hold(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed, removed on release); raise
    :class:`LockHeldError` at once if a live process holds it."""
    try:
        fd = _try_lock(path)
    except PermissionError:
        raise StorageError(f"{path}: permission denied (another user's lock file)") from None
    if fd is None:
        raise LockHeldError(path, _holder(path))
    _held.add(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # before the lock goes: a waiting process then re-opens a new file
        _held.discard(fd)
        os.close(fd)


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


@contextmanager
def temporary(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path``, named and locked as protloc's for as long as it lives;
    renamed onto ``path`` if the block ends normally, removed if it raises."""
    tmp = path.with_name(f"{TEMP_PREFIX}{os.getpid()}.{time.monotonic_ns()}.{path.name}")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
    _held.add(fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        _held.discard(fd)
        os.close(fd)


def remove_orphans(folder: Path, min_age_s: float = ORPHAN_MIN_AGE_S) -> list[tuple[str, int]]:
    """Delete protloc's temporary files in ``folder`` whose writer is gone (nobody holds their
    lock) and that are older than ``min_age_s``; returns each one's name and size."""
    removed = []
    for tmp in folder.glob(f"{TEMP_PREFIX}*"):
        try:
            if time.time() - tmp.stat().st_mtime < min_age_s:
                continue
            fd = os.open(tmp, os.O_RDWR)
        except OSError:  # gone meanwhile, or another user's: not ours to judge
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # its writer runs
        try:
            size = os.fstat(fd).st_size
            tmp.unlink()
            removed.append((tmp.name, size))
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)
    return removed
