"""Affine subspaces c + span(Q) of dimension d (T1; with a Gaussian latent they are the T2/T3/T4 Wiener case)."""
from __future__ import annotations

import math

import torch

from manifold_ae.checks import check_int, check_positive
from manifold_ae.manifolds.base import Manifold

__all__ = ["Subspace"]


class Subspace(Manifold):
    """The d-dimensional affine subspace centre + span(Q) of R^n (base space R^d, where M₀ = R^d).

    π(x) = c + Q Qᵀ(x − c), reach τ = ∞. Parameters are the coordinates y = Qᵀ(x − c).
    Densities: ``"gaussian"`` (default) y ~ N(0, scale² I); ``"parameter"``/``"area"`` uniform on
    [−scale, scale]^d. Normal rays use t ∈ [0, fraction] (the reach is infinite).
    """

    name = "subspace"
    densities = ("gaussian", "area", "parameter")
    default_density = "gaussian"

    def __init__(self, d: int = 2, *, scale: float = 1.0, ambient_dim: int | None = None, seed: int = 0,
                 Q=None, centre=None, dtype: torch.dtype = torch.float64) -> None:
        self.d = check_int(d, "d", minimum=1)
        self.scale = check_positive(scale, "scale")
        super().__init__(base_dim=self.d, intrinsic_dim=self.d, reach=math.inf, ambient_dim=ambient_dim,
                         seed=seed, Q=Q, centre=centre, dtype=dtype)

    def _project_base(self, y):
        return y, y.detach()

    def _point_base(self, params):
        return params

    def _tangent_base(self, y, params):
        return torch.eye(self.d, dtype=y.dtype, device=y.device).expand(y.shape[0], -1, -1)

    def _normal_base(self, y, params):
        return y.new_zeros(y.shape[0], self.d, 0)

    def _sample_params(self, num, generator, density):
        if density == "gaussian":
            return self.scale * torch.randn(num, self.d, generator=generator, dtype=self.dtype)
        return self.scale * (2 * torch.rand(num, self.d, generator=generator, dtype=self.dtype) - 1)
