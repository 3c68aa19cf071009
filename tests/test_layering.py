"""The house's shape: the library knows nothing of KFP, the CPU steps nothing of torch, imports
run one way (no cycle between files, none between rooms: a room is a top-level module or
package of protloc, or components/, pipeline.py, tools/), and no file or function outgrows
what a reader takes in at once."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from tests.conftest import ROOT

MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60
SOURCES = ("protloc", "components", "tools")


def test_cpu_steps_import_neither_torch_nor_kfp():
    code = (
        "import sys, protloc.data.split, protloc.data.store, protloc.evaluate.thresholds, "
        "protloc.evaluate.submission, protloc.evaluate.collect, protloc.evaluate.bundle, "
        "protloc.evaluate.compare, protloc.recipes, components.compare, "
        "protloc.data.hpav18, protloc.steps, protloc.cli, components.split, components.prepare, "
        "components.collect, components.thresholds, components.submit, components.bundle, "
        "components.train, components.task; "
        "print(sorted(m for m in ('torch', 'kfp') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_library_never_imports_kfp():
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "protloc").rglob("*.py")
        if any(
            line.lstrip().startswith(("import kfp", "from kfp"))
            for line in p.read_text().splitlines()
        )
    ]
    assert offenders == []
    assert Path(ROOT / "protloc").is_dir()


def _files() -> dict[str, Path]:
    """Module name -> file, for every module of the house (tests and bench are not rooms)."""
    out = {"pipeline": ROOT / "pipeline.py"}
    for top in SOURCES:
        for path in (ROOT / top).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _imports(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """The house's modules ``path`` imports, at its top or inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for target in targets:
            module = target
            while module and module not in known:
                module = module.rpartition(".")[0]
            if module and module != name:
                found.add(module)
    return found


def _room(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "protloc" and len(parts) > 1 else parts[0]


def _graph() -> dict[str, set[str]]:
    known = _files()
    return {name: _imports(path, name, known) for name, path in known.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of ``graph`` (node -> nodes it imports), or [] if it has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_no_import_cycle_between_files():
    assert _cycle(_graph()) == []


def test_no_import_runs_back_up_between_rooms():
    """Rooms whose imports form no cycle can be stacked so that every import goes down."""
    rooms: dict[str, set[str]] = defaultdict(set)
    for module, imported in _graph().items():
        rooms[_room(module)] |= {_room(m) for m in imported} - {_room(module)}
    assert _cycle(rooms) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []


def test_no_file_or_function_outgrows_a_reader():
    long_files, long_functions = [], []
    for path in (ROOT / "protloc").rglob("*.py"):
        text = path.read_text()
        where = path.relative_to(ROOT)
        if len(text.splitlines()) > MAX_FILE_LINES:
            long_files.append(f"{where}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long_functions.append(f"{where}:{node.lineno} {node.name}: {lines} lines")
    assert long_files == []
    assert long_functions == []


# Modules a dependency imports only when they are installed: kfp.local imports the Docker SDK
# when it can, so a `docker/` folder here once stood in for it and broke `pipeline.py local`.
OPTIONAL_IMPORTS = {"docker"}


def test_no_folder_of_the_repository_shadows_a_module():
    """`python pipeline.py` puts the repository root first on sys.path, where a folder without
    an __init__.py is a namespace package that any `import <folder>` finds: no such folder may
    be named like a standard, installed or optional module."""
    from importlib.metadata import packages_distributions

    taken = set(sys.stdlib_module_names) | set(packages_distributions()) | OPTIONAL_IMPORTS
    folders = [
        p.name
        for p in ROOT.iterdir()
        if p.is_dir() and p.name.isidentifier() and not (p / "__init__.py").exists()
    ]
    assert "containers" in folders  # the images and compose files: the folder is looked at
    assert not set(folders) & taken, set(folders) & taken
