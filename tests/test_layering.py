import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_cpu_steps_import_neither_torch_nor_kfp():
    code = (
        "import sys, protloc.data.split, protloc.data.store, protloc.evaluate.thresholds, "
        "protloc.evaluate.submission, protloc.evaluate.collect, protloc.evaluate.bundle, "
        "protloc.data.hpav18, protloc.steps, components.split, components.prepare, "
        "components.collect, components.thresholds, components.submit, components.bundle; "
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
