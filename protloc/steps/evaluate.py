"""The evaluation steps' front doors: infer, collect (K folds), compare (recipes), thresholds,
submit, bundle, and predict (a bundle applied to new images, outside the training DAG)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from protloc import schemas, storage
from protloc.config import (
    BundleConfig,
    CollectConfig,
    CompareConfig,
    InferConfig,
    PredictConfig,
    SubmitConfig,
    ThresholdsConfig,
)
from protloc.data.hpa import sample_submission_uri
from protloc.data.identity import DataListing, require_unchanged
from protloc.errors import ArtifactError
from protloc.folders import (
    MANIFEST,
    METRICS,
    PREDICTIONS,
    SNAPSHOTS,
    SUMMARY,
    THRESHOLDS,
    cycle_folder,
    read_prediction_snapshots,
    read_snapshot_list,
    require_finished,
    step_frame,
)
from protloc.process import is_main
from protloc.recipes import decode, recipe_name, with_recipe
from protloc.schemas import CycleMetrics, PredictionSnapshots, ThresholdsDoc
from protloc.steps.data import open_checked_store


def infer_step(
    cfg: InferConfig,
    *,
    data_root: str,
    split: str,
    last_cycle: str,
    out: str,
    store: str | None = None,
    data_fingerprint: str = "",
) -> dict[str, Any]:
    """Every snapshot of the chain predicts the validation ids and the test ids (with
    ``cfg.gpus`` N > 1, each of N ranks its share); returns each snapshot's and the
    ensemble's validation macro F1 at 0.5."""
    from protloc import distributed

    cfg = with_recipe(cfg)
    if distributed.launches(cfg.gpus):
        folders = {"split": split, "last_cycle": last_cycle, "out": out, "store": store}
        return distributed.in_ranks(
            infer_step, cfg, data_root=data_root, data_fingerprint=data_fingerprint, **folders
        )
    from protloc.data.cache import default_cache_dir
    from protloc.evaluate.infer import run_infer, val_scores

    reads = {"split": split, "last_cycle": last_cycle, "store": store}
    data = DataListing(data_root)
    require_unchanged(data_fingerprint, data, "", "infer")
    require_finished(reads)
    opened = open_checked_store(store, data)
    with step_frame("infer", out, reads):
        storage.check_writable_folder(cfg.cache_dir or str(default_cache_dir()), "cache folder")
        snapshots = read_snapshot_list(last_cycle)
        manifest = storage.join(split, MANIFEST)
        rows = run_infer(cfg, manifest, data, snapshots, store=opened, out=out)
        if not is_main():  # rank 0 gathered every rank's predictions and wrote them
            return {}
        scores = val_scores(rows, manifest, cfg.fold)
        # Which snapshots made these predictions, and how each scored: the run summary's source.
        schemas.write(
            PredictionSnapshots,
            storage.join(out, SNAPSHOTS),
            {
                "snapshots": snapshots,
                "val_macro_f1_at_0.5": scores,
                "tta": cfg.tta,
                **({"recipe": asdict(recipe)} if (recipe := decode(cfg.recipe)) else {}),
            },
        )
        return {"val_macro_f1_at_0.5": scores}


def collect_step(
    cfg: CollectConfig, *, split: str, predictions: list[str], out: str
) -> dict[str, Any]:
    """A K-fold run's chains' infer folders as one: out-of-fold validation rows, test rows
    averaged over folds x snapshots (what thresholds and submit read)."""
    from protloc.evaluate.collect import run_collect

    reads = {f"predictions[{i}]": folder for i, folder in enumerate(predictions)}
    with step_frame("collect", out, {"split": split, **reads}):
        chains = {storage.join(f, PREDICTIONS): read_prediction_snapshots(f) for f in predictions}
        doc = run_collect(cfg, chains, storage.join(split, MANIFEST), out=out)
        # The summary reads each chain's infer folder (its time) from here.
        doc["infer_folders"] = [storage.parent(uri) for uri in doc.pop("order")]
        schemas.write(PredictionSnapshots, storage.join(out, SNAPSHOTS), doc)
        return {"val_macro_f1_at_0.5": doc["val_macro_f1_at_0.5"]}


