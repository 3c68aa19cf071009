"""The code version every pipeline task carries, so a cache never serves results of old code.

KFP's cache key (local and on the backend) covers the component, image, command, arguments and
env, not the code of the packages a component imports. Every task therefore gets
``code_version`` = package version + a hash of protloc's and components' sources.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from protloc import __version__

_ROOT = Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def code_version() -> str:
    """'0.1.0+3f2a9c1b7d4e': the package version and the first 12 hex of a source hash."""
    h = hashlib.sha256()
    for folder in (_ROOT, _ROOT.parent / "components"):
        for path in sorted(folder.rglob("*")):
            if path.suffix in (".py", ".json") and "__pycache__" not in path.parts:
                h.update(path.relative_to(folder.parent).as_posix().encode() + b"\0")
                h.update(path.read_bytes() + b"\0")
    return f"{__version__}+{h.hexdigest()[:12]}"
