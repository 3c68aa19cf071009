"""The data steps' front doors: split (labels -> manifest) and prepare (images -> store)."""

from __future__ import annotations

from typing import Any

from protloc import storage
from protloc.config import PrepareConfig, SplitConfig
from protloc.data.hpa import labels_uri, read_test_ids, sample_submission_uri
from protloc.data.identity import DataListing, require_unchanged, run_fingerprint
from protloc.data.manifest import COMPETITION, read_manifest
from protloc.data.store import Store, open_store, require_same_data
from protloc.data.store_build import build_store
from protloc.errors import DataError
from protloc.folders import MANIFEST, step_frame


def fingerprint_step(*, data_root: str, external: str = "", pretrained: str = "") -> str:
    """The run's data fingerprint: the data root's labels, test ids and image listings, the
    external roots' and the pretrained weights' bytes (``protloc.data.identity``). The DAG's
    first task, never served from a cache: every data-reading task takes it as an argument, so
    KFP's cache misses whenever the data changed. A data root without its labels or its
    ``train/`` images is refused here, in one line, before anything else starts."""
    data = DataListing(data_root)
    if not storage.exists(labels_uri(data_root)):
        raise DataError(f"data root {data_root}: no {labels_uri(data_root)} (the labels file)")
    if not data.files("train"):
        raise DataError(
            f"data root {data_root}: no images in {storage.join(data_root, 'train')} "
            "(expected train/{Id}_{red,green,blue,yellow}.png)"
        )
    return run_fingerprint(data, pretrained, external)


def split_step(
    cfg: SplitConfig, *, data_root: str, out: str, data_fingerprint: str = ""
) -> dict[str, Any]:
    """Stratified split of ``{data_root}/train.csv`` (and the external roots' labels):
    manifest, stats and plots in ``out``. ``data_fingerprint``: what the run saw when it
    started ('' : not checked); data changed since is refused."""
    from protloc.data.split import run_split

    require_unchanged(data_fingerprint, DataListing(data_root), "", "split", cfg.external)
    with step_frame("split", out):
        return run_split(cfg, labels_uri(data_root), out=out)


def prepare_step(
    cfg: PrepareConfig, *, data_root: str, split: str, out: str, data_fingerprint: str = ""
) -> dict[str, Any]:
    """Every sample of the split's manifest and every test id decoded once, at
    ``cfg.store_size`` px (and each extra size), into the store in ``out`` (shards,
    index.parquet, store.json)."""
    data = DataListing(data_root)
    require_unchanged(data_fingerprint, data, "", "prepare")
    with step_frame("prepare", out, {"split": split}):
        fingerprint = data.fingerprint()  # before reading: a change meanwhile shows
        manifest = read_manifest(storage.join(split, MANIFEST))
        external = {root: DataListing(root).fingerprint() for root in manifest.external}
        own = manifest.frame[manifest.frame["source"] == COMPETITION]
        ids = {"train": list(own["id"]), "test": read_test_ids(sample_submission_uri(data_root))}
        return build_store(
            cfg,
            data,
            ids,
            external=manifest.external,
            labels_sha256=manifest.meta.get("labels_sha256", ""),
            data_fingerprint=fingerprint,
            external_fingerprints=external,
            out=out,
        )


def open_checked_store(store: str | None, data: DataListing) -> Store | None:
    """The store a train or infer task was given, opened once and checked to come from the
    data the data root holds now (None: none given, the task decodes the images)."""
    if not store:
        return None
    opened = open_store(store)
    require_same_data(opened, data.fingerprint(), data.root)
    return opened
