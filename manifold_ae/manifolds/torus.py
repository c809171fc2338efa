"""The flat torus S¹(a) × S¹(b) ⊂ R⁴ (reach min(a, b)) and the ring torus in R³ (reach min(r, R − r)) (T1)."""
from __future__ import annotations

import math

import torch

from manifold_ae.checks import check_int, check_positive
from manifold_ae.manifolds.base import Manifold, normalize

__all__ = ["FlatTorus", "RingTorus"]

_TWO_PI = 2 * math.pi


def _angle(v: torch.Tensor) -> torch.Tensor:
    """Angle in [0, 2π) of the planar vectors v (..., 2)."""
    return torch.remainder(torch.atan2(v[..., 1], v[..., 0]), _TWO_PI)


def _angle_grid(num: int, dtype: torch.dtype) -> torch.Tensor:
    """The k × k grid (k², 2) of angles (2π i/k, 2π j/k), k = ⌊√num⌋: the tori's ``reach_sample``."""
    k = math.isqrt(check_int(num, "num", minimum=4))
    u = torch.arange(k, dtype=dtype) * _TWO_PI / k
    U, V = torch.meshgrid(u, u, indexing="ij")
    return torch.stack([U.reshape(-1), V.reshape(-1)], -1)


class FlatTorus(Manifold):
    """S¹(a) × S¹(b) = {(a cos u, a sin u, b cos v, b sin v)} ⊂ R⁴, flat, parameters (u, v) ∈ [0, 2π)².

    π₀ projects each coordinate pair onto its circle (the squared distance separates). Area measure = du dv,
    so ``"area"`` and ``"parameter"`` coincide. Reach min(a, b).
    """

    name = "flat_torus"

    def __init__(self, *, a: float = 1.0, b: float = 0.5, ambient_dim: int | None = None, seed: int = 0, Q=None,
                 centre=None, dtype: torch.dtype = torch.float64) -> None:
        self.a = check_positive(a, "a")
        self.b = check_positive(b, "b")
        super().__init__(base_dim=4, intrinsic_dim=2, reach=min(self.a, self.b), ambient_dim=ambient_dim,
                         seed=seed, Q=Q, centre=centre, dtype=dtype)
        self._e1 = torch.tensor([1.0, 0.0], dtype=dtype)

    def _project_base(self, y):
        u1, _ = normalize(y[:, :2], fallback=self._e1)                    # (B, 2)
        u2, _ = normalize(y[:, 2:], fallback=self._e1)                    # (B, 2)
        p = torch.cat([self.a * u1, self.b * u2], dim=-1)                  # (B, 4)
        return p, torch.stack([_angle(u1.detach()), _angle(u2.detach())], dim=-1)

    def _point_base(self, params):
        u, v = params[:, 0], params[:, 1]
        return torch.stack([self.a * torch.cos(u), self.a * torch.sin(u), self.b * torch.cos(v),
                            self.b * torch.sin(v)], dim=-1)

    def _tangent_base(self, y, params):
        u, v = params[:, 0], params[:, 1]
        z = torch.zeros_like(u)
        e_u = torch.stack([-torch.sin(u), torch.cos(u), z, z], dim=-1)
        e_v = torch.stack([z, z, -torch.sin(v), torch.cos(v)], dim=-1)
        return torch.stack([e_u, e_v], dim=-1)                             # (B, 4, 2)

    def _normal_base(self, y, params):
        u, v = params[:, 0], params[:, 1]
        z = torch.zeros_like(u)
        n_u = torch.stack([torch.cos(u), torch.sin(u), z, z], dim=-1)
        n_v = torch.stack([z, z, torch.cos(v), torch.sin(v)], dim=-1)
        return torch.stack([n_u, n_v], dim=-1)                             # (B, 4, 2)

    def _sample_params(self, num, generator, density):
        return _TWO_PI * torch.rand(num, 2, generator=generator, dtype=self.dtype)

    def reach_sample(self, num, *, generator=None):
        """A k × k grid of angles, k = ⌊√num⌋."""
        return self.from_params(_angle_grid(num, self.dtype))