def compare_step(
    cfg: CompareConfig, *, split: str, predictions: list[str], out: str
) -> dict[str, Any]:
    """A ``--recipes`` run's recipes ranked by cross-fit macro F1 (compare.json, report.html),
    and the ensemble of the best ``cfg.best`` as one predictions folder (what thresholds,
    submit and bundle read)."""
    from protloc.evaluate.compare import run_compare
    from protloc.report.pages import compare_page

    reads = {f"predictions[{i}]": folder for i, folder in enumerate(predictions)}
    with step_frame("compare", out, {"split": split, **reads}):
        recipes = {f: read_prediction_snapshots(f) for f in predictions}
        doc = run_compare(cfg, recipes, storage.join(split, MANIFEST), out=out)
        ranking = doc.pop("compare")
        schemas.write(PredictionSnapshots, storage.join(out, SNAPSHOTS), doc)
        compare_page(ranking, out)
        return ranking


def thresholds_step(
    cfg: ThresholdsConfig, *, split: str, predictions: str, out: str
) -> dict[str, Any]:
    """Per-class thresholds fitted on the ensemble's validation predictions."""
    from protloc.evaluate.thresholds import run_thresholds

    with step_frame("thresholds", out, {"split": split, "predictions": predictions}):
        return run_thresholds(
            cfg,
            storage.join(predictions, PREDICTIONS),
            storage.join(split, MANIFEST),
            out=out,
        )


def submit_step(
    cfg: SubmitConfig,
    *,
    data_root: str,
    predictions: str,
    thresholds: str,
    out: str,
    data_fingerprint: str = "",
) -> Any:
    """The Kaggle submission CSV for ``{data_root}/sample_submission.csv``'s ids, and the run's
    summary (``summary.md``: the cycles' and the ensemble's F1, the step times)."""
    from protloc.evaluate.submission import run_submit
    from protloc.report.summary import format_summary, run_summary

    require_unchanged(data_fingerprint, DataListing(data_root), "", "submit")
    with step_frame("submit", out, {"predictions": predictions, "thresholds": thresholds}):
        result = run_submit(
            cfg,
            storage.join(predictions, PREDICTIONS),
            storage.join(thresholds, THRESHOLDS),
            sample_submission_uri(data_root),
            out=out,
        )
        summary = run_summary(predictions, thresholds)
        storage.write_text(storage.join(out, SUMMARY), format_summary(summary))
        return result


def bundle_step(cfg: BundleConfig, *, predictions: str, thresholds: str, out: str) -> dict:
    """The model bundle: the snapshots the thresholds step chose (their checkpoints, sizes and
    normalisation), its thresholds, the TTA infer used, class names and code version."""
    from protloc.evaluate.bundle import write_bundle
    from protloc.evaluate.ensemble import snapshot_name

    with step_frame("bundle", out, {"predictions": predictions, "thresholds": thresholds}):
        listed = schemas.read(PredictionSnapshots, storage.join(predictions, SNAPSHOTS))
        thr = schemas.read(ThresholdsDoc, storage.join(thresholds, THRESHOLDS))
        by_name = {}  # snapshot name -> (checkpoint URI, its cycle's metrics.json)
        for uri in listed.snapshots:
            where = storage.join(cycle_folder(uri), METRICS)
            m = schemas.read(CycleMetrics, where)
            metrics = storage.read_json(where)
            recipe = recipe_name((metrics.get("config") or {}).get("recipe", ""))
            by_name[snapshot_name(m.cycle, m.size, m.fold, recipe)] = (uri, metrics)
        chosen = thr.ensemble.snapshots if thr.ensemble else list(by_name)
        unknown = sorted(set(chosen) - set(by_name))
        if unknown:
            raise ArtifactError(
                f"--thresholds {thresholds} chose snapshot(s) {unknown} that --predictions "
                f"{predictions} does not list"
            )
        if listed.tta is None:
            raise ArtifactError(f"--predictions {predictions}: {SNAPSHOTS} records no single TTA")
        thr_doc = thr.model_dump(by_alias=True)
        return write_bundle(cfg, {n: by_name[n] for n in chosen}, thr_doc, listed.tta, out=out)


def predict_step(cfg: PredictConfig, *, model: str, out: str) -> Any:
    """A model bundle applied to ``cfg.images``: predictions.parquet and labels.csv."""
    from protloc.evaluate.apply import run_predict

    with step_frame("predict", out, {"model": model}):
        return run_predict(cfg, model, out=out)
