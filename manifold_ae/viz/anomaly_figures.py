"""Figure builders for T6-T8: masked vs full projection, conservation, residual scores (docs/theory.md).

Like ``manifold_ae.viz.figures``: plain arrays (NumPy or torch) in, a :class:`matplotlib.figure.Figure` out,
built without pyplot; save with ``manifold_ae.viz.figures.save_figure``.

* :func:`gap_vs_mask_figure`: distances between a model, the oracles and π against the mask size (T6).
* :func:`retraction_figure`: a 2-D picture of π against other retractions onto a circle, and the ratio
  ``‖x − ρ(x)‖ / dist(x, M)`` of each retraction over many points (T7).
* :func:`coordinate_residual_figure`: per-coordinate residual heat maps with the corrupted set outlined, and
  the mean residual on and off the mask for each map (T7).
* :func:`roc_figure`: ROC curves of several anomaly scores next to the oracle, one panel per task (T8).
* :func:`auroc_sweep_figure`: AUROC of several scores against a task parameter such as the distance δ (T8).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from manifold_ae.checks import as_array
from manifold_ae.anomaly.metrics import auroc, roc_curve
from manifold_ae.viz.figures import series_arrays

__all__ = ["gap_vs_mask_figure", "retraction_figure", "coordinate_residual_figure", "roc_figure",
           "auroc_sweep_figure"]




def _nonempty(mapping: Mapping[str, Any], name: str) -> None:
    if not isinstance(mapping, Mapping) or not mapping:
        raise ValueError(f"{name} must be a non-empty mapping from label to values, got {mapping!r}")


def gap_vs_mask_figure(sizes: Sequence[float], series: Mapping[str, Any], *, title: str = "") -> Figure:
    """RMS distances against the number of corrupted coordinates (T6).

    Parameters
    ----------
    sizes : (k,) sequence
        Mask sizes |S|.
    series : mapping label -> (k,) values
        One curve per pair of maps, e.g. ``"‖f − π_S‖"`` and ``"‖π_S − π‖"``.
    title : str
    """
    x = as_array(sizes, "sizes", ndim=1)
    curves = series_arrays(x, series)
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for i, (label, y) in enumerate(curves.items()):
        # curves may coincide (a model on its oracle): vary line style and marker so each stays visible
        ax.plot(x, y, marker="osD^v"[i % 5], ls=("-", "--", ":", "-.")[i % 4], label=label)
    ax.set_yscale("log")
    ax.set_xticks(x)
    ax.set_xlabel("corrupted coordinates |S|")
    ax.set_ylabel("RMS distance")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    return fig


def retraction_figure(circle: Any, x: Any, images: Mapping[str, Any], ratios: Mapping[str, Any], *,
                      title: str = "") -> Figure:
    """π against other retractions onto M (T7): a 2-D picture and the distribution of residual ratios.

    Parameters
    ----------
    circle : (K, 2) array
        Points of a planar curve M, drawn as a line.
    x : (B, 2) array
        A few inputs.
    images : mapping label -> (B, 2) array
        Their images under each retraction (include π); each input is joined to each image.
    ratios : mapping label -> (N,) array
        ``‖x − ρ(x)‖ / dist(x, M)`` over many points for each retraction (>= 1 by T7).
    title : str
    """
    c = as_array(circle, "circle", ndim=2)
    pts = as_array(x, "x", ndim=2)
    _nonempty(images, "images")
    _nonempty(ratios, "ratios")
    fig = Figure(figsize=(10.0, 4.2), layout="constrained")
    ax, hist = fig.subplots(1, 2)
    ax.plot(c[:, 0], c[:, 1], color="0.3", lw=1.5, label="M")
    ax.scatter(pts[:, 0], pts[:, 1], color="k", s=14, zorder=3, label="x")
    for i, (label, value) in enumerate(images.items()):
        img = as_array(value, f"images[{label!r}]", ndim=2)
        if img.shape != pts.shape:
            raise ValueError(f"images[{label!r}] must have shape {pts.shape} like x, got {img.shape}")
        color = f"C{i}"
        for a, b in zip(pts, img):
            ax.plot([a[0], b[0]], [a[1], b[1]], color=color, lw=1.0)
        ax.scatter(img[:, 0], img[:, 1], color=color, s=12, label=label, zorder=2)
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title("retractions of a few points", fontsize=9)
    for label, value in ratios.items():
        r = as_array(value, f"ratios[{label!r}]").ravel()
        r = r[np.isfinite(r)]
        excess = np.log10(np.clip(r - 1.0, 1e-12, None))  # ratio − 1 >= 0; π itself would sit at −∞
        hist.hist(excess, bins=np.linspace(-12, 3, 61), histtype="step", lw=1.5, label=label)
    hist.set_xlabel("log10(‖x − ρ(x)‖ / dist(x, M) − 1)   (clipped at −12; π: −∞)")
    hist.set_ylabel("points")
    hist.legend(fontsize=7)
    hist.set_title(title, fontsize=9)
    return fig


def coordinate_residual_figure(residuals: Mapping[str, Any], mask: Any, *, rows: int = 12,
                               title: str = "") -> Figure:
    """Per-coordinate residuals with the corrupted set outlined, and their means on S and off S (T7).

    Parameters
    ----------
    residuals : mapping label -> (B, n) array
        ``|x̂ − f(x̂)|`` for each map f.
    mask : (B, n) array
        1 = corrupted.
    rows : int
        Number of samples shown in the heat maps.
    title : str
    """
    _nonempty(residuals, "residuals")
    m = as_array(mask, "mask", ndim=2)
    rows = int(min(max(1, rows), m.shape[0]))
    fig = Figure(figsize=(3.0 * len(residuals) + 3.5, 4.0), layout="constrained")
    axes = fig.subplots(1, len(residuals) + 1)
    labels, on, off = [], [], []
    vmax = max(float(np.abs(as_array(v, f"residuals[{k!r}]", ndim=2)[:rows]).max()) for k, v in residuals.items())
    for ax, (label, value) in zip(axes[:-1], residuals.items()):
        r = np.abs(as_array(value, f"residuals[{label!r}]", ndim=2))
        if r.shape != m.shape:
            raise ValueError(f"residuals[{label!r}] must have the shape of mask {m.shape}, got {r.shape}")
        ax.imshow(r[:rows], cmap="magma", vmin=0.0, vmax=vmax or 1.0, aspect="auto", interpolation="nearest")
        for i, j in zip(*np.nonzero(m[:rows] > 0.5)):  # outline every corrupted cell
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1.0, 1.0, fill=False, edgecolor="cyan", lw=1.0))
        ax.set_title(label, fontsize=8)
        ax.set_xlabel("coordinate")
        labels.append(label)
        on.append(float(r[m > 0.5].mean()) if (m > 0.5).any() else 0.0)
        off.append(float(r[m <= 0.5].mean()) if (m <= 0.5).any() else 0.0)
    axes[0].set_ylabel("sample")
    bar = axes[-1]
    pos = np.arange(len(labels))
    bar.bar(pos - 0.2, np.maximum(on, 1e-6), width=0.4, label="on S (corrupted)")
    bar.bar(pos + 0.2, np.maximum(off, 1e-6), width=0.4, label="off S (clean)")
    bar.set_xticks(pos, labels, rotation=30, ha="right", fontsize=7)
    bar.set_yscale("log")
    bar.set_ylim(bottom=1e-6)
    bar.set_ylabel("mean |residual| (floor 1e-6)")
    bar.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return fig


def roc_figure(tasks: Mapping[str, tuple[Any, Mapping[str, Any]]], *, oracle: str = "oracle",
               title: str = "") -> Figure:
    """ROC curves of several anomaly scores next to the oracle's, one panel per task (T8).

    Parameters
    ----------
    tasks : mapping task -> (labels (N,), {score label -> (N,) scores})
        Labels 1 = anomalous; scores higher = more anomalous.
    oracle : str
        The score label drawn as a dashed black line.
    title : str
    """
    _nonempty(tasks, "tasks")
    fig = Figure(figsize=(4.6 * len(tasks), 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(tasks)))
    for ax, (task, (labels, scores)) in zip(axes, tasks.items()):
        _nonempty(scores, f"tasks[{task!r}] scores")
        for i, (label, s) in enumerate(scores.items()):
            fpr, tpr, _ = roc_curve(labels, s)
            area = auroc(labels, s)
            style = dict(color="k", ls="--", lw=2.0) if label == oracle else dict(color=f"C{i}", lw=1.3)
            ax.plot(fpr, tpr, label=f"{label} (AUROC {area:.3f})", **style)
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.8)
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate")
        ax.set_title(task, fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=9)
    return fig


def auroc_sweep_figure(values: Sequence[float], series: Mapping[str, Any], *, oracle: str = "oracle",
                       xlabel: str = "anomaly distance δ", title: str = "") -> Figure:
    """AUROC of several scores against a task parameter (e.g. the anomaly distance δ), oracle dashed (T8).

    Parameters
    ----------
    values : (k,) sequence
        The task parameter.
    series : mapping label -> (k,) AUROC values
    oracle : str
        The label drawn as a dashed black line.
    xlabel, title : str
    """
    x = as_array(values, "values", ndim=1)
    curves = series_arrays(x, series)
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for i, (label, y) in enumerate(curves.items()):
        style = dict(color="k", ls="--", lw=2.0) if label == oracle else dict(color=f"C{i}", lw=1.3)
        ax.plot(x, y, marker="o", label=label, **style)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("AUROC")
    ax.set_ylim(0.4, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title, fontsize=9)
    return fig
