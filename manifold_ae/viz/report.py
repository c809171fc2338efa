"""``report.html``: one self-contained page per evaluation that opens offline in any browser (T8).

It holds the per-class metrics table, the ROC, PR and PRO curves (plotly, its script inlined once), the overlay
grids (PNGs as base64 data URIs), the thresholds and where they came from, and the run's config. Nothing is
fetched from the network: no ``<script src=...>``, no linked stylesheet, no remote image.

Curves are computed from the scored test set ``evaluate`` reports on: ROC and PR with
:func:`sklearn.metrics.roc_curve` and :func:`sklearn.metrics.precision_recall_curve` (image scores against image
labels, heat-map pixels against mask pixels), PRO with :func:`manifold_ae.anomaly.metrics.pro_curve`. Curves with
more than ``max_points`` vertices are drawn through an evenly spaced subset of them (first and last kept); the
table's numbers are the exact metrics of ``metrics.json``.
"""
from __future__ import annotations

import base64
import html
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from manifold_ae.files import write_text

__all__ = ["write_report", "report_curves", "report_html"]

_STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #bbb;padding:.2em .6em;text-align:right}th{background:#eee}td.name{text-align:left}
img{max-width:100%;border:1px solid #ccc}.plots{display:flex;flex-wrap:wrap;gap:1em}.note{color:#555}"""


def _thin(*arrays: np.ndarray, max_points: int) -> tuple[list[float], ...]:
    """The same evenly spaced subset (first and last kept) of equally long curves, as lists for plotly."""
    n = arrays[0].size
    keep = np.unique(np.linspace(0, n - 1, max_points).round().astype(int)) if n > max_points else np.arange(n)
    return tuple(np.asarray(a, dtype=np.float64)[keep].tolist() for a in arrays)


def report_curves(scored: Any, *, max_points: int = 2000) -> dict[str, dict[str, Any]]:
    """ROC, PR and PRO curves of a labelled scored set (``ScoredSet`` of :mod:`manifold_ae.images.pipeline`).

    Returns
    -------
    ``{"roc": {"image": (fpr, tpr), "pixel": (fpr, tpr)}, "pr": {"image": (recall, precision), "pixel": ...},
    "pro": {"pixel": (fpr, pro)}}``; the pixel curves are left out when no mask has a defect pixel.
    """
    from sklearn.metrics import precision_recall_curve, roc_curve

    from manifold_ae.anomaly.metrics import pro_curve

    if scored.labels is None or scored.masks is None:
        raise ValueError("report_curves needs a labelled scored set (labels and masks), got one without")
    labels = scored.labels.numpy().astype(int)  # (N,)
    scores = scored.scores.double().numpy()  # (N,)
    curves: dict[str, dict[str, Any]] = {"roc": {}, "pr": {}, "pro": {}}
    fpr, tpr, _ = roc_curve(labels, scores)
    curves["roc"]["image"] = _thin(fpr, tpr, max_points=max_points)
    precision, recall, _ = precision_recall_curve(labels, scores)
    curves["pr"]["image"] = _thin(recall, precision, max_points=max_points)
    masks = scored.masks.numpy() > 0.5  # (N, H, W)
    if masks.any():
        heat = scored.heatmaps.double().numpy()  # (N, H, W)
        fpr, tpr, _ = roc_curve(masks.ravel(), heat.ravel())
        curves["roc"]["pixel"] = _thin(fpr, tpr, max_points=max_points)
        precision, recall, _ = precision_recall_curve(masks.ravel(), heat.ravel())
        curves["pr"]["pixel"] = _thin(recall, precision, max_points=max_points)
        fpr, pro, _ = pro_curve(masks, heat)
        curves["pro"]["pixel"] = _thin(fpr, pro, max_points=max_points)
    return curves


def _figures(curves: Mapping[str, Mapping[str, Any]], *, fpr_limit: float) -> list[tuple[str, Any]]:
    import plotly.graph_objects as go

    axes = {"roc": ("false positive rate", "true positive rate", "ROC"),
            "pr": ("recall", "precision", "precision-recall"),
            "pro": ("false positive rate (defect-free pixels)", "per-region overlap", "PRO")}
    figures = []
    for kind, (x_title, y_title, title) in axes.items():
        fig = go.Figure()
        for level, (x, y) in curves.get(kind, {}).items():
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=level))
        if kind == "roc":
            fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance",
                                     line={"dash": "dot", "color": "grey"}))
        if kind == "pro":
            fig.add_vline(x=fpr_limit, line_dash="dash", line_color="grey",
                          annotation_text=f"AUPRO limit {fpr_limit}")
        fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, width=460, height=400,
                          margin={"l": 60, "r": 20, "t": 50, "b": 50}, xaxis_range=[0, 1], yaxis_range=[0, 1.02])
        figures.append((kind, fig))
    return figures


