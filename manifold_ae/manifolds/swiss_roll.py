"""scikit-learn's Swiss roll (t cos t, h, t sin t), t ∈ [1.5π, 4.5π], h ∈ [0, height] (T1; numeric projection).

The surface is the product of the Archimedean spiral arc w(t) = (t cos t, t sin t) with an interval, so the
nearest point is (nearest point on the spiral, height clamped to [0, height]). The spiral has no closed-form
projection: it uses the certified search of ``manifold_ae.manifolds.projection``.

Reach. Federer's infimum is attained between the inner end w(1.5π) and the point of the next turn at
t = 10.87436 (3.4614π): τ = 3.1113458383 (the minimal curvature radius, at the inner end, is 4.618, and pairs
of interior points give 3.11137). The test suite re-derives this number independently.
"""
from __future__ import annotations

import math

import torch

from manifold_ae.checks import check_positive
from manifold_ae.manifolds.base import Manifold
from manifold_ae.manifolds.projection import ParametricCurve, project_curve

__all__ = ["SwissRoll", "SPIRAL_REACH", "spiral_arc_length"]

T_MIN, T_MAX = 1.5 * math.pi, 4.5 * math.pi
SPIRAL_REACH = 3.1113458383288   # docs/theory.md, section 1.4


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


class SwissRoll(Manifold):
    """The Swiss roll of ``sklearn.datasets.make_swiss_roll`` with its latent (t, h) kept.

    Base coordinates (x, y, z) = (t cos t, h, t sin t) as scikit-learn orders them. ``density="parameter"``
    (t and h uniform) is scikit-learn's distribution; ``"area"`` (default) is uniform in area, i.e. t has
    density ∝ √(1 + t²). Points beyond the height range or the spiral's ends project onto the boundary.
    """

    name = "swiss_roll"

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
        if density == "parameter":                                           # scikit-learn: t = 1.5π(1 + 2u)
            return torch.stack([T_MIN + (T_MAX - T_MIN) * u, h], dim=-1)
        s_lo, s_hi = spiral_arc_length(torch.tensor([T_MIN, T_MAX], dtype=self.dtype))
        s = s_lo + (s_hi - s_lo) * u                                         # uniform arc length
        t = torch.sqrt(2 * s)                                                # s ≈ t²/2; Newton on s(t) = s
        for _ in range(50):
            t = (t - (spiral_arc_length(t) - s) / torch.sqrt(1 + t * t)).clamp(T_MIN, T_MAX)
        return torch.stack([t, h], dim=-1)
