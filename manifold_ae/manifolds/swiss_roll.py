"""scikit-learn's Swiss roll (t cos t, h, t sin t), t ∈ [1.5π, 4.5π], h ∈ [0, height] (T1; numeric projection).

The surface is the product of the Archimedean spiral arc w(t) = (t cos t, t sin t) with an interval, so the
nearest point is (nearest point on the spiral, height clamped to [0, height]). The spiral has no closed-form
projection: it uses the certified search of ``manifold_ae.manifolds.projection``. ``Spiral`` is the planar
arc alone (optionally scaled), a 1-D manifold of R² (the widgets' plane curve).

Reach. Federer's infimum is attained between the inner end w(1.5π) and the point of the next turn at
t = 10.87436 (3.4614π): τ = 3.1113458383 (the minimal curvature radius, at the inner end, is 4.618, and pairs
of interior points give 3.11137). The test suite re-derives this number independently.
"""
from __future__ import annotations

import math

import torch

from manifold_ae.checks import check_int, check_points, check_positive
from manifold_ae.manifolds.base import Manifold
from manifold_ae.manifolds.projection import ParametricCurve, brute_force_curve_distance, project_curve

__all__ = ["SwissRoll", "Spiral", "SPIRAL", "SPIRAL_REACH", "spiral_arc_length", "spiral_curve"]

T_MIN, T_MAX = 1.5 * math.pi, 4.5 * math.pi
SPIRAL_REACH = 3.1113458383288   # docs/theory.md, section 1.4
T_MARGIN, H_MARGIN = 0.3, 0.1    # distances from the ends of t and h used by ``interior_params``


def spiral_arc_length(t: torch.Tensor) -> torch.Tensor:
    """Arc length of w from 0 to t: ½ (t √(1 + t²) + asinh t)."""
    return 0.5 * (t * torch.sqrt(1 + t * t) + torch.asinh(t))


def _w(t):
    return torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=-1)


def _dw(t):
    c, s = torch.cos(t), torch.sin(t)
    return torch.stack([c - t * s, s + t * c], dim=-1)


def _ddw(t):
    c, s = torch.cos(t), torch.sin(t)
    return torch.stack([-2 * s - t * c, 2 * c - t * s], dim=-1)


SPIRAL = ParametricCurve(point=_w, velocity=_dw, acceleration=_ddw, t_min=T_MIN, t_max=T_MAX,
                         max_speed=math.sqrt(1 + T_MAX * T_MAX), reach=SPIRAL_REACH)


def spiral_curve(scale: float = 1.0) -> ParametricCurve:
    """The spiral arc ``scale · w(t)``, t ∈ [1.5π, 4.5π], as a ``ParametricCurve`` (reach ``scale · τ``)."""
    scale = check_positive(scale, "scale")
    if scale == 1.0:
        return SPIRAL
    return ParametricCurve(point=lambda t: scale * _w(t), velocity=lambda t: scale * _dw(t),
                           acceleration=lambda t: scale * _ddw(t), t_min=T_MIN, t_max=T_MAX,
                           max_speed=scale * SPIRAL.max_speed, reach=scale * SPIRAL_REACH)


def _spiral_params(u: torch.Tensor, density: str) -> torch.Tensor:
    """Spiral parameters t (num,) from uniforms ``u`` (num,): uniform in t ("parameter") or in arc length."""
    if density == "parameter":                                           # scikit-learn: t = 1.5π(1 + 2u)
        return T_MIN + (T_MAX - T_MIN) * u
    s_lo, s_hi = spiral_arc_length(torch.tensor([T_MIN, T_MAX], dtype=u.dtype))
    s = s_lo + (s_hi - s_lo) * u                                         # uniform arc length
    t = torch.sqrt(2 * s)                                                # s ≈ t²/2; Newton on s(t) = s
    for _ in range(50):
        t = (t - (spiral_arc_length(t) - s) / torch.sqrt(1 + t * t)).clamp(T_MIN, T_MAX)
    return t


def _on_ends(t: torch.Tensor, atol: float) -> torch.Tensor:
    return (t <= T_MIN + atol) | (t >= T_MAX - atol)


