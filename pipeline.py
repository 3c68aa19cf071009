"""protloc's Kubeflow Pipelines DAG and its command line.

    split -> prepare -> train cycle 1 -> ... -> train cycle K -> infer -> thresholds -> submit
    with --folds F: split -> prepare -> F x (train cycles -> infer) -> collect -> thresholds -> submit
    with --recipes FILE: split -> prepare -> R x (the chain, or F folds and collect) -> compare
                         -> thresholds -> submit (the best recipes' ensemble)

python pipeline.py compile [-o pipeline.yaml] [--schedule 221:48:6,...] [--recipes FILE]
python pipeline.py local   [--data-root URI] [--alpha A] [--schedule ...] [--root runs/local]
                           [--runner subprocess|docker]
python pipeline.py submit  --host URL --data-root s3://... [--experiment NAME] [--namespace NS]
                           [--service-account SA] [--pipeline-root s3://...] [--alpha A] ...

The schedule (size:batch:epochs per SGDR cycle) is fixed at compile time; every other setting is
a pipeline parameter, derived with its description from the steps' configs (protloc.config).
This file only wires: the components are in components/, the logic in protloc/.
"""

import argparse
import inspect
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from components import cluster, component
from components.remote import PIPELINE_NAME, Remote
from components.remote import start as start_remote
from protloc import __version__
from protloc.cli import add_param
from protloc.config import SplitConfig, TrainConfig
from protloc.cpus import TASKS_ENV
from protloc.errors import ConfigError, ProtlocError
from protloc.folders import ERROR, PAGE, SUBMISSION
from protloc.params import Param
from protloc.process import exit_on_sigterm, setup_logging
from protloc.recipes import Recipe, check_run, read_recipes
from protloc.redact import redact_url
from protloc.report.summary import format_summary, run_summary, step_time
from protloc.steps import (
    DATA_ROOT,
    STEPS,
    extra_sizes,
    pipeline_params,
    step_configs,
)
from protloc.train.schedule import SCHEDULES, Cycle, format_schedule, schedule_from
from protloc.version import code_version

ROOT = Path(__file__).resolve().parent
# Ranks per train and infer task: fixed at compile time like the schedule (the pods' GPU
# request), defined once in the train config.
GPUS = next(p for p in TrainConfig.params() if p.name == "gpus")
# K-fold chains (1: the holdout), fixed at compile time like the schedule: the DAG's shape.
FOLDS = next(p for p in SplitConfig.params() if p.name == "folds")
# The embedded default's small data: rare = under 10 samples, no loader processes on a laptop's
# few cores, TTA 2 to keep it brisk. Applied only without --data-root, and logged.
DEMO_OVERRIDES = {"rare_below": 10, "workers": 0, "tta": 2}

log = logging.getLogger("protloc.pipeline")


class Outputs(NamedTuple):
    split: object
    store: object
    predictions: object
    thresholds: object
    submission: object
    model: object


def _settings(step: str, values: dict[str, Any]) -> dict[str, Any]:
    """The pipeline parameters that feed ``step``'s config."""
    return {
        p.name: values[p.name] for p in STEPS[step].config.params() if p.spec.scope == "pipeline"
    }


def _signature(params: list[Param], returns: Any) -> inspect.Signature:
    empty = inspect.Parameter.empty
    return inspect.Signature(
        [
            inspect.Parameter(
                p.name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=empty if p.required else p.default,
                annotation=p.type,
            )
            for p in params
        ],
        return_annotation=returns,
    )