def _cell(value: Any) -> str:
    """A metric cell: shown in % with one decimal, the exact value in ``data-value``; missing or NaN as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '<td data-value="">–</td>'
    return f'<td data-value="{float(value)!r}">{100 * float(value):.1f}</td>'


def _metrics_table(category: str, metrics: Mapping[str, Mapping[str, Any]],
                   columns: Sequence[tuple[str, str]]) -> str:
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title in columns)
    rows = [f"<tr><th>category</th><th>defect</th><th>good / defect images</th>{head}</tr>"]
    for defect, m in metrics.items():
        cells = "".join(_cell(m.get(key)).replace("<td ", f'<td data-key="{key}" ', 1) for key, _ in columns)
        rows.append(f'<tr data-defect="{html.escape(defect)}"><td class="name">{html.escape(category)}</td>'
                    f'<td class="name">{html.escape(defect)}</td><td>{m["n_good"]} / {m["n_defect"]}</td>{cells}</tr>')
    return '<table id="metrics">' + "".join(rows) + "</table>"


def _thresholds_section(thresholds: Mapping[str, Any] | None, protocol: Mapping[str, Any]) -> str:
    origin = html.escape(str(protocol.get("thresholds", "")))
    if not thresholds:
        return f'<p id="thresholds">No thresholds: none were set for this evaluation. <span class="note">{origin}</span></p>'
    rows = "".join(f'<tr><td class="name">{html.escape(k)}</td><td data-value="{float(v)!r}">{float(v):.6g}</td></tr>'
                   if isinstance(v, (int, float)) else
                   f'<tr><td class="name">{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>'
                   for k, v in thresholds.items())
    return (f'<table id="thresholds"><tr><th>key</th><th>value</th></tr>{rows}</table>'
            f'<p class="note">Where they came from: {origin}</p>')


def _config_table(config: Mapping[str, Any], protocol: Mapping[str, Any]) -> str:
    rows = [f'<tr><td class="name">protocol</td><td class="name">{html.escape(k)}</td>'
            f'<td class="name">{html.escape(str(v))}</td></tr>' for k, v in protocol.items()]
    for section, values in config.items():
        items = values.items() if isinstance(values, Mapping) else [("", values)]
        rows += [f'<tr><td class="name">{html.escape(section)}</td><td class="name">{html.escape(k)}</td>'
                 f'<td class="name">{html.escape(repr(v))}</td></tr>' for k, v in items]
    return '<table id="config"><tr><th>section</th><th>key</th><th>value</th></tr>' + "".join(rows) + "</table>"


def _overlay_images(overlays: Sequence[str | os.PathLike]) -> str:
    parts = []
    for path in overlays:
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        name = html.escape(Path(path).name)
        parts.append(f'<figure><figcaption>{name}</figcaption><img alt="{name}" '
                     f'src="data:image/png;base64,{data}"></figure>')
    return "".join(parts) if parts else '<p class="note">No overlays were written (--overlays=0).</p>'


def report_html(result: Mapping[str, Any], curves: Mapping[str, Mapping[str, Any]], *,
                columns: Sequence[tuple[str, str]], fpr_limit: float = 0.3) -> str:
    """The page as one string; ``result`` is what ``evaluate`` writes to ``metrics.json`` (+ ``overlays``)."""
    import plotly.io as pio

    plots = []
    for i, (kind, fig) in enumerate(_figures(curves, fpr_limit=fpr_limit)):
        plots.append(pio.to_html(fig, include_plotlyjs=i == 0, full_html=False, div_id=f"plot-{kind}",
                                 config={"displaylogo": False}))
    category = str(result["category"])
    title = html.escape(f"manifold-ae evaluate: {category}")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{title}</title>",
        f"<style>{_STYLE}</style></head><body>", f"<h1>{title}</h1>",
        f'<p class="note">checkpoint {html.escape(str(result.get("checkpoint")))}, step {result.get("step")}; '
        f'test set: {html.escape(str(result.get("protocol", {}).get("test_set", "")))}</p>',
        "<h2>Metrics per defect class</h2>",
        '<p class="note">In %; each defect class is scored against all good test images.</p>',
        _metrics_table(category, result["metrics"], columns),
        "<h2>Curves</h2>", f'<div class="plots">{"".join(plots)}</div>',
        "<h2>Thresholds</h2>", _thresholds_section(result.get("thresholds"), result.get("protocol", {})),
        "<h2>Overlays</h2>", _overlay_images(result.get("overlays", [])),
        "<h2>Run config</h2>", _config_table(result.get("config", {}), result.get("protocol", {})),
        "</body></html>", ""])


def write_report(path: str | os.PathLike, result: Mapping[str, Any], scored: Any, *,
                 columns: Sequence[tuple[str, str]], fpr_limit: float = 0.3, max_points: int = 2000) -> Path:
    """Write ``report.html`` atomically (temporary file, then rename) and return its path.

    Parameters
    ----------
    path : path-like
        Output file.
    result : mapping
        ``evaluate``'s result: ``category``, ``metrics``, ``thresholds``, ``protocol``, ``config``, optionally
        ``checkpoint``, ``step`` and ``overlays`` (PNG paths, embedded as data URIs).
    scored : ScoredSet
        The labelled test set the metrics were computed on (its curves are drawn).
    columns : sequence of (metric key, column title)
        The table's metric columns (``evaluate.TABLE_COLUMNS``).
    """
    curves = report_curves(scored, max_points=max_points)
    return write_text(path, report_html(result, curves, columns=columns, fpr_limit=fpr_limit))
