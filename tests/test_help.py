"""Every command's ``--help`` runs and lists its settings. The commands are found, not listed:
every module of the project with a ``__main__`` block (``python -m <module>``) and every
subcommand of ``pipeline.py``, so a command added later is covered without editing this test."""

from __future__ import annotations

import json
import re

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


def _commands() -> list[str]:
    subcommands = next(a for a in pipeline.parser()._actions if a.dest == "command").choices
    return _modules() + [f"pipeline.py:{name}" for name in subcommands]


def test_the_commands_are_found():
    found = set(_commands())
    for expected in ("components.split", "components.predict", "protloc.synthetic",
                     "protloc.data.hpav18", "pipeline.py:local", "pipeline.py:submit",
                     "pipeline.py:compile", "bench.speed.run", "tools.generate"):  # fmt: skip
        assert expected in found


@pytest.fixture(scope="module")
def helps() -> dict[str, dict]:
    """Each command's --help, run as `python -m MODULE --help` would run it (its __main__
    block), all in one interpreter so torch is imported once (tests/helps.py)."""
    proc = run_python(["-m", "tests.helps", *_commands()], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_help_exits_0_and_lists_its_settings(helps):
    failed = {c: r["err"] or r["code"] for c, r in helps.items() if r["code"] != 0}
    assert failed == {}
    assert len(helps) == len(_commands())
    for command, result in helps.items():
        assert result["out"].startswith("usage:"), command
        assert "--help" in result["out"] and "options:" in result["out"], command


def test_step_help_shows_each_setting_with_its_range_and_default(helps):
    """A % in a help text (e.g. '21 %') reaches the reader as written."""
    text = helps["components.split"]["out"]
    assert "--resampling" in text and "17 and 21 % on HPA" in text
    assert "--val-fraction" in text and "in (0, 1); default 0.15" in " ".join(text.split())
    assert "--lr-max" in helps["pipeline.py:local"]["out"]
