"""``PixelManifold``: manifolds of N×N images that live in pixel space R^(N²) itself (groundwork for T9).

The toy manifolds are defined in a small base space and embedded by a random isometry Q; an image manifold is
already in its ambient space, so Q = I and nothing is embedded. Storing I (N² × N²) would cost 2 GB at 128², so
this base class keeps the identity implicit: ``Q`` is built only when asked for, tangent and normal frames are
computed in pixel space directly, and normal rays draw ν = P_N z / ‖P_N z‖ with z standard Gaussian (uniform on
the unit sphere of the normal space, O(N²) per point instead of an (N², N² − d) frame).

Points are flattened images: shape (..., n) with n = N², row-major (``image.reshape(..., N * N)``);
``as_images`` / ``as_points`` convert between the two views.
"""
from __future__ import annotations

import abc

import torch

from manifold_ae.checks import as_tensor, check_choice, check_fraction, check_int
from manifold_ae.manifolds.base import Manifold, NormalRaySample

__all__ = ["PixelManifold"]


class PixelManifold(Manifold, abc.ABC):
    """A manifold of ``size × size`` images in R^n, n = size², with the identity embedding (Q = I implicit).

    Parameters
    ----------
    size : int
        Image side N >= 4.
    intrinsic_dim : int
        Manifold dimension d.
    reach : float
        Reach τ (analytic or certified numeric, see the subclass).
    dtype : torch.dtype, default torch.float64
    """

    def __init__(self, *, size: int, intrinsic_dim: int, reach: float, dtype: torch.dtype = torch.float64) -> None:
        # Manifold.__init__ would store Q = I (n × n); the fields it sets are set here with Q left implicit.
        self.size = check_int(size, "size", minimum=4)
        n = self.size * self.size
        self.base_dim = n
        self.ambient_dim = n
        self.intrinsic_dim = intrinsic_dim
        self.reach = float(reach)
        self.dtype = dtype
        self.seed = 0
        self._identity = True
        self.centre = torch.zeros(n, dtype=dtype)
        self._centre_base = self.centre
        self._has_centre = False
        self._Q_perp = torch.zeros(n, 0, dtype=dtype)

    @property
    def Q(self) -> torch.Tensor:
        """The identity (n, n): built on demand only (n² entries)."""
        return torch.eye(self.ambient_dim, dtype=self.dtype)

    # ------------------------------------------------------------------ image views
    def as_images(self, x) -> torch.Tensor:
        """Flattened points (..., n) -> images (..., N, N)."""
        xf, lead = self._flat(x, "x")
        return xf.reshape(*lead, self.size, self.size)

    def as_points(self, images) -> torch.Tensor:
        """Images (..., N, N) -> flattened points (..., n), n = N²; ValueError for any other trailing shape."""
        t = as_tensor(images, name="images", dtype=self.dtype)
        if t.ndim < 2 or tuple(t.shape[-2:]) != (self.size, self.size):
            raise ValueError(f"images must have shape (..., {self.size}, {self.size}) for {self.name} of size "
                             f"{self.size}, got shape {tuple(t.shape)}")
        return t.reshape(*t.shape[:-2], self.ambient_dim)

    # ------------------------------------------------------------------ frames in pixel space
    def tangent_basis(self, p) -> torch.Tensor:
        """Orthonormal tangent basis at π(p): (..., n, d)."""
        y0, params, lead = self._frame(p, "p")
        return self._tangent_base(y0, params).reshape(*lead, self.ambient_dim, self.intrinsic_dim)

    def normal_basis(self, p) -> torch.Tensor:
        """Orthonormal normal basis at π(p): (..., n, n − d), from a complete QR of the tangent frame (O(n²) each)."""
        y0, params, lead = self._frame(p, "p")
        N = self._normal_base(y0, params)
        return N.reshape(*lead, self.ambient_dim, self.ambient_dim - self.intrinsic_dim)

    def _normal_base(self, y, params):
        T = self._tangent_base(y, params)                                  # (B, n, d)
        full, _ = torch.linalg.qr(T, mode="complete")                      # (B, n, n), first d columns span T
        return full[..., self.intrinsic_dim:]

    def sample_normal_ray(self, num: int, *, fraction: float = 0.9, normal: str = "any",
                          generator: torch.Generator | None = None, density: str | None = None) -> NormalRaySample:
        """Points x = p + t ν, ν uniform on the unit normal sphere at p, t ~ U[0, fraction·τ]: π(x) = p (T1).

        Same contract as ``Manifold.sample_normal_ray``; ``"inside"`` equals ``"any"`` (the base space is the
        ambient space) and ``"outside"`` is empty, so it raises.
        """
        fraction = check_fraction(fraction, "fraction", low_inclusive=False, high_inclusive=False)
        normal = check_choice(normal, "normal", ("any", "inside", "outside"))
        if normal == "outside":
            raise ValueError(f"normal='outside' needs a normal space outside the base space, but {self.name} lives "
                             f"in pixel space itself (ambient_dim = base_dim = {self.ambient_dim}); use 'any'")
        p, params = self.sample(num, generator=generator, density=density)             # (num, n), (num, d)
        z = torch.randn(p.shape, generator=generator, dtype=self.dtype)                # (num, n)
        T = self._tangent_base(p, params)                                              # (num, n, d)
        z = z - torch.einsum("bnd,bd->bn", T, torch.einsum("bnd,bn->bd", T, z))        # P_N z
        nu = z / torch.linalg.vector_norm(z, dim=-1, keepdim=True)
        t = fraction * self._ray_radius() * torch.rand(num, generator=generator, dtype=self.dtype)
        return NormalRaySample(p + t[:, None] * nu, p, t, nu, params)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, intrinsic_dim={self.intrinsic_dim}, reach={self.reach:.6g})"