def build_pipeline(
    schedule: list[Cycle],
    placement: cluster.Placement | None = None,
    gpus: int = 1,
    folds: int = 1,
    parallel: int = 0,
    cache: bool = True,
    recipes: list[Recipe] | None = None,
):
    """The pipeline function for this schedule, with ``gpus`` ranks in each train and infer
    task and ``folds`` chains of cycles (1: the holdout; F: a ParallelFor over the folds, then
    collect); with ``recipes``, a ParallelFor over them (each its chain or folds), then
    compare, whose best recipes' ensemble the last steps read. ``placement`` (a cluster's
    settings) adds the Kubernetes settings (GPUs, node selector, toleration, /dev/shm, S3
    secret, pull secret, retries), which kfp.local would only warn about; None: for kfp.local."""
    from kfp import dsl

    img = cluster.images((placement or cluster.Placement()).image)
    version = code_version()
    ops = {n: component(n, img["gpu" if s.gpu else "cpu"]) for n, s in STEPS.items()}
    # In the GPU image: the check that it runs this code happens before any GPU pod starts.
    fingerprint_op = component("fingerprint", img["gpu"])
    params = run_params(recipes)

    def place(task, name: str, display: str):
        step = STEPS[name]
        cluster.place(task.set_display_name(display), step.gpu, placement, gpus, step.cpus, cache)
        return task

    def protloc(*args: Any) -> Outputs:
        v = dict(zip([p.name for p in params], args, strict=True))
        fp = fingerprint_op(
            data_root=v["data_root"],
            external=v["external"],
            pretrained=v["pretrained"],
            code_version=version,
        )
        cluster.place_fingerprint(
            fp.set_display_name("fingerprint: the data and the code"), placement
        )
        common = {
            "data_root": v["data_root"],
            "data_fingerprint": fp.output,
            "code_version": version,
        }
        s = place(ops["split"](**common, **_settings("split", v), folds=folds), "split", "split")
        # Decoded once, at the largest size; every cycle and infer derive theirs from it.
        size = schedule[-1].size
        store = ops["prepare"](
            split=s.outputs["out"],
            **common,
            **_settings("prepare", v),
            store_size=size,
            extra_sizes=extra_sizes([c.size for c in schedule]),
        )
        place(store, "prepare", "prepare: decode every sample once (stored at every size)")

        def chain(fold: Any, where: str, inside: dict[str, Any], recipe: Any):
            """One chain of cycles and its infer task (of one fold, or of the holdout)."""
            previous = None
            for i, c in enumerate(schedule):
                t = ops["train"](
                    split=s.outputs["out"],
                    **inside,
                    **_settings("train", v),
                    cycle=i,
                    fold=fold,
                    recipe=recipe,
                    gpus=gpus,
                    **c.to_dict(),
                    **({"previous": previous.outputs["out"]} if previous is not None else {}),
                    store=store.outputs["out"],
                )
                display = f"train cycle {i + 1}/{len(schedule)} ({c.size} px){where}"
                previous = place(t, "train", display)
            p = ops["infer"](
                split=s.outputs["out"],
                last_cycle=previous.outputs["out"],
                store=store.outputs["out"],
                **inside,
                **_settings("infer", v),
                fold=fold,
                recipe=recipe,
                gpus=gpus,
            )
            return place(p, "infer", f"infer: ensemble of {len(schedule)} snapshots{where}")

        # kfp.local (2.17) hands a ParallelFor's tasks the loop item in place of an outer
        # task's output parameter: there the chains get no fingerprint to check (their
        # inputs, split's and prepare's artifacts, still change with the data, so the
        # cache is keyed right); a cluster's backend passes it.
        in_loop = common if placement is not None else {**common, "data_fingerprint": ""}
        at_once = parallel or cluster.parallel_folds(gpus)
        _, recipes_at_once = chains_at_once(folds, len(recipes or []), at_once)

        def predictions(recipe: Any, where: str):
            """The chain of the holdout, or the folds' chains and collect."""
            if folds == 1:
                return chain(-1, where, in_loop if recipes else common, recipe)
            with dsl.ParallelFor(items=list(range(folds)), parallelism=at_once) as fold:
                per_fold = chain(fold, f"{where}, one fold", in_loop, recipe)
            c = ops["collect"](
                split=s.outputs["out"],
                predictions=dsl.Collected(per_fold.outputs["out"]),
                code_version=version,
            )
            return place(c, "collect", f"collect: {folds} folds' out-of-fold and test predictions")

        if not recipes:
            p = predictions("", "")
        else:
            items = [r.to_json() for r in recipes]
            with dsl.ParallelFor(items=items, parallelism=recipes_at_once) as r:
                per_recipe = predictions(r, ", one recipe")
            p = ops["compare"](
                split=s.outputs["out"],
                predictions=dsl.Collected(per_recipe.outputs["out"]),
                code_version=version,
                **_settings("compare", v),
            )
            place(p, "compare", f"compare: {len(recipes)} recipes, the best ones' ensemble")
        th, sub, model = _last_steps(ops, place, s, p, common, _settings("thresholds", v))
        return Outputs(*(t.outputs["out"] for t in (s, store, p, th, sub, model)))

    gather = "compare" if recipes else "infer" if folds == 1 else "collect"
    protloc.__signature__ = _signature(params, _returns(gather))
    shape = format_schedule(schedule) + (f", {folds} folds" if folds > 1 else "")
    shape += f", recipes {', '.join(r.name for r in recipes)}" if recipes else ""
    protloc.__doc__ = f"protloc {__version__}: {shape}\n\nArgs:\n" + "\n".join(
        f"    {p.name}: {p.description()}" for p in params
    )
    return dsl.pipeline(name=PIPELINE_NAME, description=f"protloc {__version__}: {shape}")(protloc)


