"""Typed step settings: the one place a step's parameters are listed.

Each step has one frozen dataclass (``protloc.config``) whose fields are made with :func:`param`:
type (the annotation), default, help and the valid range or choices. Everything else derives from
it: the step's command-line flags (``protloc.cli``), its KFP component inputs and the pipeline's
parameters (``components/``, ``pipeline.py``), and validation, which runs when an instance is
made, so an invalid config cannot exist. Adding a parameter to a step is one field.

Floats are always checked finite; ``bool`` is not accepted for an ``int`` field; strings use ``""``
for "not set" (KFP parameters cannot be None).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Collection
from dataclasses import MISSING, dataclass, field
from typing import Any, Literal

from protloc.errors import ConfigError

# pipeline: a pipeline parameter (and a component input and a CLI flag)
# task:     a component input and a CLI flag whose value the DAG sets per task (the schedule)
Scope = Literal["pipeline", "task"]
TYPES = (bool, int, float, str)


@dataclass(frozen=True)
class Spec:
    """What a field carries besides its type and default."""

    help: str
    low: float | None = None  # inclusive lower bound, or exclusive if low_open
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    # a tuple, or a registry (protloc.registry): a registry's names are read when asked
    choices: Collection[str] | None = None
    scope: Scope = "pipeline"
    result: bool = True  # False: an operational setting that never changes the step's result

    def range_text(self) -> str:
        """'in (0, 1]', 'one of soft_f1, bce', '>= 1', or '' when unconstrained."""
        if self.choices:
            # choices that also accept sums of themselves (a loss) say so
            extra = getattr(self.choices, "range_extra", "")
            return "one of " + ", ".join(self.choices) + extra
        if self.low is not None and self.high is not None:
            lo, hi = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"in {lo}{_num(self.low)}, {_num(self.high)}{hi}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {_num(self.low)}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {_num(self.high)}"
        return ""


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def param(
    default: Any = MISSING,
    help: str = "",
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    choices: Collection[str] | None = None,
    scope: Scope = "pipeline",
    result: bool = True,
) -> Any:
    """A dataclass field with its :class:`Spec` (no default = required)."""
    if not help:
        raise TypeError("every parameter needs a help text")
    spec = Spec(help, low, high, low_open, high_open, choices, scope, result)
    return field(default=default, metadata={"protloc": spec})


@dataclass(frozen=True)
class Param:
    """One parameter as the derived interfaces see it."""

    name: str
    type: type
    default: Any  # MISSING when required
    spec: Spec

    @property
    def required(self) -> bool:
        return self.default is MISSING

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def description(self) -> str:
        """The help text with its range and default: the same words on the CLI and in KFP."""
        parts = [self.spec.help.rstrip(".")]
        if rng := self.spec.range_text():
            parts.append(rng)
        if not self.required:
            parts.append(f"default {self.default!r}")
        return "; ".join(parts) + "."


def params_of(cls: type) -> list[Param]:
    """The parameters of a step config class, in field order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("protloc")
        if spec is None:
            raise TypeError(f"{cls.__name__}.{f.name} is not made with protloc.params.param")
        typ = hints[f.name]
        if typ not in TYPES:
            raise TypeError(f"{cls.__name__}.{f.name}: type {typ} is not one of {TYPES}")
        out.append(Param(f.name, typ, f.default, spec))
    return out


def check_value(p: Param, value: Any) -> None:
    """Raise ConfigError naming ``p`` when ``value`` has the wrong type or is out of range."""
    ok_type = isinstance(value, p.type) and not (p.type is not bool and isinstance(value, bool))
    if p.type is float and isinstance(value, int) and not isinstance(value, bool):
        ok_type = True
    if not ok_type:
        raise ConfigError(f"{p.name} must be {p.type.__name__}, got {value!r}")
    s = p.spec
    if p.type is float and not math.isfinite(value):
        raise ConfigError(f"{p.name} must be a finite number, got {value!r}")
    if s.choices is not None and value not in s.choices:
        check = getattr(s.choices, "check", None)
        if check is not None:  # choices that parse (a loss sum) name the part that is wrong
            check(value)
        raise ConfigError(f"{p.name} must be {s.range_text()}, got {value!r}")
    if p.type in (int, float):
        below = s.low is not None and (value <= s.low if s.low_open else value < s.low)
        above = s.high is not None and (value >= s.high if s.high_open else value > s.high)
        if below or above:
            raise ConfigError(f"{p.name} must be {s.range_text()}, got {value!r}")


class StepConfig:
    """Base of the step configs: validates every field when an instance is made."""

    def __post_init__(self) -> None:
        for p in params_of(type(self)):
            check_value(p, getattr(self, p.name))
        self.check()

    def check(self) -> None:
        """Rules that span fields (override); raise ConfigError."""

    @classmethod
    def params(cls) -> list[Param]:
        return params_of(cls)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> typing.Self:
        """An instance from ``values`` (unknown names refused, naming them)."""
        known = {p.name for p in params_of(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown parameter(s) for {cls.__name__}: {', '.join(unknown)}")
        return cls(**values)

    def result_fields(self) -> dict[str, Any]:
        """The fields that determine the result (compared when resuming)."""
        return {p.name: getattr(self, p.name) for p in params_of(type(self)) if p.spec.result}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]
