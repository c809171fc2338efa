"""Figures and the explorer of notebook 9 (toys to images): the translation manifold, π and π_S as images (T6,
T7 at image scale), and the Filtering AE's ‖J_f‖_F² curve (docs/theory.md, "Filtering AE: occlusion plus noise").

* :func:`image_row`: a row of grey-scale images (plotly heat maps, one colour scale) with titles.
* :func:`projection_gap_explorer`: occlude images of a translation manifold with a k × k square pasted from
  other images of M; show the clean image, the occluded one, π(x̃), π_S(x̃) and a trained model's f(x̃), with the
  RMS gaps of f to π and to π_S, as k (control ``mask side``) grows.
* :func:`frobenius_curve_figure`: ‖J_f‖_F² against the filtering noise σ, with the identity's n and the
  projection's d as reference lines.
"""
from __future__ import annotations

import html
from typing import Any, Mapping, Sequence

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import nn

from manifold_ae.checks import check_int
from manifold_ae.manifolds.translation import TranslationManifold
from manifold_ae.toys.filtering import occlusion
from manifold_ae.toys.measures import rms
from manifold_ae.viz.explorers import ArrayExplorer

__all__ = ["GAP_PANELS", "image_row", "projection_gap_explorer", "frobenius_curve_figure"]

GAP_PANELS = ("clean x", "occluded x̃", "π(x̃)", "π_S(x̃)", "model f(x̃)")
_LEGEND = {"orientation": "h", "yanchor": "top", "y": -0.2}


def image_row(images: Sequence[Any], titles: Sequence[str], *, zrange: tuple[float, float] | None = None,
              title: str = "") -> go.Figure:
    """One row of grey-scale images (each (N, N), any real values) on one colour scale ``zrange`` (default:
    symmetric around 0 at the largest absolute value)."""
    if len(images) != len(titles) or not images:
        raise ValueError(f"images and titles must be non-empty and of equal length, got {len(images)} and "
                         f"{len(titles)}")
    arrays = [np.asarray(torch.as_tensor(im).detach().double().cpu()) for im in images]
    top = max(float(np.abs(a).max()) for a in arrays) or 1.0
    lo, hi = zrange if zrange is not None else (-top, top)
    fig = make_subplots(rows=1, cols=len(arrays), subplot_titles=list(titles), horizontal_spacing=0.02)
    for j, a in enumerate(arrays, start=1):
        fig.add_trace(go.Heatmap(z=a, name=titles[j - 1], colorscale="Greys", reversescale=True, zmin=lo, zmax=hi,
                                 showscale=j == len(arrays), colorbar={"len": 0.8, "thickness": 10}), row=1, col=j)
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{j}", row=1, col=j)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(height=260, width=200 * len(arrays) + 60, margin={"l": 10, "r": 10, "t": 60, "b": 10},
                      title=title)
    return fig


