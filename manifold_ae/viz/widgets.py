"""ipywidgets explorers for the notebooks: sliders and dropdowns, a plotly ``FigureWidget``, measured numbers.

Each explorer is a library function returning an :class:`Explorer` (an ``ipywidgets.VBox``) whose ``controls``
can be set from Python, so tests drive them without a browser: set ``controls["sigma"].value`` and read
``figure.data`` and ``label.value`` (or the same numbers in ``numbers``).

* :func:`reach_explorer` (T1): normal rays of growing length; π(p + tν) = p until t reaches the reach.
* :func:`linear_dae_explorer` (T3): the linear DAE's eigenvalues against the shrinkage λ/(λ+σ²).
* :func:`dae_field_explorer` (T4): the Bayes-optimal denoiser's field on a curve (Alain & Bengio's spiral
  picture) and, on request, a trained MLP DAE; the gap to the orthogonal projection shrinks like σ².

:class:`PlaneCurve` is the toy behind the last one: a curve (unit circle, or scikit-learn's spiral scaled by
:data:`SPIRAL_SCALE`) in a 2-D plane span(Q) of R^n, with its exact projection and its exact posterior mean.
"""
from __future__ import annotations

import dataclasses
import functools
import html
from typing import Any, Callable

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
import torch

from manifold_ae.checks import as_array, check_choice, check_fraction, check_int, check_positive
from manifold_ae.loop import fit
from manifold_ae.manifolds import MANIFOLDS, Circle, Manifold, Spiral, make_manifold
from manifold_ae.models import LinearAutoencoder, MLPAutoencoder
from manifold_ae.objectives import Denoising
from manifold_ae.theory import (linear_dae_optimum, linear_dae_risk, moment_matrix, posterior_mean,
                                posterior_mean_quadrature, shrinkage_eigenvalues)
from manifold_ae.viz.interactive import field_figure, manifold_figure, spectrum_figure

__all__ = ["Explorer", "PlaneCurve", "CURVES", "SPIRAL_SCALE", "plane_curve", "trained_dae", "trained_linear_dae",
           "reach_explorer", "linear_dae_explorer", "dae_field_explorer", "field_arrays", "ORACLE_TRACE",
           "DAE_TRACE"]

CURVES = ("spiral", "circle")
SPIRAL_SCALE = 0.1          # scikit-learn's spiral (radius up to 14) shrunk to the unit box; reach 0.311
ORACLE_TRACE = "Bayes-optimal r*(x) − x"
DAE_TRACE = "trained DAE f(x) − x"


class Explorer(widgets.VBox):
    """A VBox of controls, a figure and an HTML label, recomputed whenever a control's value changes.

    Attributes
    ----------
    controls : dict name -> widget
    figure : go.FigureWidget
    label : widgets.HTML
        The measured numbers as text.
    numbers : dict name -> float
        The same numbers, for tests and the notebooks' final asserts.
    """

    def __init__(self, *, controls: dict[str, widgets.Widget], figure: go.FigureWidget, label: widgets.HTML,
                 update: Callable[[], dict[str, float]], extra: tuple[widgets.Widget, ...] = ()) -> None:
        self.controls = controls
        self.figure = figure
        self.label = label
        self.numbers: dict[str, float] = {}
        self._update = update
        super().__init__([widgets.HBox(list(controls.values())), *extra, label, figure])
        for control in controls.values():
            control.observe(lambda _change: self.refresh(), names="value")
        self.refresh()

    def refresh(self) -> dict[str, float]:
        """Recompute figure, label and ``numbers`` from the current control values."""
        self.numbers = self._update()
        return self.numbers


def _replace_traces(target: go.FigureWidget, source: go.Figure) -> None:
    """Copy the data and title of ``source`` into ``target`` in place (same trace layout)."""
    with target.batch_update():
        for old, new in zip(target.data, source.data):
            old.update(new.to_plotly_json(), overwrite=True)
        target.layout.title = source.layout.title


# ------------------------------------------------------------------------------------------ T1: the reach


