"""Every command's ``--help`` in one interpreter (torch and kfp imported once, not per command):
``python -m tests.helps COMMAND...`` where COMMAND is ``-m MODULE`` or ``pipeline.py:SUB``.
Prints one JSON object: command -> {"code": exit status, "out": stdout, "err": the error}."""

from __future__ import annotations

import contextlib
import io
import json
import runpy
import sys
import traceback


def run(command: str) -> dict:
    out = io.StringIO()
    code: object = 0
    err = ""
    if command.startswith("pipeline.py:"):
        argv, target = ["pipeline.py", command.split(":", 1)[1], "--help"], "pipeline.py"
    else:
        argv, target = [command, "--help"], command
    sys.argv = argv
    try:
        with contextlib.redirect_stdout(out):
            if target == "pipeline.py":
                runpy.run_path(target, run_name="__main__")
            else:
                runpy.run_module(target, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code or 0
    except BaseException:  # the crash a user would see
        code, err = 1, traceback.format_exc().strip().splitlines()[-1]
    return {"code": code, "out": out.getvalue(), "err": err}


if __name__ == "__main__":
    print(json.dumps({c: run(c) for c in sys.argv[1:]}))
