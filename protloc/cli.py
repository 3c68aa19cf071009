"""What every protloc command line shares: logging set-up and clean errors."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

from protloc.errors import ProtlocError

log = logging.getLogger("protloc")


def setup_logging(level: int = logging.INFO) -> None:
    """Timestamped log lines on stderr (progress, rates, warnings)."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def run(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> int:
    """Run a CLI ``main``; a ProtlocError prints one line 'error: ...' and returns 2."""
    setup_logging()
    try:
        main(argv)
    except ProtlocError as exc:
        log.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201 - the user-facing last line
        return 2
    return 0
