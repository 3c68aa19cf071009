"""A registry of the swappable pieces of one kind (losses, and later backbones, threshold
methods, samplers): each registered once, by name, with its help.

The names are what a config field accepts (``param(choices=LOSSES)``): the field's validation,
the CLI's choices, the KFP input's description and the parameters page all read the registry, so
a new entry is one registered function and nothing else. A registry module imports no torch at
its top (the configs read it on the CPU image); what an entry needs, it imports when called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from protloc.errors import ConfigError


@dataclass(frozen=True)
class Entry:
    """One registered piece: its name, one line of help, the callable."""

    name: str
    help: str
    fn: Callable[..., Any]


class Registry:
    """Named pieces of one ``kind`` (e.g. ``loss``), in registration order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register ``fn`` as ``name``; a name registered twice is refused."""
        if not name.isidentifier():
            raise ValueError(f"{self.kind} name {name!r} must be an identifier")

        def add(fn: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = Entry(name, help, fn)
            return fn

        return add

    def unregister(self, name: str) -> None:
        """Remove an entry (tests that register a piece of their own)."""
        self._entries.pop(name)

    def get(self, name: str) -> Callable[..., Any]:
        """The callable registered as ``name``; an unknown name is a ConfigError naming it."""
        try:
            return self._entries[name].fn
        except KeyError:
            raise ConfigError(
                f"{self.kind} must be one of {', '.join(self)}, got {name!r}"
            ) from None

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries  # a list read from JSON: False

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self)})"
