"""The JSON artifacts steps pass to each other, one schema each, parsed once into a typed object.

Every reader goes through :func:`read` and every writer through :func:`write`, so a value one
step writes is a value the next one accepts, and anything else (a string where a number
belongs, ``true`` for a threshold, NaN, a missing field, a list for a document) is refused in
one line naming the file and the field, never a traceback or a silently different result.
Values are strict: no ``"0.5"`` read as 0.5, no 2.7 read as 2. Fields a schema does not name are
kept (reports add them freely); the ones it names are checked.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from protloc import storage
from protloc.classes import NUM_CLASSES
from protloc.errors import ArtifactError

Model = TypeVar("Model", bound=BaseModel)

# A threshold decides "probability > t". A fitted one lies in [0, 1] or just below 0 (a class
# every sample has: just below the lowest score, which may be 0); the reader allows [-1, 1] and
# refuses the values only a damaged or hand-edited file holds.
Threshold = Annotated[float, Field(ge=-1.0, le=1.0)]
Thresholds = Annotated[list[Threshold], Field(min_length=NUM_CLASSES, max_length=NUM_CLASSES)]
Score = Annotated[float, Field(ge=0.0, le=1.0)]
Name = Annotated[str, Field(min_length=1)]
Tta = Annotated[int, Field(ge=1, le=8)]


class Artifact(BaseModel):
    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="allow", frozen=True)


class Ensemble(Artifact):
    """Which snapshots the thresholds were fitted on."""

    choice: Name
    snapshots: Annotated[list[Name], Field(min_length=1)]


class MethodScores(Artifact):
    """One threshold method's macro F1 on the held-out rows: fitted on them, and cross-fit."""

    fit: Score
    crossfit: Score


class ThresholdsDoc(Artifact):
    """``thresholds.json`` (the thresholds step)."""

    thresholds: Thresholds
    method: Name
    alpha: Annotated[float, Field(ge=0.0, le=1.0)]
    macro_f1: Score
    macro_f1_at_0_5: Score = Field(alias="macro_f1_at_0.5")
    macro_f1_crossfit: Score  # the honest estimate: the summary's headline
    comparison: Annotated[dict[Name, MethodScores], Field(min_length=1)]
    ensemble: Ensemble | None = None


class Norm(Artifact):
    mean: Annotated[list[float], Field(min_length=4, max_length=4)]
    std: Annotated[list[Annotated[float, Field(gt=0.0)]], Field(min_length=4, max_length=4)]


