"""Execute every teaching notebook in fast mode and check what notebooks may contain (docs/course.md).

Each ``notebooks/*.py`` (jupytext py:percent) is converted with jupytext and run with nbclient on a kernel
that is the current interpreter (``MANIFOLD_AE_FAST=1``); any error, including a failed final assert of the
claim, fails the test. Static checks: no top-level ``def``/``class`` (library code lives in the package) and
imports only from manifold_ae, the standard library, numpy, torch, plotly, ipywidgets, matplotlib, IPython.
"""
from __future__ import annotations

import ast
import json
import os
import sys
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.py"))
ALLOWED = {"manifold_ae", "numpy", "torch", "plotly", "ipywidgets", "matplotlib", "IPython"}
SLOW = {"07", "08"}        # notebooks that train an image model; run with -m slow


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def test_notebooks_exist_in_reading_order():
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert numbers == [f"{i:02d}" for i in range(1, len(numbers) + 1)], numbers
    assert len(numbers) >= 3


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_has_no_library_code_and_allowed_imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    defs = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    assert not defs, f"{path.name} defines library code at top level: {defs}; move it to manifold_ae.viz"
    for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        for name in names:
            top = name.split(".")[0]
            assert top in ALLOWED or top in sys.stdlib_module_names, f"{path.name} imports {name!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_has_title_claim_parameters_and_widget(path: Path):
    text = path.read_text(encoding="utf-8")
    assert "# # " in text and "docs/theory.md" in text, f"{path.name}: title cell must cite docs/theory.md"
    assert 'tags=["parameters"]' in text and "MANIFOLD_AE_FAST" in text, f"{path.name}: no fast-mode parameters cell"
    assert "display(" in text, f"{path.name}: no interactive widget displayed"
    last_code = text.rsplit("# %%", 1)[-1]
    assert "assert " in last_code, f"{path.name}: the last cell must assert the claim"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_check_cell_leaves_the_displayed_widgets_alone(path: Path):
    """The final cell checks on its own instance: after Run All the reader's explorer shows its defaults."""
    text = path.read_text(encoding="utf-8")
    shown = {n.args[0].id for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Call)
             and getattr(n.func, "id", None) == "display" and n.args and isinstance(n.args[0], ast.Name)}
    moved = []
    for node in ast.walk(ast.parse(text.rsplit("# %%", 1)[-1])):
        for target in node.targets if isinstance(node, ast.Assign) else []:
            base = target
            while isinstance(base, (ast.Attribute, ast.Subscript)):
                base = base.value
            if isinstance(base, ast.Name) and base.id in shown and target is not base:
                moved.append(ast.unparse(target))
    assert not moved, f"{path.name}: the check cell changes the displayed {moved}; check on a second instance"


def _kernel_dir(tmp_path: Path) -> Path:
    """A kernelspec ``manifold-ae-test`` whose argv is this interpreter."""
    spec = tmp_path / "kernels" / "manifold-ae-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "manifold_ae test", "language": "python"}))
    return tmp_path


def execute(path: Path, tmp_path: Path, *, timeout: int = 300):
    """Run one notebook in fast mode; returns the executed notebook (raises CellExecutionError on failure)."""
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    nb = jupytext.read(path)
    data = _kernel_dir(tmp_path)
    env = {"MANIFOLD_AE_FAST": "1", "OMP_NUM_THREADS": "1", "JUPYTER_PATH": str(data),
           "MPLBACKEND": "Agg", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="manifold-ae-test",
                                         resources={"metadata": {"path": str(tmp_path)}})
        client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


FAST_BOOKS = [p for p in NOTEBOOKS if p.name[:2] not in SLOW]
SLOW_BOOKS = [p for p in NOTEBOOKS if p.name[:2] in SLOW]


@pytest.mark.slow
@pytest.mark.parametrize("path", FAST_BOOKS, ids=_ids(FAST_BOOKS))
def test_notebook_executes_in_fast_mode(path: Path, tmp_path: Path):
    nb = execute(path, tmp_path)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors


@pytest.mark.slow
@pytest.mark.parametrize("path", SLOW_BOOKS, ids=_ids(SLOW_BOOKS))
def test_image_notebook_executes_in_fast_mode(path: Path, tmp_path: Path):
    nb = execute(path, tmp_path, timeout=600)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors
