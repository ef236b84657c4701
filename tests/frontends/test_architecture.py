"""The architecture is checked, not hoped for: the import layering (import-linter's contract in
pyproject.toml) and the static types (mypy over src/) are tests, so a wrong import or a type error
fails CI like any other defect.

Layering: errors < core < adapters < ops < present < front ends (lab, hook, runtime, daemon) < cli
(the dispatcher). The contract test also proves it can fail: it copies the tree, adds one import
against the layering, and expects the linter to say so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed in this venv (pip install -e '.[dev]')")
    return str(path)


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    return subprocess.run(
        [_tool("lint-imports"), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=300
    )


def test_import_layering_holds() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_import_layering_catches_a_wrong_import(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    core_module = tree / "src" / "cgdev" / "core" / "model.py"
    core_module.write_text(core_module.read_text() + "\nfrom cgdev.adapters import cgroupfs  # wrong\n")
    result = _lint_imports(tree)
    assert result.returncode != 0
    assert "cgdev.core.model -> cgdev.adapters.cgroupfs" in result.stdout


def test_types_check() -> None:
    result = subprocess.run(
        [_tool("mypy"), "--no-incremental", "src/cgdev"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:]


def test_style_is_clean() -> None:
    ruff = _tool("ruff")
    for args in (["check", "src", "tests", "bench"], ["format", "--check", "src", "tests", "bench"]):
        result = subprocess.run([ruff, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"ruff {' '.join(args)}:\n{result.stdout[-3000:]}"
