"""The body of every KFP component: check the code, artifacts to folders, values to the config,
the step's front door, then its metrics and pages.

A component function (``components/<step>.py``) calls :func:`run_task` with its arguments. KFP
artifacts have ``.path`` (the folder in this container) and ``.uri`` (where other tasks read
it). A ProtlocError ends the task with one line (no traceback), exit status 2, and the line in
``{out}/error.txt`` too, which ``pipeline.py local`` reads to say which step failed and why.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import Any

from protloc import storage
from protloc.errors import ConfigError, ProtlocError
from protloc.folders import ERROR
from protloc.process import start
from protloc.steps import STEPS, Step
from protloc.version import code_version


def run_task(step_name: str, args: dict[str, Any]) -> Any:
    """Run step ``step_name`` with a component's arguments ``args``."""
    start()
    try:
        return _run(STEPS[step_name], args)
    except ProtlocError as exc:
        logging.getLogger("protloc").error("error: %s", exc)
        with contextlib.suppress(Exception):
            storage.write_text(storage.join(args["out"].path, ERROR), f"{exc}\n")
        raise SystemExit(2) from None


def run_fingerprint(args: dict[str, Any]) -> str:
    """The body of the ``fingerprint`` component: the code check, then the data fingerprint."""
    from protloc.steps.data import fingerprint_step

    start()
    try:
        _check_code("fingerprint", args["code_version"])
        fingerprint = fingerprint_step(
            data_root=args["data_root"], external=args["external"], pretrained=args["pretrained"]
        )
    except ProtlocError as exc:
        logging.getLogger("protloc").error("error: %s", exc)
        raise SystemExit(2) from None
    logging.getLogger("protloc").info(
        "data root %s: fingerprint %s", args["data_root"], fingerprint
    )
    return fingerprint


def _check_code(step: str, compiled_for: str) -> None:
    """This container must run the code the pipeline was compiled for."""
    here = code_version()
    if compiled_for != here:
        raise ConfigError(
            f"{step}: the pipeline was compiled for protloc {compiled_for}, but this "
            f"container runs {here}: rebuild and push the image, or recompile the pipeline"
        )


def _run(step: Step, args: dict[str, Any]) -> Any:
    here = code_version()
    _check_code(step.name, args["code_version"])
    cfg = step.config.from_mapping({p.name: args[p.name] for p in step.config.params()})
    folders = _folders(step, args)
    if step.name == "train" and not cfg.work_root and storage.is_remote(args["out"].uri):
        # On a cluster the output artifact lives under the pipeline root on S3; its task's
        # folder is the same for every retry of the task, so a retried pod resumes there.
        task_folder = storage.parent(args["out"].uri)
        cfg = dataclasses.replace(cfg, work_root=storage.join(task_folder, "work"))
    result = step.run(cfg, **folders)
    _remove_finished_work(step, args)
    for r in step.reports:  # the UI shows the artifact's own file: a copy of the step's
        storage.write_bytes(
            args[r.name].path, storage.read_bytes(storage.join(folders["out"], r.file))
        )
    if step.scalars is not None:
        _metrics(step, args, step.scalars(result), here)
    return result


# The input that proves a train task's output artifact complete: the next cycle's warm start, or
# infer's last cycle (KFP uploads an output artifact after its task's function returns).
_WORK_AFTER = {"train": "previous", "infer": "last_cycle"}


def _remove_finished_work(step: Step, args: dict[str, Any]) -> None:
    """Delete the per-epoch checkpoints a train task kept in ``work/`` beside its artifact
    (where it resumes from after a retry) once a later task has read that artifact: it is
    complete then, and the checkpoints would only cost storage. Explicit ``work_root``s are the
    user's to keep."""
    name = _WORK_AFTER.get(step.name)
    previous = args.get(name) if name else None
    if previous is None or args.get("work_root") or not storage.is_remote(previous.uri):
        return
    work = storage.join(storage.parent(previous.uri), "work")
    removed = storage.delete_tree(work)
    if removed:
        logging.getLogger("protloc").info("removed %d checkpoint(s) of %s", removed, work)


def _folders(step: Step, args: dict[str, Any]) -> dict[str, Any]:
    """The front door's folder arguments from the component's artifacts and values."""
    folders: dict[str, Any] = {
        i.name: ([a.path for a in args[i.name]] if i.many else args[i.name].path)
        if args.get(i.name) is not None
        else None
        for i in step.inputs
    }
    folders["out"] = args["out"].path
    if step.reads_data_root:
        folders["data_root"] = args["data_root"]
        folders["data_fingerprint"] = args.get("data_fingerprint", "")
    if step.name == "train":
        folders["out_uri"] = args["out"].uri
    return folders


def _metrics(step: Step, args: dict[str, Any], values: dict[str, float], version: str) -> None:
    for name, value in values.items():
        args["metrics"].log_metric(name, value)
    # kfp.local caches an artifact only by what is written to its file.
    storage.write_json(args["metrics"].path, values)
    if step.output == "Model":
        keep = ("cycle", "size_px", "epochs", "val_macro_f1_at_0.5")
        args["out"].metadata.update(
            {"code_version": version, **{k: v for k, v in values.items() if k in keep}}
        )
