"""Plotly figure builders for the notebooks and the ipywidgets explorers (docs/theory.md, T1-T4).

Every builder returns a ``plotly.graph_objects.Figure`` from plain arrays (NumPy or torch) and computes nothing
from a model itself, except :func:`manifold_figure`, which samples the manifold it is given. Traces carry stable
``name`` s so that :mod:`manifold_ae.viz.widgets` can update them in place inside a ``go.FigureWidget``.

* :func:`manifold_figure`: a toy manifold in 3-D (its base coordinates) with normal rays, the part of each ray
  beyond the reach drawn in red (T1: π(p + tν) = p only for t < τ).
* :func:`field_figure`: the reconstruction field ``r(x) − x`` on a 2-D grid with the curve (T4).
* :func:`spectrum_figure`: eigenvalues of linear maps against the shrinkage curve ``λ/(λ + σ²)`` (T3).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import plotly.graph_objects as go
import torch

from manifold_ae.checks import as_array, check_int, check_positive

__all__ = ["segments", "manifold_figure", "field_figure", "spectrum_figure", "RAY_INSIDE", "RAY_BEYOND"]

RAY_INSIDE = "normal ray, t < reach"
RAY_BEYOND = "normal ray, t > reach"




def segments(start: Any, end: Any) -> tuple[np.ndarray, ...]:
    """Coordinates of line segments start[i] -> end[i] as one trace, segments separated by NaN.

    Parameters
    ----------
    start, end : (S, k) array-like

    Returns
    -------
    k arrays of shape (3 S,): x, y (, z) with the pattern start, end, NaN.
    """
    a = as_array(start, "start", ndim=2)
    b = as_array(end, "end", ndim=2)
    if a.shape != b.shape:
        raise ValueError(f"start and end must have the same shape (S, k), got {a.shape} and {b.shape}")
    stacked = np.stack([a, b, np.full_like(a, np.nan)], axis=1)  # (S, 3, k)
    return tuple(stacked[:, :, j].ravel() for j in range(a.shape[1]))


def _pad3(y: np.ndarray) -> np.ndarray:
    """Base coordinates (B, m) shown in 3-D: first three columns, zero-padded when m < 3."""
    out = np.zeros((y.shape[0], 3))
    k = min(3, y.shape[1])
    out[:, :k] = y[:, :k]
    return out


def manifold_figure(manifold: Any, *, num: int = 1500, rays: int = 40, ray_length: float = 0.9, seed: int = 0,
                    title: str | None = None) -> go.Figure:
    """A manifold in its base coordinates (3-D) with normal rays of length ``ray_length · reach`` (T1).

    Parameters
    ----------
    manifold : manifold_ae.manifolds.Manifold
        Shown through its base coordinates ``Qᵀ(x − c)`` (the first three when the base space is R^4).
    num : int, default 1500
        Sample size drawn as dots.
    rays : int, default 40
        Number of normal rays (foot points sampled with ``sample_normal_ray``, normals inside the base space).
    ray_length : float, default 0.9
        Ray length as a multiple of the reach (> 0). Ray parts with t < reach are blue, beyond it red.
    seed : int, default 0

    Returns
    -------
    go.Figure with traces named ``"manifold"``, :data:`RAY_INSIDE`, :data:`RAY_BEYOND`.
    """
    num = check_int(num, "num", minimum=1)
    rays = check_int(rays, "rays", minimum=1)
    ray_length = check_positive(ray_length, "ray_length")
    gen = torch.Generator().manual_seed(seed)
    points, _ = manifold.sample(num, generator=gen)                                  # (num, n)
    base = lambda x: (x - manifold.centre) @ manifold.Q                                 # noqa: E731 (n) -> (m)
    ray = manifold.sample_normal_ray(rays, fraction=0.5, normal="inside", generator=gen)
    scale = manifold.reach if math.isfinite(manifold.reach) else 1.0
    p = _pad3(as_array(base(ray.p), "p"))                                              # (rays, 3)
    nu = _pad3(as_array(ray.nu @ manifold.Q, "nu"))                                    # (rays, 3)
    inside_end = p + min(ray_length, 1.0) * scale * nu
    fig = go.Figure()
    xyz = _pad3(as_array(base(points), "points"))
    fig.add_trace(go.Scatter3d(x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2], mode="markers", name="manifold",
                               marker={"size": 1.6, "color": xyz[:, 2], "colorscale": "Viridis", "opacity": 0.6}))
    sx, sy, sz = segments(p, inside_end)
    fig.add_trace(go.Scatter3d(x=sx, y=sy, z=sz, mode="lines", name=RAY_INSIDE, line={"color": "royalblue"}))
    bx, by, bz = segments(inside_end, p + ray_length * scale * nu) if ray_length > 1 else ([], [], [])
    fig.add_trace(go.Scatter3d(x=bx, y=by, z=bz, mode="lines", name=RAY_BEYOND, line={"color": "crimson"}))
    fig.update_layout(title=title or f"{manifold.name}: reach {manifold.reach:.4g}, rays of {ray_length:g} × reach",
                      scene={"aspectmode": "data"}, margin={"l": 0, "r": 0, "t": 40, "b": 0}, height=480,
                      legend={"orientation": "h"})
    return fig


def field_figure(grid: Any, arrows: Mapping[str, Any], *, curve: Any, samples: Any | None = None,
                 title: str = "", extent: float | None = None) -> go.Figure:
    """The field ``r(x) − x`` of one or more maps as arrows on a 2-D grid, with the curve drawn (T4).

    Parameters
    ----------
    grid : (G, 2) array-like
        Arrow tails (plane coordinates).
    arrows : mapping label -> (G, 2) array-like
        ``r(x) − x`` for each map; one line trace per label (named by the label).
    curve : (K, 2) array-like
        Points along the manifold, drawn as a line (trace ``"manifold"``).
    samples : (S, 2) array-like, optional
        Training samples, faint dots (trace ``"samples"``).
    extent : float, optional
        Half-width of the square view.
    """
    g = as_array(grid, "grid", ndim=2)
    c = as_array(curve, "curve", ndim=2)
    if g.shape[1] != 2 or c.shape[1] != 2:
        raise ValueError(f"grid and curve must have shape (., 2), got {g.shape} and {c.shape}")
    fig = go.Figure()
    if samples is not None:
        s = as_array(samples, "samples", ndim=2)
        fig.add_trace(go.Scatter(x=s[:, 0], y=s[:, 1], mode="markers", name="samples",
                                 marker={"size": 2, "color": "lightgray"}))
    fig.add_trace(go.Scatter(x=c[:, 0], y=c[:, 1], mode="lines", name="manifold", line={"color": "crimson"}))
    fig.add_trace(go.Scatter(x=g[:, 0], y=g[:, 1], mode="markers", name="grid",
                             marker={"size": 3, "color": "gray"}, showlegend=False))
    colours = ["royalblue", "darkorange", "seagreen", "purple"]
    for i, (label, values) in enumerate(arrows.items()):
        a = as_array(values, f"arrows[{label!r}]", ndim=2)
        if a.shape != g.shape:
            raise ValueError(f"arrows[{label!r}] must have the shape of grid {g.shape}, got {a.shape}")
        x, y = segments(g, g + a)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=label, showlegend=bool(np.isfinite(a).any()),
                                 line={"color": colours[i % len(colours)], "width": 1.5}))   # no entry for no arrows
    layout: dict[str, Any] = {"title": title, "height": 520, "width": 560, "margin": {"l": 40, "r": 10, "t": 50, "b": 40},
                              "yaxis": {"scaleanchor": "x", "scaleratio": 1}, "legend": {"orientation": "h"}}
    if extent is not None:
        e = check_positive(extent, "extent")
        layout["xaxis"] = {"range": [-e, e]}
        layout["yaxis"]["range"] = [-e, e]
    fig.update_layout(**layout)
    return fig


def spectrum_figure(eigenvalues: Any, series: Mapping[str, Any], *, sigma: float, title: str = "") -> go.Figure:
    """Eigenvalues of linear maps against the data eigenvalues, with the shrinkage curve ``λ/(λ+σ²)`` (T3).

    Parameters
    ----------
    eigenvalues : (n,) array-like
        Eigenvalues λ_i of Σ = E[x xᵀ] (> 0), the x axis (log scale).
    series : mapping label -> (n,) array-like
        Eigenvalues of each map along the same eigenvectors (one marker trace per label).
    sigma : float
        Noise level of the drawn curve (trace ``"λ/(λ+σ²)"``).
    """
    lam = as_array(eigenvalues, "eigenvalues", ndim=1)
    if not np.all(lam > 0):
        raise ValueError("eigenvalues must be > 0 (log axis)")
    sigma = check_positive(sigma, "sigma")
    grid = np.geomspace(lam.min() / 2, lam.max() * 2, 200)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=grid, y=grid / (grid + sigma ** 2), mode="lines", name="λ/(λ+σ²)",
                             line={"color": "black", "dash": "dash"}))
    for label, values in series.items():
        v = as_array(values, f"series[{label!r}]", ndim=1)
        if v.shape != lam.shape:
            raise ValueError(f"series[{label!r}] must have shape {lam.shape} like eigenvalues, got {v.shape}")
        fig.add_trace(go.Scatter(x=lam, y=v, mode="markers", name=label, marker={"size": 10}))
    fig.update_layout(title=title, xaxis={"type": "log", "title": "data eigenvalue λ"},
                      yaxis={"title": "eigenvalue of the map", "range": [-0.05, 1.1]}, height=460, width=560,
                      legend={"orientation": "h", "yanchor": "top", "y": -0.25})   # below the x-axis title
    return fig

