"""Matplotlib figure builders for the claim checks (docs/theory.md, T2-T5) and the notebooks.

Every builder takes plain arrays (NumPy or torch), returns a :class:`matplotlib.figure.Figure` built without
pyplot (no global state, no backend switch, safe in worker processes) and draws nothing from a model itself,
except :func:`vector_field`, which evaluates the maps it is given on a grid. :func:`save_figure` writes a
figure as PNG under ``out_dir / "figures"`` and returns the path relative to ``out_dir`` that a
``ClaimResult`` lists.

* :func:`rate_plot`: error against a parameter on log-log axes with the fitted slope of each series (the
  limit claims of T3/T4 are stated as rates).
* :func:`vector_field`: the field ``r(x) - x`` of one or more maps on a 2-D grid with the manifold drawn.
* :func:`jacobian_spectra`: singular values of Jacobians against the tangent projector's (``d`` ones, then
  zeros), T3/T5.
* :func:`lambda_sweep`: Jacobian gap and squared Frobenius norm against the penalty weight, T5.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from manifold_ae.checks import as_array, check_int, check_positive
from manifold_ae.theory.diagnostics import loglog_fit
from manifold_ae.files import atomic_write

__all__ = ["save_figure", "rate_plot", "vector_field", "jacobian_spectra", "lambda_sweep"]

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")




def save_figure(fig: Figure, out_dir: Path | str, name: str, *, dpi: int = 110) -> str:
    """Write ``fig`` to ``out_dir/figures/<name>.png`` and return ``"figures/<name>.png"``.

    Parameters
    ----------
    fig : Figure
    out_dir : path
        Report directory; ``figures/`` inside it is created when missing.
    name : str
        File stem made of letters, digits, ``_ . -`` (no directories).
    dpi : int, default 110
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"name must be a file stem of letters, digits and '_.-', got {name!r}")
    folder = Path(out_dir) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / f"{name}.png", lambda handle: fig.savefig(handle, format="png", dpi=dpi), binary=True)
    return f"figures/{name}.png"


