"""The hard rule: podium.core depends on neither kedro nor mlflow, nor on the rest of podium."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import podium.core

CORE = Path(podium.core.__file__).parent
MODULES = sorted(p.stem for p in CORE.glob("*.py") if p.stem != "__init__")


def _imported_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", MODULES)
def test_no_kedro_mlflow_or_project_imports(module):
    for name in _imported_names(CORE / f"{module}.py"):
        top = name.split(".")[0]
        assert top not in {"kedro", "kedro_datasets", "kedro_mlflow", "mlflow"}, name
        if top == "podium":
            assert name.startswith("podium.core"), name
    importlib.import_module(f"podium.core.{module}")


def test_package_import_is_light():
    code = (
        "import sys, podium.core; print(any(m in sys.modules for m in ('torch', 'timm', 'kedro')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert all(f"``{m}``" in podium.core.__doc__ for m in MODULES)