class BundleSnapshot(Artifact):
    name: Name
    arch: Name | None = None  # format 3; formats 1 and 2: the bundle's arch and pool
    pool: Name | None = None
    file: Annotated[str, Field(pattern=r"^snapshots/[^/]+\.pt$")]
    size: Annotated[int, Field(gt=0)]
    norm: Norm
    cycle: Annotated[int, Field(ge=0)]
    fold: Annotated[int, Field(ge=-1)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class BundleDoc(Artifact):
    """``bundle.json`` (the bundle step; read by predict)."""

    format: Annotated[int, Field(ge=1)]
    arch: Name | None = None  # formats 1 and 2 (format 3 records it per snapshot)
    class_names: list[str]
    tta: Tta
    thresholds: Thresholds
    alpha: Annotated[float, Field(ge=0.0)]
    snapshots: Annotated[list[BundleSnapshot], Field(min_length=1)]


class CycleSnapshots(Artifact):
    """A train step's ``snapshots.json``: its chain's checkpoints so far, its own last."""

    snapshots: Annotated[list[Name], Field(min_length=1)]


class RecipeDoc(Artifact):
    """A recipe of a ``--recipes`` run (``protloc.recipes``): its name and the settings it sets."""

    name: Name
    settings: dict[str, Any]


class RankedRecipe(Artifact):
    name: Name
    rank: Annotated[int, Field(ge=1)]
    chosen: bool
    settings: dict[str, Any]
    macro_f1_crossfit: Score
    macro_f1_at_0_5: Score = Field(alias="macro_f1_at_0.5")
    per_class_f1: Annotated[list[Score], Field(min_length=NUM_CLASSES, max_length=NUM_CLASSES)]


class CompareEnsemble(Artifact):
    recipes: Annotated[list[Name], Field(min_length=1)]
    macro_f1_crossfit: Score


class CompareDoc(Artifact):
    """``compare.json`` (the compare step of a ``--recipes`` run): the recipes, best first."""

    method: Name
    best: Annotated[int, Field(ge=1)]
    recipes: Annotated[list[RankedRecipe], Field(min_length=1)]
    ensemble: CompareEnsemble


class PredictionSnapshots(CycleSnapshots):
    """Infer's and collect's ``snapshots.json``: the snapshots behind the predictions."""

    val_macro_f1_at_0_5: dict[str, Score] = Field(default_factory=dict, alias="val_macro_f1_at_0.5")
    tta: Tta | None = None
    infer_folders: list[Name] | None = None
    recipe: RecipeDoc | None = None  # the recipe of a --recipes run's chain (or its folds)


class CycleMetrics(Artifact):
    """A train cycle's ``metrics.json`` (the fields other steps read)."""

    cycle: Annotated[int, Field(ge=0)]
    fold: Annotated[int, Field(ge=-1)] = -1
    size: Annotated[int, Field(gt=0)]
    epochs: Annotated[int, Field(gt=0)]
    norm: Norm | None = None  # None in a checkpoint-only cycle's metrics of an older protloc


Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Side = Annotated[int, Field(gt=0)]


class StoreShard(Artifact):
    file: Name
    count: Side
    sha256: dict[str, Sha256]  # size in px (as text) -> the SHA-256 of that size's frame
    ids_sha256: Sha256  # the shard's ids in row order (protloc.data.store.ids_digest)


class StoreSplit(Artifact):
    shards: list[StoreShard]
    skipped: list[str]


class StoreDoc(Artifact):
    """``store.json`` (the prepare step)."""

    format: Annotated[int, Field(ge=1)]
    size: Side
    sizes: Annotated[list[Side], Field(min_length=1)]
    index_sha256: Sha256
    splits: dict[str, StoreSplit]
    data_fingerprint: str = ""
    external_fingerprints: dict[str, str] = Field(default_factory=dict)
    decoded_max: Annotated[int, Field(ge=0)] = 0


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number in standard JSON")


def _field(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "the document"


def _one_line(uri: str, exc: ValidationError) -> ArtifactError:
    err = exc.errors(include_url=False)[0]
    got = f" (got {err['input']!r})" if err["type"] != "missing" else ""
    if len(got) > 80:
        got = ""
    more = f"; {exc.error_count() - 1} more" if exc.error_count() > 1 else ""
    return ArtifactError(f"{uri}: {_field(err['loc'])}: {err['msg']}{got}{more}")


def parse(model: type[Model], uri: str, doc: Any) -> Model:
    """``doc`` (a JSON value) as ``model``, or one line naming ``uri`` and the field."""
    if not isinstance(doc, dict):
        raise ArtifactError(f"{uri}: expected a JSON object, found {type(doc).__name__}")
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise _one_line(uri, exc) from None


def read(model: type[Model], uri: str) -> Model:
    """Read ``uri`` (strict JSON: NaN and infinities refused) as ``model``."""
    try:
        doc = json.loads(storage.read_text(uri), parse_constant=_refuse_constant)
    except ValueError as exc:
        raise ArtifactError(f"{uri}: not valid JSON ({exc})") from None
    return parse(model, uri, doc)


def write(model: type[BaseModel], uri: str, doc: dict[str, Any]) -> None:
    """Check ``doc`` against ``model`` (what its readers will) and write it to ``uri``."""
    parse(model, uri, doc)
    storage.write_json(uri, doc)
