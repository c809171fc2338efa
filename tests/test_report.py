"""``evaluate``'s report.html: self-contained (works offline), its numbers are metrics.json's, its curves sklearn's.

One tiny training run and one ``evaluate`` (module fixture) give the report; the content tests parse it with
:mod:`html.parser`, the ``browser`` test opens it in headless Chromium with every non-file request aborted.
"""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import auc, precision_recall_curve, roc_curve

from fakes import make_fake_mvtec
from manifold_ae.commands.evaluate import TABLE_COLUMNS
from manifold_ae.commands.evaluate import main as evaluate_main
from manifold_ae.commands.train import main as train_main
from manifold_ae.images.pipeline import ScoredSet
from manifold_ae.viz.report import report_curves

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
TINY = ["--data.dataset=synthetic", "--data.category=widget", "--data.image_size=32", "--model.width=4",
        "--model.depth=2", "--model.dilations=1,2", "--model.sdc_layers=1", "--train.batch_size=4",
        "--train.lr=1e-2", "--train.warmup=1", "--train.steps=4", "--train.device=cpu", "--train.precision=float32",
        "--train.channels_last=false", "--data.holdout_fraction=0.25", "--score.sigma=1", "--score.batch_size=3",
        "--no-progress"]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    root = make_fake_mvtec(tmp / "data", category="widget", n_train=12, n_test_good=3,
                           defects=("scratch", "dent"), n_defect=3, size=32)
    assert train_main([*TINY, f"--data.root={root}", f"--out={tmp / 'run'}"]) == 0
    assert evaluate_main([str(tmp / "run"), "--out", str(tmp / "eval"), "--no-progress", "--overlays=2"]) == 0
    return tmp / "eval"


class _Page(HTMLParser):
    """Collects script/img/link sources, table cells with data-key and the data-value of threshold cells."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.cells: dict[tuple[str, str], str] = {}
        self.thresholds: list[str] = []
        self.tables: list[str] = []
        self._row: str | None = None
        self._table: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("script", "img", "link", "iframe") and (a.get("src") or a.get("href")):
            self.sources.append(a.get("src") or a.get("href"))
        if tag == "table":
            self._table = a.get("id")
            self.tables.append(a.get("id"))
        if tag == "tr":
            self._row = a.get("data-defect")
        if tag == "td" and "data-key" in a and self._row is not None:
            self.cells[(self._row, a["data-key"])] = a["data-value"]
        if tag == "td" and self._table == "thresholds" and "data-value" in a:
            self.thresholds.append(a["data-value"])


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_report_table_and_thresholds_equal_metrics_json(report):
    metrics = json.loads((report / "metrics.json").read_text())
    page = _parse(report / "report.html")
    assert page.tables == ["metrics", "thresholds", "config"]
    compared = 0
    for defect, m in metrics["metrics"].items():
        for key, _ in TABLE_COLUMNS:
            if key in m:
                assert float(page.cells[(defect, key)]) == m[key], (defect, key)  # exact, not rounded
                compared += 1
    assert compared >= 3 * 4  # all, dent, scratch with image and pixel metrics
    numeric = [v for v in metrics["thresholds"].values() if isinstance(v, (int, float))]
    assert sorted(float(v) for v in page.thresholds) == sorted(numeric)
    assert metrics["thresholds"]["rule"] == "quantile"
    text = (report / "report.html").read_text(encoding="utf-8")
    assert "quantile 0.99 of held-out normal training images" in text  # where the thresholds came from
    assert "threshold_quantile" in text and "holdout_fraction" in text  # the run's config


def test_report_is_self_contained(report):
    text = (report / "report.html").read_text(encoding="utf-8")
    page = _parse(report / "report.html")
    assert all(s.startswith("data:image/png;base64,") for s in page.sources), page.sources  # no script src at all
    assert sum(s.startswith("data:image/png;base64,") for s in page.sources) == 3  # good, dent, scratch overlays
    assert not re.search(r"<script[^>]+src=", text) and not re.search(r"<link[^>]+href=", text)
    assert text.count("<script") >= 4 and "Plotly.newPlot" in text and len(text) > 1_000_000  # plotly.js inlined
    assert text.count('id="plot-') == 3


def test_report_curves_are_sklearn_curves_of_the_scored_set():
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8, 0.3, 0.9])
    masks = torch.zeros(6, 8, 8)
    masks[3:, 2:5, 2:5] = 1
    heat = torch.rand(6, 8, 8, generator=g) + 0.5 * masks
    curves = report_curves(ScoredSet(heat, scores, [f"{i}.png" for i in range(6)], labels, masks,
                                     ["good"] * 3 + ["dent"] * 3))
    fpr, tpr = curves["roc"]["image"]
    assert auc(fpr, tpr) == pytest.approx(7 / 9)  # 7 of the 9 (normal, anomalous) pairs ordered right
    ref_fpr, ref_tpr, _ = roc_curve(masks.ravel().numpy(), heat.ravel().numpy())
    np.testing.assert_allclose(curves["roc"]["pixel"], [ref_fpr, ref_tpr])
    precision, recall, _ = precision_recall_curve(labels.numpy(), scores.numpy())
    np.testing.assert_allclose(curves["pr"]["image"], [recall, precision])
    pro_fpr, pro = curves["pro"]["pixel"]
    assert pro_fpr[0] == 0 and pro[0] == 0 and pro_fpr[-1] == 1 and pro[-1] == 1
    assert np.all(np.diff(pro_fpr) >= 0) and np.all(np.diff(pro) >= 0)
    thin = report_curves(ScoredSet(heat, scores, [""] * 6, labels, masks, [""] * 6), max_points=50)
    assert len(thin["roc"]["pixel"][0]) <= 50 and thin["roc"]["pixel"][0][-1] == 1.0


@pytest.mark.browser
def test_report_renders_offline_in_chromium(report):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's Chromium with `make browser-deps`")
    errors: list[str] = []
    blocked: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})

            def route(r):
                if r.request.url.startswith(("file:", "data:")):
                    r.continue_()
                else:
                    blocked.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto((report / "report.html").resolve().as_uri())
            page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot svg.main-svg').length >= 3",
                                   timeout=60_000)
            plots = page.eval_on_selector_all(
                ".js-plotly-plot", "els => els.map(e => [e.id, e.querySelectorAll('svg.main-svg').length, "
                                   "e.querySelectorAll('path.js-line').length])")
            assert sorted(pid for pid, _, _ in plots) == ["plot-pr", "plot-pro", "plot-roc"]
            assert all(svgs >= 1 and lines >= 1 for _, svgs, lines in plots), plots  # each drew its curves
            images = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
            assert len(images) == 3 and all(w > 0 for w in images)  # the overlay PNGs decoded
            (ROOT / "test-artifacts").mkdir(exist_ok=True)
            page.screenshot(path=str(ROOT / "test-artifacts" / "report.png"), full_page=True)
        finally:
            browser.close()
    assert errors == [], errors
    assert blocked == [], blocked  # it asked for nothing beyond the file