class RingTorus(Manifold):
    """The ring torus ((R + r cos v) cos u, (R + r cos v) sin u, r sin v) ⊂ R³, 0 < r < R.

    Parameters (u, v) ∈ [0, 2π)². The area element is r (R + r cos v) du dv, so ``"area"`` (default; rejection
    sampling of v) differs from ``"parameter"`` (uniform in u, v). π₀: nearest point c(u) on the core circle
    of radius R, then radially onto the tube: π₀(y) = c(u) + r (y − c(u))/‖y − c(u)‖. Points on the axis or
    on the core circle have no unique nearest point (they are at distance R − r or r >= reach).
    """

    name = "ring_torus"

    def __init__(self, *, R: float = 1.0, r: float = 0.4, ambient_dim: int | None = None, seed: int = 0, Q=None,
                 centre=None, dtype: torch.dtype = torch.float64) -> None:
        self.R = check_positive(R, "R")
        self.r = check_positive(r, "r")
        if self.r >= self.R:
            raise ValueError(f"r must be smaller than R for a ring torus, got r={r!r} >= R={R!r}")
        super().__init__(base_dim=3, intrinsic_dim=2, reach=min(self.r, self.R - self.r), ambient_dim=ambient_dim,
                         seed=seed, Q=Q, centre=centre, dtype=dtype)
        self._e1 = torch.tensor([1.0, 0.0], dtype=dtype)

    def _project_base(self, y):
        radial, rho = normalize(y[:, :2], fallback=self._e1)               # (B, 2) = (cos u, sin u), ρ
        w = torch.stack([rho - self.R, y[:, 2]], dim=-1)                   # meridian-plane offset from the core
        tube, _ = normalize(w, fallback=self._e1)                          # (B, 2) = (cos v, sin v)
        ring = self.R + self.r * tube[:, :1]                               # (B, 1)
        p = torch.cat([ring * radial, self.r * tube[:, 1:]], dim=-1)       # (B, 3)
        return p, torch.stack([_angle(radial.detach()), _angle(tube.detach())], dim=-1)

    def _point_base(self, params):
        u, v = params[:, 0], params[:, 1]
        ring = self.R + self.r * torch.cos(v)
        return torch.stack([ring * torch.cos(u), ring * torch.sin(u), self.r * torch.sin(v)], dim=-1)

    def _tangent_base(self, y, params):
        u, v = params[:, 0], params[:, 1]
        e_u = torch.stack([-torch.sin(u), torch.cos(u), torch.zeros_like(u)], dim=-1)
        e_v = torch.stack([-torch.sin(v) * torch.cos(u), -torch.sin(v) * torch.sin(u), torch.cos(v)], dim=-1)
        return torch.stack([e_u, e_v], dim=-1)                             # (B, 3, 2)

    def _normal_base(self, y, params):
        u, v = params[:, 0], params[:, 1]
        nrm = torch.stack([torch.cos(v) * torch.cos(u), torch.cos(v) * torch.sin(u), torch.sin(v)], dim=-1)
        return nrm[:, :, None]                                             # (B, 3, 1)

    def _sample_params(self, num, generator, density):
        u = _TWO_PI * torch.rand(num, generator=generator, dtype=self.dtype)
        if density == "parameter":
            v = _TWO_PI * torch.rand(num, generator=generator, dtype=self.dtype)
            return torch.stack([u, v], dim=-1)
        # area: v has density ∝ R + r cos v; accept a uniform proposal with probability (R + r cos v)/(R + r)
        accepted: list[torch.Tensor] = []
        have = 0
        while have < num:
            prop = _TWO_PI * torch.rand(2 * (num - have) + 16, generator=generator, dtype=self.dtype)
            keep = torch.rand(prop.shape[0], generator=generator, dtype=self.dtype) * (self.R + self.r) \
                <= self.R + self.r * torch.cos(prop)
            accepted.append(prop[keep])
            have += int(keep.sum())
        v = torch.cat(accepted)[:num]
        return torch.stack([u, v], dim=-1)

    def reach_sample(self, num, *, generator=None):
        """A k × k grid of angles, k = ⌊√num⌋ (it contains the bottleneck pairs across the hole)."""
        return self.from_params(_angle_grid(num, self.dtype))
