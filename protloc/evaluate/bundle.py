"""The model bundle: everything needed to apply a trained run to new images, in one folder.

```
bundle.json              format version, class names, code version, the decision rule, TTA,
                         thresholds (and their method, alpha, the ensemble choice), and per
                         snapshot: its file, network (architecture and pooling), image size,
                         normalisation, cycle, fold, SHA-256
snapshots/{name}.pt      each chosen snapshot's final checkpoint, byte for byte
```

Writing a bundle needs no torch (the bundle step runs on the CPU image): sizes and
normalisation come from each cycle's ``metrics.json``. Reading one checks what this protloc
can apply: a format it knows (older formats stay readable), its architectures and its class
list, each named when it differs, and each snapshot file's SHA-256. The snapshots may be of
several networks (a ``--recipes`` run's best recipes).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from protloc import __version__, schemas, storage
from protloc.architectures import ARCHITECTURES, POOLINGS
from protloc.classes import CLASS_NAMES, NUM_CLASSES
from protloc.config import BundleConfig
from protloc.errors import ArtifactError
from protloc.folders import BUNDLE, METRICS
from protloc.schemas import BundleDoc
from protloc.version import code_version

log = logging.getLogger(__name__)

# Raise when bundle.json changes in a way older readers cannot follow (2: the network's pooling,
# which a format-1 reader would build as average pooling; 3: the network per snapshot).
FORMAT = 3
DECISION = "a class is predicted when its probability is above its threshold; an image with none above gets its most probable class"


@dataclass(frozen=True)
class Snapshot:
    """One snapshot of a bundle: its name and where its checkpoint is (which holds its size and
    normalisation too; bundle.json repeats them for readers without torch)."""

    name: str
    uri: str


@dataclass(frozen=True)
class Bundle:
    """A bundle as read: its snapshots, thresholds and TTA, and the document itself."""

    uri: str
    snapshots: list[Snapshot]
    thresholds: list[float]
    tta: int
    doc: dict[str, Any]


def write_bundle(
    cfg: BundleConfig,
    snapshots: dict[str, tuple[str, dict[str, Any]]],
    thresholds_doc: dict[str, Any],
    tta: int,
    *,
    out: str,
) -> dict[str, Any]:
    """Copy the chosen snapshots (name -> (checkpoint URI, its cycle's metrics)) into ``out``
    and write bundle.json."""
    entries = []
    for name, (uri, metrics) in snapshots.items():
        arch, pool = _network(uri, metrics)
        if not metrics.get("norm"):
            raise ArtifactError(
                f"{uri}: its cycle's metrics have no normalisation (a cycle trained by an older "
                "protloc); retrain it to bundle it"
            )
        data = storage.read_bytes(uri)
        file = f"snapshots/{name}.pt"
        storage.write_bytes(storage.join(out, file), data)
        entries.append(
            {
                "name": name,
                "arch": arch,
                "pool": pool,
                "file": file,
                "size": int(metrics["size"]),
                "norm": metrics["norm"],
                "cycle": int(metrics["cycle"]),
                "fold": int(metrics.get("fold", -1)),
                "sha256": hashlib.sha256(data).hexdigest(),
                "val_macro_f1_at_0.5": _val_f1(uri, metrics),
            }
        )
    doc = {
        "format": FORMAT,
        "class_names": list(CLASS_NAMES),
        "protloc_version": __version__,
        "code_version": code_version(),
        "tta": tta,
        "decision": DECISION,
        "thresholds": thresholds_doc["thresholds"],
        "threshold_method": thresholds_doc["method"],
        "alpha": thresholds_doc["alpha"],
        "ensemble": thresholds_doc.get("ensemble") or {"choice": "all"},
        "val_macro_f1": thresholds_doc["macro_f1"],  # in-sample; the cross-fit is the estimate
        "val_macro_f1_crossfit": thresholds_doc["macro_f1_crossfit"],
        "snapshots": entries,
    }
    schemas.write(BundleDoc, storage.join(out, BUNDLE), doc)
    log.info(
        "bundle of %d snapshot(s) (%s), TTA %d, in %s",
        len(entries),
        ", ".join(f"{e['arch']} {e['size']} px" for e in entries),
        tta,
        out,
    )
    return doc


def _val_f1(uri: str, metrics: dict[str, Any]) -> Any:
    """The cycle's validation macro F1 at 0.5 (None when it was not measured)."""
    val = metrics.get("val", {})
    if not isinstance(val, dict):
        where = storage.join(uri.rsplit("/", 1)[0], METRICS)
        raise ArtifactError(f"{where}: val must be an object, got {val!r}")
    return val.get("macro_f1_at_0.5")


def _network(uri: str, metrics: dict[str, Any]) -> tuple[str, str]:
    """(architecture, pooling) of the registered network a snapshot's cycle trained (its
    metrics' config; a config without ``pool`` was trained with average pooling)."""
    config = metrics.get("config") or {}
    if not isinstance(config, dict):
        where = storage.join(uri.rsplit("/", 1)[0], METRICS)
        raise ArtifactError(f"{where}: config must be an object, got {config!r}")
    arch = config.get("arch")
    if arch not in ARCHITECTURES:
        raise ArtifactError(
            f"{uri}: its cycle's metrics name no architecture this protloc builds "
            f"(config.arch {arch!r}); retrain it to bundle it"
        )
    pool = config.get("pool", "avg")
    if pool not in POOLINGS:
        raise ArtifactError(
            f"{uri}: its cycle's metrics name no pooling this protloc builds "
            f"(config.pool {pool!r}); retrain it to bundle it"
        )
    return arch, pool


def read_bundle(uri: str) -> Bundle:
    """Read and check a bundle folder; what this protloc cannot apply is refused, named."""
    where = storage.join(uri, BUNDLE)
    doc = storage.read_json(where)
    if not isinstance(doc, dict):
        raise ArtifactError(f"{where}: not a protloc model bundle (not a JSON object)")
    fmt = doc.get("format")
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise ArtifactError(f"{where}: not a protloc model bundle (no format version)")
    if fmt > FORMAT:
        raise ArtifactError(
            f"{where}: bundle format {fmt} was written by a newer protloc "
            f"({doc.get('protloc_version', '?')}); this protloc {__version__} reads formats up "
            f"to {FORMAT}"
        )
    entries = doc.get("snapshots") if isinstance(doc.get("snapshots"), list) else []
    archs = (
        [doc.get("arch")] if fmt < 3 else [e.get("arch") for e in entries if isinstance(e, dict)]
    )
    for arch in archs:
        if arch not in ARCHITECTURES:
            raise ArtifactError(
                f"{where}: the bundle's architecture is {arch!r}, this protloc applies "
                f"{', '.join(ARCHITECTURES)}"
            )
    names = doc.get("class_names")
    if not isinstance(names, list) or names != list(CLASS_NAMES):
        if not isinstance(names, list) or len(names) != NUM_CLASSES:
            count = len(names) if isinstance(names, list) else "no"
            raise ArtifactError(
                f"{where}: the bundle has {count} classes, this protloc has {NUM_CLASSES}"
            )
        c = next(i for i, (a, b) in enumerate(zip(names, CLASS_NAMES, strict=True)) if a != b)
        raise ArtifactError(
            f"{where}: the class list differs: class {c} is {names[c]!r} in the bundle, "
            f"{CLASS_NAMES[c]!r} here"
        )
    checked = schemas.parse(BundleDoc, where, doc)
    snapshots = [Snapshot(e.name, storage.join(uri, e.file)) for e in checked.snapshots]
    return Bundle(uri, snapshots, list(checked.thresholds), checked.tta, doc)


def snapshot_bytes(bundle: Bundle, snapshot: Snapshot) -> bytes:
    """A snapshot's checkpoint bytes, checked against the SHA-256 the bundle recorded."""
    data = storage.read_bytes(snapshot.uri)
    want = next(e["sha256"] for e in bundle.doc["snapshots"] if e["name"] == snapshot.name)
    if hashlib.sha256(data).hexdigest() != want:
        raise ArtifactError(f"{snapshot.uri}: not the file the bundle recorded (SHA-256 differs)")
    return data
