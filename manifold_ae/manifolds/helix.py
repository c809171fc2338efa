"""A helix segment γ(s) = (a cos s, a sin s, b s), s ∈ [0, 2π·turns] ⊂ R³ (T1; numeric, certified projection).

Its reach is set by a bottleneck, not by curvature: for a = 1, b = 0.3 the curvature radius is
(a² + b²)/a = 1.09 but Federer's formula reaches its infimum 0.9018246 at a pair of points 5.7403 radians
(0.91 turns) apart. ``helix_reach`` evaluates the formula exactly (1-D, thanks to the helix's symmetry).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from manifold_ae.checks import check_int, check_points, check_positive
from manifold_ae.manifolds.base import Manifold
from manifold_ae.manifolds.projection import ParametricCurve, brute_force_curve_distance, project_curve

__all__ = ["Helix", "helix_reach", "helix_curve"]

INTERIOR_MARGIN = 0.5   # parameter distance from the ends used by ``interior_params``


def helix_reach(a: float, b: float, length: float) -> float:
    """Reach of the helix segment of parameter length ``length`` (Federer's formula, T1).

    The helix is homogeneous (a screw motion maps any point to any other) and symmetric under s ↦ −s, so
    τ = min(ρ, inf_{0 < s <= length} ‖v(s)‖² / (2 dist(v(s), T₀))) with v(s) = γ(s) − γ(0) and ρ = (a² + b²)/a
    the curvature radius (the limit s → 0). The infimum over s is found on a grid and polished with Brent.
    """
    c2 = a * a + b * b

    def ratio(s: np.ndarray) -> np.ndarray:
        vv = 2 * a * a * (1 - np.cos(s)) + (b * s) ** 2
        vt = (a * a * np.sin(s) + b * b * s) / math.sqrt(c2)
        return vv / (2 * np.sqrt(np.maximum(vv - vt * vt, 1e-300)))

    lo = min(0.05, length)
    s = np.linspace(lo, length, 20001)
    r = ratio(s)
    i = int(np.argmin(r))
    res = minimize_scalar(lambda z: float(ratio(np.asarray(z))), bounds=(s[max(i - 1, 0)], s[min(i + 1, s.size - 1)]),
                          method="bounded", options={"xatol": 1e-13})
    return float(min(c2 / a, r[i], res.fun))


def helix_curve(a: float = 1.0, b: float = 0.3, turns: float = 2.0) -> ParametricCurve:
    """The helix segment γ(s) = (a cos s, a sin s, b s), s ∈ [0, 2π·turns], as a ``ParametricCurve`` (T1)."""
    a, b, turns = check_positive(a, "a"), check_positive(b, "b"), check_positive(turns, "turns")
    s_max = 2 * math.pi * turns

    def point(s: torch.Tensor) -> torch.Tensor:
        return torch.stack([a * torch.cos(s), a * torch.sin(s), b * s], dim=-1)

    def velocity(s: torch.Tensor) -> torch.Tensor:
        return torch.stack([-a * torch.sin(s), a * torch.cos(s), torch.full_like(s, b)], dim=-1)

    def acceleration(s: torch.Tensor) -> torch.Tensor:
        return torch.stack([-a * torch.cos(s), -a * torch.sin(s), torch.zeros_like(s)], dim=-1)

    return ParametricCurve(point=point, velocity=velocity, acceleration=acceleration, t_min=0.0, t_max=s_max,
                           max_speed=math.hypot(a, b), reach=helix_reach(a, b, s_max))


class Helix(Manifold):
    """Helix segment in R³ with radius ``a``, pitch 2πb, ``turns`` turns; parameter s ∈ [0, 2π·turns].

    Unit-speed up to the constant c = √(a² + b²), so ``"area"`` (arc length) and ``"parameter"`` coincide.
    ``project`` returns the nearest point of the *segment*: beyond its ends that is an end point. The
    projection is the certified grid + safeguarded-Newton search of ``manifold_ae.manifolds.projection``.
    """

    name = "helix"
    numeric_projection = True

    def __init__(self, *, a: float = 1.0, b: float = 0.3, turns: float = 2.0, ambient_dim: int | None = None,
                 seed: int = 0, Q=None, centre=None, dtype: torch.dtype = torch.float64) -> None:
        self.a = check_positive(a, "a")
        self.b = check_positive(b, "b")
        self.turns = check_positive(turns, "turns")
        self.s_max = 2 * math.pi * self.turns
        self.curve = helix_curve(self.a, self.b, self.turns)
        super().__init__(base_dim=3, intrinsic_dim=1, reach=self.curve.reach, ambient_dim=ambient_dim, seed=seed,
                         Q=Q, centre=centre, dtype=dtype)
        self._speed = math.hypot(self.a, self.b)

    def _project_base(self, y):
        res = project_curve(y, self.curve)
        return res.point, res.t.detach()[:, None]

    def _point_base(self, params):
        return self.curve.point(params[:, 0])

    def _tangent_base(self, y, params):
        return (self.curve.velocity(params[:, 0]) / self._speed)[:, :, None]   # (B, 3, 1)

    def _normal_base(self, y, params):
        s = params[:, 0]
        principal = torch.stack([-torch.cos(s), -torch.sin(s), torch.zeros_like(s)], dim=-1)
        binormal = torch.stack([self.b * torch.sin(s), -self.b * torch.cos(s), torch.full_like(s, self.a)],
                               dim=-1) / self._speed
        return torch.stack([principal, binormal], dim=-1)                     # (B, 3, 2)

    def _sample_params(self, num, generator, density):
        return self.s_max * torch.rand(num, 1, generator=generator, dtype=self.dtype)

    def interior_params(self, num, *, generator=None):
        """Random parameters clamped to [0.5, s_max − 0.5] (away from the two ends)."""
        return super().interior_params(num, generator=generator).clamp(INTERIOR_MARGIN, self.s_max - INTERIOR_MARGIN)

    def on_boundary(self, params, *, atol=1e-9):
        s = check_points(params, ambient_dim=1, name="params", dtype=self.dtype)[..., 0]
        atol = check_positive(atol, "atol", allow_zero=True)
        return (s <= atol) | (s >= self.s_max - atol)

    def reach_sample(self, num, *, generator=None):
        """``num`` points equally spaced in s from end to end."""
        s = torch.linspace(0, self.s_max, check_int(num, "num", minimum=2), dtype=self.dtype)
        return self.from_params(s[:, None])

    def brute_force_distance(self, x, *, nodes):
        y, out_of_span, lead = self._split(x)                                  # (B, 3), (B,)
        d = brute_force_curve_distance(y, self.curve, nodes=nodes)
        return torch.sqrt(d ** 2 + out_of_span ** 2).reshape(lead)
