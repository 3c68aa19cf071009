"""protloc's Kubeflow Pipelines DAG and its command line.

    split -> prepare -> train cycle 1 -> ... -> train cycle K -> infer -> thresholds -> submit
    with --folds F: split -> prepare -> F x (train cycles -> infer) -> collect -> thresholds -> submit

python pipeline.py compile [-o pipeline.yaml] [--schedule 221:48:6,...]
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
import re
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from components import cluster, component
from protloc import __version__
from protloc.cli import add_param
from protloc.config import SplitConfig, TrainConfig
from protloc.errors import ConfigError, ProtlocError
from protloc.folders import ERROR, PAGE, SUBMISSION
from protloc.params import Param
from protloc.report.summary import format_summary, run_summary, step_time
from protloc.steps import (
    DATA_FINGERPRINT,
    DATA_ROOT,
    STEPS,
    extra_sizes,
    pipeline_params,
    step_configs,
)
from protloc.train.schedule import Cycle, format_schedule, paper_schedule, parse_schedule
from protloc.version import code_version

ROOT = Path(__file__).resolve().parent
PIPELINE_NAME = "protloc"
DEMO_SCHEDULE = "96:16:5,128:16:2,160:16:1"
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
):
    """The pipeline function for this schedule, with ``gpus`` ranks in each train and infer
    task and ``folds`` chains of cycles (1: the holdout; F: a ParallelFor over the folds, then
    collect). ``placement`` (a cluster's settings) adds the Kubernetes settings (GPUs, node
    selector, toleration, /dev/shm, S3 secret, pull secret, retries), which kfp.local would only
    warn about; None: for kfp.local."""
    from kfp import dsl
    from kfp.dsl import Artifact, Dataset, Model

    img = cluster.images()
    version = code_version()
    ops = {n: component(n, img["gpu" if s.gpu else "cpu"]) for n, s in STEPS.items()}
    params = pipeline_params()
    kinds = {"Artifact": Artifact, "Dataset": Dataset, "Model": Model}
    gather = "infer" if folds == 1 else "collect"
    producers = ("split", "prepare", gather, "thresholds", "submit", "bundle")  # Outputs' order
    returns = NamedTuple(
        "Outputs",
        [(f, kinds[STEPS[p].output]) for f, p in zip(Outputs._fields, producers, strict=True)],
    )

    def place(task, name: str, display: str):
        step = STEPS[name]
        cluster.place(task.set_display_name(display), step.gpu, placement, gpus, step.cpus)
        return task

    def protloc(*args: Any) -> Outputs:
        v = dict(zip([p.name for p in params], args, strict=True))
        common = {
            "data_root": v["data_root"],
            "data_fingerprint": v["data_fingerprint"],
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

        def chain(fold: Any, where: str):
            """One chain of cycles and its infer task (of one fold, or of the holdout)."""
            previous = None
            for i, c in enumerate(schedule):
                t = ops["train"](
                    split=s.outputs["out"],
                    **common,
                    **_settings("train", v),
                    cycle=i,
                    fold=fold,
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
                **common,
                **_settings("infer", v),
                fold=fold,
                gpus=gpus,
            )
            return place(p, "infer", f"infer: ensemble of {len(schedule)} snapshots{where}")

        if folds == 1:
            p = chain(-1, "")
        else:
            with dsl.ParallelFor(items=list(range(folds))) as fold:
                per_fold = chain(fold, ", one fold")
            p = ops["collect"](
                split=s.outputs["out"],
                predictions=dsl.Collected(per_fold.outputs["out"]),
                code_version=version,
            )
            place(p, "collect", f"collect: {folds} folds' out-of-fold and test predictions")
        th = ops["thresholds"](
            split=s.outputs["out"],
            predictions=p.outputs["out"],
            code_version=version,
            **_settings("thresholds", v),
        )
        place(th, "thresholds", "thresholds")
        sub = ops["submit"](predictions=p.outputs["out"], thresholds=th.outputs["out"], **common)
        place(sub, "submit", "submit")
        model = ops["bundle"](
            predictions=p.outputs["out"], thresholds=th.outputs["out"], code_version=version
        )
        place(model, "bundle", "bundle: the model to apply to new images")
        return Outputs(*(t.outputs["out"] for t in (s, store, p, th, sub, model)))

    protloc.__signature__ = _signature(params, returns)
    shape = format_schedule(schedule) + (f", {folds} folds" if folds > 1 else "")
    protloc.__doc__ = f"protloc {__version__}: {shape}\n\nArgs:\n" + "\n".join(
        f"    {p.name}: {p.description()}" for p in params
    )
    return dsl.pipeline(name=PIPELINE_NAME, description=f"protloc {__version__}: {shape}")(protloc)


# ----------------------------------------------------------------------------- compile, local, submit


def arguments(
    values: dict[str, Any],
    schedule: list[Cycle],
    fingerprint: bool = False,
    gpus: int = 1,
    folds: int = 1,
) -> dict[str, Any]:
    """Every pipeline parameter's value (defaults filled in), checked by the steps' configs
    before anything runs; a bad value is a ConfigError naming it. ``fingerprint``: take the
    data root's fingerprint now (labels + image listing), for every data-reading task's cache
    key."""
    step_configs(
        values,
        [{**c.to_dict(), "cycle": i, "gpus": gpus} for i, c in enumerate(schedule)],
        folds,
    )
    args = {p.name: values.get(p.name, p.default) for p in pipeline_params()}
    if fingerprint:
        from protloc.data.identity import DataListing, run_fingerprint

        args[DATA_FINGERPRINT.name] = run_fingerprint(
            DataListing(args["data_root"]), args["pretrained"], args["external"]
        )
        log.info("data root %s: fingerprint %s", args["data_root"], args[DATA_FINGERPRINT.name])
    return args


def compile_pipeline(
    schedule: list[Cycle],
    path: str,
    placement: cluster.Placement | None = None,
    gpus: int = 1,
    folds: int = 1,
) -> str:
    """Write the cluster pipeline's IR YAML (``placement``: default GPU settings if None;
    ``gpus`` per train and infer task; ``folds`` chains)."""
    from kfp import compiler

    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"-o {path}: cannot create its folder ({exc.strerror})") from None
    compiler.Compiler().compile(
        build_pipeline(schedule, placement or cluster.Placement(), gpus, folds),
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
) -> dict:
    """Run the whole DAG through kfp.local, cache on: each task a process in this environment
    (``subprocess``), or in the project's images (``docker``, what a cluster runs); returns the
    summary (also written to ``{root}/last_summary.json``)."""
    from kfp import local

    args = arguments(values, schedule, fingerprint=True, gpus=gpus, folds=folds)
    root_path = Path(root).resolve()
    try:
        root_path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"--root {root}: a file is in the way, not a folder") from None
    except OSError as exc:
        raise ConfigError(f"--root {root}: cannot create it ({exc.strerror})") from None
    before = {p.name for p in root_path.iterdir()}
    if runner == "docker":
        from components.docker_runner import docker_runner

        task_runner = docker_runner(root_path, args["data_root"])
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
        task = build_pipeline(schedule, placement=None, gpus=gpus, folds=folds)(**args)
    except RuntimeError as exc:  # kfp.local: "... Inner task failed: 'train-2'."
        new = [root_path / p for p in {p.name for p in root_path.iterdir()} - before]
        raise _step_failure(str(exc), new) from None
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
    host: str,
    experiment: str,
    placement: cluster.Placement | None = None,
    namespace: str = cluster.NAMESPACE,
    service_account: str = cluster.SERVICE_ACCOUNT,
    pipeline_root: str = "",
    gpus: int = 1,
    folds: int = 1,
) -> str:
    """Compile and start a run on a KFP backend (same pipeline name, caching on), in
    ``namespace``, as ``service_account``, with artifacts under ``pipeline_root`` (empty: the
    cluster's default, the kfp-launcher ConfigMap of k8s/)."""
    import kfp

    args = arguments(values, schedule, fingerprint=True, gpus=gpus, folds=folds)
    try:
        client = kfp.Client(host=host, namespace=namespace)  # asks the API's healthz endpoint
    except Exception as exc:  # urllib3/requests/kfp errors all mean: no KFP API there
        raise ProtlocError(
            f"--host {host}: cannot reach a KFP API ({type(exc).__name__})"
        ) from None
    run = client.create_run_from_pipeline_func(
        build_pipeline(schedule, placement or cluster.Placement(), gpus, folds),
        arguments=args,
        experiment_name=experiment,
        run_name=f"{PIPELINE_NAME}-{time.strftime('%Y%m%d-%H%M%S')}",
        namespace=namespace,
        pipeline_root=pipeline_root or None,
        service_account=service_account or None,
        enable_caching=True,
    )
    return run.run_id


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
        help="Kubernetes service account of the run's pods (k8s/serviceaccount.yaml); "
        "empty: the namespace's default",
    )
    remote.add_argument(
        "--pipeline-root",
        default="",
        help="where the run's artifacts go (e.g. s3://bucket/protloc); empty: the cluster's "
        "default (k8s/kfp-launcher.yaml)",
    )
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
    for q in (local, remote):
        for param in pipeline_params():
            if param.name not in (DATA_ROOT.name, DATA_FINGERPRINT.name):  # given, computed
                add_param(q, param)
    for name, q in sub.choices.items():
        add_param(q, GPUS)
        add_param(q, FOLDS)
        q.add_argument(
            "--schedule",
            default=None,
            help="size:batch:epochs,... per cycle; default: "
            + (DEMO_SCHEDULE if name == "local" else "the paper's Table 1, 6 epochs each"),
        )
    return p


