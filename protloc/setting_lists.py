"""Settings written as a list in one string: the external data roots and the ensemble's
snapshots. Parsed where the config is made (and again where they are used), each refusal naming
the parameter."""

from __future__ import annotations

import re

from protloc.errors import ConfigError


def external_roots(text: str) -> list[str]:
    """The data roots of an ``external`` setting (empty entries refused, duplicates too)."""
    if not text.strip():
        return []
    roots = [r.strip().rstrip("/") for r in text.split(",")]
    if any(not r for r in roots):
        raise ConfigError(f"external has an empty entry: {text!r}")
    if len(set(roots)) != len(roots):
        raise ConfigError(f"external names a data root twice: {text!r}")
    return roots


ENSEMBLE_SPEC = re.compile(r"^(all|last:[1-9]\d{0,3}|cycles:[1-9]\d{0,3}(,[1-9]\d{0,3})*)$")


def check_ensemble_spec(spec: str) -> None:
    """Refuse a malformed ensemble choice, naming the parameter."""
    if not ENSEMBLE_SPEC.match(spec):
        raise ConfigError(
            f"ensemble must be all, last:K or cycles:I,J,... (cycle numbers from 1), got {spec!r}"
        )
