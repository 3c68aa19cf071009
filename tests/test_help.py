"""Every command's ``--help`` runs and lists its settings. The commands are found, not listed:
every module of the project with a ``__main__`` block (``python -m <module>``) and every
subcommand of ``pipeline.py``, so a command added later is covered without editing this test."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest

import pipeline
from tests.conftest import ROOT, run_python

FOLDERS = ("protloc", "components", "tools", "bench")


def _modules() -> list[str]:
    out = []
    for top in FOLDERS:
        for path in sorted((ROOT / top).rglob("*.py")):
            if re.search(r"^if __name__ == .__main__.:", path.read_text(), re.M):
                parts = path.relative_to(ROOT).with_suffix("").parts
                out.append(".".join(parts[:-1] if parts[-1] == "__main__" else parts))
    return out


def _commands() -> list[list[str]]:
    subcommands = next(a for a in pipeline.parser()._actions if a.dest == "command").choices
    return [["-m", m, "--help"] for m in _modules()] + [
        ["pipeline.py", name, "--help"] for name in subcommands
    ]


def test_the_commands_are_found():
    found = {" ".join(c[:2]) for c in _commands()}
    for expected in ("-m components.split", "-m components.predict", "-m protloc.synthetic",
                     "-m protloc.data.hpav18", "pipeline.py local", "pipeline.py submit",
                     "pipeline.py compile", "-m bench.speed.run"):  # fmt: skip
        assert expected in found


@pytest.fixture(scope="module")
def helps() -> dict[str, object]:
    commands = _commands()
    with ThreadPoolExecutor(2) as pool:
        procs = list(pool.map(lambda c: run_python(c, timeout=120), commands))
    return {" ".join(c[:-1]): p for c, p in zip(commands, procs, strict=True)}


@pytest.mark.slow
def test_every_help_exits_0_and_lists_its_settings(helps):
    failed = {c: p.stderr.strip().splitlines()[-1:] for c, p in helps.items() if p.returncode}
    assert failed == {}
    for command, proc in helps.items():
        assert proc.stdout.startswith("usage:"), command
        assert "--help" in proc.stdout and "options:" in proc.stdout, command


@pytest.mark.slow
def test_step_help_shows_each_setting_with_its_range_and_default(helps):
    """A % in a help text (e.g. '21 %') reaches the reader as written."""
    text = helps["-m components.split"].stdout
    assert "--resampling" in text and "17 and 21 % on HPA" in text
    assert "--val-fraction" in text and "in (0, 1); default 0.15" in " ".join(text.split())
    assert "--lr-max" in helps["pipeline.py local"].stdout
