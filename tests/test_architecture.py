"""The layer contract (docs/architecture.md): faces -> apps -> core, arrows pointing down only.

import-linter reads the contract from pyproject.toml; notebooks live outside the package, so the rule that they
use the library's building blocks, never the claims' verdict modules, is checked here by reading their imports.
"""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_layer_contract_is_kept():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert lint is not None, "lint-imports (import-linter) is not installed: it is in the test extra"
    proc = subprocess.run([lint, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "1 kept, 0 broken" in proc.stdout, proc.stdout[-2000:]


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_notebooks_never_import_claims():
    notebooks = sorted((ROOT / "notebooks").glob("*.py"))
    assert notebooks, "no notebooks found"
    offenders = {nb.name: sorted(m for m in _imported_modules(nb) if m.startswith("manifold_ae.claims"))
                 for nb in notebooks}
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"notebooks import claim modules (use manifold_ae.toys / manifold_ae.viz): {offenders}"


def test_contract_sees_a_planted_upward_import(tmp_path):
    """The contract must be able to fail: a copy of the package with one core module importing a face is broken."""
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    pkg = tmp_path / "manifold_ae"
    shutil.copytree(ROOT / "manifold_ae", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    with open(pkg / "checks.py", "a", encoding="utf-8") as fh:
        fh.write("\nimport manifold_ae.commands.cli  # planted upward import\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    env = {"PYTHONPATH": str(tmp_path), "PATH": str(Path(sys.executable).parent)}
    proc = subprocess.run([lint, "--config", str(tmp_path / "pyproject.toml"), "--no-cache"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "manifold_ae.checks -> manifold_ae.commands.cli" in proc.stdout, proc.stdout[-3000:]
