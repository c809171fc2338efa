"""Spheres S^k of radius R in R^{k+1}, and the circle S¹ (T1: reach R, Dπ(x) = (R/‖x − c‖) P_T)."""
from __future__ import annotations

import math

import torch

from manifold_ae.checks import check_int, check_positive
from manifold_ae.manifolds.base import Manifold, normalize

__all__ = ["Sphere", "Circle"]


class Sphere(Manifold):
    """The round sphere S^k = {y ∈ R^{k+1} : ‖y‖ = R}, embedded in R^n.

    Parameters are hyperspherical angles φ₁..φ_k (φ_i ∈ [0, π] for i < k, φ_k ∈ [0, 2π)):
    y = R (cos φ₁, sin φ₁ cos φ₂, ..., sin φ₁⋯sin φ_{k−1} cos φ_k, sin φ₁⋯sin φ_k). For k = 1 this is the
    angle θ of the circle, y = R (cos θ, sin θ).

    ``density="area"`` is the uniform (surface) distribution; ``"parameter"`` is uniform in the angles (for
    k = 1 the two coincide). Projection: π₀(y) = R y/‖y‖ (the centre itself, at distance R = τ, is sent to
    R e₁ and flagged outside the reach).
    """

    name = "sphere"

    def __init__(self, k: int = 2, *, radius: float = 1.0, ambient_dim: int | None = None, seed: int = 0,
                 Q=None, centre=None, dtype: torch.dtype = torch.float64) -> None:
        self.k = check_int(k, "k", minimum=1)
        self.radius = check_positive(radius, "radius")
        super().__init__(base_dim=self.k + 1, intrinsic_dim=self.k, reach=self.radius, ambient_dim=ambient_dim,
                         seed=seed, Q=Q, centre=centre, dtype=dtype)
        self._e1 = torch.zeros(self.k + 1, dtype=dtype)
        self._e1[0] = 1.0

    def _angles(self, u: torch.Tensor) -> torch.Tensor:
        """Unit vectors (B, k+1) -> hyperspherical angles (B, k)."""
        k = self.k
        # tail[:, i] = ‖u[:, i+1:]‖ for i = 0..k−1
        sq = u.square().flip(-1).cumsum(-1).flip(-1)                     # (B, k+1): Σ_{j>=i} u_j²
        tail = sq[:, 1:].clamp_min(0).sqrt()                              # (B, k)
        phi = torch.atan2(tail[:, : k - 1], u[:, : k - 1])               # (B, k−1) in [0, π]
        last = torch.remainder(torch.atan2(u[:, k], u[:, k - 1]), 2 * math.pi)   # (B,)
        return torch.cat([phi, last[:, None]], dim=-1)

    def _project_base(self, y):
        u, _ = normalize(y, fallback=self._e1)                            # (B, k+1)  y/‖y‖
        return self.radius * u, self._angles(u.detach())

    def _point_base(self, params):
        s, c = torch.sin(params), torch.cos(params)                       # (B, k)
        ones = torch.ones_like(params[:, :1])
        cumsin = torch.cat([ones, torch.cumprod(s, dim=-1)], dim=-1)      # (B, k+1): Π_{j<i} sin φ_j
        return self.radius * cumsin * torch.cat([c, ones], dim=-1)

    def _tangent_base(self, y, params):
        u = y / torch.linalg.vector_norm(y, dim=-1, keepdim=True)         # (B, k+1)
        if self.k == 1:
            return torch.stack([-u[:, 1], u[:, 0]], dim=-1)[:, :, None]   # (B, 2, 1): d/dθ
        # Householder reflection H with H e₁ = ∓u; its other columns span u^⊥.
        s = torch.where(u[:, :1] >= 0, 1.0, -1.0).to(u)                   # (B, 1)
        w = u + s * self._e1.to(u)                                              # (B, k+1), ‖w‖ >= 1
        H = torch.eye(self.k + 1, dtype=u.dtype, device=u.device) - 2 * w[:, :, None] * w[:, None, :] / (w * w).sum(-1)[:, None, None]
        return H[:, :, 1:]                                                # (B, k+1, k)

    def _normal_base(self, y, params):
        return (y / torch.linalg.vector_norm(y, dim=-1, keepdim=True))[:, :, None]   # (B, k+1, 1)

    def projection_jacobian(self, x):
        """Dπ(x) = (R/‖y‖) Q (I − u uᵀ) Qᵀ (..., n, n), y = Qᵀ(x − c), u = y/‖y‖ (T1; needs y ≠ 0)."""
        y, _, lead = self._split(x)                                            # (B, k+1)
        norm = torch.linalg.vector_norm(y, dim=-1)                            # (B,)
        if bool((norm == 0).any()):
            raise ValueError(f"x must not project onto the centre of the {self.name} (Dπ is undefined there)")
        u = y / norm[:, None]
        P0 = torch.eye(self.k + 1, dtype=y.dtype, device=y.device) - u[:, :, None] * u[:, None, :]   # (B, m, m)
        Q = self.Q.to(y)
        J = (self.radius / norm)[:, None, None] * (Q @ P0 @ Q.T)                                     # (B, n, n)
        return J.reshape(*lead, self.ambient_dim, self.ambient_dim)

    def reach_sample(self, num, *, generator=None):
        """The circle: ``num`` equally spaced angles; S^k, k >= 2: ``num`` random points (``sample``).

        On a random sample of the circle the closest pair lies ~1/num² apart, where rounding of q − p (~1e-16)
        swamps its normal part ‖q − p‖²/(2R) and Federer's ratio loses its digits; a grid keeps pairs 2π/num apart.
        """
        if self.k > 1:
            return super().reach_sample(num, generator=generator)
        num = check_int(num, "num", minimum=3)
        return self.from_params(torch.arange(num, dtype=self.dtype)[:, None] * (2 * math.pi / num))

    def _sample_params(self, num, generator, density):
        if density == "area":
            g = torch.randn(num, self.k + 1, generator=generator, dtype=self.dtype)
            return self._angles(g / torch.linalg.vector_norm(g, dim=-1, keepdim=True))
        scale = torch.full((self.k,), math.pi, dtype=self.dtype)
        scale[-1] = 2 * math.pi
        return torch.rand(num, self.k, generator=generator, dtype=self.dtype) * scale


class Circle(Sphere):
    """The circle of radius R in R² (the sphere with k = 1; parameter θ ∈ [0, 2π), arc-length uniform)."""

    name = "circle"

    def __init__(self, *, radius: float = 1.0, ambient_dim: int | None = None, seed: int = 0, Q=None,
                 centre=None, dtype: torch.dtype = torch.float64) -> None:
        super().__init__(1, radius=radius, ambient_dim=ambient_dim, seed=seed, Q=Q, centre=centre, dtype=dtype)
