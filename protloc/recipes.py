"""Recipes: named sets of train and infer settings that one run trains side by side.

A recipes file is a short YAML list; each entry has a ``name`` and any train or infer settings
(pipeline parameters) it changes from the run's::

    - name: paper
    - name: dense
      arch: densenet121
      loss: focal:0.5+lovasz:0.5

Every recipe trains its own chain of cycles (or folds) on the run's split and store; the compare
step ranks them and hands the ensemble of the best on to thresholds, submit and bundle. A task
of a recipe carries it as JSON in its ``recipe`` setting, and its front door applies it
(:func:`with_recipe`), so the command line and the component run the same settings.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from protloc.config import InferConfig, TrainConfig
from protloc.errors import ConfigError
from protloc.params import Param, StepConfig, check_value

NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
# A name the compare step's Metrics use for the ensemble of the best recipes.
RESERVED = ("ensemble",)
EXPONENT = re.compile(r"[-+]?\d+[eE][-+]?\d+")
# Settings a recipe may not change, and why.
FIXED = {
    "tta": "the bundle applies one TTA to every snapshot of the ensemble: set it for the run",
    "pretrained": "the run's fingerprint task keys the pretrained weights' bytes: set it for "
    "the run",
    "recipe": "it is the recipe itself",
}
C = TypeVar("C", bound=StepConfig)


def recipe_settings() -> dict[str, Param]:
    """Every setting a recipe may change: the train and infer steps' pipeline parameters but
    those in :data:`FIXED`."""
    out: dict[str, Param] = {}
    for cls in (TrainConfig, InferConfig):
        for p in cls.params():
            if p.spec.scope == "pipeline" and p.name not in FIXED:
                out.setdefault(p.name, p)
    return out


@dataclass(frozen=True)
class Recipe:
    """One recipe: its name and the settings it changes."""

    name: str
    settings: dict[str, Any]
    source: str = field(default="recipe", compare=False)  # the file it came from, for errors

    def to_json(self) -> str:
        """The ``recipe`` setting of its tasks."""
        return json.dumps({"name": self.name, "settings": self.settings}, sort_keys=True)


def _check(name: Any, settings: dict[str, Any], where: str) -> Recipe:
    """A recipe whose name and settings are valid, or a ConfigError naming them."""
    if not isinstance(name, str) or not NAME.match(name) or name in RESERVED:
        raise ConfigError(
            f"{where}: a recipe's name is 1 to 31 of a-z, 0-9 and '-', starting with a letter, "
            f"and not {', '.join(RESERVED)} (it names tasks, snapshots and Metrics), got {name!r}"
        )
    known = recipe_settings()
    for key, value in settings.items():
        if key in FIXED:
            raise ConfigError(
                f"{where}: recipe {name!r} sets {key}, which a recipe cannot: {FIXED[key]}"
            )
        if key not in known:
            raise ConfigError(
                f"{where}: recipe {name!r} sets {key!r}, not a train or infer setting (a recipe "
                f"sets: {', '.join(sorted(known))})"
            )
        try:
            check_value(known[key], value)
        except ConfigError as exc:
            # YAML 1.1 reads 1e-3 as text (it wants a dot: 1.0e-3)
            exponent = isinstance(value, str) and EXPONENT.fullmatch(value)
            hint = " (YAML reads 1e-3 as text: write 1.0e-3)" if exponent else ""
            raise ConfigError(f"{where}: recipe {name!r}: {exc}{hint}") from None
    # 1 and 1.0 are one setting of a float (and one JSON, so one cache key for its tasks)
    typed = {k: float(v) if known[k].type is float else v for k, v in settings.items()}
    return Recipe(name, typed, where)


def parse_recipes(text: str, where: str) -> list[Recipe]:
    """The recipes of a recipes file's text; refuses a malformed file, a repeated name, an
    unknown key or a bad value, naming the file, the recipe and the key."""
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, list) or not doc:
        raise ConfigError(f"{where}: a recipes file is a YAML list of recipes, each with a name")
    recipes: list[Recipe] = []
    for i, entry in enumerate(doc):
        if not isinstance(entry, dict) or "name" not in entry:
            raise ConfigError(f"{where}: entry {i + 1} is not a mapping with a name")
        settings = {k: v for k, v in entry.items() if k != "name"}
        recipe = _check(entry["name"], settings, where)
        if any(r.name == recipe.name for r in recipes):
            raise ConfigError(f"{where}: two recipes are called {recipe.name!r}")
        recipes.append(recipe)
    if len(recipes) < 2:
        raise ConfigError(f"{where}: a comparison needs at least two recipes, got {len(recipes)}")
    return recipes


def read_recipes(path: str) -> list[Recipe]:
    """The recipes of the file at ``path`` (see :func:`parse_recipes`)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"--recipes {path}: cannot read it ({exc.strerror})") from None
    return parse_recipes(text, path)


def check_run(values: dict[str, Any], recipes: list[Recipe]) -> None:
    """Refuse run settings (pipeline parameter ``values``, as given) that do not go with the
    recipes: ``best`` above their count or without any, and a recipe that changes the network
    of a run starting from ImageNet weights (they are the run's arch's; a recipe cannot set its
    own)."""
    best = values.get("best", 1)
    if recipes and best > len(recipes):
        source = recipes[0].source
        raise ConfigError(f"--best {best}: the recipes file {source} has {len(recipes)} recipes")
    if not recipes and "best" in values:
        raise ConfigError("--best chooses among the recipes of --recipes FILE; give the file")
    if not values.get("pretrained"):
        return
    run_arch = values.get("arch", next(p for p in TrainConfig.params() if p.name == "arch").default)
    for r in recipes:
        if r.settings.get("arch", run_arch) != run_arch:
            raise ConfigError(
                f"{r.source}: recipe {r.name!r} sets arch {r.settings['arch']}, but the run "
                f"starts from --pretrained {values['pretrained']}, weights of its arch: a "
                "recipe cannot set pretrained, so a recipe that changes the network trains "
                "from scratch (run it without --pretrained, or as its own run)"
            )


def decode(value: str) -> Recipe | None:
    """The recipe a task's ``recipe`` setting carries (None when empty), checked."""
    if not value:
        return None
    try:
        doc = json.loads(value)
    except json.JSONDecodeError:
        raise ConfigError(f"recipe must be JSON {{name, settings}}, got {value[:80]!r}") from None
    if (
        not isinstance(doc, dict)
        or set(doc) != {"name", "settings"}
        or not isinstance(doc["settings"], dict)
    ):
        raise ConfigError(f"recipe must be JSON {{name, settings}}, got {value[:80]!r}")
    return _check(doc["name"], doc["settings"], "recipe")


def recipe_name(value: str) -> str:
    """The name of the recipe a ``recipe`` setting carries ('' when none): read, not checked
    (a checkpoint's recipe was checked when it trained; the settings may have changed since)."""
    if not value:
        return ""
    try:
        name = json.loads(value).get("name")
    except (json.JSONDecodeError, AttributeError):
        name = None
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"recipe must be JSON {{name, settings}}, got {value[:80]!r}")
    return name


def with_recipe(cfg: C) -> C:
    """``cfg`` with its recipe's settings that belong to its step in place of the run's."""
    recipe = decode(getattr(cfg, "recipe", ""))
    if recipe is None:
        return cfg
    own = {p.name for p in type(cfg).params()}
    return dataclasses.replace(cfg, **{k: v for k, v in recipe.settings.items() if k in own})