def reach_explorer(*, names: tuple[str, ...] = ("circle", "sphere", "ring_torus", "helix", "swiss_roll", "s_curve"),
                   rays: int = 200, seed: int = 0) -> Explorer:
    """Normal rays of length ``ray_length × reach`` on a toy manifold, and how many still project home (T1).

    Numbers: ``recovered``, the fraction of ``rays`` ray end points x = p + tν (t = ray_length·τ) with
    ‖π(x) − p‖ <= 1e-6·τ (1 below the reach, Federer); ``distance_ratio``, the mean of dist(x, M)/t.
    """
    for name in names:
        check_choice(name, "names[...]", MANIFOLDS)
    rays = check_int(rays, "rays", minimum=1)
    controls = {"manifold": widgets.Dropdown(options=list(names), value=names[0], description="manifold"),
                "ray_length": widgets.FloatSlider(value=0.9, min=0.1, max=2.0, step=0.1, description="t / reach",
                                                  continuous_update=False)}
    label = widgets.HTML()
    figure = go.FigureWidget(manifold_figure(make_manifold(names[0]), seed=seed))

    def update() -> dict[str, float]:
        manifold = make_manifold(controls["manifold"].value)
        length = float(controls["ray_length"].value)
        _replace_traces(figure, manifold_figure(manifold, ray_length=length, seed=seed))
        gen = torch.Generator().manual_seed(seed + 1)
        ray = manifold.sample_normal_ray(rays, fraction=0.5, normal="inside", generator=gen)
        t = length * manifold.reach
        x = ray.p + t * ray.nu                                                 # (rays, n)
        info = manifold.project_with_info(x)
        home = torch.linalg.vector_norm(info.point - ray.p, dim=-1) <= 1e-6 * manifold.reach
        numbers = {"ray_length": length, "reach": manifold.reach, "recovered": float(home.double().mean()),
                   "distance_ratio": float((info.distance / t).mean())}
        label.value = (f"<b>{html.escape(manifold.name)}</b>: reach τ = {manifold.reach:.4g}; rays of length "
                       f"t = {length:.2f} τ: π(p + tν) = p for <b>{numbers['recovered']:.1%}</b> of {rays} rays; "
                       f"mean dist(x, M)/t = {numbers['distance_ratio']:.3f}")
        return numbers

    return Explorer(controls=controls, figure=figure, label=label, update=update)


# ------------------------------------------------------------------------------------ T3: linear shrinkage


@functools.lru_cache(maxsize=16)
def _gaussian_data(eigenvalues: tuple[float, ...], num: int, seed: int) -> torch.Tensor:
    """x = U diag(√λ) z with U a seeded random rotation: (num, n) float64."""
    gen = torch.Generator().manual_seed(seed)
    n = len(eigenvalues)
    U, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))  # (n, n)
    z = torch.randn(num, n, generator=gen, dtype=torch.float64)
    return (z * torch.tensor(eigenvalues, dtype=torch.float64).sqrt()) @ U.T


@functools.lru_cache(maxsize=32)
def trained_linear_dae(eigenvalues: tuple[float, ...], sigma: float, *, num: int = 4000, steps: int = 1500,
                       seed: int = 0) -> torch.Tensor:
    """The matrix W (n, n) of a full-rank linear DAE trained on the Gaussian data of ``eigenvalues`` (T3).

    Cached by its arguments; a few hundred Adam steps take about a second.
    """
    x = _gaussian_data(eigenvalues, num, seed).float()
    torch.manual_seed(seed)
    model = LinearAutoencoder(len(eigenvalues), len(eigenvalues))
    fit(Denoising(model, sigma=sigma), x, steps=steps, batch_size=1024, lr=1e-2, seed=seed)
    return model.matrix.detach().double()


