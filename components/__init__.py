"""One module per pipeline step: its KFP component (a typed function generated from the step's
config by ``make components``) and its command line (``python -m components.<step>``), both
calling the step's one front door (``protloc.steps``). ``task`` is the body every component
runs; ``cluster`` places the components on Kubernetes; ``docker_runner`` runs them locally in
the project's images."""

from __future__ import annotations

import importlib
import typing
from typing import Any


def component(step: str, image: str) -> Any:
    """The step's KFP component on ``image``: the function in ``components/<step>.py``, its
    annotations resolved against ``kfp.dsl`` (the module keeps them as text so its command
    line starts without importing kfp)."""
    import kfp.dsl
    from kfp import dsl

    fn = getattr(importlib.import_module(f"components.{step}"), step)
    fn.__annotations__ = typing.get_type_hints(fn, globalns=vars(kfp.dsl), include_extras=True)
    return dsl.component(base_image=image, install_kfp_package=False)(fn)