def series_arrays(x: np.ndarray, series: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``{label: (k,) array}`` from ``series``, each checked to have the shape of ``x`` (k,)."""
    if not isinstance(series, Mapping) or not series:
        raise ValueError(f"series must be a non-empty mapping naming at least one curve, got {series!r}")
    out = {}
    for label, values in series.items():
        out[label] = as_array(values, f"series[{label!r}]", ndim=1)
        if out[label].shape != x.shape:
            raise ValueError(f"series[{label!r}] must have shape {x.shape} like x ({x.size} values), got "
                             f"{out[label].shape}")
    return out


def rate_plot(x: Any, series: Mapping[str, Any], *, fit: bool | Sequence[str] = True,
              reference_slope: float | None = None, xlabel: str = "sigma", ylabel: str = "error",
              title: str = "", loglog: bool = True, hlines: Mapping[str, float] | None = None) -> Figure:
    """Plot each series against ``x``; on log-log axes, with its fitted slope in the legend.

    Parameters
    ----------
    x : array-like, shape (k,)
    series : mapping label -> array-like, shape (k,)
        Non-positive values are dropped from a log plot and its fit.
    fit : bool or sequence of labels, default True
        Which series get a fitted line (all, none, or the named ones); only on log-log axes.
    reference_slope : float, optional
        Draw a dashed guide of this slope through the first fitted series' first point.
    loglog : bool, default True
        Log axes (otherwise linear, no fits).
    hlines : mapping label -> value, optional
        Horizontal reference lines (targets, floors).
    """
    xs = as_array(x, "x", ndim=1)
    curves = series_arrays(xs, series)
    fitted = set(series) if fit is True else set() if fit is False else set(fit)
    unknown = fitted - set(series)
    if unknown:
        raise ValueError(f"fit names {sorted(unknown)} which are not in series {list(series)}")
    fig = Figure(figsize=(5.2, 3.9), layout="constrained")
    ax = fig.add_subplot()
    guide_at: tuple[float, float] | None = None
    for label, ys in curves.items():
        keep = np.isfinite(ys) & (ys > 0) & (xs > 0) if loglog else np.isfinite(ys)
        text = label
        if loglog and label in fitted and keep.sum() >= 2:
            slope, icpt, _ = loglog_fit(xs[keep], ys[keep])
            text = f"{label} (slope {slope:.2f})"
            grid = np.geomspace(xs[keep].min(), xs[keep].max(), 50)
            ax.plot(grid, np.exp(icpt) * grid ** slope, lw=0.8, alpha=0.6, color="0.4")
            guide_at = guide_at or (float(xs[keep][0]), float(ys[keep][0]))
        ax.plot(xs[keep], ys[keep], "o-", ms=4, label=text)
    if loglog and reference_slope is not None and guide_at is not None:
        grid = np.geomspace(xs[xs > 0].min(), xs.max(), 50)
        ax.plot(grid, guide_at[1] * (grid / guide_at[0]) ** reference_slope, "k--", lw=0.8,
                label=f"slope {reference_slope:g} guide")
    for label, value in (hlines or {}).items():
        ax.axhline(float(value), color="0.3", ls=":", lw=1.0)
        ax.annotate(label, (0.01, float(value)), xycoords=("axes fraction", "data"), fontsize=7,
                    va="bottom", color="0.3")
    if loglog:
        ax.set_xscale("log")
        ax.set_yscale("log")
        if xs.size <= 8 and np.all(xs > 0):  # few points (sigmas, probes): label exactly those
            ax.set_xticks(xs, [f"{v:g}" for v in xs])
            ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def vector_field(fields: Mapping[str, Callable[[np.ndarray], np.ndarray]], *,
                 extent: tuple[float, float, float, float] = (-2.0, 2.0, -2.0, 2.0), grid: int = 21,
                 manifold: Any | None = None, samples: Any | None = None, arrow_scale: float = 1.0,
                 title: str = "") -> Figure:
    """Quiver plots of ``f(x) - x`` on a 2-D grid, one panel per map, with the manifold drawn.

    Parameters
    ----------
    fields : mapping label -> callable
        Each maps grid points ``(G, 2)`` (float64 NumPy) to ``(G, 2)``; the arrow at ``x`` is ``f(x) - x``.
        For a manifold embedded in R^n the caller passes the map restricted to a 2-D slice.
    extent : (xmin, xmax, ymin, ymax)
    grid : int, default 21
        Grid points per axis (G = grid**2).
    manifold : array-like, shape (M, 2), optional
        Points of the manifold in the slice, drawn as a line.
    samples : array-like, shape (S, 2), optional
        Training samples, drawn as faint dots.
    arrow_scale : float, default 1
        Arrows are drawn as ``arrow_scale * (f(x) - x)`` in data units (1: true length).
    """
    if not fields:
        raise ValueError("fields must name at least one map, got an empty mapping")
    grid = check_int(grid, "grid", minimum=2, maximum=200)
    arrow_scale = check_positive(arrow_scale, "arrow_scale")
    x0, x1, y0, y1 = (float(v) for v in extent)
    if not (x0 < x1 and y0 < y1):
        raise ValueError(f"extent must be (xmin, xmax, ymin, ymax) with xmin < xmax and ymin < ymax, got {extent!r}")
    gx, gy = np.meshgrid(np.linspace(x0, x1, grid), np.linspace(y0, y1, grid))
    points = np.stack([gx.ravel(), gy.ravel()], axis=1)  # (G, 2)
    curve = None if manifold is None else as_array(manifold, "manifold", ndim=2)
    dots = None if samples is None else as_array(samples, "samples", ndim=2)
    fig = Figure(figsize=(3.6 * len(fields) + 0.4, 3.8), layout="constrained")
    axes = fig.subplots(1, len(fields), squeeze=False)[0]
    for ax, (label, f) in zip(axes, fields.items()):
        image = as_array(f(points.copy()), f"fields[{label!r}](points)")
        if image.shape != points.shape:
            raise ValueError(f"fields[{label!r}] must map (G, 2) to (G, 2), got output shape {image.shape}")
        arrows = arrow_scale * (image - points)  # (G, 2): r(x) - x, scaled
        if dots is not None:
            ax.plot(dots[:, 0], dots[:, 1], ".", ms=1.5, color="0.7")
        if curve is not None:
            ax.plot(curve[:, 0], curve[:, 1], "-", color="C3", lw=1.5)
        ax.quiver(points[:, 0], points[:, 1], arrows[:, 0], arrows[:, 1], angles="xy", scale_units="xy",
                  scale=1.0, width=0.004, headwidth=4, color="C0")
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_aspect("equal")
        ax.set_title(label, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def jacobian_spectra(spectra: Mapping[str, Any], *, intrinsic_dim: int, title: str = "",
                     ylabel: str = "singular value", references: Mapping[str, Any] | None = None) -> Figure:
    """Sorted singular values of Jacobians against those of the tangent projector P_T (d ones, then zeros).

    Parameters
    ----------
    spectra : mapping label -> array-like, shape (P, k) or (k,)
        Singular values at P points (any order; sorted here), e.g. of ``J_f(p)`` for several maps or
        penalty weights. The mean over points is drawn with a min-max band.
    intrinsic_dim : int
        d, the number of unit singular values of P_T.
    references : mapping label -> array-like, shape (k,), optional
        Exact spectra (e.g. of a closed-form optimum), drawn as black crosses.
    """
    if not spectra:
        raise ValueError("spectra must name at least one set of singular values, got an empty mapping")
    d = check_int(intrinsic_dim, "intrinsic_dim", minimum=0)
    fig = Figure(figsize=(5.2, 3.9), layout="constrained")
    ax = fig.add_subplot()
    k_max = 0
    for label, values in spectra.items():
        s = as_array(values, f"spectra[{label!r}]")
        s = s[None, :] if s.ndim == 1 else s
        if s.ndim != 2:
            raise ValueError(f"spectra[{label!r}] must have shape (P, k) or (k,), got {s.shape}")
        s = -np.sort(-s, axis=1)  # (P, k) descending
        idx = np.arange(1, s.shape[1] + 1)
        k_max = max(k_max, s.shape[1])
        line, = ax.plot(idx, s.mean(axis=0), "o-", ms=4, label=label)
        ax.fill_between(idx, s.min(axis=0), s.max(axis=0), color=line.get_color(), alpha=0.15)
    for i, (label, values) in enumerate((references or {}).items()):
        r = -np.sort(-as_array(values, f"references[{label!r}]", ndim=1))
        ax.plot(np.arange(1, r.size + 1), r, "x", color="k", ms=7 - 2 * (i % 2), label=label)
        k_max = max(k_max, r.size)
    proj = np.r_[np.ones(min(d, k_max)), np.zeros(max(k_max - d, 0))]
    ax.step(np.arange(1, k_max + 1), proj, where="mid", color="k", ls="--", lw=1.0,
            label=f"tangent projector (d = {d})")
    ax.set_xlabel("index")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def lambda_sweep(lams: Any, jacobian_gap: Any, frobenius_sq: Any, *, intrinsic_dim: int,
                 gap_target: float | None = None, extra: Mapping[str, Any] | None = None,
                 title: str = "") -> Figure:
    """Two panels against the penalty weight: ``||J_f(p) - P_T(p)||_F`` and ``||J_f(p)||_F^2`` vs ``d``.

    Parameters
    ----------
    lams : array-like, shape (k,)
        Penalty weights (> 0, log axis).
    jacobian_gap, frobenius_sq : array-like, shape (k,)
        Mean over points on M of the Jacobian gap and of the squared Frobenius norm.
    intrinsic_dim : int
        d, drawn as the lower bound of ``||J_f||_F^2`` for perfect reconstructors (T5).
    gap_target : float, optional
        Threshold line in the gap panel.
    extra : mapping label -> array-like (k,), optional
        More series for the gap panel (e.g. reconstruction error).
    """
    lam = as_array(lams, "lams", ndim=1)
    gap = as_array(jacobian_gap, "jacobian_gap", ndim=1)
    frob = as_array(frobenius_sq, "frobenius_sq", ndim=1)
    if gap.shape != lam.shape or frob.shape != lam.shape:
        raise ValueError(f"jacobian_gap and frobenius_sq must have shape {lam.shape} like lams, "
                         f"got {gap.shape} and {frob.shape}")
    if not np.all(lam > 0):
        raise ValueError("lams must be > 0 (log axis)")
    d = check_int(intrinsic_dim, "intrinsic_dim", minimum=0)
    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    ax_gap, ax_frob = fig.subplots(1, 2)
    ax_gap.plot(lam, gap, "o-", label=r"$\|J_f - P_T\|_F$")
    for label, values in (extra or {}).items():
        ys = as_array(values, f"extra[{label!r}]", ndim=1)
        if ys.shape != lam.shape:
            raise ValueError(f"extra[{label!r}] must have shape {lam.shape} like lams, got {ys.shape}")
        ax_gap.plot(lam, ys, "s--", ms=4, label=label)
    if gap_target is not None:
        ax_gap.axhline(gap_target, color="C3", ls=":", label=f"target {gap_target:g}")
    ax_gap.set_xscale("log")
    ax_gap.set_yscale("log")
    ax_gap.set_xlabel("lambda")
    ax_gap.legend(fontsize=7)
    ax_gap.grid(True, which="both", alpha=0.3)
    ax_frob.plot(lam, frob, "o-", color="C1", label=r"$\|J_f\|_F^2$")
    ax_frob.axhline(d, color="k", ls="--", label=f"d = {d}")
    ax_frob.set_xscale("log")
    ax_frob.set_xlabel("lambda")
    ax_frob.legend(fontsize=7)
    ax_frob.grid(True, which="both", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig

