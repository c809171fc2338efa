"""A real browser drives every teaching notebook in JupyterLab, as a student meets it (docs/course.md).

One JupyterLab server (module fixture: 127.0.0.1, free port, token, root dir = a temp copy of ``notebooks/*.py``,
fast mode) and one headless Debian Chromium (through Playwright, never ``playwright install``) serve every
notebook. Each test double-clicks the ``.py`` file in the file browser (jupytext's "Jupytext Notebook" opens it
as a notebook), waits for an idle kernel, runs all cells, fails on any error output or unexecuted cell, then
moves one control of the notebook's explorer (:data:`MOVES`) and checks that the explorer's figure and its
numbers changed as the notebook says. The screenshot goes to ``test-artifacts/``. A notebook without an entry
in :data:`MOVES` fails with a message naming it. The server is stopped through its own process handle.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable, NamedTuple

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
ARTIFACTS = ROOT / "test-artifacts"
GAP = re.compile(r"mean ‖r\*\(x\) − π\(x\)‖ = ([0-9.]+e[+-][0-9]+)")
SHRINKAGE = re.compile(r"shrinkage λ/\(λ\+σ²\) = ([0-9., ]+);")


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


def _api(base: str, token: str, path: str, method: str = "GET") -> bytes:
    request = urllib.request.Request(f"{base}{path}", method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return r.read()


def _t4_gap_grows_like_sigma_squared(before: str, after: str) -> None:
    gap_before, gap_after = (float(GAP.search(t).group(1)) for t in (before, after))
    assert 2.5 < gap_after / gap_before < 6.0, (gap_before, gap_after)   # T4: gap ~ σ², σ doubled


def _t3_smallest_direction_halved(before: str, after: str) -> None:
    smallest = float(SHRINKAGE.search(after).group(1).split(",")[-1])    # λ̂ ≈ 0.125 and σ² = 0.125: λ/(λ+σ²) ≈ ½
    assert 0.45 < smallest < 0.55, after


def _t5_projection_has_jacobian_p_t(before: str, after: str) -> None:
    assert "‖J_f − P_T‖_F = 0.0000" in after and "‖J_f‖²_F = 1.0000" in after, after   # T5: J_π = P_T, ‖J‖² = d


def _t6_masked_projection_exact(before: str, after: str) -> None:
    error = float(re.search(r"RMS ‖π_S\(x̂\) − x‖ = ([0-9.e+-]+)", after).group(1))
    assert error < 1e-10, after                                          # T6: π_S recovers x while n − |S| ≥ d


def _t8_oracle_auroc_grows(before: str, after: str) -> None:
    auroc = [float(re.search(r"oracle dist\(x, M\) ([0-9.]+)", t).group(1)) for t in (before, after)]
    assert auroc[1] > auroc[0], auroc                                    # δ 0.03 -> 0.05: easier anomalies


class Move(NamedTuple):
    """What a student does with a notebook's explorer, and what must follow."""

    control: str                    # the widget's description
    how: str                        # "readout" (type value into a slider's readout), "select" (pick the dropdown
    value: str                      # option value) or "key" (press key value on a slider's handle: selection
    expected: str                   # sliders have no editable readout); the label must show expected afterwards
    shown: dict[str, str]           # control -> value the explorer shows after Run All (the check cell moves none)
    check: Callable[[str, str], None] | None = None   # (label before, label after) -> raises AssertionError


MOVES = {
    "01_manifolds_and_projection": Move("t / reach", "readout", "1.5", "t = 1.50 τ", {"t / reach": "0.90"}),
    "02_linear_autoencoders": Move("σ", "readout", "0.354", "σ = 0.354", {"σ": "0.500"},
                                   _t3_smallest_direction_halved),
    "03_dae_becomes_projection": Move("σ", "readout", "0.2", "σ = 0.200", {"σ": "0.100"},
                                      _t4_gap_grows_like_sigma_squared),
    "04_contraction_tangent": Move("map", "select", "orthogonal projection π", "orthogonal projection π on the",
                                   {"map": "reconstruction-contractive AE", "λ": "0.1"},
                                   _t5_projection_has_jacobian_p_t),
    "05_self_supervised_corruption": Move("|S|", "readout", "3", "|S| = 3:", {"|S|": "1"},
                                          _t6_masked_projection_exact),
    "06_conservation_anomaly": Move("δ", "key", "ArrowRight", "δ = 0.05:", {"δ": "0.03"}, _t8_oracle_auroc_grows),
    "07_vectors_to_images": Move("image", "readout", "12", "the model removed", {"image": "0"}),
    "08_results_browser": Move("image", "readout", "12", "scores.json", {"class": "all", "image": "0"}),
    "09_toys_to_images": Move("mask side", "readout", "10", "mask 10 × 10 px", {"mask side": "4", "sample": "0"}),
}