def projection_gap_explorer(M: TranslationManifold, model: nn.Module, *, max_side: int | None = None,
                            side: int = 4, num: int = 16, seed: int = 0) -> ArrayExplorer:
    """A trained image model against the exact projection π and the masked projection π_S, by occlusion size.

    ``num`` clean images x of M get one k × k square (control ``mask side``, k from 1 to ``max_side``, default 3N/4)
    pasted from another image of M (``toys.filtering.occlusion``, no noise, seeded by ``seed`` for every k).
    π(x̃) = ``M.project``; π_S(x̃) = ``M.masked_project`` with the true mask, which returns x itself while the
    kept pixels fix the shift (T6). Control ``sample`` picks the image shown.

    Numbers (RMS over the images): ``side``, ``model_to_masked`` ‖f − π_S‖, ``model_to_full`` ‖f − π‖, ``gap``
    ‖π_S − π‖, ``input_to_masked`` ‖x̃ − π_S‖ (the identity's distance to π_S), ``masked_to_clean`` ‖π_S − x‖.
    ``arrays``: ``x``, ``x_tilde``, ``mask``, ``full``, ``masked``, ``model`` (num, n).
    """
    if not isinstance(M, TranslationManifold):
        raise ValueError(f"M must be a TranslationManifold, got {type(M).__name__}")
    N = M.size
    max_side = check_int(3 * N // 4 if max_side is None else max_side, "max_side", minimum=1, maximum=N - 1)
    side = check_int(side, "side", minimum=1, maximum=max_side)
    num = check_int(num, "num", minimum=1)
    x, _ = M.sample(num, generator=torch.Generator().manual_seed(seed))                 # (num, n)
    controls = {"side": widgets.IntSlider(value=side, min=1, max=max_side, description="mask side",
                                          continuous_update=False),
                "sample": widgets.IntSlider(value=0, min=0, max=num - 1, description="sample",
                                            continuous_update=False)}
    label = widgets.HTML()
    top = float(x.abs().max()) * 1.5
    figure = go.FigureWidget(image_row([np.zeros((N, N))] * len(GAP_PANELS), GAP_PANELS, zrange=(-top, top)))
    arrays: dict[str, Any] = {"x": x}
    cache: dict[int, dict[str, torch.Tensor]] = {}

    def batch(k: int) -> dict[str, torch.Tensor]:
        if k not in cache:
            corruption = occlusion(M, side=(k / N, k / N), noise_sigma=0.0, seed=seed + 1)
            images = x.reshape(num, 1, N, N)
            x_tilde, mask = corruption(images, torch.Generator().manual_seed(seed + 2))    # (num, 1, N, N)
            flat, m = x_tilde.reshape(num, -1), mask.reshape(num, -1)
            with torch.no_grad():
                fx = model(x_tilde.float()).double().reshape(num, -1)
            cache[k] = {"x_tilde": flat, "mask": m, "full": M.project(flat),
                        "masked": M.masked_project(flat, m).point, "model": fx}
        return cache[k]

    def update() -> dict[str, float]:
        k, i = int(controls["side"].value), int(controls["sample"].value)
        b = batch(k)
        arrays.update(b)
        numbers = {"side": float(k), "model_to_masked": rms(b["model"] - b["masked"]),
                   "model_to_full": rms(b["model"] - b["full"]), "gap": rms(b["masked"] - b["full"]),
                   "input_to_masked": rms(b["x_tilde"] - b["masked"]), "masked_to_clean": rms(b["masked"] - x)}
        shown = [x[i], b["x_tilde"][i], b["full"][i], b["masked"][i], b["model"][i]]
        with figure.batch_update():
            for trace, image in zip(figure.data, shown):
                trace.z = image.reshape(N, N).numpy()
            figure.layout.title = f"{k} × {k} px occluded (of {N} × {N}); sample {i}"
        nearer = "π_S" if numbers["model_to_masked"] < numbers["model_to_full"] else "π"
        label.value = (f"<b>mask {k} × {k} px</b>: RMS ‖f − π_S‖ = <b>{numbers['model_to_masked']:.3f}</b>, "
                       f"‖f − π‖ = <b>{numbers['model_to_full']:.3f}</b> (nearer {html.escape(nearer)}); "
                       f"‖π_S − π‖ = {numbers['gap']:.3f}, ‖x̃ − π_S‖ = {numbers['input_to_masked']:.3f}, "
                       f"‖π_S − x‖ = {numbers['masked_to_clean']:.1e}")
        return numbers

    return ArrayExplorer(arrays=arrays, controls=controls, figure=figure, label=label, update=update)


def frobenius_curve_figure(sigmas: Sequence[float], series: Mapping[str, Sequence[float]], *, ambient_dim: int,
                           intrinsic_dim: int, title: str = "") -> go.Figure:
    """‖J_f‖_F² against the filtering noise σ (log y), one line per series, with n (identity) and d (projection)."""
    if not series:
        raise ValueError("series must name at least one curve, got {}")
    s = np.asarray(sigmas, dtype=float)
    fig = go.Figure([go.Scatter(x=s, y=np.asarray(v, dtype=float), mode="lines+markers", name=name)
                     for name, v in series.items()])
    for value, name, dash in ((ambient_dim, f"identity: n = {ambient_dim}", "dot"),
                              (intrinsic_dim, f"projection: d = {intrinsic_dim}", "dash")):
        fig.add_trace(go.Scatter(x=[s.min(), s.max()], y=[value, value], mode="lines", name=name,
                                 line={"color": "gray", "dash": dash}))
    fig.update_layout(xaxis={"title": "noise σ on top of the occlusion"},
                      yaxis={"title": "‖J_f‖²_F on clean inputs", "type": "log"}, height=420, width=640,
                      legend=_LEGEND, title=title)
    return fig