def linear_dae_explorer(*, eigenvalues: tuple[float, ...] = (4.0, 2.0, 1.0, 0.5, 0.25, 0.125), num: int = 4000,
                        train: bool = True, steps: int = 1500, seed: int = 0) -> Explorer:
    """σ slider: eigenvalues of the optimal (and a trained) linear DAE against λ/(λ+σ²) (T3).

    Numbers: ``sigma``; ``max_shrinkage_error``, max |eig(W*) − λ̂/(λ̂+σ²)| over the empirical eigenvalues λ̂;
    ``risk_optimum`` and ``risk_identity``, the exact denoising risks of W* and I; with ``train``,
    ``trained_relative_error`` = ‖W − W*‖_F/‖W*‖_F.
    """
    lam = tuple(check_positive(v, "eigenvalues[...]") for v in eigenvalues)
    x = _gaussian_data(lam, check_int(num, "num", minimum=2), seed)
    Sigma, _ = moment_matrix(x)                                                 # (n, n) E[x xᵀ]
    lam_hat, V = torch.linalg.eigh(Sigma)                                        # ascending
    controls = {"sigma": widgets.FloatLogSlider(value=0.5, base=10, min=-1.3, max=0.5, step=0.05,
                                                description="σ", continuous_update=False, readout_format=".3f")}
    label = widgets.HTML()
    figure = go.FigureWidget(spectrum_figure(lam_hat, {"optimal W*": lam_hat / (lam_hat + 0.25),
                                                        "trained linear DAE": lam_hat * np.nan}, sigma=0.5))

    def update() -> dict[str, float]:
        sigma = float(controls["sigma"].value)
        W_star = linear_dae_optimum(Sigma, sigma=sigma)                          # T3: Σ(Σ + σ²I)⁻¹
        eig_star = torch.einsum("ni,nm,mi->i", V, W_star, V)                     # Rayleigh quotients on V
        shrink = shrinkage_eigenvalues(lam_hat, sigma=sigma)                     # λ/(λ + σ²)
        numbers = {"sigma": sigma,
                   "max_shrinkage_error": float((eig_star - shrink).abs().max()),
                   "risk_optimum": float(linear_dae_risk(W_star, Sigma, sigma=sigma)),
                   "risk_identity": float(linear_dae_risk(torch.eye(len(lam), dtype=torch.float64), Sigma,
                                                          sigma=sigma))}
        trained = lam_hat * np.nan
        if train:
            W = trained_linear_dae(lam, sigma, num=num, steps=steps, seed=seed)
            trained = torch.einsum("ni,nm,mi->i", V, W, V)
            numbers["trained_relative_error"] = float(torch.linalg.matrix_norm(W - W_star)
                                                      / torch.linalg.matrix_norm(W_star))
        _replace_traces(figure, spectrum_figure(lam_hat, {"optimal W*": eig_star, "trained linear DAE": trained},
                                                sigma=sigma, title=f"linear DAE, σ = {sigma:.3f}"))
        text = (f"<b>σ = {sigma:.3f}</b>: shrinkage λ/(λ+σ²) = "
                + ", ".join(f"{v:.3f}" for v in shrink.flip(0).tolist())
                + f"; risk of W* = {numbers['risk_optimum']:.4f} vs identity {numbers['risk_identity']:.4f}")
        if train:
            text += f"; trained ‖W − W*‖/‖W*‖ = {numbers['trained_relative_error']:.3f}"
        label.value = text
        return numbers

    return Explorer(controls=controls, figure=figure, label=label, update=update)


# ----------------------------------------------------------------------- T4: the DAE becomes the projection


