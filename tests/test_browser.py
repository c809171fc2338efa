"""A real browser drives JupyterLab: notebook 3's σ slider changes the figure and the numbers (T4).

Starts JupyterLab on 127.0.0.1 (free port, token, root dir = a temp dir holding notebook 3 as .ipynb), drives
Debian's Chromium through Playwright (never ``playwright install``), waits for the status bar to read the kernel
as Idle, runs all cells, edits the σ slider's readout, and checks that the plotly title (SVG text), the arrow
paths and the measured gap ‖r* − π‖ change as T4 says (about ×4 when σ doubles). The screenshot goes to
``test-artifacts/``. The server is stopped through its own process handle.
"""
from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
GAP = re.compile(r"mean ‖r\*\(x\) − π\(x\)‖ = ([0-9.]+e[+-][0-9]+)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer {url} within {timeout} s")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _status_idle(page, timeout_ms: int) -> None:
    """Wait until the status bar shows the kernel as Idle (the toolbar marker turns idle too early)."""
    page.wait_for_function(
        "() => { const s = document.querySelector('#jp-main-statusbar');"
        " return s && /\\|\\s*Idle/.test(s.innerText); }", timeout=timeout_ms)


@contextlib.contextmanager
def _lab(root: Path, tmp_path: Path):
    """A JupyterLab server on 127.0.0.1 serving ``root``; yields ``(base_url, token)`` and stops it afterwards.

    The app directory (and so the settings overrides that ``make venv`` installs) is the venv's own; user settings and
    workspaces go to ``tmp_path``, so the test sees what a fresh clone sees.
    """
    port, token = _free_port(), "manifold-ae-browser-test"
    env = {**os.environ, "MANIFOLD_AE_FAST": "1", "OMP_NUM_THREADS": "1", "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws")}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.news_url=",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    log = open(tmp_path / "jupyterlab.log", "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for_server(f"{base}/api/status?token={token}", proc)
        yield base, token
    finally:
        _stop(proc)
        log.close()


def _browser(sync_api):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's Chromium with `make browser-deps`")
    return sync_api.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)


def test_double_click_opens_a_py_percent_notebook_as_a_notebook(tmp_path: Path):
    """A fresh clone's notebooks/*.py open as notebooks (with a kernel) on a double-click, not in the text editor."""
    overrides = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    assert overrides.is_file(), f"{overrides} is missing: `make venv` installs it from jupyter/overrides.json"
    from playwright import sync_api
    root = tmp_path / "notebooks"
    root.mkdir()
    name = "01_manifolds_and_projection.py"
    (root / name).write_text((ROOT / "notebooks" / name).read_text(encoding="utf-8"), encoding="utf-8")
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with _lab(root, tmp_path) as (base, token), sync_api.sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/lab?token={token}")
            item = page.locator(".jp-DirListing-item", has_text=name)
            item.wait_for(timeout=120_000)
            item.dblclick()
            page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=120_000)
            _status_idle(page, 120_000)
            assert page.locator(".jp-NotebookPanel").count() >= 1
            assert page.locator(".jp-FileEditor:visible").count() == 0, "opened in the text editor"
            page.screenshot(path=str(artifacts / "browser_double_click_notebook1.png"), full_page=False)
        finally:
            browser.close()


def test_notebook3_sigma_slider_updates_figure_and_numbers(tmp_path: Path):
    from playwright import sync_api
    import jupytext
    nb = jupytext.read(ROOT / "notebooks" / "03_dae_becomes_projection.py")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    jupytext.write(nb, tmp_path / "notebook3.ipynb", fmt="ipynb")
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with _lab(tmp_path, tmp_path) as (base, token):
        with sync_api.sync_playwright() as pw:
            browser = _browser(pw)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"{base}/lab/tree/notebook3.ipynb?token={token}")
                _status_idle(page, 120_000)
                page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
                page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
                label = page.locator(".widget-html-content", has_text="mean ‖r*(x) − π(x)‖").first
                label.wait_for(timeout=180_000)
                page.wait_for_function("() => !document.body.innerText.includes('[*]')", timeout=180_000)
                _status_idle(page, 180_000)
                plot = page.locator(".js-plotly-plot").first
                plot.wait_for(timeout=60_000)
                label.scroll_into_view_if_needed()
                before_text = label.inner_text()
                before_title = plot.locator(".gtitle").first.text_content()
                before_paths = plot.locator("path.js-line").evaluate_all("ps => ps.map(p => p.getAttribute('d'))")
                assert "σ = 0.100" in before_text and "σ = 0.100" in before_title, (before_text, before_title)

                readout = page.locator(".widget-slider .widget-readout").first
                readout.click()
                page.keyboard.press("Control+A")
                page.keyboard.type("0.2")
                page.keyboard.press("Enter")
                page.wait_for_function(
                    "() => [...document.querySelectorAll('.widget-html-content')]"
                    ".some(e => e.innerText.includes('σ = 0.200'))", timeout=60_000)
                page.wait_for_function(
                    "() => [...document.querySelectorAll('.js-plotly-plot .gtitle')]"
                    ".some(e => e.textContent.includes('σ = 0.200'))", timeout=60_000)
                after_text = label.inner_text()
                after_paths = plot.locator("path.js-line").evaluate_all("ps => ps.map(p => p.getAttribute('d'))")
                page.screenshot(path=str(artifacts / "browser_notebook3.png"), full_page=False)
            finally:
                browser.close()
        gap_before = float(GAP.search(before_text).group(1))
        gap_after = float(GAP.search(after_text).group(1))
        assert 2.5 < gap_after / gap_before < 6.0, (gap_before, gap_after)   # T4: gap ~ σ², σ doubled
        assert after_paths != before_paths                                   # the arrows were redrawn
