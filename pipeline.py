"""protloc's Kubeflow Pipelines DAG and its command line.

    split -> train cycle 1 -> ... -> train cycle K -> infer -> thresholds -> submit

python pipeline.py compile [-o pipeline.yaml] [--schedule 221:48:6,...]
python pipeline.py local   [--data URI] [--alpha A] [--schedule ...] [--root runs/local]
python pipeline.py submit  --host URL [--experiment NAME] [--alpha A] [--data s3://...] ...

The schedule (size:batch:epochs per SGDR cycle) is fixed at compile time; every other setting is
a pipeline parameter. This file only wires: the steps are in components/, the logic in protloc/.
"""

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import NamedTuple

from components import infer, split, submit, thresholds, train
from protloc import __version__
from protloc.config import TrainConfig
from protloc.errors import ConfigError, ProtlocError
from protloc.schedule import Cycle, format_schedule, paper_schedule, parse_schedule
from protloc.split import SplitParams
from protloc.thresholds import DEFAULT_ALPHA
from protloc.version import code_version

ROOT = Path(__file__).resolve().parent
PIPELINE_NAME = "protloc"
IMAGE_REPO = os.environ.get("PROTLOC_IMAGE", "ghcr.io/protloc/protloc")
S3_SECRET = "protloc-s3"  # k8s/s3-secret.example.yaml
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")
GPU_NODE_SELECTOR = ("nvidia.com/gpu.present", "true")
DEMO_SCHEDULE = "96:16:5,128:16:2,160:16:1"

log = logging.getLogger("protloc.pipeline")


def images(version: str = __version__) -> dict[str, str]:
    """Immutable image tags: one per package version (a new version means a new tag)."""
    return {"cpu": f"{IMAGE_REPO}:{version}-cpu", "gpu": f"{IMAGE_REPO}:{version}-gpu"}


@dataclass(frozen=True)
class Params:
    """The pipeline's runtime parameters, with their defaults."""

    # Defaults come from the steps' own settings, so the two can never disagree.
    data_root: str = "s3://protloc/hpa"
    seed: int = SplitParams.seed
    val_fraction: float = SplitParams.val_fraction
    rare_below: int = SplitParams.rare_below
    rare_factor: float = SplitParams.rare_factor
    dominant_factor: float = SplitParams.dominant_factor
    lr_max: float = TrainConfig.lr_max
    lr_min: float = TrainConfig.lr_min
    momentum: float = TrainConfig.momentum
    weight_decay: float = TrainConfig.weight_decay
    clip_norm: float = TrainConfig.clip_norm
    clip_norm_type: str = TrainConfig.clip_norm_type
    loss: str = TrainConfig.loss
    workers: int = 8
    work_root: str = ""
    tta: int = 8
    infer_batch_size: int = 64
    alpha: float = DEFAULT_ALPHA

    def validate(self) -> None:
        """Raise ConfigError naming the first bad parameter, before anything runs."""
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.alpha < 0:
            raise ConfigError(f"alpha must be >= 0, got {self.alpha}")
        if not 1 <= self.tta <= 8:
            raise ConfigError(f"tta must be in 1..8, got {self.tta}")
        if not (self.lr_max > 0 and 0 <= self.lr_min <= self.lr_max):
            raise ConfigError(
                f"need lr_max > 0 and 0 <= lr_min <= lr_max, got {self.lr_max}, {self.lr_min}"
            )
        if self.infer_batch_size < 1:
            raise ConfigError(f"infer_batch_size must be >= 1, got {self.infer_batch_size}")
        if self.rare_factor <= 0 or self.dominant_factor <= 0:
            raise ConfigError("rare_factor and dominant_factor must be > 0")
        if self.clip_norm_type not in ("l1", "l2", "inf"):
            raise ConfigError(f"clip_norm_type must be l1, l2 or inf, got {self.clip_norm_type!r}")
        if self.loss not in ("soft_f1", "bce"):
            raise ConfigError(f"loss must be soft_f1 or bce, got {self.loss!r}")
        if not self.data_root:
            raise ConfigError("data_root is empty")


# ----------------------------------------------------------------------------- cluster settings


def _on_gpu(task, cpu: str = "8", memory: str = "48G"):
    from kfp import kubernetes

    task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
    task.set_cpu_request(cpu).set_memory_request(memory)
    kubernetes.add_node_selector(task, *GPU_NODE_SELECTOR)
    kubernetes.add_toleration(task, key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
    # Data loader workers share batches through /dev/shm; the default 64 MB is far too small.
    kubernetes.empty_dir_mount(
        task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit="16Gi"
    )
    # The image cache (decoded uint8 images, up to ~33 GB at 512 px) lives on node-local scratch.
    kubernetes.empty_dir_mount(
        task, volume_name="scratch", mount_path="/scratch", size_limit="200Gi"
    )
    task.set_env_variable("PROTLOC_CACHE_DIR", "/scratch/image-cache")
    # Preempted or failed pods are retried; the train step resumes from its last epoch.
    task.set_retry(
        num_retries=3, backoff_duration="60s", backoff_factor=2.0, backoff_max_duration="900s"
    )


def _on_cpu(task, cpu: str = "2", memory: str = "4G"):
    task.set_cpu_request(cpu).set_memory_request(memory)
    task.set_retry(num_retries=2, backoff_duration="30s", backoff_factor=2.0)


def _with_s3_secret(task):
    from kfp import kubernetes

    kubernetes.use_secret_as_env(
        task, secret_name=S3_SECRET, secret_key_to_env={k: k for k in S3_SECRET_KEYS}
    )
    # The images run as the unprivileged user 1000 (docker/Dockerfile); enforce it in the pod too.
    kubernetes.set_security_context(task, run_as_user=1000, run_as_group=1000, run_as_non_root=True)


# ----------------------------------------------------------------------------- the DAG


class Outputs(NamedTuple):
    split: object
    last_cycle: object
    predictions: object
    thresholds: object
    submission: object


def build_pipeline(schedule: list[Cycle], cluster: bool = True):
    """The pipeline function for this schedule. ``cluster`` adds the Kubernetes settings (GPU,
    node selector, toleration, /dev/shm, S3 secret, retries), which kfp.local would only warn about."""
    from kfp import dsl
    from kfp.dsl import Artifact

    img = images()
    version = code_version()
    split_op = split.kfp_component(img["cpu"])
    train_op = train.kfp_component(img["gpu"])
    infer_op = infer.kfp_component(img["gpu"])
    thresholds_op = thresholds.kfp_component(img["cpu"])
    submit_op = submit.kfp_component(img["cpu"])
    d = Params()

    def place(task, gpu: bool):
        task.set_caching_options(enable_caching=True)
        if cluster:
            (_on_gpu if gpu else _on_cpu)(task)
            _with_s3_secret(task)
        return task

    @dsl.pipeline(
        name=PIPELINE_NAME, description=f"protloc {__version__}: {format_schedule(schedule)}"
    )
    def protloc(
        data_root: str = d.data_root,
        seed: int = d.seed,
        val_fraction: float = d.val_fraction,
        rare_below: int = d.rare_below,
        rare_factor: float = d.rare_factor,
        dominant_factor: float = d.dominant_factor,
        lr_max: float = d.lr_max,
        lr_min: float = d.lr_min,
        momentum: float = d.momentum,
        weight_decay: float = d.weight_decay,
        clip_norm: float = d.clip_norm,
        clip_norm_type: str = d.clip_norm_type,
        loss: str = d.loss,
        workers: int = d.workers,
        work_root: str = d.work_root,
        tta: int = d.tta,
        infer_batch_size: int = d.infer_batch_size,
        alpha: float = d.alpha,
    ) -> NamedTuple(
        "Outputs",
        split=Artifact,
        last_cycle=Artifact,
        predictions=Artifact,
        thresholds=Artifact,
        submission=Artifact,
    ):
        s = split_op(
            data_root=data_root,
            val_fraction=val_fraction,
            seed=seed,
            rare_below=rare_below,
            rare_factor=rare_factor,
            dominant_factor=dominant_factor,
            code_version=version,
        )
        place(s.set_display_name("split"), gpu=False)
        previous = None
        for i, c in enumerate(schedule):
            t = train_op(
                split=s.outputs["out"],
                data_root=data_root,
                size=c.size,
                batch_size=c.batch_size,
                epochs=c.epochs,
                cycle=i,
                lr_max=lr_max,
                lr_min=lr_min,
                momentum=momentum,
                weight_decay=weight_decay,
                clip_norm=clip_norm,
                clip_norm_type=clip_norm_type,
                loss=loss,
                seed=seed,
                workers=workers,
                work_root=work_root,
                code_version=version,
                **({"previous": previous.outputs["out"]} if previous is not None else {}),
            )
            place(
                t.set_display_name(f"train cycle {i + 1}/{len(schedule)} ({c.size} px)"), gpu=True
            )
            previous = t
        p = infer_op(
            split=s.outputs["out"],
            last_cycle=previous.outputs["out"],
            data_root=data_root,
            tta=tta,
            batch_size=infer_batch_size,
            workers=workers,
            code_version=version,
        )
        place(p.set_display_name(f"infer: ensemble of {len(schedule)} snapshots"), gpu=True)
        th = thresholds_op(
            split=s.outputs["out"], predictions=p.outputs["out"], alpha=alpha, code_version=version
        )
        place(th.set_display_name("thresholds"), gpu=False)
        sub = submit_op(
            predictions=p.outputs["out"],
            thresholds=th.outputs["out"],
            data_root=data_root,
            code_version=version,
        )
        place(sub.set_display_name("submit"), gpu=False)
        return Outputs(
            s.outputs["out"],
            previous.outputs["out"],
            p.outputs["out"],
            th.outputs["out"],
            sub.outputs["out"],
        )

    return protloc


# ----------------------------------------------------------------------------- compile, local, submit


def compile_pipeline(schedule: list[Cycle], path: str) -> str:
    """Write the cluster pipeline's IR YAML."""
    from kfp import compiler

    compiler.Compiler().compile(build_pipeline(schedule, cluster=True), package_path=path)
    return path


def run_local(schedule: list[Cycle], params: Params, root: str) -> dict:
    """Run the whole DAG through kfp.local (SubprocessRunner in this environment, cache on);
    returns the summary (also printed, and written to ``{root}/last_summary.json``)."""
    from kfp import local

    params.validate()
    root_path = Path(root).resolve()
    root_path.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in root_path.iterdir()}
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root_path),
        enable_caching=True,
        cache_root=str(root_path / ".kfp_cache"),
    )
    t0 = time.perf_counter()
    task = build_pipeline(schedule, cluster=False)(**asdict(params))
    wall = time.perf_counter() - t0
    new_runs = [root_path / p for p in {p.name for p in root_path.iterdir()} - before]
    outputs = {name: Path(task.outputs[name].path) for name in Outputs._fields}
    summary = summarize(outputs, new_runs, wall)
    # The latest summary, for `make bench`'s end-to-end row.
    (root_path / "last_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_summary(summary)
    return summary


def summarize(outputs: dict[str, Path], new_runs: list[Path], wall: float) -> dict:
    """Per-cycle and ensemble F1, where the files are, which steps ran and for how long."""
    snapshots = json.loads((outputs["last_cycle"] / "snapshots.json").read_text())["snapshots"]
    cycles = []
    for uri in snapshots:
        folder = Path(uri).parent
        metrics = json.loads((folder / "metrics.json").read_text())
        cycles.append(
            {
                "cycle": metrics["cycle"] + 1,
                "size": metrics["size"],
                "epochs": metrics["epochs"],
                "val_macro_f1_at_0.5": metrics["val"]["macro_f1_at_0.5"],
                "folder": str(folder),
            }
        )
    thr = json.loads((outputs["thresholds"] / "thresholds.json").read_text())
    folders = {
        "split": outputs["split"],
        **{f"train cycle {c['cycle']}": Path(c["folder"]) for c in cycles},
        "infer": outputs["predictions"],
        "thresholds": outputs["thresholds"],
        "submit": outputs["submission"],
    }
    steps = []
    for name, folder in folders.items():
        timing = json.loads((folder / "timing.json").read_text())
        ran = any(str(folder).startswith(str(run)) for run in new_runs)
        steps.append(
            {
                "step": name,
                "seconds": timing["seconds"],
                "ran": ran,
                "code_version": timing["code_version"],
            }
        )
    return {
        "cycles": cycles,
        "ensemble": {
            "macro_f1_at_0.5": thr["macro_f1_at_0.5"],
            "macro_f1_at_thresholds": thr["macro_f1"],
            "alpha": thr["alpha"],
            "crossfit_macro_f1": thr["comparison"]["per_class_alpha"]["crossfit"],
        },
        "steps": steps,
        "wall_seconds": round(wall, 1),
        "submission": str(outputs["submission"] / "submission.csv"),
        "plots": [
            str(p) for key in ("split", "thresholds") for p in sorted(outputs[key].glob("*.png"))
        ],
    }


def print_summary(s: dict) -> None:
    out = [
        "",
        "protloc run summary",
        "",
        f"{'cycle':>5} {'size':>5} {'epochs':>6}  val macro F1 at 0.5",
    ]
    out += [
        f"{c['cycle']:>5} {c['size']:>5} {c['epochs']:>6}  {c['val_macro_f1_at_0.5']:.4f}"
        for c in s["cycles"]
    ]
    e = s["ensemble"]
    out += [
        f"ensemble of {len(s['cycles'])} snapshots: macro F1 {e['macro_f1_at_0.5']:.4f} at 0.5, "
        f"{e['macro_f1_at_thresholds']:.4f} at fitted thresholds (alpha {e['alpha']:g}; "
        f"2-fold cross-fit {e['crossfit_macro_f1']:.4f})",
        "",
        f"{'step':<16} {'seconds':>8}  ",
    ]
    out += [
        f"{st['step']:<16} {st['seconds']:>8.1f}  {'ran' if st['ran'] else 'served from cache'}"
        for st in s["steps"]
    ]
    out += [
        f"pipeline wall time {s['wall_seconds']:.1f} s",
        "",
        f"submission: {s['submission']}",
        "plots:",
    ]
    out += [f"  {p}" for p in s["plots"]]
    print("\n".join(out))


def submit_run(schedule: list[Cycle], params: Params, host: str, experiment: str) -> str:
    """Compile and start a run on a KFP backend (same pipeline name, caching on)."""
    import kfp

    params.validate()
    client = kfp.Client(host=host)
    run = client.create_run_from_pipeline_func(
        build_pipeline(schedule, cluster=True),
        arguments=asdict(params),
        experiment_name=experiment,
        run_name=f"{PIPELINE_NAME}-{time.strftime('%Y%m%d-%H%M%S')}",
        enable_caching=True,
    )
    print(f"started run {run.run_id} in experiment {experiment!r} on {host}")
    return run.run_id


def ensure_demo_data(path: Path, size: int) -> str:
    """A synthetic HPA-format data set for the embedded default (made once, then reused)."""
    from protloc.synthetic import SyntheticSpec, generate

    if not (path / "sample_submission.csv").is_file():
        log.info("generating synthetic HPA data in %s", path)
        generate(
            SyntheticSpec(n_train=600, n_test=60, size=size, seed=0, temper=0.7),
            str(path),
            workers=2,
        )
    return str(path)


def _params_from_args(args: argparse.Namespace, data_root: str, **overrides) -> Params:
    values = {
        f.name: getattr(args, f.name)
        for f in fields(Params)
        if getattr(args, f.name, None) is not None
    }
    return Params(**{**values, "data_root": data_root, **overrides})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python pipeline.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compile", help="write the pipeline YAML for a cluster")
    c.add_argument("-o", "--output", default="pipeline.yaml")
    for name in ("local", "submit"):
        q = sub.add_parser(
            name, help="run with kfp.local" if name == "local" else "start a run on a KFP cluster"
        )
        for f in fields(Params):
            if f.name != "data_root":
                q.add_argument(
                    f"--{f.name.replace('_', '-')}", dest=f.name, type=type(f.default), default=None
                )
        q.add_argument("--data", default=None, help="data root (local folder or s3://)")
    sub.choices["local"].add_argument(
        "--root", default=str(ROOT / "runs" / "local"), help="local pipeline root"
    )
    sub.choices["submit"].add_argument("--host", required=True)
    sub.choices["submit"].add_argument("--experiment", default=PIPELINE_NAME)
    for q in sub.choices.values():
        q.add_argument(
            "--schedule",
            default=None,
            help="size:batch:epochs,... (default: the paper's Table 1; local: "
            + DEMO_SCHEDULE
            + ")",
        )
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        if args.command == "compile":
            schedule = parse_schedule(args.schedule) if args.schedule else paper_schedule()
            print(f"wrote {compile_pipeline(schedule, args.output)} ({format_schedule(schedule)})")
        elif args.command == "local":
            schedule = parse_schedule(args.schedule or DEMO_SCHEDULE)
            data = args.data or ensure_demo_data(ROOT / "runs" / "demo-data", schedule[-1].size)
            # The embedded default: small data (rare = under 10 samples), TTA 2 to keep it brisk.
            demo = {
                "rare_below": args.rare_below or 10,
                "workers": args.workers or 0,
                "tta": args.tta or 2,
            }
            overrides = {} if args.data else demo
            params = _params_from_args(args, data, **overrides)
            params.validate()
            run_local(schedule, params, args.root)
        else:
            schedule = parse_schedule(args.schedule) if args.schedule else paper_schedule()
            params = _params_from_args(args, args.data or Params.data_root)
            submit_run(schedule, params, args.host, args.experiment)
    except ProtlocError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