def _spiral_reach_params(num: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.linspace(T_MIN, T_MAX, check_int(num, "num", minimum=2), dtype=dtype)


class Spiral(Manifold):
    """The Swiss roll's profile, the Archimedean arc ``scale · (t cos t, t sin t)``, t ∈ [1.5π, 4.5π] ⊂ R².

    A 1-D manifold with boundary, reach ``scale · 3.1113458``; parameter t. ``"area"`` (default) is uniform
    in arc length, ``"parameter"`` uniform in t. Projection: the certified curve search.
    """

    name = "spiral"
    numeric_projection = True

    def __init__(self, *, scale: float = 1.0, ambient_dim: int | None = None, seed: int = 0, Q=None, centre=None,
                 dtype: torch.dtype = torch.float64) -> None:
        self.scale = check_positive(scale, "scale")
        self.curve = spiral_curve(self.scale)
        super().__init__(base_dim=2, intrinsic_dim=1, reach=self.curve.reach, ambient_dim=ambient_dim, seed=seed,
                         Q=Q, centre=centre, dtype=dtype)

    def _project_base(self, y):
        res = project_curve(y, self.curve)
        return res.point, res.t.detach()[:, None]

    def _point_base(self, params):
        return self.curve.point(params[:, 0])

    def _tangent_base(self, y, params):
        t = params[:, 0]
        return (_dw(t) / torch.sqrt(1 + t * t)[:, None])[:, :, None]        # (B, 2, 1)

    def _normal_base(self, y, params):
        v = self._tangent_base(y, params)[:, :, 0]
        return torch.stack([v[:, 1], -v[:, 0]], dim=-1)[:, :, None]          # (B, 2, 1)

    def _sample_params(self, num, generator, density):
        u = torch.rand(num, generator=generator, dtype=self.dtype)
        return _spiral_params(u, density)[:, None]

    def interior_params(self, num, *, generator=None):
        """Random parameters with t clamped to [1.5π + 0.3, 4.5π − 0.3]."""
        return super().interior_params(num, generator=generator).clamp(T_MIN + T_MARGIN, T_MAX - T_MARGIN)

    def on_boundary(self, params, *, atol=1e-9):
        t = check_points(params, ambient_dim=1, name="params", dtype=self.dtype)[..., 0]
        return _on_ends(t, check_positive(atol, "atol", allow_zero=True))

    def reach_sample(self, num, *, generator=None):
        """``num`` points equally spaced in t."""
        return self.from_params(_spiral_reach_params(num, self.dtype)[:, None])

    def brute_force_distance(self, x, *, nodes):
        y, out_of_span, lead = self._split(x)                                  # (B, 2), (B,)
        d = brute_force_curve_distance(y, self.curve, nodes=nodes)
        return torch.sqrt(d ** 2 + out_of_span ** 2).reshape(lead)


class SwissRoll(Manifold):
    """The Swiss roll of ``sklearn.datasets.make_swiss_roll`` with its latent (t, h) kept.

    Base coordinates (x, y, z) = (t cos t, h, t sin t) as scikit-learn orders them. ``density="parameter"``
    (t and h uniform) is scikit-learn's distribution; ``"area"`` (default) is uniform in area, i.e. t has
    density ∝ √(1 + t²). Points beyond the height range or the spiral's ends project onto the boundary.
    """

    name = "swiss_roll"
    numeric_projection = True

    def __init__(self, *, height: float = 21.0, ambient_dim: int | None = None, seed: int = 0, Q=None,
                 centre=None, dtype: torch.dtype = torch.float64) -> None:
        self.height = check_positive(height, "height")
        super().__init__(base_dim=3, intrinsic_dim=2, reach=SPIRAL_REACH, ambient_dim=ambient_dim, seed=seed,
                         Q=Q, centre=centre, dtype=dtype)
        self.curve = SPIRAL

    def _project_base(self, y):
        res = project_curve(y[:, [0, 2]], SPIRAL)                            # (B,) t, (B, 2) spiral point
        h = y[:, 1].clamp(0.0, self.height)
        p = torch.stack([res.point[:, 0], h, res.point[:, 1]], dim=-1)      # (B, 3)
        return p, torch.stack([res.t, h], dim=-1).detach()

    def _point_base(self, params):
        t, h = params[:, 0], params[:, 1]
        return torch.stack([t * torch.cos(t), h, t * torch.sin(t)], dim=-1)

    def _tangent_base(self, y, params):
        t = params[:, 0]
        v = _dw(t) / torch.sqrt(1 + t * t)[:, None]                          # (B, 2) unit spiral tangent
        z = torch.zeros_like(t)
        e_t = torch.stack([v[:, 0], z, v[:, 1]], dim=-1)
        e_h = torch.stack([z, torch.ones_like(t), z], dim=-1)
        return torch.stack([e_t, e_h], dim=-1)                               # (B, 3, 2)

    def _normal_base(self, y, params):
        t = params[:, 0]
        v = _dw(t) / torch.sqrt(1 + t * t)[:, None]
        return torch.stack([v[:, 1], torch.zeros_like(t), -v[:, 0]], dim=-1)[:, :, None]   # (B, 3, 1)

    def _sample_params(self, num, generator, density):
        u = torch.rand(num, generator=generator, dtype=self.dtype)
        h = self.height * torch.rand(num, generator=generator, dtype=self.dtype)
        return torch.stack([_spiral_params(u, density), h], dim=-1)

    def interior_params(self, num, *, generator=None):
        """Random parameters with t clamped to [1.5π + 0.3, 4.5π − 0.3] and h to [0.1, height − 0.1]."""
        params = super().interior_params(num, generator=generator)
        return torch.stack([params[:, 0].clamp(T_MIN + T_MARGIN, T_MAX - T_MARGIN),
                            params[:, 1].clamp(H_MARGIN, self.height - H_MARGIN)], -1)

    def on_boundary(self, params, *, atol=1e-9):
        params = check_points(params, ambient_dim=2, name="params", dtype=self.dtype)
        atol = check_positive(atol, "atol", allow_zero=True)
        t, h = params[..., 0], params[..., 1]
        return _on_ends(t, atol) | (h <= atol) | (h >= self.height - atol)

    def reach_sample(self, num, *, generator=None):
        """``num`` points of the profile (height 0) equally spaced in t: the reach is the spiral's."""
        t = _spiral_reach_params(num, self.dtype)
        return self.from_params(torch.stack([t, torch.zeros_like(t)], -1))

    def brute_force_distance(self, x, *, nodes):
        """Distance to ``nodes`` spiral points, with the height clamped exactly (the roll is a product)."""
        y, out_of_span, lead = self._split(x)                                  # (B, 3), (B,)
        d = brute_force_curve_distance(y[:, [0, 2]], SPIRAL, nodes=nodes)
        h_gap = y[:, 1] - y[:, 1].clamp(0, self.height)
        return torch.sqrt(d ** 2 + h_gap ** 2 + out_of_span ** 2).reshape(lead)