def _last_steps(
    ops: dict[str, Any], place: Any, split: Any, p: Any, common: dict[str, Any], settings: dict
) -> tuple[Any, Any, Any]:
    """Thresholds, submit and bundle on the predictions task ``p`` (infer, collect or
    compare)."""
    version = common["code_version"]
    th = ops["thresholds"](
        split=split.outputs["out"], predictions=p.outputs["out"], code_version=version, **settings
    )
    place(th, "thresholds", "thresholds")
    sub = ops["submit"](predictions=p.outputs["out"], thresholds=th.outputs["out"], **common)
    place(sub, "submit", "submit")
    model = ops["bundle"](
        predictions=p.outputs["out"], thresholds=th.outputs["out"], code_version=version
    )
    place(model, "bundle", "bundle: the model to apply to new images")
    return th, sub, model


def _returns(gather: str) -> Any:
    """The pipeline's outputs as KFP reads them: Outputs' fields, each typed by its producer's
    output (``gather``: the step whose predictions the last steps read)."""
    from kfp.dsl import Artifact, Dataset, Model

    kinds = {"Artifact": Artifact, "Dataset": Dataset, "Model": Model}
    producers = ("split", "prepare", gather, "thresholds", "submit", "bundle")  # Outputs' order
    return NamedTuple(
        "Outputs",
        [(f, kinds[STEPS[p].output]) for f, p in zip(Outputs._fields, producers, strict=True)],
    )


# ----------------------------------------------------------------------------- compile, local, submit


# Pipeline parameters only a --recipes run has (the compare step's own).
RECIPE_PARAMS = ("best",)


def run_params(recipes: list[Recipe] | None) -> list:
    """The pipeline's parameters: every one, less the compare step's without recipes."""
    return [p for p in pipeline_params() if recipes or p.name not in RECIPE_PARAMS]


