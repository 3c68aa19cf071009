"""What every protloc process does the same way: log lines, SIGTERM, its rank, its exit.

The base of the house: no protloc module below it but ``errors`` and ``redact``. Command lines (the step CLIs,
``protloc.synthetic``, ``protloc.data.hpav18``), KFP task bodies and the ranks a front door
launches all start through here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from protloc.errors import ProtlocError
from protloc.redact import redact_text

log = logging.getLogger("protloc")


def rank() -> int:
    """This process's rank in a torchrun group (0 outside one)."""
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """False in the ranks > 0 of a torchrun group: they compute, rank 0 logs and writes."""
    return rank() == 0


def setup_logging(level: int = logging.INFO) -> None:
    """Timestamped log lines on stderr (progress, rates, warnings); ranks other than 0 of a
    multi-process task log warnings and errors only (rank 0 tells the progress)."""
    if not is_main():
        level = max(level, logging.WARNING)
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    _redact_log_records()


def _redact_log_records() -> None:
    """Every log record of this process (protloc's and its libraries', whatever handlers
    kfp.local installs later) without a URL's user info or query string: redacted when the
    record is made, so no handler can print the original."""
    make = logging.getLogRecordFactory()
    if getattr(make, "redacts", False):
        return

    def redacting(*args: object, **kwargs: object) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format call: logging reports it later, as it always did
            return record
        if "://" in message:
            clean = redact_text(message)
            if clean != message:
                record.msg, record.args = clean, None
        return record

    redacting.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(redacting)


def exit_on_sigterm(forward_to: Callable[[int], bool] | None = None) -> None:
    """SIGTERM (what Kubernetes and Docker send) exits like Ctrl-C would, so cleanup runs
    (temporary cache files, the output folder's lock) instead of the process just vanishing.
    ``forward_to`` chooses descendants that get it first (``pipeline.py local``: kfp.local's
    task processes, which would otherwise run on, writing, after it is gone; each ends its own
    workers and ranks)."""

    def handler(signum: int, frame: object) -> None:
        if forward_to is not None:
            for pid in descendants(os.getpid()):
                if forward_to(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGTERM)
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():  # where Python allows handlers
        signal.signal(signal.SIGTERM, handler)


def descendants(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs (Linux ``/proc``; [] elsewhere)."""
    found, stack = [], [pid]
    while stack:
        parent = stack.pop()
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                kids = [int(k) for k in children.read_text().split()]
                found += kids
                stack += kids
    return found


def start() -> None:
    """What every protloc process does first: log lines, SIGTERM as an exit, and its thread
    pools sized to the CPUs it may use (``protloc.cpus``)."""
    from protloc.cpus import limit_threads

    setup_logging()
    exit_on_sigterm()
    limit_threads()


def run(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> int:
    """Run a command line's ``main``; a ProtlocError prints one line 'error: ...' and returns 2."""
    start()
    try:
        main(argv)
    except ProtlocError as exc:
        log.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201 - the user-facing last line
        return 2
    return 0
