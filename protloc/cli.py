"""Every step's command line: flags derived from the step's config and the step table.

``python -m components.<step>`` builds its parser here from ``protloc.steps.STEPS[step]``: one
flag per folder the step reads (``--split``, ``--previous``, ...), ``--data-root``, ``--out``,
and one per config field with its help, range and default. The parsed values go to the same
front door the KFP component calls.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from protloc.errors import ConfigError
from protloc.params import Param
from protloc.steps import DATA_ROOT, STEPS, Step


def _int(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _checked(check: Any) -> Any:
    """An argparse type that runs ``check`` (which raises ConfigError) on the text."""

    def parse(text: str) -> str:
        try:
            check(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    return parse


def add_param(parser: argparse.ArgumentParser, p: Param, default: Any = None) -> None:
    """One flag for parameter ``p``; its value is checked when the config is made."""
    # argparse reads % in a help text as a format code: escaped here, where every help is built.
    kwargs: dict[str, Any] = {"dest": p.name, "help": p.description().replace("%", "%%")}
    if p.type is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    else:
        kwargs["type"] = {int: _int, float: _float, str: str}[p.type]
        kwargs["metavar"] = p.type.__name__.upper()
        if p.spec.choices and hasattr(p.spec.choices, "check"):
            # a loss sum: parsed first, so that a bad one is refused naming its term
            kwargs["type"] = _checked(p.spec.choices.check)
            kwargs["choices"] = p.spec.choices
        elif p.spec.choices:
            kwargs["choices"] = p.spec.choices
            kwargs["metavar"] = "{" + ",".join(p.spec.choices) + "}"
    if p.required and default is None:
        kwargs["required"] = True
    kwargs["default"] = default  # None: not given on the command line
    parser.add_argument(p.flag, **kwargs)


def step_parser(step: Step) -> argparse.ArgumentParser:
    """The command line of ``step``."""
    p = argparse.ArgumentParser(
        prog=f"python -m components.{step.name}",
        description=f"{step.summary} Same function and arguments as the KFP component.",
    )
    io = p.add_argument_group("folders (local paths or s3://, gs://, az:// URIs)")
    if step.reads_data_root:
        io.add_argument("--data-root", required=True, metavar="URI", help=DATA_ROOT.spec.help)
    for i in step.inputs:
        io.add_argument(
            "--" + i.name.replace("_", "-"),
            required=not i.optional,
            metavar="DIR",
            help=i.help,
            **({"nargs": "+"} if i.many else {}),
        )
    io.add_argument("--out", required=True, metavar="DIR", help="this step's output folder")
    settings = p.add_argument_group("settings")
    for param in step.config.params():
        add_param(settings, param)
    return p


def parse_step(step: Step, argv: Sequence[str] | None) -> tuple[Any, dict[str, str | None]]:
    """(config, folders) from a command line; a bad value is a ConfigError naming it."""
    ns = vars(step_parser(step).parse_args(argv))
    values = {p.name: ns[p.name] for p in step.config.params() if ns[p.name] is not None}
    cfg = step.config.from_mapping(values)
    folders = {i.name: ns[i.name] for i in step.inputs}
    folders["out"] = ns["out"]
    if step.reads_data_root:
        folders["data_root"] = ns["data_root"]
    for name, value in folders.items():
        for v in value if isinstance(value, list) else [value]:
            if v is not None and not v.strip():
                raise ConfigError(f"--{name.replace('_', '-')} is empty")
    return cfg, folders


def step_main(step_name: str) -> Callable[[Sequence[str] | None], Any]:
    """``main(argv)`` of ``python -m components.<step_name>``: parse, then the front door."""

    def main(argv: Sequence[str] | None = None) -> Any:
        step = STEPS[step_name]
        cfg, folders = parse_step(step, argv)
        return step.run(cfg, **folders)

    return main