_ALL_EXECUTED = r"""() => {
  const prompts = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt')]
    .map(p => p.textContent.trim());
  return prompts.length > 0 && !prompts.some(p => p.includes('*')) && prompts.some(p => /\[\d+\]/.test(p));
}"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """``(base_url, token, browser, root)``: one JupyterLab server on a copy of notebooks/ and one Chromium."""
    overrides = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    assert overrides.is_file(), f"{overrides} is missing: `make venv` installs it from jupyter/overrides.json"
    from playwright import sync_api
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "notebooks"
    root.mkdir()
    for path in NOTEBOOKS:   # a copy: the jupytext contents manager saves back into the .py it opened
        (root / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    ARTIFACTS.mkdir(exist_ok=True)
    news = tmp / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')   # no "get notified about Jupyter news?" toast over the screenshots
    with _lab(root, tmp) as (base, token), sync_api.sync_playwright() as pw:
        browser = _browser(pw)
        try:
            yield base, token, browser, root
        finally:
            browser.close()


def _explorer_and_control(page, description: str):
    """The output area of the explorer holding the slider or dropdown whose description is ``description``."""
    label = page.locator(".widget-label", has_text=re.compile(rf"^{re.escape(description)}$"))
    explorer = page.locator(".jp-OutputArea-output", has=label).first
    return explorer, explorer.locator(".widget-slider, .widget-dropdown", has=label).first


def _move(control, how: str, value: str) -> None:
    if how == "readout":
        control.locator(".widget-readout").click()
        control.page.keyboard.press("Control+A")
        control.page.keyboard.type(value)
        control.page.keyboard.press("Enter")
    elif how == "select":
        control.locator("select").select_option(label=value)
    elif how == "key":
        control.locator(".noUi-handle").focus()
        control.page.keyboard.press(value)
    else:
        raise ValueError(f"how must be 'readout', 'select' or 'key', got {how!r}")


def _shown(explorer, description: str) -> str:
    """The value a control displays: a dropdown's selected option or a slider's readout."""
    label = explorer.page.locator(".widget-label", has_text=re.compile(rf"^{re.escape(description)}$"))
    control = explorer.locator(".widget-slider, .widget-dropdown", has=label).first
    return control.evaluate("c => { const s = c.querySelector('select'); return s ? s.options[s.selectedIndex].text"
                            " : c.querySelector('.widget-readout').textContent; }")


def _figure_html(explorer) -> str:
    return explorer.locator(".js-plotly-plot").first.evaluate(
        "e => [...e.querySelectorAll('.main-svg')].map(s => s.outerHTML).join('')")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_the_browser_and_its_explorer_responds(lab, path: Path):
    """Double-click, Run All without errors, move one control: the explorer's figure and numbers change."""
    if path.stem not in MOVES:
        pytest.fail(f"{path.name} has no entry in tests/test_browser.py MOVES: name the explorer control a student "
                    "moves, how to move it and what its label must show afterwards")
    move = MOVES[path.stem]
    base, token, browser, _root = lab
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        page.goto(f"{base}/lab/workspaces/{path.stem}?reset&token={token}")   # a fresh workspace per notebook
        item = page.locator(".jp-DirListing-item", has_text=path.name)
        item.wait_for(timeout=120_000)
        item.dblclick()
        page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=120_000)
        _status_idle(page, 120_000)
        assert page.locator(".jp-FileEditor:visible").count() == 0, f"{path.name} opened in the text editor"
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        page.wait_for_function(_ALL_EXECUTED, timeout=240_000)
        _status_idle(page, 60_000)
        stderr = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
        tracebacks = [t for t in stderr.all_text_contents() if "Traceback" in t or "Error" in t.split("\n")[0]]
        assert not tracebacks, f"{path.name}: error output after Run All:\n" + "\n".join(t[-2000:] for t in tracebacks)
        prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_text_contents()
        assert all(re.search(r"\[\d+\]", p) for p in prompts), f"{path.name}: cells left unexecuted: {prompts}"

        explorer, control = _explorer_and_control(page, move.control)
        control.wait_for(timeout=30_000)
        explorer.scroll_into_view_if_needed()
        shown = {name: " ".join(_shown(explorer, name).split()) for name in move.shown}   # no-break spaces too
        assert shown == move.shown, f"{path.name}: after Run All the explorer shows {shown}, not {move.shown}"
        label = explorer.locator(".widget-html-content").first
        before_text, before_figure = label.text_content(), _figure_html(explorer)
        handle = label.element_handle()
        _move(control, move.how, move.value)
        page.wait_for_function("([e, before, want]) => e.textContent !== before && e.textContent.includes(want)",
                               arg=[handle, before_text, move.expected], timeout=120_000)
        end = time.monotonic() + 30
        while _figure_html(explorer) == before_figure and time.monotonic() < end:
            time.sleep(0.2)
        after_text, after_figure = label.text_content(), _figure_html(explorer)
        page.screenshot(path=str(ARTIFACTS / f"browser_{path.stem}.png"), full_page=False)
        assert after_figure != before_figure, f"{path.name}: moving {move.control!r} left the figure unchanged"
        if move.check is not None:
            move.check(before_text, after_text)
    finally:
        context.close()
        for session in json.loads(_api(base, token, "/api/sessions")):   # free the kernel's CPU
            _api(base, token, f"/api/sessions/{session['id']}", method="DELETE")
