"""T1: the certified numeric projection (manifold_ae.manifolds.projection) against an independent brute force."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from manifold_ae.manifolds import make_manifold
from manifold_ae.manifolds.s_curve import PROFILE
from manifold_ae.manifolds.projection import project_curve


def _brute_force(curve_np, t_min: float, t_max: float, y: np.ndarray, *, nodes: int = 40_001) -> tuple[np.ndarray, np.ndarray]:
    """Reference nearest point: dense grid, then Brent polish of every grid local minimum that could win."""
    grid = np.linspace(t_min, t_max, nodes)
    pts = curve_np(grid)                                                # (G, m)
    h = float(np.max(np.linalg.norm(np.diff(pts, axis=0), axis=1)))     # arc-length spacing bound
    t_best, d_best = np.empty(len(y)), np.empty(len(y))
    for i, yi in enumerate(y):
        d = np.linalg.norm(pts - yi, axis=1)
        is_min = np.r_[True, d[1:] <= d[:-1]] & np.r_[d[:-1] <= d[1:], True]
        cands = np.flatnonzero(is_min & (d <= d.min() + 2 * h))
        best = (np.inf, np.nan)
        for j in cands:
            lo, hi = grid[max(j - 1, 0)], grid[min(j + 1, nodes - 1)]
            f = lambda s: float(np.linalg.norm(curve_np(np.array([s]))[0] - yi))
            r = minimize_scalar(f, bounds=(lo, hi), method="bounded", options={"xatol": 1e-13})
            for s, v in ((r.x, r.fun), (lo, f(lo)), (hi, f(hi))):
                if v < best[0]:
                    best = (v, s)
        d_best[i], t_best[i] = best
    return t_best, d_best


def _helix_np(a=1.0, b=0.3):
    return lambda s: np.stack([a * np.cos(s), a * np.sin(s), b * s], axis=-1)


def _spiral_np(t):
    return np.stack([t * np.cos(t), t * np.sin(t)], axis=-1)


def _s_profile_np(t):
    return np.stack([np.sin(t), np.sign(t) * (np.cos(t) - 1)], axis=-1)


@pytest.mark.parametrize("which", ["helix", "spiral", "s_profile"])
def test_projection_numeric_matches_brute_force(which):
    rng = np.random.default_rng(0)
    if which == "helix":
        M = make_manifold("helix")
        curve, f, lo, hi = M.curve, _helix_np(), 0.0, M.s_max
        y = rng.uniform([-2, -2, -1], [2, 2, 0.3 * M.s_max + 1], size=(150, 3))
    elif which == "spiral":
        curve, f, lo, hi = make_manifold("swiss_roll").curve, _spiral_np, 1.5 * math.pi, 4.5 * math.pi
        y = rng.uniform(-16, 16, size=(150, 2))
    else:
        curve, f, lo, hi = PROFILE, _s_profile_np, -1.5 * math.pi, 1.5 * math.pi
        y = rng.uniform(-2.5, 2.5, size=(150, 2)) * [1, 1.5]
    res = project_curve(torch.from_numpy(y), curve)
    t_ref, d_ref = _brute_force(f, lo, hi, y)
    scale = curve.reach
    gap = res.distance.numpy() - d_ref
    assert gap.max() <= 1e-10 * scale                                   # never worse than the reference
    assert gap.min() >= -1e-10 * scale                                  # and the reference is a true minimum
    within = d_ref < 0.99 * curve.reach                                 # unique nearest point there
    assert within.sum() > 10
    assert np.abs(res.t.detach().numpy()[within] - t_ref[within]).max() < 1e-6
    assert bool(res.certified[torch.from_numpy(d_ref < 0.9 * curve.reach)].all())


def test_projection_s_curve_closed_form_matches_numeric():
    M = make_manifold("s_curve")
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2000, 3, generator=gen, dtype=torch.float64) * torch.tensor([1.5, 1.0, 2.0])
    closed = M.project_with_info(x)
    numeric = project_curve(x[:, [0, 2]], PROFILE)
    dist_profile = (x[:, [0, 2]] - closed.point[:, [0, 2]]).norm(dim=-1)
    assert float((dist_profile - numeric.distance).abs().max()) < 1e-12


def test_projection_implicit_derivative_matches_finite_differences():
    M = make_manifold("helix")
    ray = M.sample_normal_ray(20, fraction=0.8, generator=torch.Generator().manual_seed(2))
    y = ray.x.clone().requires_grad_(True)
    res = project_curve(y, M.curve)
    (grad,) = torch.autograd.grad(res.t.sum(), y)                       # dt/dy per point
    eps = 1e-6
    for k in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[k] = eps
        fd = (project_curve(ray.x + e, M.curve).t - project_curve(ray.x - e, M.curve).t) / (2 * eps)
        assert float((grad[:, k] - fd).abs().max()) < 1e-6
    # on the curve dt/dy = γ'(t)ᵀ/‖γ'‖² (tangential motion only)
    p = ray.p.clone().requires_grad_(True)
    (g_on,) = torch.autograd.grad(project_curve(p, M.curve).t.sum(), p)
    v = M.curve.velocity(ray.params[:, 0])
    assert float((g_on - v / v.square().sum(-1, keepdim=True)).abs().max()) < 1e-9


def test_projection_far_points_flagged_and_ends_handled():
    M = make_manifold("helix")
    far = torch.tensor([[0.0, 0.0, 1.0], [5.0, 0.0, 1.0], [1.0, 0.0, -3.0]], dtype=torch.float64)
    res = M.project_with_info(far)
    assert res.within_reach.tolist() == [False, False, False]
    assert abs(float(res.params[2, 0])) == 0.0                          # below the segment: its end point s = 0
    assert abs(float(res.distance[2]) - 3.0) < 1e-12
    assert abs(float(res.distance[0]) - 1.0) < 1e-12                     # on the axis: every turn at distance a
    dense = M.from_params(torch.linspace(0, M.s_max, 400_001, dtype=torch.float64)[:, None])
    d_dense = (dense[None] - far[:, None]).norm(dim=-1).min(-1).values
    assert bool((res.distance <= d_dense + 1e-12).all())
    assert bool((res.distance >= d_dense - 1e-8).all())


def test_projection_bad_spacing():
    M = make_manifold("helix")
    with pytest.raises(ValueError, match=r"spacing must lie in \(0, reach/4\).*0\.5"):
        project_curve(torch.zeros(2, 3, dtype=torch.float64), M.curve, spacing=0.5)


def test_projection_claim_t1_fast(tmp_path):
    from manifold_ae.claims.t1_projection import run

    result = run(fast=True, out_dir=tmp_path, seed=0)
    assert result.claim == "T1" and result.passed, [c for c in result.checks if not c.passed]
    assert len(result.checks) == 7 and (tmp_path / result.figures[0]).exists()
    assert result.numbers["per_manifold"]["helix"]["normal_ray"] <= 1e-9