@dataclasses.dataclass(frozen=True, eq=False)
class PlaneCurve:
    """A curve manifold in the plane span(Q) of R^n and its exact Bayes denoiser (T1, T4): a thin view for widgets.

    ``manifold`` is the curve itself, embedded by ``Q`` (a ``Circle`` or a ``Spiral`` of ``manifold_ae.manifolds``):
    it supplies the projection, the samples and the normal rays. Plane coordinates are ``y = Qᵀ x`` (2,).

    Attributes
    ----------
    name : str
    manifold : Manifold
        The curve in R^n, with ``Q`` (n, 2) and ``reach``.
    Q_perp : (n, n − 2) tensor
        Orthonormal complement of span(Q) (the directions of the test points' orthogonal offsets).
    nodes, weights : (K, 2), (K,) tensors
        Points on the curve (plane coordinates) with arc-length weights: the figure's curve and, where no
        closed form exists, the quadrature of the posterior mean.
    denoiser : callable (x (B, n), sigma) -> (B, n)
        The posterior mean r*(x̃) = E[X | X̃ = x̃] for arc-length-uniform data (``theory``).
    """

    name: str
    manifold: Manifold
    Q_perp: torch.Tensor
    nodes: torch.Tensor
    weights: torch.Tensor
    denoiser: Callable[[torch.Tensor, float], torch.Tensor]

    @property
    def Q(self) -> torch.Tensor:
        return self.manifold.Q

    @property
    def reach(self) -> float:
        return self.manifold.reach

    @property
    def ambient_dim(self) -> int:
        return self.manifold.ambient_dim

    def project_plane(self, y: Any) -> torch.Tensor:
        """Exact nearest point in plane coordinates: (B, 2) -> (B, 2)."""
        y = torch.as_tensor(y, dtype=torch.float64)
        return self.manifold.project(y @ self.Q.T) @ self.Q

    def project(self, x: Any) -> torch.Tensor:
        """Exact nearest point π(x): (B, n) -> (B, n)."""
        return self.manifold.project(torch.as_tensor(x, dtype=torch.float64))

    def posterior_mean(self, x: Any, *, sigma: float) -> torch.Tensor:
        """Bayes-optimal denoiser r*(x̃) = E[X | X̃ = x̃] for arc-length-uniform data: (B, n) -> (B, n) (T4)."""
        sigma = check_positive(sigma, "sigma")
        return self.denoiser(torch.as_tensor(x, dtype=torch.float64), sigma)

    def sample(self, num: int, *, seed: int = 0) -> torch.Tensor:
        """``num`` points uniform in arc length, (num, n)."""
        return self.manifold.sample(num, generator=torch.Generator().manual_seed(seed))[0]

    def test_points(self, num: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Points x within 0.71 reach with known π(x): normal rays in the plane (t <= reach/2) plus an
        orthogonal offset of norm <= reach/2 when n > 2. Returns (x (num, n), π(x) (num, n))."""
        gen = torch.Generator().manual_seed(seed)
        ray = self.manifold.sample_normal_ray(num, fraction=0.5, normal="inside", generator=gen)
        x = ray.x
        if self.Q_perp.shape[1]:
            e = torch.randn(num, self.Q_perp.shape[1], generator=gen, dtype=torch.float64)
            e = e / torch.linalg.vector_norm(e, dim=1, keepdim=True)
            x = x + (0.5 * self.reach * torch.rand(num, 1, generator=gen, dtype=torch.float64)) * (e @ self.Q_perp.T)
        return x, ray.p

    def oracle_gap(self, sigma: float, *, num: int = 400, seed: int = 0) -> float:
        """Mean ‖r*(x) − π(x)‖ over :meth:`test_points`: O(σ²) inside the reach (T4)."""
        x, p = self.test_points(num, seed=seed)
        return float(torch.linalg.vector_norm(self.posterior_mean(x, sigma=sigma) - p, dim=1).mean())


@functools.lru_cache(maxsize=8)
def plane_curve(name: str, *, ambient_dim: int = 2, seed: int = 0, nodes: int = 4000) -> PlaneCurve:
    """The unit circle or the scaled scikit-learn spiral in a seeded random plane of R^ambient_dim (cached)."""
    check_choice(name, "name", CURVES)
    n = check_int(ambient_dim, "ambient_dim", minimum=2)
    gen = torch.Generator().manual_seed(seed)
    basis = torch.eye(n, dtype=torch.float64) if n == 2 else torch.linalg.qr(
        torch.randn(n, n, generator=gen, dtype=torch.float64))[0]                          # (n, n)
    Q = basis[:, :2].contiguous()
    if name == "circle":
        manifold = Circle(radius=1.0, Q=Q)
        theta = torch.linspace(0, 2 * np.pi, nodes + 1, dtype=torch.float64)[:-1, None]
        pts, w = Circle(radius=1.0).from_params(theta), torch.ones(nodes, dtype=torch.float64)

        def denoiser(x: torch.Tensor, sigma: float) -> torch.Tensor:   # von Mises posterior, closed form
            return posterior_mean(manifold, x, sigma=sigma)
    else:
        manifold = Spiral(scale=SPIRAL_SCALE, Q=Q)
        t = torch.linspace(1.5 * np.pi, 4.5 * np.pi, nodes, dtype=torch.float64)
        pts = Spiral(scale=SPIRAL_SCALE).from_params(t[:, None])                            # (K, 2)
        w = torch.sqrt(1 + t * t)                                                          # arc-length density

        def denoiser(x: torch.Tensor, sigma: float) -> torch.Tensor:   # quadrature over nodes spaced far below σ
            return posterior_mean_quadrature(x @ Q, pts, w, sigma=sigma) @ Q.T
    return PlaneCurve(name, manifold, basis[:, 2:].contiguous(), pts, w, denoiser)


_DAE_CACHE: dict[tuple, MLPAutoencoder] = {}


def trained_dae(curve: PlaneCurve, sigma: float, *, steps: int = 1500, num: int = 4096, seed: int = 0,
                callback: Callable[[int, float], None] | None = None) -> MLPAutoencoder:
    """An MLP DAE (softplus, 2 × 128) trained on ``curve`` with noise ``sigma``; cached by its parameters (T4).

    About 4 s for 1500 steps on one CPU thread; the circle is learned well (‖f − r*‖ ≈ 0.02 at σ = 0.2),
    the spiral needs far more capacity and steps than a widget can afford.
    """
    key = (curve.name, curve.ambient_dim, round(float(sigma), 6), steps, num, seed)
    if key not in _DAE_CACHE:
        torch.manual_seed(seed)
        model = MLPAutoencoder(curve.ambient_dim, hidden=(128, 128), activation="softplus")
        x = curve.sample(num, seed=seed).float()
        fit(Denoising(model, sigma=sigma), x, steps=steps, batch_size=256, lr=1e-2, warmup=min(100, steps // 10),
            seed=seed, callback=callback)
        _DAE_CACHE[key] = model
    return _DAE_CACHE[key]


def _field_grid(extent: float, size: int) -> np.ndarray:
    g = np.linspace(-extent, extent, size)
    gx, gy = np.meshgrid(g, g)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)                                     # (G, 2)


def dae_field_explorer(*, names: tuple[str, ...] = CURVES, ambient_dims: tuple[int, ...] = (2, 3, 10),
                       sigma: float = 0.1, train: bool = False, steps: int = 1500, grid: int = 15,
                       num_test: int = 400, seed: int = 0) -> Explorer:
    """The reconstruction field r(x) − x of the Bayes-optimal DAE (and a trained one) on a curve (T4).

    Controls: ``manifold`` (spiral or circle), ``ambient_dim``, ``sigma`` (log slider), ``train`` (checkbox).
    The figure shows the plane span(Q); ``numbers``: ``sigma``, ``reach``, ``oracle_gap`` = mean ‖r*(x) − π(x)‖
    and ``noise_gap`` = mean ‖x − π(x)‖ over ``num_test`` points within the reach; when training,
    ``dae_gap_oracle`` = mean ‖f(x) − r*(x)‖ and ``dae_gap_projection`` = mean ‖f(x) − π(x)‖.
    """
    for name in names:
        check_choice(name, "names[...]", CURVES)
    for n in ambient_dims:
        check_int(n, "ambient_dims[...]", minimum=2)
    sigma = check_fraction(sigma, "sigma", low=0.01, high=0.5)   # the slider's range: never clamped silently
    extent = 1.6
    points = _field_grid(extent, check_int(grid, "grid", minimum=2))
    controls = {
        "manifold": widgets.Dropdown(options=list(names), value=names[0], description="manifold"),
        "ambient_dim": widgets.Dropdown(options=list(ambient_dims), value=ambient_dims[0], description="n"),
        "sigma": widgets.FloatLogSlider(value=sigma, base=10, min=-2, max=np.log10(0.5), step=0.05,
                                        description="σ", continuous_update=False, readout_format=".3f"),
        "train": widgets.Checkbox(value=train, description="train a DAE"),
    }
    progress = widgets.IntProgress(value=0, min=0, max=steps, description="training", layout={"width": "40%"})
    label = widgets.HTML()
    empty = points * np.nan
    figure = go.FigureWidget(field_figure(points, {ORACLE_TRACE: empty, DAE_TRACE: empty},
                                          curve=np.zeros((2, 2)), extent=extent))

    def update() -> dict[str, float]:
        curve = plane_curve(controls["manifold"].value, ambient_dim=int(controls["ambient_dim"].value), seed=seed)
        s = float(controls["sigma"].value)
        grid_x = torch.as_tensor(points) @ curve.Q.T                                       # (G, n)
        oracle = (curve.posterior_mean(grid_x, sigma=s) @ curve.Q).numpy() - points         # (G, 2) r*(x) − x
        x, p = curve.test_points(num_test, seed=seed)
        r_x = curve.posterior_mean(x, sigma=s)                                               # (N, n) r*(x)
        numbers = {"sigma": s, "reach": curve.reach,
                   "oracle_gap": float(torch.linalg.vector_norm(r_x - p, dim=1).mean()),
                   "noise_gap": float(torch.linalg.vector_norm(x - p, dim=1).mean())}
        dae = empty
        if controls["train"].value:
            progress.value = 0
            model = trained_dae(curve, s, steps=steps, seed=seed,
                                callback=lambda step, _loss: setattr(progress, "value", step + 1)
                                if step % 50 == 49 or step + 1 == steps else None)
            progress.value = steps
            with torch.no_grad():
                dae = (model(grid_x.float()).double() @ curve.Q).numpy() - points
                fx = model(x.float()).double()
            numbers["dae_gap_oracle"] = float(torch.linalg.vector_norm(fx - r_x, dim=1).mean())
            numbers["dae_gap_projection"] = float(torch.linalg.vector_norm(fx - p, dim=1).mean())
        title = f"{curve.name} in R^{curve.ambient_dim}, σ = {s:.3f}: mean ‖r* − π‖ = {numbers['oracle_gap']:.2e}"
        _replace_traces(figure, field_figure(points, {ORACLE_TRACE: oracle, DAE_TRACE: dae},
                                             curve=curve.nodes[:: max(1, len(curve.nodes) // 800)],
                                             title=title, extent=extent))
        text = (f"<b>σ = {s:.3f}</b> (reach {curve.reach:.3f}): mean ‖r*(x) − π(x)‖ = "
                f"<b>{numbers['oracle_gap']:.3e}</b> vs noise ‖x − π(x)‖ = {numbers['noise_gap']:.3e} "
                f"on {num_test} points within the reach")
        if "dae_gap_oracle" in numbers:
            text += (f"; trained DAE: ‖f − r*‖ = {numbers['dae_gap_oracle']:.3e}, "
                     f"‖f − π‖ = {numbers['dae_gap_projection']:.3e}")
        label.value = text
        return numbers

    return Explorer(controls=controls, figure=figure, label=label, update=update, extra=(progress,))


def field_arrays(explorer: Explorer, trace: str) -> np.ndarray:
    """The arrows (G, 2) of a field trace of a :func:`dae_field_explorer` figure (tips minus tails)."""
    data = {t.name: t for t in explorer.figure.data}
    if trace not in data:
        raise ValueError(f"trace must be one of {sorted(data)}, got {trace!r}")
    x = as_array(data[trace].x, "x").reshape(-1, 3)
    y = as_array(data[trace].y, "y").reshape(-1, 3)
    return np.stack([x[:, 1] - x[:, 0], y[:, 1] - y[:, 0]], axis=1)
