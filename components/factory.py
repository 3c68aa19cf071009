"""KFP components generated from the step table: the interface derived, the body one call.

A lightweight KFP component is a Python function whose signature is its interface and whose
source KFP ships into the container. The signature here is written from the step's config
(``protloc.steps.STEPS``): one typed input per config field (with its default), one input
artifact per folder the step reads, ``data_root``, ``code_version`` (part of every cache key) and
the output artifact; the docstring's ``Args:`` give KFP every input's description. The body is
one call, :func:`run_task`, which calls the step's front door with the same arguments as the
command line does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import linecache
import logging
from typing import Any

from protloc.params import Param
from protloc.steps import DATA_FINGERPRINT, DATA_ROOT, STEPS, Step

CODE_VERSION_HELP = (
    "protloc code version the pipeline was compiled for (package version + source hash); "
    "part of every cache key, and the task refuses to run other code"
)
OUT_HELP = "this step's output folder"
ERROR_FILE = "error.txt"  # a failed task's one-line error, in its output folder
METRICS_HELP = "the numbers this step's runs are compared by (also written to the artifact file)"


def _annotation(p: Param) -> str:
    return p.type.__name__


def component_source(step: Step) -> str:
    """The Python source of ``step``'s component function (what KFP runs in the container)."""
    required: list[str] = []
    optional: list[str] = []
    docs: list[str] = []
    for i in step.inputs:
        kind = f"List[{i.type}]" if i.many else i.type
        (optional if i.optional else required).append(
            f"{i.name}: Input[{kind}]" + (" = None" if i.optional else "")
        )
        docs.append(f"{i.name}: {i.help}")
    if step.reads_data_root:
        required.append(f"{DATA_ROOT.name}: str")
        docs.append(f"{DATA_ROOT.name}: {DATA_ROOT.description()}")
        optional.append(f"{DATA_FINGERPRINT.name}: str = ''")
        docs.append(f"{DATA_FINGERPRINT.name}: {DATA_FINGERPRINT.description()}")
    for p in step.config.params():
        if p.required:
            required.append(f"{p.name}: {_annotation(p)}")
        else:
            optional.append(f"{p.name}: {_annotation(p)} = {p.default!r}")
        docs.append(f"{p.name}: {p.description()}")
    required += ["code_version: str", f"out: Output[{step.output}]"]
    returns = [f"out: {OUT_HELP}"]
    if step.scalars is not None:
        required.append("metrics: Output[Metrics]")
        returns.append(f"metrics: {METRICS_HELP}")
    for r in step.reports:
        required.append(f"{r.name}: Output[{r.type}]")
        returns.append(f"{r.name}: {r.help} ({r.file} of the output folder)")
    docs.append(f"code_version: {CODE_VERSION_HELP}")
    signature = ",\n    ".join(required + optional)
    args_doc = "\n".join(f"        {line}" for line in docs)
    returns_doc = "\n".join(f"        {line}" for line in returns)
    # KFP reads output descriptions from a Returns section.
    return (
        "from typing import List\n\n"
        "from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output\n\n\n"
        f"def {step.name}(\n    {signature},\n):\n"
        f'    """{step.summary}\n\n    Args:\n{args_doc}\n\n'
        f'    Returns:\n{returns_doc}\n    """\n'
        "    from components.factory import run_task\n\n"
        f"    run_task({step.name!r}, dict(locals()))\n"
    )


def component_function(step_name: str):
    """The component's Python function, compiled from :func:`component_source`.

    Its source is registered with ``linecache`` so ``inspect.getsource`` (which KFP uses to ship
    the function into the container) finds it.
    """
    step = STEPS[step_name]
    source = component_source(step)
    filename = f"<protloc component {step_name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {"__name__": f"components.generated.{step_name}"}
    exec(compile(source, filename, "exec", dont_inherit=True), namespace)
    return namespace[step_name]


def kfp_component(step_name: str, image: str):
    """The step as a KFP component on ``image`` (kfp is imported only here)."""
    from kfp import dsl

    return dsl.component(base_image=image, install_kfp_package=False)(component_function(step_name))


def run_task(step_name: str, args: dict[str, Any]) -> Any:
    """The body of every component: check the code and the data, artifacts to folders, values
    to the config, the step's front door, then its metrics.

    ``args`` are the component function's arguments (KFP artifacts have ``.path``, the folder in
    this container, and ``.uri``, where other tasks read it). A ProtlocError ends the task with
    one line (no traceback), exit status 2, and the line in ``{out}/error.txt`` too.
    """
    from protloc import storage
    from protloc.cli import exit_on_sigterm, setup_logging
    from protloc.errors import ProtlocError

    setup_logging()
    exit_on_sigterm()
    try:
        return _run_task(STEPS[step_name], args)
    except ProtlocError as exc:
        # One line; ERROR_FILE lets `pipeline.py local` say which step failed and why.
        logging.getLogger("protloc").error("error: %s", exc)
        with contextlib.suppress(Exception):
            storage.write_text(storage.join(args["out"].path, ERROR_FILE), f"{exc}\n")
        raise SystemExit(2) from None


def _run_task(step: Step, args: dict[str, Any]) -> Any:
    from protloc import storage
    from protloc.errors import ConfigError
    from protloc.version import code_version

    here = code_version()
    if args["code_version"] != here:
        raise ConfigError(
            f"{step.name}: the pipeline was compiled for protloc {args['code_version']}, but this "
            f"container runs {here}: rebuild and push the image, or recompile the pipeline"
        )
    if step.reads_data_root and args.get("data_fingerprint"):
        from protloc.data.identity import require_unchanged

        require_unchanged(
            args["data_fingerprint"],
            args["data_root"],
            args.get("pretrained", ""),
            step.name,
            args.get("external"),  # the split step's: it reads the external labels
        )
    cfg = step.config.from_mapping({p.name: args[p.name] for p in step.config.params()})
    folders: dict[str, Any] = {
        i.name: ([a.path for a in args[i.name]] if i.many else args[i.name].path)
        if args[i.name] is not None
        else None
        for i in step.inputs
    }
    folders["out"] = args["out"].path
    if step.reads_data_root:
        folders["data_root"] = args["data_root"]
    if step.name == "train":
        folders["out_uri"] = args["out"].uri
        if not cfg.work_root and storage.is_s3(args["out"].uri):
            # On a cluster the output artifact lives under the pipeline root on S3; its task's
            # folder is the same for every retry of the task, so a retried pod resumes there.
            task_folder = storage.parent(args["out"].uri)
            cfg = dataclasses.replace(cfg, work_root=storage.join(task_folder, "work"))
    result = step.run(cfg, **folders)
    for r in step.reports:  # the UI shows the artifact's own file: a copy of the step's
        storage.write_bytes(
            args[r.name].path, storage.read_bytes(storage.join(folders["out"], r.file))
        )
    if step.scalars is not None:
        values = step.scalars(result)
        for name, value in values.items():
            args["metrics"].log_metric(name, value)
        # kfp.local caches an artifact only by what is written to its file.
        storage.write_json(args["metrics"].path, values)
        if step.output == "Model":
            keep = ("cycle", "size_px", "epochs", "val_macro_f1_at_0.5")
            args["out"].metadata.update(
                {"code_version": here, **{k: v for k, v in values.items() if k in keep}}
            )
    return result
