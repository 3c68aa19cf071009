"""Apply a model bundle to a folder of RGBY images: probabilities and predicted labels.

The same computation as infer + thresholds + submit for the bundle's snapshots: each snapshot
predicts at its own size with the bundle's TTA and normalisation, the ensemble is their mean,
and a class is predicted above its threshold (else the image's most probable class).
"""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from protloc import storage
from protloc.classes import CLASS_NAMES, NUM_CLASSES
from protloc.config import InferConfig, PredictConfig
from protloc.data.hpa import EXTENSIONS, read_test_ids
from protloc.data.identity import DataListing
from protloc.distributed import Dist
from protloc.errors import DataError
from protloc.evaluate import predictions as P
from protloc.evaluate.bundle import read_bundle, snapshot_bytes
from protloc.evaluate.infer import predict_share
from protloc.evaluate.submission import decide
from protloc.folders import LABELS, PREDICTIONS
from protloc.model.checkpoint import parse_checkpoint

log = logging.getLogger(__name__)


def image_ids(data: DataListing, folder: str) -> list[str]:
    """Every sample of an images folder (an ``{Id}_red`` file of a known extension), sorted."""
    images = storage.join(data.root, folder)
    ids = sorted(
        name[: -len("_red" + ext)]
        for name in data.files(folder)
        for ext in EXTENSIONS
        if name.endswith("_red" + ext)
    )
    if not ids:
        raise DataError(
            f"{images}: no images ({{Id}}_red with one of {', '.join(EXTENSIONS)}) to predict"
        )
    return ids


def run_predict(cfg: PredictConfig, model: str, *, out: str) -> pd.DataFrame:
    """Write ``{out}/predictions.parquet`` (per snapshot and ensemble, the predictions
    contract) and ``{out}/labels.csv`` (Id, Predicted class indices, Labels by name); returns
    the labels frame."""
    bundle = read_bundle(model)
    images = cfg.images if storage.is_remote(cfg.images) else str(Path(cfg.images).resolve())
    # The cache and the decoder read {root}/{folder}/{Id}_{channel}.{ext}.
    data = DataListing(storage.parent(images))
    folder = images.rstrip("/").rsplit("/", 1)[-1]
    ids = read_test_ids(cfg.ids) if cfg.ids else image_ids(data, folder)
    states = [parse_checkpoint(snapshot_bytes(bundle, snap), snap.uri) for snap in bundle.snapshots]
    names = [snap.name for snap in bundle.snapshots]
    # Infer's own prediction loop (one process): the same model set-up, cache and TTA.
    settings = InferConfig(
        tta=bundle.tta,
        infer_batch_size=cfg.infer_batch_size,
        workers=cfg.workers,
        cache_dir=cfg.cache_dir,
    )
    t0 = time.perf_counter()
    probs = predict_share(Dist(), names, states, {"test": (folder, ids)}, data, settings)
    frames, total = [], np.zeros((len(ids), NUM_CLASSES), dtype=np.float64)
    for name in names:
        frames.append(P.frame(ids, "test", name, probs[name, "test"]))
        total += probs[name, "test"]
    ensemble = (total / len(bundle.snapshots)).astype(np.float32)
    frames.append(P.frame(ids, "test", P.ENSEMBLE, ensemble))
    P.write_predictions(pd.concat(frames, ignore_index=True), storage.join(out, PREDICTIONS))
    positive = decide(ensemble.astype(np.float64), np.array(bundle.thresholds))
    labels = pd.DataFrame(
        {
            "Id": ids,
            "Predicted": [" ".join(str(c) for c in np.flatnonzero(r)) for r in positive],
            "Labels": [";".join(CLASS_NAMES[c] for c in np.flatnonzero(r)) for r in positive],
        }
    )
    buf = io.StringIO()
    labels.to_csv(buf, index=False, lineterminator="\n")
    storage.write_text(storage.join(out, LABELS), buf.getvalue())
    log.info(
        "predicted %d images with %d snapshot(s) x %d TTA in %.1f s: %.2f labels per image",
        len(ids),
        len(bundle.snapshots),
        bundle.tta,
        time.perf_counter() - t0,
        positive.sum() / len(ids),
    )
    return labels