def chains_at_once(folds: int, recipes: int, at_once: int) -> tuple[int, int]:
    """(fold chains of one recipe, recipes) that run at once within ``at_once`` chains: every
    fold loop takes up to ``at_once`` folds, the recipes share what is left."""
    per_recipe = min(folds, at_once) if folds > 1 else 1
    return per_recipe, max(1, min(recipes, at_once // per_recipe))


def arguments(
    values: dict[str, Any],
    schedule: list[Cycle],
    gpus: int = 1,
    folds: int = 1,
    recipes: list[Recipe] | None = None,
) -> dict[str, Any]:
    """Every pipeline parameter's value (defaults filled in), checked by the steps' configs
    before anything runs, with each recipe's settings too; a bad value is a ConfigError naming
    it (and the recipe). The data fingerprint is not one: the DAG's first task takes it where
    the data is read."""
    cycles = [{**c.to_dict(), "cycle": i, "gpus": gpus} for i, c in enumerate(schedule)]
    step_configs(values, cycles, folds)
    for r in recipes or []:
        try:
            step_configs({**values, **r.settings}, cycles, folds)
        except ConfigError as exc:
            raise ConfigError(f"{r.source}: recipe {r.name!r}: {exc}") from None
    check_run(values, recipes or [])
    return {p.name: values.get(p.name, p.default) for p in run_params(recipes)}


def compile_pipeline(
    schedule: list[Cycle],
    path: str,
    placement: cluster.Placement | None = None,
    gpus: int = 1,
    folds: int = 1,
    parallel: int = 0,
    cache: bool = True,
    recipes: list[Recipe] | None = None,
) -> str:
    """Write the cluster pipeline's IR YAML (``placement``: default GPU settings if None;
    ``gpus`` per train and infer task; ``folds`` chains; ``recipes`` compared)."""
    from kfp import compiler

    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"-o {path}: cannot create its folder ({exc.strerror})") from None
    compiler.Compiler().compile(
        build_pipeline(
            schedule, placement or cluster.Placement(), gpus, folds, parallel, cache, recipes
        ),
        package_path=path,
    )
    return path


RUNNERS = ("subprocess", "docker")


def run_local(
    schedule: list[Cycle],
    values: dict[str, Any],
    root: str,
    runner: str = "subprocess",
    gpus: int = 1,
    folds: int = 1,
    parallel: int = 0,
    recipes: list[Recipe] | None = None,
) -> dict:
    """Run the whole DAG through kfp.local, cache on: each task a process in this environment
    (``subprocess``), or in the project's images (``docker``, what a cluster runs); returns the
    summary (also written to ``{root}/last_summary.json``)."""
    from kfp import local

    args = arguments(values, schedule, gpus=gpus, folds=folds, recipes=recipes)
    root_path = Path(root).resolve()
    try:
        root_path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"--root {root}: a file is in the way, not a folder") from None
    except OSError as exc:
        raise ConfigError(f"--root {root}: cannot create it ({exc.strerror})") from None
    before = {p.name for p in root_path.iterdir()}
    # The folds' tasks run at once on this machine: each sizes its threads to its share.
    per_recipe, recipes_at_once = chains_at_once(
        folds, len(recipes or []), parallel or cluster.parallel_folds(gpus)
    )
    at_once = per_recipe * (recipes_at_once if recipes else 1)
    before_env = os.environ.get(TASKS_ENV)
    os.environ[TASKS_ENV] = str(at_once)
    label = ""  # the docker runner's containers carry it; stopped if the run ends early
    if runner == "docker":
        from components.docker_runner import docker_runner, run_label

        label = run_label()
        task_runner = docker_runner(root_path, args["data_root"], label)
    else:
        task_runner = local.SubprocessRunner(use_venv=False)
    local.init(
        runner=task_runner,
        pipeline_root=str(root_path),
        enable_caching=True,
        cache_root=str(root_path / ".kfp_cache"),
    )
    t0 = time.perf_counter()
    try:
        task = build_pipeline(schedule, None, gpus, folds, parallel, recipes=recipes)(**args)
    except RuntimeError as exc:  # kfp.local: "... Inner task failed: 'train-2'."
        new = [root_path / p for p in {p.name for p in root_path.iterdir()} - before]
        raise _step_failure(str(exc), new) from None
    finally:  # the caller's environment as it was; no task container left running
        if before_env is None:
            os.environ.pop(TASKS_ENV, None)
        else:
            os.environ[TASKS_ENV] = before_env
        if label:
            from components.docker_runner import stop_run_containers

            stop_run_containers(label)
    wall = time.perf_counter() - t0
    new_runs = [root_path / p for p in {p.name for p in root_path.iterdir()} - before]
    outputs = {name: Path(task.outputs[name].path) for name in Outputs._fields}
    summary = local_summary(outputs, new_runs, wall)
    # The latest summary, for `make bench`'s end-to-end row.
    (root_path / "last_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def local_summary(outputs: dict[str, Path], new_runs: list[Path], wall: float) -> dict[str, Any]:
    """The run summary of the submit step, with the split and submit steps' times, which steps
    ran (their folder is in one of this run's new folders) or came from cache, the wall time,
    the submission and the HTML pages."""
    summary = run_summary(str(outputs["predictions"]), str(outputs["thresholds"]))
    steps = [
        step_time("split", str(outputs["split"])),
        step_time("prepare", str(outputs["store"])),
        *summary["steps"],
    ]
    steps.append(step_time("submit", str(outputs["submission"])))
    steps.append(step_time("bundle", str(outputs["model"])))
    for st in steps:
        st["ran"] = any(st["folder"].startswith(str(run)) for run in new_runs)
    # The last cycle's page shows the curves of the whole chain.
    folders = (outputs["split"], Path(summary["cycles"][-1]["folder"]), outputs["thresholds"])
    # a --recipes run's compare step has a page too (infer and collect have none)
    folders += (outputs["predictions"],) if (outputs["predictions"] / PAGE).is_file() else ()
    return {
        **summary,
        "steps": steps,
        "wall_seconds": round(wall, 1),
        "submission": str(outputs["submission"] / SUBMISSION),
        "model": str(outputs["model"]),
        "pages": [str(f / PAGE) for f in folders],
        "plots": [
            str(p) for key in ("split", "thresholds") for p in sorted(outputs[key].glob("*.png"))
        ],
    }


def _step_failure(message: str, new_runs: list[Path]) -> ProtlocError:
    """The failed task and its one-line error (from its error file), as a ProtlocError."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", message)
    found = re.search(r"Inner task failed: '([^']+)'", plain)
    task = found.group(1) if found else "?"
    for run in new_runs:
        error = run / task / "out" / ERROR
        if error.is_file():
            return ProtlocError(f"step {task} failed: {error.read_text().strip()}")
    return ProtlocError(f"step {task} failed (its log is above): {plain.strip()}")


def submit_run(
    schedule: list[Cycle],
    values: dict[str, Any],
    remote: Remote,
    placement: cluster.Placement | None = None,
    gpus: int = 1,
    folds: int = 1,
    parallel: int = 0,
    recipes: list[Recipe] | None = None,
) -> str:
    """Compile the DAG and start a run of it on the KFP backend ``remote`` names (login,
    upload, caching, run name: ``components.remote``); returns the run's id. Nothing of the
    data is read here: the run's first task takes the data fingerprint in the cluster."""
    import tempfile

    args = arguments(values, schedule, gpus=gpus, folds=folds, recipes=recipes)
    with tempfile.TemporaryDirectory(prefix="protloc-submit-") as tmp:
        path = compile_pipeline(
            schedule,
            f"{tmp}/pipeline.yaml",
            placement or cluster.Placement(),
            gpus,
            folds,
            parallel,
            cache=remote.cache,
            recipes=recipes,
        )
        return start_remote(remote, path, args)


def ensure_demo_data(path: Path, size: int) -> str:
    """A synthetic HPA-format data set for the embedded default (made once, then reused)."""
    from protloc.data.hpa import TEST_IDS_CSV
    from protloc.synthetic import SyntheticSpec, generate

    if not (path / TEST_IDS_CSV).is_file():  # written last: the data set is whole
        log.info("generating synthetic HPA data in %s", path)
        generate(
            SyntheticSpec(n_train=600, n_test=60, size=size, seed=0, temper=0.7),
            str(path),
            workers=2,
        )
    return str(path)


def demo_values(given: dict[str, Any]) -> dict[str, Any]:
    """``given`` plus the demo data's overrides for what it does not set (each logged)."""
    out = dict(given)
    defaults = {p.name: p.default for p in pipeline_params()}
    for name, value in DEMO_OVERRIDES.items():
        if name not in out:  # a value given on the command line, even 0, is kept
            log.info("demo data: %s=%r (pipeline default %r)", name, value, defaults[name])
            out[name] = value
    return out


def check_data(root: str, schedule: list[Cycle], folds: int, sample: int, node_gpus: int) -> int:
    """``check-data``: the data root's report, then the plan of a run on it; exit 2 when a file
    is missing or does not decode."""
    from protloc.data.check import check_data_root, format_report
    from protloc.data.hpa import labels_uri, read_labels
    from protloc.plan import format_plan, plan_run

    for name, value in (("--sample", sample), ("--node-gpus", node_gpus)):
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    report = check_data_root(root, sample=sample)
    print(format_report(report))
    plan = plan_run(schedule, read_labels(labels_uri(root)), report.test, folds)
    print(format_plan(plan, node_gpus))
    if not report.ok:
        missing = sum(len(s.missing) for s in report.splits)
        raise ConfigError(
            f"data root {root} is not ready: {missing} samples lack channel files, "
            f"{len(report.bad)} sampled files do not decode"
        )
    return 0


def schedule_help(default: str) -> str:
    named = "; ".join(f"{k}: {v}" for k, v in SCHEDULES.items())
    return f"the SGDR cycles, by name ({named}) or as size:batch:epochs,...; default: {default}"


def default_schedule(args: argparse.Namespace) -> str:
    """``paper``, except for ``local`` on the demo data (``demo``); said in the log."""
    name = "demo" if args.command == "local" and args.data_root is None else "paper"
    if args.schedule is None and args.command != "check-data":
        log.info("schedule %s (%s); --schedule changes it", name, SCHEDULES[name])
    return name


def parser() -> argparse.ArgumentParser:
    """``compile``, ``local`` and ``submit``; every pipeline parameter is a flag of the last two."""
    p = argparse.ArgumentParser(
        prog="python pipeline.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compile", help="write the pipeline YAML for a cluster")
    c.add_argument("-o", "--output", default="pipeline.yaml", help="YAML file to write")
    local = sub.add_parser("local", help="run the DAG with kfp.local on this machine")
    local.add_argument(
        "--data-root",
        default=None,
        metavar="URI",
        help=DATA_ROOT.spec.help + "; default: synthetic demo data in runs/demo-data",
    )
    local.add_argument("--root", default=str(ROOT / "runs" / "local"), help="local pipeline root")
    local.add_argument(
        "--runner",
        choices=RUNNERS,
        default="subprocess",
        help="subprocess: each task a process in this environment; docker: each task in the "
        "project's images (`make images`), as uid 1000, GPUs where the engine has the NVIDIA "
        "runtime",
    )
    check = sub.add_parser(
        "check-data",
        help="check a data root before a run (layout, labels, every image present, a sample "
        "decoded) and print the plan of a run: tasks, disk, projected time",
    )
    check.add_argument("root", metavar="ROOT", help="the data root (local folder or URI)")
    check.add_argument(
        "--sample", type=int, default=8, metavar="N", help="samples of each split to decode"
    )
    check.add_argument(
        "--node-gpus", type=int, default=8, metavar="N", help="GPUs of the node to project for"
    )
    remote = sub.add_parser("submit", help="start a run on a KFP cluster")
    remote.add_argument("--data-root", required=True, metavar="URI", help=DATA_ROOT.spec.help)
    remote.add_argument("--host", required=True, help="KFP API endpoint")
    remote.add_argument("--experiment", default=PIPELINE_NAME, help="KFP experiment name")
    remote.add_argument(
        "--namespace", default=cluster.NAMESPACE, help="KFP namespace (profile) to run in"
    )
    remote.add_argument(
        "--service-account",
        default=cluster.SERVICE_ACCOUNT,
        help="Kubernetes service account of the run's pods (k8s/base/serviceaccount.yaml); "
        "empty: the namespace's default",
    )
    remote.add_argument(
        "--pipeline-root",
        default="",
        help="where the run's artifacts go (e.g. s3://bucket/protloc); empty: the namespace's "
        "default (its kfp-launcher ConfigMap)",
    )
    login = remote.add_argument_group("login (multi-user Kubeflow; as kfp.Client takes it)")
    login.add_argument(
        "--existing-token", default="", metavar="TOKEN", help="a bearer token for the KFP API"
    )
    login.add_argument(
        "--cookies",
        default="",
        metavar="COOKIES",
        help="the cookies of a Kubeflow login (e.g. 'authservice_session=...')",
    )
    login.add_argument(
        "--sa-token-path",
        default=os.environ.get("KF_PIPELINES_SA_TOKEN_PATH", ""),
        metavar="PATH",
        help="a Kubernetes service account token file (in a pod: the projected token); "
        "default $KF_PIPELINES_SA_TOKEN_PATH",
    )
    remote.add_argument(
        "--upload",
        action="store_true",
        help="store the pipeline and a version named by the code version on the server "
        "(reused when there) and run that version",
    )
    remote.add_argument(
        "--no-cache", action="store_true", help="run every task, serving none from KFP's cache"
    )
    remote.add_argument("--run-name", default="", help="the run's name; default protloc-DATE-TIME")
    for q in (c, remote):
        d = cluster.Placement()
        q.add_argument(
            "--gpu-node-selector",
            default="=".join(d.gpu_node_selector),
            metavar="KEY=VALUE",
            help="node label of GPU nodes (GKE: cloud.google.com/gke-accelerator=nvidia-h100-80gb)",
        )
        q.add_argument(
            "--gpu-toleration",
            default=d.gpu_toleration,
            metavar="KEY",
            help="taint key GPU tasks tolerate (operator Exists, NoSchedule); empty: none",
        )
        q.add_argument(
            "--gpu-resource",
            default=d.gpu_resource,
            metavar="NAME",
            help="accelerator resource name GPU tasks request",
        )
        q.add_argument(
            "--image-pull-secret",
            default="",
            metavar="NAME",
            help="Secret to pull the images with (a private registry); empty: none",
        )
        q.add_argument(
            "--image-registry",
            default="",
            metavar="REGISTRY",
            help=f"registry the images were pushed to (`make push REGISTRY=...`); the image is "
            f"REGISTRY/{cluster.IMAGE_NAME}:<code version>-cpu|gpu; default {cluster.REGISTRY}",
        )
        q.add_argument(
            "--image",
            default="",
            metavar="REPOSITORY",
            help="the images' whole repository (no tag: the tag is the code version), "
            "instead of --image-registry",
        )
        q.add_argument(
            "--scratch-storage-class",
            default="",
            metavar="CLASS",
            help="storage class of a generic ephemeral volume for the GPU tasks' image cache "
            f"({cluster.SCRATCH_GI} GiB reserved at scheduling); empty: a size-limited emptyDir",
        )
    for q in (local, remote):
        for param in pipeline_params():
            if param.name != DATA_ROOT.name:  # a flag of its own
                add_param(q, param)
    for name, q in sub.choices.items():
        add_param(q, FOLDS)
        if name == "check-data":
            q.add_argument("--schedule", default=None, help=schedule_help("paper"))
            continue
        add_param(q, GPUS)
        q.add_argument(
            "--recipes",
            default="",
            metavar="FILE",
            help="a YAML list of named recipes, each the train and infer settings it changes "
            "(docs/recipes.md): each trains its own chain (or folds), a compare step ranks them "
            "by cross-fit macro F1, and the ensemble of the best --best is the run's",
        )
        q.add_argument(
            "--max-parallel-folds",
            type=int,
            default=0,
            metavar="N",
            help="chains (folds, recipes) that run at once (the ParallelFors' parallelism); "
            f"default: what the GPU quota of k8s/base allows ({cluster.QUOTA_GPUS} GPUs / --gpus)",
        )
        q.add_argument(
            "--schedule",
            default=None,
            help=schedule_help(
                "demo on the demo data, paper with --data-root" if name == "local" else "paper"
            ),
        )
    return p


def _given(args: argparse.Namespace) -> dict[str, Any]:
    return {
        p.name: getattr(args, p.name)
        for p in pipeline_params()
        if getattr(args, p.name, None) is not None
    }


def _is_task_process(pid: int) -> bool:
    """A kfp.local task's Python process (its ``sh`` wrappers end with it)."""
    try:
        return b"kfp.dsl.executor_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_logging()  # URLs in log lines without user info or query (protloc.redact)
    # SIGTERM ends the run and, first, its task processes (kfp.local's subprocesses)
    exit_on_sigterm(forward_to=_is_task_process)
    given = _given(args)
    try:
        # '' is refused by the parser, not replaced by the default
        schedule = schedule_from(default_schedule(args) if args.schedule is None else args.schedule)
        folds = FOLDS.default if args.folds is None else args.folds
        SplitConfig(folds=folds)  # refuses a bad --folds, naming it
        if args.command == "check-data":
            return check_data(args.root, schedule, folds, args.sample, args.node_gpus)
        gpus = GPUS.default if args.gpus is None else args.gpus
        TrainConfig(**schedule[0].to_dict(), gpus=gpus)  # refuses a bad --gpus, naming it
        parallel = args.max_parallel_folds
        if not 0 <= parallel <= FOLDS.spec.high:
            raise ConfigError(
                f"--max-parallel-folds must be in [1, {int(FOLDS.spec.high)}] (0: the default), "
                f"got {parallel}"
            )
        recipes = read_recipes(args.recipes) if args.recipes else None
        placement = None
        if args.command in ("compile", "submit"):
            placement = cluster.Placement.from_flags(
                args.gpu_node_selector,
                args.gpu_toleration,
                args.gpu_resource,
                args.image_pull_secret,
                args.image_registry,
                args.image,
                args.scratch_storage_class,
            )
        if args.command == "compile":
            path = compile_pipeline(
                schedule, args.output, placement, gpus, folds, parallel, recipes=recipes
            )
            print(f"wrote {path} ({format_schedule(schedule)})")
        elif args.command == "local":
            # Every value is checked before the demo data is made or anything runs.
            arguments(
                {**given, "data_root": args.data_root or "(demo)"},
                schedule,
                folds=folds,
                recipes=recipes,
            )
            if args.data_root is None:
                given = demo_values(given)
                given["data_root"] = ensure_demo_data(
                    ROOT / "runs" / "demo-data", schedule[-1].size
                )
            else:
                given["data_root"] = args.data_root
            summary = run_local(
                schedule, given, args.root, args.runner, gpus, folds, parallel, recipes
            )
            print(format_summary(summary))
        else:
            remote = Remote(
                host=args.host,
                experiment=args.experiment,
                namespace=args.namespace,
                service_account=args.service_account,
                pipeline_root=args.pipeline_root,
                existing_token=args.existing_token,
                cookies=args.cookies,
                sa_token_path=args.sa_token_path,
                upload=args.upload,
                cache=not args.no_cache,
                run_name=args.run_name,
            )
            run_id = submit_run(
                schedule,
                {**given, "data_root": args.data_root},
                remote,
                placement,
                gpus,
                folds,
                parallel,
                recipes,
            )
            print(
                f"started run {run_id} in experiment {args.experiment!r} on {redact_url(args.host)}"
            )
    except ProtlocError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
