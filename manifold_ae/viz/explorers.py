"""ipywidgets explorers of notebooks 4-8: contraction (T5), masked projection (T6), ROC (T8), image heat maps.

Like :mod:`manifold_ae.viz.widgets` (whose :class:`~manifold_ae.viz.widgets.Explorer` they extend), each function
returns a VBox of controls, a plotly ``FigureWidget`` and an HTML label, recomputed when a control changes, so
tests drive them from Python. :class:`ArrayExplorer` also keeps the arrays behind the current picture in
``arrays`` (inputs, masks, points), so a test can recompute every shown number independently.

* :func:`contraction_explorer` (T5): singular values of ``J_f(p)`` on M against those of the tangent projector,
  for a reconstruction-contractive AE at the chosen λ (trained on demand, cached), π, or a skewed retraction.
* :func:`masked_projection_explorer` (T6, T7): the masked projection π_S against the full projection π on a
  subspace as the corrupted block grows; per-coordinate localisation AUROC.
* :func:`roc_explorer` (T8): ROC curves of residual scores of trained models against the exact distance, as the
  anomaly distance δ changes.
* :func:`image_explorer` (T8 on images): page through images: input, reconstruction, heat map, ground truth.
* :func:`run_browser`: the same for a training run directory, with the scores and metrics ``evaluate`` wrote.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Callable, Mapping

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
import torch
from plotly.colors import qualitative   # qualitative.D3: the colours of matplotlib's C0..C9 (tab10)
from plotly.subplots import make_subplots
from torch import nn

from manifold_ae.anomaly.metrics import auroc, roc_curve
from manifold_ae.checks import check_choice, check_int, check_positive
from manifold_ae.corruptions.vector import PartialCorruption, block_masks
from manifold_ae.manifolds import Manifold, make_manifold
from manifold_ae.manifolds.subspace import Subspace
from manifold_ae.theory import jacobian, masked_projection_subspace
from manifold_ae.toys.anomaly import coordinate_auroc, off_manifold_task, residual_score
from manifold_ae.toys.contractive import float_map, off_manifold_profile, train_contractive
from manifold_ae.toys.measures import rms
from manifold_ae.toys.retractions import skewed_retraction
from manifold_ae.viz.widgets import Explorer

__all__ = ["ArrayExplorer", "CONTRACTION_MAPS", "trained_contractive", "contraction_explorer",
           "masked_projection_explorer", "roc_explorer", "ORACLE_SCORE", "image_figure", "image_explorer",
           "run_browser", "IMAGE_PANELS"]

CONTRACTION_MAPS = ("reconstruction-contractive AE", "orthogonal projection π", "skewed retraction (s = 0.5)")
ORACLE_SCORE = "oracle dist(x, M)"
IMAGE_PANELS = ("input", "reconstruction", "heat map", "ground truth")
_LEGEND = {"orientation": "h", "yanchor": "top", "y": -0.2}      # below the x-axis title


class ArrayExplorer(Explorer):
    """An :class:`Explorer` that also exposes the arrays behind the current figure.

    Attributes
    ----------
    arrays : dict name -> tensor or array
        Filled in place by every update (e.g. the evaluation points, corrupted inputs and masks), so checks can
        recompute the numbers from the same inputs with independent code.
    """

    def __init__(self, *, arrays: dict[str, Any], **kwargs: Any) -> None:
        self.arrays = arrays
        super().__init__(**kwargs)


def _set(figure: go.FigureWidget, values: Mapping[str, Mapping[str, Any]], title: str) -> None:
    """Set attributes of the traces named in ``values`` (name -> {attribute: value}) and the title, in place."""
    traces = {t.name: t for t in figure.data}
    with figure.batch_update():
        for name, attrs in values.items():
            traces[name].update(attrs)
        figure.layout.title = title


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------ T5: contraction


_CAE_CACHE: dict[tuple, nn.Module] = {}


def trained_contractive(manifold: Manifold, lam: float, *, steps: int = 600, num: int = 8000,
                        seed: int = 0) -> nn.Module:
    """A tanh MLP (2 × 64) trained with the reconstruction-contractive loss λ‖J_f‖_F² on M (T5), cached.

    Training data: ``num`` points of M drawn with seed ``seed``; the model is ``toys.contractive``'s
    (Hutchinson penalty, 1 probe). About 0.3 s per 300 steps on one CPU thread for a circle in R^4.
    """
    lam = check_positive(lam, "lam")
    key = (manifold.name, manifold.ambient_dim, manifold.intrinsic_dim, round(lam, 9), steps, num, seed)
    if key not in _CAE_CACHE:
        x, _ = manifold.sample(num, generator=_generator(seed))                  # (num, n)
        _CAE_CACHE[key] = train_contractive(x, lam=lam, steps=steps, seed=seed + 7).eval()
    return _CAE_CACHE[key]


def _spectrum_figure(k: int, d: int) -> go.FigureWidget:
    idx = np.arange(1, k + 1)
    fig = go.Figure([
        go.Scatter(x=idx, y=np.r_[np.ones(d), np.zeros(k - d)], mode="markers", name="tangent projector P_T",
                   marker={"symbol": "line-ew-open", "size": 26, "color": "black", "line": {"width": 3}}),
        go.Scatter(x=idx, y=idx * np.nan, mode="markers+lines", name="J_f(p): mean singular value",
                   marker={"size": 10, "color": "royalblue"},
                   error_y={"type": "data", "symmetric": False, "array": idx * 0.0, "arrayminus": idx * 0.0}),
    ])
    fig.update_layout(xaxis={"title": "index", "dtick": 1}, yaxis={"title": "singular value", "range": [-0.05, 1.3]},
                      height=400, width=560, legend=_LEGEND)
    return go.FigureWidget(fig)


def contraction_explorer(*, manifold: str = "circle", ambient_dim: int = 4,
                         lams: tuple[float, ...] = (1.0, 0.3, 0.1, 0.03, 0.01), lam: float = 0.1, steps: int = 600,
                         num_eval: int = 200, seed: int = 0) -> ArrayExplorer:
    """Singular values of ``J_f(p)`` on M against the tangent projector's (d ones, then zeros) (T5).

    Controls: ``map`` (one of :data:`CONTRACTION_MAPS`) and ``lam`` (penalty weight of the trained AE, one of
    ``lams``; each is trained once and cached). With ``f(p) = p`` on M, ``‖J_f‖_F² = d + ‖J_f P_N‖_F² ≥ d`` with
    equality iff ``J_f = P_T`` (T5); a contractive AE approaches P_T as λ → 0.

    Numbers (means over ``num_eval`` points p of M, ``arrays["p"]``): ``gap`` = ‖J_f − P_T‖_F, ``frobenius_sq``
    = ‖J_f‖_F², ``excess`` = ‖J_f‖_F² − d, ``normal_part`` = ‖J_f P_N‖_F², ``reconstruction`` = ‖f(p) − p‖, and
    ``off_manifold`` = mean ‖f(p + tν) − p‖ at t = reach/2 (T5d: the loss does not fix f off M).
    """
    check_choice(manifold, "manifold", ("circle", "sphere", "flat_torus", "ring_torus", "helix"))
    if not lams:
        raise ValueError("lams must name at least one penalty weight, got ()")
    lams = tuple(check_positive(v, "lams[...]") for v in lams)
    if lam not in lams:
        raise ValueError(f"lam must be one of lams {list(lams)}, got {lam!r}")
    M = make_manifold(manifold, ambient_dim=check_int(ambient_dim, "ambient_dim", minimum=2), seed=seed)
    d, n = M.intrinsic_dim, M.ambient_dim
    p, _ = M.sample(check_int(num_eval, "num_eval", minimum=1), generator=_generator(seed + 1))   # (P, n)
    P_T = M.tangent_projector(p)                                                                # (P, n, n)
    A = torch.randn(n, n, generator=_generator(seed + 2), dtype=torch.float64)
    skew = skewed_retraction(M, A=A / torch.linalg.matrix_norm(A, ord=2), strength=0.5)
    controls = {"map": widgets.Dropdown(options=list(CONTRACTION_MAPS), value=CONTRACTION_MAPS[0], description="map"),
                "lam": widgets.SelectionSlider(options=list(lams), value=lam, description="λ",
                                               continuous_update=False)}
    label = widgets.HTML()
    figure = _spectrum_figure(n, d)
    arrays: dict[str, Any] = {"p": p}

    def current_map() -> Callable[[torch.Tensor], torch.Tensor]:
        kind = controls["map"].value
        if kind == CONTRACTION_MAPS[1]:
            return M.project
        if kind == CONTRACTION_MAPS[2]:
            return skew
        return float_map(trained_contractive(M, float(controls["lam"].value), steps=steps, seed=seed))

    def update() -> dict[str, float]:
        f = current_map()
        J = jacobian(f, p).detach()                                                 # (P, n, n)
        s = torch.linalg.svdvals(J)                                                 # (P, n) descending
        P_N = torch.eye(n, dtype=torch.float64) - P_T
        with torch.no_grad():
            fp = f(p)
        t = 0.5 * (M.reach if np.isfinite(M.reach) else 1.0)
        frob = (J ** 2).sum((-1, -2))                                               # (P,)
        numbers = {"lam": float(controls["lam"].value), "intrinsic_dim": float(d),
                   "gap": float(torch.linalg.matrix_norm(J - P_T).mean()),          # T5: ‖J_f − P_T‖_F
                   "frobenius_sq": float(frob.mean()), "excess": float((frob - d).mean()),
                   "normal_part": float(((J @ P_N) ** 2).sum((-1, -2)).mean()),
                   "reconstruction": float(torch.linalg.vector_norm(fp - p, dim=-1).mean()),
                   "off_manifold": off_manifold_profile(f, M, (t,), num=200, seed=seed + 3)[0]}
        arrays["J"] = J
        mean = s.mean(0).numpy()
        kind = controls["map"].value
        which = f"{kind}, λ = {numbers['lam']:g}" if kind == CONTRACTION_MAPS[0] else kind
        band = {"array": s.max(0).values.numpy() - mean, "arrayminus": mean - s.min(0).values.numpy()}  # min-max
        _set(figure, {"J_f(p): mean singular value": {"y": mean, "error_y": band}},
             f"{which}: mean ‖J_f − P_T‖_F = {numbers['gap']:.3f}")
        label.value = (f"<b>{html.escape(which)}</b> on the {M.name} in R^{n} (d = {d}): mean ‖J_f − P_T‖_F = "
                       f"<b>{numbers['gap']:.4f}</b>; ‖J_f‖²_F = {numbers['frobenius_sq']:.4f} (d + ‖J_f P_N‖² with "
                       f"‖J_f P_N‖² = {numbers['normal_part']:.4f}); ‖f(p) − p‖ = {numbers['reconstruction']:.4f}; "
                       f"off M at t = {t:.2g}: ‖f(p + tν) − p‖ = {numbers['off_manifold']:.4f}")
        return numbers

    return ArrayExplorer(arrays=arrays, controls=controls, figure=figure, label=label, update=update)


# ------------------------------------------------------------------------------- T6/T7: masked projection


def masked_projection_explorer(manifold: Subspace, *, model: nn.Module | None = None, fill_std: float = 0.5,
                               num: int = 500, seed: int = 0) -> ArrayExplorer:
    """The masked projection π_S(x̂) against the full projection π(x̂) on a subspace, by mask size (T6, T7).

    ``num`` Gaussian points x of the subspace get a cyclic block S of ``mask_size`` coordinates replaced by
    N(0, fill_std²) noise (no other noise). π_S fits the latent to the clean coordinates only, so it returns x
    exactly while ``n − |S| ≥ d`` (generic U); π moves every coordinate. Controls: ``mask_size``, ``sample`` (the
    example drawn). ``model``: an AE trained on this task (e.g. ``toys.selfsupervised.gaussian_task``), drawn too.

    Numbers (RMS over the batch): ``masked_error`` ‖π_S − x‖, ``full_error`` ‖π − x‖, ``gap`` ‖π_S − π‖,
    ``auroc_masked`` / ``auroc_full`` (coordinate AUROC of |x̂ − ·| for finding S, T7), and with a model
    ``model_to_masked``, ``model_to_full``, ``auroc_model``. ``arrays``: ``x``, ``x_hat``, ``mask`` (B, n).
    """
    if not isinstance(manifold, Subspace):
        raise ValueError(f"manifold must be a manifold_ae.manifolds.Subspace, got {type(manifold).__name__}")
    n, d = manifold.ambient_dim, manifold.intrinsic_dim
    if n - d < 1:
        raise ValueError(f"manifold must have ambient_dim > intrinsic_dim to corrupt a coordinate, got n = {n}, "
                         f"d = {d}")
    fill_std = check_positive(fill_std, "fill_std")
    num = check_int(num, "num", minimum=2)
    x, _ = manifold.sample(num, generator=_generator(seed + 1))                    # (B, n)
    controls = {"mask_size": widgets.IntSlider(value=1, min=1, max=min(n - d, n - 1), description="|S|",
                                               continuous_update=False),
                "sample": widgets.IntSlider(value=0, min=0, max=num - 1, description="sample",
                                            continuous_update=False)}
    label = widgets.HTML()
    j = np.arange(n)
    nan = j * np.nan
    figure = go.FigureWidget(go.Figure([
        go.Bar(x=j, y=nan, name="corrupted S", marker={"color": "rgba(220, 60, 60, 0.18)"}, width=1.0),
        go.Scatter(x=j, y=nan, mode="markers", name="clean x", marker={"size": 12, "color": "black"}),
        go.Scatter(x=j, y=nan, mode="markers", name="corrupted x̂",
                   marker={"size": 11, "symbol": "x", "color": "crimson"}),
        go.Scatter(x=j, y=nan, mode="lines+markers", name="masked projection π_S(x̂)", line={"color": "seagreen"}),
        go.Scatter(x=j, y=nan, mode="lines+markers", name="full projection π(x̂)",
                   line={"color": "royalblue", "dash": "dash"}),
        go.Scatter(x=j, y=nan, mode="lines", name="trained model f(x̂)", line={"color": "darkorange", "dash": "dot"}),
    ]))
    figure.update_layout(xaxis={"title": "coordinate", "dtick": 1}, yaxis={"title": "value"}, height=420, width=640,
                         legend=_LEGEND, bargap=0)
    arrays: dict[str, Any] = {"x": x}
    cache: dict[int, tuple[torch.Tensor, ...]] = {}

    def batch(k: int) -> tuple[torch.Tensor, ...]:
        if k not in cache:
            corruption = PartialCorruption(block_masks(n, (k,)), fill_std=fill_std, noise_std=0.0)
            x_hat, mask = corruption(x, _generator(seed + 2))                      # (B, n), (B, n)
            masked = masked_projection_subspace(x_hat, mask, basis=manifold.Q, centre=manifold.centre)  # T6
            full = manifold.project(x_hat)
            fx = None
            if model is not None:
                with torch.no_grad():
                    fx = model(x_hat.float()).double()
            cache[k] = (x_hat, mask, masked, full, fx)
        return cache[k]

    def update() -> dict[str, float]:
        k, i = int(controls["mask_size"].value), int(controls["sample"].value)
        x_hat, mask, masked, full, fx = batch(k)
        arrays.update(x_hat=x_hat, mask=mask)
        # T7: per-coordinate residual |x̂ − g(x̂)| as a detector of the corrupted coordinates
        loc = lambda y: coordinate_auroc(x_hat, y, mask)  # noqa: E731
        numbers = {"mask_size": float(k), "masked_error": rms(masked - x), "full_error": rms(full - x),
                   "gap": rms(masked - full), "auroc_masked": loc(masked), "auroc_full": loc(full)}
        if fx is not None:
            numbers.update(model_to_masked=rms(fx - masked), model_to_full=rms(fx - full), auroc_model=loc(fx))
        top = float(torch.cat([x[i], x_hat[i]]).abs().max()) * 1.15
        _set(figure, {"corrupted S": {"y": 2 * top * mask[i].numpy(), "base": -top * mask[i].numpy()},
                      "clean x": {"y": x[i].numpy()}, "corrupted x̂": {"y": x_hat[i].numpy()},
                      "masked projection π_S(x̂)": {"y": masked[i].numpy()},
                      "full projection π(x̂)": {"y": full[i].numpy()},
                      "trained model f(x̂)": {"y": nan if fx is None else fx[i].numpy()}},
             f"|S| = {k} of n = {n} coordinates corrupted (d = {d}); sample {i}")
        text = (f"<b>|S| = {k}</b>: RMS ‖π_S(x̂) − x‖ = <b>{numbers['masked_error']:.2e}</b>, ‖π(x̂) − x‖ = "
                f"{numbers['full_error']:.3f}, ‖π_S − π‖ = <b>{numbers['gap']:.3f}</b>; coordinate AUROC for S: "
                f"π_S {numbers['auroc_masked']:.3f}, π {numbers['auroc_full']:.3f}")
        if fx is not None:
            text += (f"; model: ‖f − π_S‖ = {numbers['model_to_masked']:.3f}, "
                     f"‖f − π‖ = {numbers['model_to_full']:.3f}, AUROC {numbers['auroc_model']:.3f}")
        label.value = text
        return numbers

    return ArrayExplorer(arrays=arrays, controls=controls, figure=figure, label=label, update=update)


# ---------------------------------------------------------------------------------------------- T8: ROC


def roc_explorer(manifold: Manifold, models: Mapping[str, nn.Module], *,
                 deltas: tuple[float, ...] = (0.01, 0.02, 0.03, 0.05, 0.1, 0.2), delta: float = 0.03,
                 noise_std: float = 0.01, num: int = 500, seed: int = 0) -> ArrayExplorer:
    """ROC curves of each model's residual ``‖x − f(x)‖²`` against the exact distance dist(x, M), by δ (T8).

    For each anomaly distance δ (control ``delta``): ``num`` normal points ``p + η ε`` and ``num`` anomalies
    ``p + δ ν + η ε`` (``toys.anomaly.off_manifold_task``, same seed for every δ). The oracle scores by
    ``manifold.distance``. Numbers: ``delta`` and ``"auroc <label>"`` for :data:`ORACLE_SCORE` and every model;
    ``arrays``: ``x`` (2 num, n), ``labels`` (2 num,) with 1 = anomalous.
    """
    if not deltas:
        raise ValueError("deltas must name at least one anomaly distance, got ()")
    deltas = tuple(check_positive(v, "deltas[...]") for v in deltas)
    if delta not in deltas:
        raise ValueError(f"delta must be one of deltas {list(deltas)}, got {delta!r}")
    if max(deltas) >= manifold.reach:
        raise ValueError(f"deltas must stay below the reach {manifold.reach:.4g} (anomalies at exact distance δ), "
                         f"got max {max(deltas)}")
    noise_std = check_positive(noise_std, "noise_std", allow_zero=True)
    num = check_int(num, "num", minimum=2)
    names = [ORACLE_SCORE, *models]
    controls = {"delta": widgets.SelectionSlider(options=list(deltas), value=delta, description="δ",
                                                 continuous_update=False)}
    label = widgets.HTML()
    figure = go.FigureWidget(go.Figure(
        [go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"color": "lightgray"})]
        + [go.Scatter(x=[], y=[], mode="lines", name=name,   # colour i as viz.anomaly_figures.roc_figure's C{i}
                      line={"color": "black", "dash": "dash", "width": 3} if name == ORACLE_SCORE
                      else {"color": qualitative.D3[i % len(qualitative.D3)]})
           for i, name in enumerate(names)]))
    figure.update_layout(xaxis={"title": "false-positive rate"}, yaxis={"title": "true-positive rate"},
                         height=460, width=620, legend=_LEGEND)
    arrays: dict[str, Any] = {}

    def update() -> dict[str, float]:
        d = float(controls["delta"].value)
        x, labels = off_manifold_task(manifold, num, delta=d, noise_std=noise_std, generator=_generator(seed))
        arrays.update(x=x, labels=labels)
        scores = {ORACLE_SCORE: manifold.distance(x),
                  **{name: residual_score(model, x) for name, model in models.items()}}  # C4: residual = score
        numbers: dict[str, float] = {"delta": d}
        traces = {}
        for name, s in scores.items():
            fpr, tpr, _ = roc_curve(labels, s)
            numbers[f"auroc {name}"] = auroc(labels, s)
            traces[name] = {"x": fpr, "y": tpr}
        _set(figure, traces, f"anomalies at distance δ = {d:g} (noise η = {noise_std:g})")
        label.value = (f"<b>δ = {d:g}</b>: AUROC " + ", ".join(
            f"{html.escape(name)} <b>{numbers[f'auroc {name}']:.3f}</b>" for name in names))
        return numbers

    return ArrayExplorer(arrays=arrays, controls=controls, figure=figure, label=label, update=update)


# ------------------------------------------------------------------------------------------ images (T8)


def _rgb(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1], C in {1, 3} -> (H, W, 3) uint8 for ``go.Image``."""
    x = image.detach().float().clamp(0, 1)
    x = x.expand(3, -1, -1) if x.shape[0] == 1 else x
    return (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def image_figure(size: int, *, vmax: float = 1.0) -> go.FigureWidget:
    """Four panels (:data:`IMAGE_PANELS`): input, reconstruction, heat map (0..vmax, inferno), ground truth."""
    vmax = check_positive(vmax, "vmax")
    blank = np.zeros((size, size, 3), dtype=np.uint8)
    zeros = np.zeros((size, size))
    fig = make_subplots(rows=1, cols=4, subplot_titles=IMAGE_PANELS, horizontal_spacing=0.02)
    fig.add_trace(go.Image(z=blank, name="input"), row=1, col=1)
    fig.add_trace(go.Image(z=blank, name="reconstruction"), row=1, col=2)
    fig.add_trace(go.Heatmap(z=zeros, name="heat map", colorscale="Inferno", zmin=0, zmax=vmax,
                             colorbar={"len": 0.8, "thickness": 10}), row=1, col=3)
    fig.add_trace(go.Heatmap(z=zeros, name="ground truth", colorscale="Greys", reversescale=True, zmin=0, zmax=1,
                             showscale=False), row=1, col=4)
    for col in (3, 4):
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{col}", row=1, col=col)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(height=300, width=980, margin={"l": 10, "r": 10, "t": 60, "b": 10})
    return go.FigureWidget(fig)


def _image_numbers(out: Any, mask: torch.Tensor | None, clean: torch.Tensor | None) -> dict[str, float]:
    """Score, and when a mask/clean image is known: pixel AUROC and how much of the defect f removed."""
    heat = out.heatmap[0]                                                                    # (H, W)
    numbers = {"score": float(out.score[0]), "heat_max": float(heat.max())}
    if mask is not None:
        m = mask.reshape(heat.shape) > 0.5
        numbers["defect_pixels"] = float(m.sum())
        if 0 < int(m.sum()) < m.numel():
            numbers["pixel_auroc"] = auroc(m.flatten(), heat.flatten())
            if clean is not None:  # T7 at image scale: ‖f(x) − clean‖² vs ‖x − clean‖² on the defect
                before = (out.image[0] - clean).square().sum(0)[m].sum()
                after = (out.reconstruction[0] - clean).square().sum(0)[m].sum()
                numbers["defect_removed"] = float(1 - after / before)
    return numbers


def image_explorer(pipeline: Any, images: torch.Tensor, *, masks: torch.Tensor | None = None,
                   clean: torch.Tensor | None = None, titles: list[str] | None = None,
                   vmax: float | None = None) -> ArrayExplorer:
    """Page through images with a trained model: input, reconstruction, heat map, ground truth (T8).

    Parameters
    ----------
    pipeline : manifold_ae.images.pipeline.Pipeline
        Model plus the scoring path (residual map, Gaussian smoothing, image score).
    images : (N, C, H, W) tensor in [0, 1]
    masks : (N, 1, H, W) or (N, H, W) tensor, optional
        Ground-truth defect masks (numbers gain ``pixel_auroc`` for defective images).
    clean : (N, C, H, W) tensor, optional
        The defect-free versions (synthetic data): ``defect_removed`` = 1 − ‖f(x) − clean‖²/‖x − clean‖² on the
        defect, how much of the defect the model projects away.
    titles : list of N str, optional
    vmax : float, optional
        Top of the heat-map colour scale (default: the largest heat-map value of the first 32 images).

    Numbers: ``index``, ``score``, ``heat_max`` and the optional ones above; ``arrays``: ``image`` (C, H, W).
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"images must be a tensor of shape (N, C, H, W) with N >= 1, got "
                         f"{getattr(images, 'shape', type(images).__name__)}")
    num = images.shape[0]
    for name, value in (("masks", masks), ("clean", clean), ("titles", titles)):
        if value is not None and len(value) != num:
            raise ValueError(f"{name} must have one entry per image ({num}), got {len(value)}")
    if vmax is None:
        vmax = float(pipeline(images[:32]).heatmap.max()) or 1.0
    controls = {"index": widgets.IntSlider(value=0, min=0, max=num - 1, description="image",
                                           continuous_update=False)}
    label = widgets.HTML()
    figure = image_figure(images.shape[-1], vmax=vmax)
    arrays: dict[str, Any] = {}

    def update() -> dict[str, float]:
        i = int(controls["index"].value)
        out = pipeline(images[i:i + 1])
        mask = None if masks is None else masks[i].reshape(images.shape[-2:]).float()
        numbers = {"index": float(i), **_image_numbers(out, mask, None if clean is None else clean[i])}
        arrays["image"] = images[i]
        name = titles[i] if titles is not None else f"image {i}"
        _set(figure, {"input": {"z": _rgb(out.image[0])}, "reconstruction": {"z": _rgb(out.reconstruction[0])},
                      "heat map": {"z": out.heatmap[0].numpy()},
                      "ground truth": {"z": (mask if mask is not None else out.heatmap[0] * 0).numpy()}},
             f"{name}: score {numbers['score']:.4g}")
        text = f"<b>{html.escape(name)}</b>: image score (max of the heat map) <b>{numbers['score']:.4g}</b>"
        if "pixel_auroc" in numbers:
            text += f"; pixel AUROC of the heat map {numbers['pixel_auroc']:.3f}"
        if "defect_removed" in numbers:
            text += f"; the model removed {numbers['defect_removed']:.1%} of the defect (‖f(x) − clean‖² on it)"
        label.value = text
        return numbers

    return ArrayExplorer(arrays=arrays, controls=controls, figure=figure, label=label, update=update)


def run_browser(run_dir: str | Path, *, eval_dir: str | Path | None = None, device: str = "cpu") -> ArrayExplorer:
    """Browse a training run: the test images through its checkpoint, with the outputs of ``evaluate`` (T8).

    Parameters
    ----------
    run_dir : path
        A run directory of ``manifold-ae train`` (holding ``manifold_ae.images.config.CHECKPOINT_NAME``).
    eval_dir : path, optional
        Where ``manifold-ae evaluate`` wrote ``metrics.json`` and ``scores.json`` (default ``run_dir/eval``).
    device : str

    Controls: ``defect`` (``all``, ``good`` or a defect class) and ``index`` inside that class. Numbers:
    ``score`` (recomputed by the checkpoint's pipeline), ``stored_score`` (scores.json), ``threshold`` (image
    threshold from held-out normal images; nan without one), ``anomalous`` (1/0), ``label``, ``pixel_auroc`` for
    a defective image, and the class metrics ``image_auroc``, ``pixel_auroc_class``, ``aupro`` of metrics.json.
    ``arrays``: ``path`` (str) and ``image`` (C, H, W).
    """
    from manifold_ae.images.pipeline import Pipeline, build_datasets

    run_dir = Path(run_dir)
    eval_dir = run_dir / "eval" if eval_dir is None else Path(eval_dir)
    files = {name: eval_dir / f"{name}.json" for name in ("metrics", "scores")}
    for name, path in files.items():
        if not path.is_file():
            raise ValueError(f"eval_dir {eval_dir} has no {name}.json; run `manifold-ae evaluate {run_dir} "
                             f"--out {eval_dir}` first")
    metrics = json.loads(files["metrics"].read_text(encoding="utf-8"))
    stored = {r["path"]: r for r in json.loads(files["scores"].read_text(encoding="utf-8"))["images"]}
    pipe = Pipeline.from_checkpoint(run_dir, device=device)
    assert pipe.config is not None
    test = build_datasets(pipe.config.data).test
    if test is None:
        raise ValueError(f"the run {run_dir} has no test set (data.dataset = {pipe.config.data.dataset!r})")
    items = [test[i] for i in range(len(test))]
    classes = ["all", *sorted({str(it["defect"]) for it in items}, key=lambda c: (c != "good", c))]
    thresholds = metrics.get("thresholds") or {}
    vmax = max(float(pipe(torch.stack([it["image"] for it in items[i:i + 32]])).heatmap.max())   # no saturation
               for i in range(0, len(items), 32)) or 1.0
    controls = {"defect": widgets.Dropdown(options=classes, value="all", description="class"),
                "index": widgets.IntSlider(value=0, min=0, max=len(items) - 1, description="image",
                                           continuous_update=False)}
    label = widgets.HTML()
    figure = image_figure(items[0]["image"].shape[-1], vmax=vmax)
    arrays: dict[str, Any] = {}

    def selection() -> list[dict[str, Any]]:
        c = controls["defect"].value
        return items if c == "all" else [it for it in items if it["defect"] == c]

    def on_class(_change: Any) -> None:  # runs before the Explorer's own refresh (registered first)
        controls["index"].max = len(selection()) - 1

    controls["defect"].observe(on_class, names="value")

    def update() -> dict[str, float]:
        chosen = selection()
        it = chosen[min(int(controls["index"].value), len(chosen) - 1)]
        out = pipe(it["image"][None])
        mask = it["mask"].reshape(out.heatmap.shape[1:])
        numbers = {"index": float(controls["index"].value), "label": float(it["label"]),
                   **_image_numbers(out, mask if it["label"] == 1 else None, None)}
        record = stored.get(str(it["path"]), {})
        numbers["stored_score"] = float(record.get("score", np.nan))
        numbers["threshold"] = float(thresholds.get("image", np.nan))
        thr = numbers["threshold"]  # NaN when the run stored no threshold: then there is no verdict
        numbers["anomalous"] = float(numbers["score"] >= thr) if np.isfinite(thr) else np.nan
        group = metrics["metrics"].get(controls["defect"].value if controls["defect"].value != "good" else "all",
                                       metrics["metrics"]["all"])
        numbers.update(image_auroc=float(group.get("image_auroc", np.nan)),
                       pixel_auroc_class=float(group.get("pixel_auroc", np.nan)),
                       aupro=float(group.get("aupro", np.nan)))
        arrays.update(path=str(it["path"]), image=it["image"])
        name = Path(it["path"]).name
        _set(figure, {"input": {"z": _rgb(out.image[0])}, "reconstruction": {"z": _rgb(out.reconstruction[0])},
                      "heat map": {"z": out.heatmap[0].numpy()}, "ground truth": {"z": mask.numpy()}},
             f"{it['defect']}/{name}: score {numbers['score']:.4g}")
        verdict = ("no threshold" if np.isnan(numbers["anomalous"])
                   else "anomalous" if numbers["anomalous"] else "normal")
        text = (f"<b>{html.escape(str(it['defect']))}/{html.escape(name)}</b> ({len(chosen)} in this class): score "
                f"<b>{numbers['score']:.4g}</b> (scores.json {numbers['stored_score']:.4g}), threshold "
                f"{numbers['threshold']:.4g} → <b>{verdict}</b>")
        if "pixel_auroc" in numbers:
            text += f"; pixel AUROC {numbers['pixel_auroc']:.3f}"
        c = controls["defect"].value
        scope = (f"class <b>{html.escape(c)}</b> (metrics.json, against all good images)" if c not in ("all", "good")
                 else "all test images (metrics.json)")
        text += (f"<br>{scope}: "
                 f"image AUROC {numbers['image_auroc']:.3f}, pixel AUROC {numbers['pixel_auroc_class']:.3f}, "
                 f"AUPRO@0.3 {numbers['aupro']:.3f}")
        label.value = text
        return numbers

    return ArrayExplorer(arrays=arrays, controls=controls, figure=figure, label=label, update=update)
