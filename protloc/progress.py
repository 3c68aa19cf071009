"""Progress figures for long log lines: how far, how fast, how long still (no bar: the logs of a
KFP pod or a compose service are lines, not a terminal)."""

from __future__ import annotations


def eta(done: float, total: float, elapsed: float) -> str:
    """'ETA 1m05s' at the rate so far ('ETA ?' before any progress)."""
    if done <= 0 or elapsed <= 0:
        return "ETA ?"
    left = max(total - done, 0) * elapsed / done
    minutes, seconds = divmod(round(left), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"ETA {hours}h{minutes:02d}m"
    return f"ETA {minutes}m{seconds:02d}s" if minutes else f"ETA {seconds}s"
