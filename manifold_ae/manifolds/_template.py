"""Template for a new manifold (docs/new-manifold.md): copy this file, rename the class, fill in the geometry.

Not part of ``MANIFOLDS``. As written it is a circle of radius ``radius`` in R², so that it runs and shows
every required hook in working form (tests/test_manifolds.py runs it): replace each body by your geometry.
"""
from __future__ import annotations

import math

import torch

from manifold_ae.checks import check_positive
from manifold_ae.manifolds.base import Manifold, normalize

__all__ = ["TemplateManifold"]


class TemplateManifold(Manifold):
    """One line on what M₀ is, its base space R^m, its parameters and its reach (cite docs/theory.md §1.4).

    Parameters
    ----------
    radius : float
        The family's own shape parameters, keyword-only, checked (``check_positive``, ``check_int``).
    ambient_dim, seed, Q, centre, dtype
        The embedding, handled by ``Manifold``: always pass them through.
    """

    name = "template"                      # the key in manifolds/__init__.py::_CLASSES
    densities = ("area", "parameter")     # "area" = uniform in the Riemannian volume (the T4 oracles need it)
    default_density = "area"
    numeric_projection = False            # True if _project_base is a numeric search (then: brute_force_distance)

    def __init__(self, *, radius: float = 1.0, ambient_dim: int | None = None, seed: int = 0, Q=None,
                 centre=None, dtype: torch.dtype = torch.float64) -> None:
        self.radius = check_positive(radius, "radius")
        super().__init__(base_dim=2, intrinsic_dim=1, reach=self.radius, ambient_dim=ambient_dim, seed=seed,
                         Q=Q, centre=centre, dtype=dtype)
        self._e1 = torch.tensor([1.0, 0.0], dtype=dtype)

    # ---------------------------------------------------------------- required: the base-space geometry
    def _project_base(self, y):
        """(B, m) -> nearest point (B, m), differentiable by autograd, and its parameters (B, d), detached."""
        u, _ = normalize(y, fallback=self._e1)                               # a fixed choice on the medial axis
        return self.radius * u, torch.remainder(torch.atan2(u[:, 1], u[:, 0]), 2 * math.pi).detach()[:, None]

    def _point_base(self, params):
        """(B, d) -> (B, m)."""
        return self.radius * torch.stack([torch.cos(params[:, 0]), torch.sin(params[:, 0])], dim=-1)

    def _tangent_base(self, y, params):
        """Orthonormal tangent basis (B, m, d) at the point y with parameters params."""
        return torch.stack([-torch.sin(params[:, 0]), torch.cos(params[:, 0])], dim=-1)[:, :, None]

    def _normal_base(self, y, params):
        """Orthonormal normal basis (B, m, m − d) inside the base space."""
        return torch.stack([torch.cos(params[:, 0]), torch.sin(params[:, 0])], dim=-1)[:, :, None]

    def _sample_params(self, num, generator, density):
        """(num, d) parameters drawn from ``density`` (one of ``densities``; already checked)."""
        return 2 * math.pi * torch.rand(num, 1, generator=generator, dtype=self.dtype)

    # ---------------------------------------------------------------- optional hooks (defaults in Manifold)
    # interior_params(num, *, generator=None): clamp sample parameters away from a boundary, if M has one.
    # on_boundary(params, *, atol=1e-9): True where params lie on that boundary.
    # reach_sample(num, *, generator=None): a parameter grid if random samples miss the bottleneck.
    # brute_force_distance(x, *, nodes): required when numeric_projection = True (use self._split(x)).
    # projection_jacobian(x): a closed-form Dπ off M, if there is one (T1 then compares it with autograd).
