"""T1: the analytic reach values against Federer's formula on dense samples and independent derivations."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize, minimize_scalar

from manifold_ae.manifolds import estimate_reach, helix_reach, make_manifold
from manifold_ae.manifolds.reach import REACH_RTOL, within_reach


@pytest.mark.parametrize("name,params,num,rtol", [
    ("circle", {"radius": 1.3}, 300, 1e-9),      # an angle grid (random samples: close pairs lose digits)
    ("sphere", {"k": 3, "radius": 0.7}, 800, 1e-6),   # random samples
    ("flat_torus", {"a": 1.0, "b": 0.5}, 1600, 1e-9),    # 40 × 40 angle grids
    ("ring_torus", {"R": 1.0, "r": 0.4}, 1600, 1e-9),
    ("ring_torus", {"R": 1.0, "r": 0.7}, 3600, 2e-3),    # bottleneck R − r = 0.3 at the hole
    ("helix", {}, 3000, 1e-4),
    ("swiss_roll", {}, 3000, 1e-4),
    ("s_curve", {}, 3000, 1e-4),
])
def test_reach_estimate_matches_analytic(name, params, num, rtol):
    M = make_manifold(name, ambient_dim=6, seed=1, **params)
    p = M.reach_sample(num, generator=torch.Generator().manual_seed(0))
    assert p.shape[0] <= num and p.shape[0] >= 0.99 * num
    est = estimate_reach(p, M.tangent_basis(p))
    assert est >= M.reach * (1 - min(rtol, 1e-6))                      # a sample can only over-estimate
    assert est <= M.reach * (1 + rtol)


@pytest.mark.parametrize("ambient_dim,seed", [(None, 0), (7, 3), (7, 11)])
def test_within_reach_on_inside_and_outside_the_medial_axis(ambient_dim, seed):
    """The medial axis (distance exactly τ) is outside the reach, also when rounding puts it an ulp below τ."""
    gen = torch.Generator().manual_seed(seed)
    centre = None if ambient_dim is None else torch.randn(ambient_dim, generator=gen, dtype=torch.float64)
    torus = make_manifold("ring_torus", R=1.0, r=0.4, ambient_dim=ambient_dim, seed=seed, centre=centre)
    wide = make_manifold("ring_torus", R=1.0, r=0.7, ambient_dim=ambient_dim, seed=seed, centre=centre)
    sphere = make_manifold("sphere", k=2, radius=1.3, ambient_dim=ambient_dim, seed=seed, centre=centre)
    u = 2 * math.pi * torch.rand(64, generator=gen, dtype=torch.float64)
    ring = torch.stack([torch.cos(u), torch.sin(u), torch.zeros_like(u)], -1)        # (64, 3) unit circle
    lift = lambda M, y: M.centre + y @ M.Q.T                                         # base space -> R^n
    axis = torch.stack([torch.zeros_like(u), torch.zeros_like(u), torch.zeros_like(u)], -1)
    cases = [  # (manifold, base-space points, their exact distance to M)
        (torus, ring, 0.4),                              # core circle, distance r = τ
        (wide, axis, 0.3),                               # centre of the hole, distance R − r = τ
        (sphere, axis[:, :3], 1.3),                      # centre, distance R = τ
    ]
    for M, y0, dist in cases:
        assert M.reach == pytest.approx(dist, rel=1e-15)
        res = M.project_with_info(lift(M, y0))
        assert torch.allclose(res.distance, torch.full_like(res.distance, dist), rtol=0, atol=1e-15)
        assert not bool(res.within_reach.any()), (M, res.distance - dist)
    # just inside and just outside: normal rays on the ring torus and the sphere, t = τ(1 ∓ 1e-6)
    for M in (torus, sphere):
        ray = M.sample_normal_ray(64, normal="inside", generator=gen)
        outward = torch.sign(((ray.p - M.centre) * ray.nu).sum(-1))[:, None]        # sphere: away from c
        if M is torus:   # outward = away from the core circle
            q = (ray.p - M.centre) @ M.Q                                           # (64, 3) base coordinates
            core = torch.cat([q[:, :2] / q[:, :2].norm(dim=-1, keepdim=True), torch.zeros_like(q[:, :1])], -1)
            outward = torch.sign(((q - core) * (ray.nu @ M.Q)).sum(-1))[:, None]
        nu = outward * ray.nu
        inside = M.project_with_info(ray.p + M.reach * (1 - 1e-6) * nu)
        outside = M.project_with_info(ray.p + M.reach * (1 + 1e-6) * nu)
        assert bool(inside.within_reach.all()) and not bool(outside.within_reach.any())
        assert torch.allclose(outside.distance, torch.full((64,), M.reach * (1 + 1e-6), dtype=torch.float64),
                              rtol=1e-12, atol=0)
    # the margin itself: a relative band of REACH_RTOL below τ counts as outside; an infinite reach holds all
    tau = 0.4
    d = torch.tensor([tau * (1 - 2 * REACH_RTOL), tau * (1 - REACH_RTOL / 2), tau, math.nextafter(tau, 0.0)],
                     dtype=torch.float64)
    assert within_reach(d, tau).tolist() == [True, False, False, False]
    assert bool(within_reach(torch.tensor([1e300], dtype=torch.float64), math.inf))


def test_reach_helix_against_closed_form_scan():
    # independent: Federer's ratio for pairs γ(s₁), γ(s₂) on a 2-D grid, then a Nelder–Mead polish
    a, b = 1.0, 0.3
    g = lambda s: np.array([a * np.cos(s), a * np.sin(s), b * s])
    dg = lambda s: np.array([-a * np.sin(s), a * np.cos(s), b]) / math.hypot(a, b)

    def ratio(z):
        v = g(z[1]) - g(z[0])
        T = dg(z[0])
        return v @ v / (2 * math.sqrt(max(v @ v - (v @ T) ** 2, 1e-300)))

    s = np.linspace(0.5, 4 * math.pi - 0.5, 120)
    best = min(((ratio((s1, s2)), (s1, s2)) for s1 in s[::10] for s2 in s if abs(s2 - s1) > 1.0))
    res = minimize(ratio, best[1], method="Nelder-Mead", options={"xatol": 1e-12, "fatol": 1e-15})
    assert abs(res.fun - helix_reach(a, b, 4 * math.pi)) < 1e-9
    assert abs(make_manifold("helix").reach - 0.9018246256689) < 1e-10
    assert abs(res.fun - 0.90) < 0.005                                   # THEORY.md: ≈ 0.90
    # curvature-limited helices: reach = (a² + b²)/a when the pitch is large
    assert abs(helix_reach(1.0, 2.0, 4 * math.pi) - 5.0) < 1e-9


def test_reach_spiral_rederived():
    t0, t1 = 1.5 * math.pi, 4.5 * math.pi
    w = lambda t: np.array([t * np.cos(t), t * np.sin(t)])
    dw = lambda t: np.array([np.cos(t) - t * np.sin(t), np.sin(t) + t * np.cos(t)])

    def ratio(p, q):   # Federer's ratio with the tangent at p
        v = w(q) - w(p)
        T = dw(p) / np.linalg.norm(dw(p))
        return v @ v / (2 * abs(v[0] * T[1] - v[1] * T[0]))

    # the inner end q = w(t0) seen from the next turn is the bottleneck
    r = minimize_scalar(lambda p: ratio(p, t0), bounds=(10.0, 11.5), method="bounded", options={"xatol": 1e-12})
    M = make_manifold("swiss_roll")
    assert abs(r.fun - M.reach) < 1e-9
    assert abs(M.reach - 3.11) < 0.01                                    # THEORY.md: ≈ 3.11
    # interior pairs (both points away from the ends) are not tighter
    ts = np.linspace(t0 + 0.5, t1, 300)
    interior = min(ratio(p, q) for p in ts[::3] for q in ts if abs(q - p) > 2.0)
    assert interior > M.reach
    assert min((1 + t * t) ** 1.5 / (2 + t * t) for t in ts) > M.reach   # curvature radius is larger


def test_reach_s_curve_golden_ratio():
    M = make_manifold("s_curve")
    assert abs(M.reach - (math.sqrt(5) - 1) / 2) < 1e-15
    # the ball tangent to the upper arc at p, through the lower end q = (−1, −1), has radius τ
    q = np.array([-1.0, -1.0])
    c = np.array([0.0, 1.0])
    nrm = (q - c) / np.linalg.norm(q - c)
    p = c + nrm
    v = q - p
    assert abs(v @ v / (2 * abs(v @ nrm)) - M.reach) < 1e-12


def test_reach_bad_input():
    with pytest.raises(ValueError, match=r"points must have shape \(N, n\) with N >= 2.*\(3,\)"):
        estimate_reach(torch.zeros(3), torch.zeros(3, 1, 1))
    with pytest.raises(ValueError, match=r"tangent_bases must have shape \(4, 2, d\).*\(4, 3, 1\)"):
        estimate_reach(torch.zeros(4, 2), torch.zeros(4, 3, 1))
    with pytest.raises(ValueError, match=r"points contains 1 NaN"):
        estimate_reach(torch.tensor([[0.0, math.nan], [1.0, 0.0]]), torch.zeros(2, 2, 1))