def _given(args: argparse.Namespace) -> dict[str, Any]:
    return {
        p.name: getattr(args, p.name)
        for p in pipeline_params()
        if getattr(args, p.name, None) is not None
    }


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    given = _given(args)
    try:
        if args.command == "local":
            schedule = parse_schedule(DEMO_SCHEDULE if args.schedule is None else args.schedule)
        else:
            schedule = paper_schedule() if args.schedule is None else parse_schedule(args.schedule)
        gpus = GPUS.default if args.gpus is None else args.gpus
        TrainConfig(**schedule[0].to_dict(), gpus=gpus)  # refuses a bad --gpus, naming it
        folds = FOLDS.default if args.folds is None else args.folds
        SplitConfig(folds=folds)  # refuses a bad --folds, naming it
        placement = None
        if args.command in ("compile", "submit"):
            placement = cluster.Placement.from_flags(
                args.gpu_node_selector,
                args.gpu_toleration,
                args.gpu_resource,
                args.image_pull_secret,
            )
        if args.command == "compile":
            path = compile_pipeline(schedule, args.output, placement, gpus, folds)
            print(f"wrote {path} ({format_schedule(schedule)})")
        elif args.command == "local":
            # Every value is checked before the demo data is made or anything runs.
            arguments({**given, "data_root": args.data_root or "(demo)"}, schedule, folds=folds)
            if args.data_root is None:
                given = demo_values(given)
                given["data_root"] = ensure_demo_data(
                    ROOT / "runs" / "demo-data", schedule[-1].size
                )
            else:
                given["data_root"] = args.data_root
            summary = run_local(schedule, given, args.root, args.runner, gpus, folds)
            print(format_summary(summary))
        else:
            run_id = submit_run(
                schedule,
                {**given, "data_root": args.data_root},
                args.host,
                args.experiment,
                placement,
                args.namespace,
                args.service_account,
                args.pipeline_root,
                gpus,
                folds,
            )
            print(f"started run {run_id} in experiment {args.experiment!r} on {args.host}")
    except ProtlocError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
