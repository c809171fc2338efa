"""The ipywidgets explorers, driven from Python: set control values, check figures and labels (T1, T3, T4).

Every expected number is computed here independently (scipy's Bessel functions for the circle's posterior
mean, x/|x| for its projection, the shrinkage formula λ/(λ+σ²)), never taken from the explorer itself.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import ive

from manifold_ae.manifolds import make_manifold
from manifold_ae.viz.interactive import field_figure, manifold_figure, segments, spectrum_figure
from manifold_ae.viz.widgets import (DAE_TRACE, ORACLE_TRACE, dae_field_explorer, field_arrays, linear_dae_explorer,
                                     plane_curve, reach_explorer)


def circle_oracle(y: np.ndarray, sigma: float) -> np.ndarray:
    """Posterior mean for the uniform unit circle: I1(κ)/I0(κ) · y/|y|, κ = |y|/σ² (von Mises)."""
    r = np.linalg.norm(y, axis=1, keepdims=True)
    safe = np.where(r > 0, r, 1.0)
    kappa = safe / sigma ** 2
    return np.where(r > 0, ive(1, kappa) / ive(0, kappa) * y / safe, 0.0)   # r*(0) = 0 by symmetry


def grid(extent: float = 1.6, size: int = 15) -> np.ndarray:
    g = np.linspace(-extent, extent, size)
    gx, gy = np.meshgrid(g, g)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def test_dae_field_explorer_draws_the_bayes_field_and_measures_the_gap():
    ex = dae_field_explorer(names=("circle",), ambient_dims=(2,), sigma=0.1)
    x, _ = plane_curve("circle").test_points(400, seed=0)
    xn = x.numpy()
    pi = xn / np.linalg.norm(xn, axis=1, keepdims=True)                   # independent projection
    gaps = {}
    for sigma in (0.05, 0.2):
        ex.controls["sigma"].value = sigma
        s = ex.controls["sigma"].value                                       # the slider snaps to its grid
        g = grid()
        np.testing.assert_allclose(field_arrays(ex, ORACLE_TRACE), circle_oracle(g, s) - g, atol=1e-9)
        expected = np.linalg.norm(circle_oracle(xn, s) - pi, axis=1).mean()
        assert ex.numbers["oracle_gap"] == pytest.approx(expected, rel=1e-9)
        assert f"{expected:.3e}" in ex.label.value
        assert f"σ = {s:.3f}" in ex.figure.layout.title.text
        gaps[s] = expected
    (s1, g1), (s2, g2) = sorted(gaps.items())
    assert np.log(g2 / g1) / np.log(s2 / s1) == pytest.approx(2.0, abs=0.25)   # T4: O(σ²)
    assert np.isnan(field_arrays(ex, DAE_TRACE)).all()                     # no DAE until asked


def test_dae_field_explorer_removes_orthogonal_noise_in_higher_dimension():
    ex = dae_field_explorer(names=("circle",), ambient_dims=(2, 10), sigma=0.1)
    ex.controls["ambient_dim"].value = 10
    curve = plane_curve("circle", ambient_dim=10)
    x, p = curve.test_points(400, seed=0)
    y = (x @ curve.Q).numpy()                                              # plane coordinates
    r = circle_oracle(y, ex.controls["sigma"].value) @ curve.Q.numpy().T    # back in R^10
    expected = np.linalg.norm(r - p.numpy(), axis=1).mean()
    assert ex.numbers["oracle_gap"] == pytest.approx(expected, rel=1e-9)
    assert ex.numbers["noise_gap"] == pytest.approx(np.linalg.norm((x - p).numpy(), axis=1).mean(), rel=1e-12)


def test_spiral_field_points_at_the_nearest_turn_for_small_sigma():
    ex = dae_field_explorer(names=("spiral",), ambient_dims=(2,), sigma=0.01)
    g = grid()
    curve = plane_curve("spiral")
    dense = curve.nodes.numpy()                                            # brute-force nearest node
    idx = np.argmin(((g[:, None, :] - dense[None]) ** 2).sum(-1), axis=1)
    nearest = dense[idx]
    dist = np.linalg.norm(nearest - g, axis=1)
    interior = (idx > 0.05 * len(dense)) & (idx < 0.95 * len(dense))      # the ends bias r* inwards by ~σ
    close = (dist < 0.5 * curve.reach) & interior                          # inside the reach: r* ≈ π
    np.testing.assert_allclose(field_arrays(ex, ORACLE_TRACE)[close], (nearest - g)[close], atol=2e-3)
    assert close.sum() > 40


def test_dae_field_explorer_trains_a_dae_on_request():
    ex = dae_field_explorer(names=("circle",), ambient_dims=(2,), sigma=0.2, steps=600)
    ex.controls["train"].value = True
    arrows = field_arrays(ex, DAE_TRACE)
    assert np.isfinite(arrows).all()
    assert ex.numbers["dae_gap_oracle"] < 0.5 * ex.numbers["noise_gap"]
    assert "trained DAE" in ex.label.value


def test_reach_explorer_counts_rays_that_project_home():
    ex = reach_explorer(names=("circle", "sphere"), rays=200)
    assert ex.numbers["recovered"] == 1.0 and ex.numbers["distance_ratio"] == pytest.approx(1.0, abs=1e-9)
    ex.controls["ray_length"].value = 1.5
    circle = make_manifold("circle")
    ray = circle.sample_normal_ray(200, fraction=0.5, normal="inside", generator=torch.Generator().manual_seed(1))
    outward = ((ray.nu * ray.p).sum(-1) > 0).double()                      # inward rays pass the centre
    assert ex.numbers["recovered"] == pytest.approx(float(outward.mean()))
    # outward: dist = t; inward beyond the centre: dist = |1 − t| = 0.5 (unit circle, t = 1.5)
    assert ex.numbers["distance_ratio"] == pytest.approx(float((outward + (1 - outward) * 0.5 / 1.5).mean()))
    assert f"{ex.numbers['recovered']:.1%}" in ex.label.value
    names = [t.name for t in ex.figure.data]
    beyond = ex.figure.data[names.index("normal ray, t > reach")]
    assert np.isfinite(np.asarray(beyond.x, dtype=float)).any()


def test_linear_dae_explorer_follows_the_shrinkage_formula():
    ex = linear_dae_explorer(train=False)
    for sigma in (0.2, 1.0):
        ex.controls["sigma"].value = sigma
        s = ex.controls["sigma"].value
        trace = {t.name: t for t in ex.figure.data}["optimal W*"]
        lam = np.asarray(trace.x, dtype=float)
        np.testing.assert_allclose(np.asarray(trace.y, dtype=float), lam / (lam + s ** 2), atol=1e-12)
        assert ex.numbers["risk_optimum"] < ex.numbers["risk_identity"]
        assert f"{(lam.max() / (lam.max() + s ** 2)):.3f}" in ex.label.value


def test_linear_dae_explorer_trained_map_matches_the_formula():
    ex = linear_dae_explorer(train=True)
    trace = {t.name: t for t in ex.figure.data}["trained linear DAE"]
    lam = np.asarray(trace.x, dtype=float)
    s = ex.controls["sigma"].value
    np.testing.assert_allclose(np.asarray(trace.y, dtype=float), lam / (lam + s ** 2), atol=0.03)
    assert ex.numbers["trained_relative_error"] < 0.03


def test_manifold_figure_splits_rays_at_the_reach():
    fig = manifold_figure(make_manifold("circle", radius=2.0), rays=5, ray_length=0.5)
    inside = {t.name: t for t in fig.data}["normal ray, t < reach"]
    xs = np.asarray(inside.x, dtype=float).reshape(-1, 3)
    ys = np.asarray(inside.y, dtype=float).reshape(-1, 3)
    lengths = np.hypot(xs[:, 1] - xs[:, 0], ys[:, 1] - ys[:, 0])
    np.testing.assert_allclose(lengths, 0.5 * 2.0, atol=1e-12)


@pytest.mark.parametrize("call, words", [
    (lambda: dae_field_explorer(names=("torus",)), ["names", "circle"]),
    (lambda: dae_field_explorer(ambient_dims=(1,)), ["ambient_dims", "[2"]),
    (lambda: dae_field_explorer(sigma=-1.0), ["sigma", "[0.01, 0.5]"]),
    (lambda: plane_curve("line"), ["name", "spiral"]),
    (lambda: reach_explorer(rays=0), ["rays"]),
    (lambda: reach_explorer(names=("moon",)), ["names", "sphere"]),
    (lambda: linear_dae_explorer(eigenvalues=(1.0, -1.0)), ["eigenvalues", "> 0"]),
    (lambda: segments(np.zeros((2, 2)), np.zeros((3, 2))), ["start and end", "(S, k)"]),
    (lambda: field_figure(np.zeros((4, 2)), {"a": np.zeros((3, 2))}, curve=np.zeros((2, 2))), ["arrows['a']", "(4, 2)"]),
    (lambda: spectrum_figure([1.0, 0.0], {}, sigma=1.0), ["eigenvalues", "> 0"]),
    (lambda: manifold_figure(make_manifold("circle"), ray_length=0), ["ray_length", "> 0"]),
])
def test_bad_input_names_the_argument(call, words):
    with pytest.raises(ValueError) as err:
        call()
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_field_arrays_rejects_unknown_trace():
    ex = dae_field_explorer(names=("circle",), ambient_dims=(2,))
    with pytest.raises(ValueError, match="trace must be one of"):
        field_arrays(ex, "nope")



def test_field_figure_lists_only_fields_with_arrows_in_its_legend():
    grid = np.array([[0.0, 0.0], [1.0, 0.0]])
    fig = field_figure(grid, {"drawn": np.ones((2, 2)), "empty": np.full((2, 2), np.nan)}, curve=np.zeros((2, 2)))
    legend = {t.name: t.showlegend for t in fig.data if t.name in ("drawn", "empty")}
    assert legend == {"drawn": True, "empty": False}
