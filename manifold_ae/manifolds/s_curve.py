"""scikit-learn's S-curve (sin t, h, sign(t)(cos t − 1)), t ∈ [−1.5π, 1.5π], h ∈ [0, height] (T1).

The profile consists of two unit-circle arcs meeting tangentially at the origin: the lower arc
L(t) = (sin t, cos t − 1), t ∈ [0, 1.5π], centred at (0, −1), and the upper arc U(t) = −L(−t), its point
reflection. The nearest point on an arc is the radial projection if its angle lies on the arc, otherwise
the arc end nearer in angle; the S-curve takes the better of the two arcs (closed form, exact). The curve is
also exposed as a ``ParametricCurve`` so tests can cross-check it against the numeric search.

Reach (√5 − 1)/2: the ball tangent to the upper arc and passing through the lower arc's end (−1, −1) has radius
r with (1 + r) + r = ‖(−1, −1) − (0, 1)‖ = √5 (curvature radius 1 elsewhere).
"""
from __future__ import annotations

import math

import torch

from manifold_ae.checks import check_int, check_points, check_positive
from manifold_ae.manifolds.base import Manifold, normalize
from manifold_ae.manifolds.projection import ParametricCurve

__all__ = ["SCurve", "S_CURVE_REACH"]

T_END = 1.5 * math.pi
S_CURVE_REACH = (math.sqrt(5.0) - 1.0) / 2.0
T_MARGIN, H_MARGIN = 0.3, 0.1    # distances from the ends of t and h used by ``interior_params``


def _lower_arc(w: torch.Tensor, e1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest point (B, 2) and parameter (B,) on L(t), t ∈ [0, 1.5π], for profile points w (B, 2)."""
    rel = torch.stack([w[:, 0], w[:, 1] + 1.0], dim=-1)                     # offset from the centre (0, −1)
    u, _ = normalize(rel, fallback=e1)                                      # (sin t, cos t)
    phi = torch.remainder(torch.atan2(u[:, 0], u[:, 1]).detach(), 2 * math.pi)
    on_arc = phi <= T_END
    t_end = torch.where(phi < 1.75 * math.pi, torch.full_like(phi, T_END), torch.zeros_like(phi))
    t = torch.where(on_arc, phi, t_end)
    end_point = torch.stack([torch.sin(t_end), torch.cos(t_end) - 1.0], dim=-1)
    p = torch.where(on_arc[:, None], torch.stack([u[:, 0], u[:, 1] - 1.0], dim=-1), end_point)
    return p, t


def _profile(t):
    return torch.stack([torch.sin(t), torch.sign(t) * (torch.cos(t) - 1)], dim=-1)


def _dprofile(t):
    return torch.stack([torch.cos(t), -torch.sign(t) * torch.sin(t)], dim=-1)


def _ddprofile(t):
    return torch.stack([-torch.sin(t), -torch.sign(t) * torch.cos(t)], dim=-1)


PROFILE = ParametricCurve(point=_profile, velocity=_dprofile, acceleration=_ddprofile, t_min=-T_END, t_max=T_END,
                          max_speed=1.0, reach=S_CURVE_REACH)


class SCurve(Manifold):
    """The S-curve of ``sklearn.datasets.make_s_curve`` with its latent (t, h) kept.

    Base coordinates (x, y, z) = (sin t, h, sign(t)(cos t − 1)). The profile has unit speed, so
    ``"area"`` and ``"parameter"`` coincide (both are scikit-learn's distribution).
    """

    name = "s_curve"

    def __init__(self, *, height: float = 2.0, ambient_dim: int | None = None, seed: int = 0, Q=None,
                 centre=None, dtype: torch.dtype = torch.float64) -> None:
        self.height = check_positive(height, "height")
        super().__init__(base_dim=3, intrinsic_dim=2, reach=S_CURVE_REACH, ambient_dim=ambient_dim, seed=seed,
                         Q=Q, centre=centre, dtype=dtype)
        self.curve = PROFILE
        self._e1 = torch.tensor([1.0, 0.0], dtype=dtype)

    def _project_base(self, y):
        w = y[:, [0, 2]]                                                    # (B, 2) profile plane
        p_lo, t_lo = _lower_arc(w, self._e1)
        p_up, t_up = _lower_arc(-w, self._e1)
        p_up, t_up = -p_up, -t_up                                           # U(t) = −L(−t)
        lower = ((w - p_lo).square().sum(-1) <= (w - p_up).square().sum(-1)).detach()
        p = torch.where(lower[:, None], p_lo, p_up)
        t = torch.where(lower, t_lo, t_up)
        h = y[:, 1].clamp(0.0, self.height)
        return torch.stack([p[:, 0], h, p[:, 1]], dim=-1), torch.stack([t, h.detach()], dim=-1)

    def _point_base(self, params):
        t, h = params[:, 0], params[:, 1]
        return torch.stack([torch.sin(t), h, torch.sign(t) * (torch.cos(t) - 1)], dim=-1)

    def _tangent_base(self, y, params):
        t = params[:, 0]
        z = torch.zeros_like(t)
        e_t = torch.stack([torch.cos(t), z, -torch.sin(t.abs())], dim=-1)
        e_h = torch.stack([z, torch.ones_like(t), z], dim=-1)
        return torch.stack([e_t, e_h], dim=-1)                               # (B, 3, 2)

    def _normal_base(self, y, params):
        t = params[:, 0]
        return torch.stack([torch.sin(t.abs()), torch.zeros_like(t), torch.cos(t)], dim=-1)[:, :, None]

    def _sample_params(self, num, generator, density):
        t = T_END * (2 * torch.rand(num, generator=generator, dtype=self.dtype) - 1)
        h = self.height * torch.rand(num, generator=generator, dtype=self.dtype)
        return torch.stack([t, h], dim=-1)

    def interior_params(self, num, *, generator=None):
        """Random parameters with t clamped to [−1.5π + 0.3, 1.5π − 0.3] and h to [0.1, height − 0.1]."""
        params = super().interior_params(num, generator=generator)
        return torch.stack([params[:, 0].clamp(-T_END + T_MARGIN, T_END - T_MARGIN),
                            params[:, 1].clamp(H_MARGIN, self.height - H_MARGIN)], -1)

    def on_boundary(self, params, *, atol=1e-9):
        params = check_points(params, ambient_dim=2, name="params", dtype=self.dtype)
        atol = check_positive(atol, "atol", allow_zero=True)
        t, h = params[..., 0], params[..., 1]
        return (t.abs() >= T_END - atol) | (h <= atol) | (h >= self.height - atol)

    def reach_sample(self, num, *, generator=None):
        """``num`` points of the profile (height 0) equally spaced in t."""
        t = torch.linspace(-T_END, T_END, check_int(num, "num", minimum=2), dtype=self.dtype)
        return self.from_params(torch.stack([t, torch.zeros_like(t)], -1))
