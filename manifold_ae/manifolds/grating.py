"""Gratings A cos(2π k·x/N + φ) with free phase φ and a lattice orientation k ∈ {k₁, …, k_J} (T9, second family).

On the periodic N×N grid an orientation is a wave vector k ∈ Z² (a continuous orientation would not be
periodic), so the family is a union of J circles, one per orientation, each in the plane spanned by
cos(2π k_j·x/N) and sin(2π k_j·x/N). Those planes are mutually orthogonal (distinct DFT frequencies up to ±), and
each circle has radius R = A N/√2 (Parseval, 2k ≢ 0 mod N). Hence (docs/theory.md, "Image manifolds"):

- nearest point: with x̂_k = fft2(x)_k, ⟨x, A cos(2π k·x/N + φ)⟩ = A Re(e^{iφ} conj(x̂_k)), so on circle j the
  nearest phase is φ = arg x̂_{k_j} and dist² = ‖x‖² − 2A|x̂_{k_j}| + R²: the nearest circle has the largest
  |x̂_{k_j}|;                                                                                          (I.6)
- reach: R for one orientation (a circle), R/√2 for J >= 2: any p, q on different circles have ⟨p, q⟩ = 0, so
  ‖p − q‖ = √2 R and q − p is normal at both ends (a bottleneck of half-length R/√2 < R).             (I.7)
- Bayes denoiser: every point has norm R, so under x = p + σε with p uniform on the J circles the posterior of the
  phase on circle j is von Mises with κ_j = R ρ_j / σ² (ρ_j = the length of x's coordinates in circle j's
  plane), and r*(x) = Σ_j I₁(κ_j) π_j(x) / Σ_i I₀(κ_i), with π_j the nearest point of circle j.          (I.8)

The single parameter θ ∈ [0, 2πJ) concatenates the circles: orientation j = ⌊θ/2π⌋, phase φ = θ − 2πj.
"""
from __future__ import annotations

import math

import torch

from manifold_ae.checks import check_int, check_positive
from manifold_ae.manifolds.base import normalize
from manifold_ae.manifolds.pixels import PixelManifold

__all__ = ["GratingManifold", "lattice_orientations"]

_TWO_PI = 2 * math.pi


def lattice_orientations(radius_sq: int) -> tuple[tuple[int, int], ...]:
    """All k ∈ Z² with k₁² + k₂² = radius_sq, one of each pair ±k (k₂ > 0, or k₂ = 0 and k₁ > 0)."""
    radius_sq = check_int(radius_sq, "radius_sq", minimum=1)
    r = math.isqrt(radius_sq)
    out = [(a, b) for a in range(-r, r + 1) for b in range(0, r + 1)
           if a * a + b * b == radius_sq and (b > 0 or a > 0)]
    if not out:
        raise ValueError(f"radius_sq={radius_sq} is not a sum of two squares: no lattice wave vector has that length")
    return tuple(out)


class GratingManifold(PixelManifold):
    """Union of J circles {A cos(2π k_j·x/N + φ) : φ ∈ [0, 2π)} of N×N images, a 1-D manifold (T9).

    Parameters
    ----------
    size : int, default 32
        N.
    wavevectors : sequence of (int, int), optional
        Distinct modulo ±, non-zero, with |k_i| < N/2; default ``lattice_orientations(25)`` (|k| = 5, six
        orientations).
    amplitude : float, default 1.0
        A.
    dtype : torch.dtype, default torch.float64
    """

    name = "grating"
    densities = ("area", "parameter")
    default_density = "area"

    def __init__(self, *, size: int = 32, wavevectors=None, amplitude: float = 1.0,
                 dtype: torch.dtype = torch.float64) -> None:
        size = check_int(size, "size", minimum=4)
        self.amplitude = check_positive(amplitude, "amplitude")
        ks = lattice_orientations(25) if wavevectors is None else tuple(tuple(int(c) for c in k) for k in wavevectors)
        seen: set[tuple[int, int]] = set()
        for k in ks:
            if len(k) != 2 or k == (0, 0) or max(abs(k[0]), abs(k[1])) >= size / 2:
                raise ValueError(f"wavevectors must be non-zero integer pairs with |k_i| < N/2 = {size / 2}, got {k}")
            key = min(k, (-k[0], -k[1]))
            if key in seen:
                raise ValueError(f"wavevectors must be distinct up to sign (k and −k give the same circle), got "
                                 f"{k} twice")
            seen.add(key)
        self.wavevectors = ks
        self.radius = self.amplitude * size / math.sqrt(2)                 # R = A N / √2
        reach = self.radius if len(ks) == 1 else self.radius / math.sqrt(2)   # (I.7)
        super().__init__(size=size, intrinsic_dim=1, reach=reach, dtype=dtype)
        grid = torch.arange(size, dtype=torch.float64)
        X1, X2 = torch.meshgrid(grid, grid, indexing="ij")
        psi = torch.stack([_TWO_PI * (k[0] * X1 + k[1] * X2) / size for k in ks]).reshape(len(ks), -1)   # (J, n)
        self._cos, self._sin = torch.cos(psi).to(dtype), torch.sin(psi).to(dtype)          # (J, n)
        self._e1 = torch.tensor([1.0, 0.0], dtype=dtype)

    def _plane(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Coordinates (B, J, 2) of y (B, n) along (cos ψ_j, sin ψ_j), i.e. (Re x̂_k, −Im x̂_k)."""
        C, S = y @ self._cos.T, y @ self._sin.T                            # (B, J)
        return torch.stack([C, S], -1)

    def _project_base(self, y):
        uv = self._plane(y)                                                # (B, J, 2)
        rho = uv.detach().norm(dim=-1)                                     # |x̂_{k_j}|
        j = rho.argmax(-1)                                                 # nearest circle (I.6)
        rows = torch.arange(y.shape[0])
        unit, _ = normalize(uv[rows, j], fallback=self._e1)                # (cos φ, −sin φ)
        point = self.amplitude * (unit[:, :1] * self._cos[j] + unit[:, 1:] * self._sin[j])   # A cos(ψ + φ)
        phi = torch.remainder(torch.atan2(-unit[:, 1].detach(), unit[:, 0].detach()), _TWO_PI)
        theta = phi + _TWO_PI * j
        # φ within an ulp of 2π can round θ onto circle j + 1: such φ is the point φ = 0 of circle j
        theta = torch.where(self._orientation_phase(theta[:, None])[0] == j, theta, _TWO_PI * j.to(theta.dtype))
        return point, theta[:, None]

    def posterior_mean(self, x, *, sigma: float) -> torch.Tensor:
        """r*(x) = E[p | x] for x = p + σ ε with p uniform (in θ, i.e. in arc length) on the J circles (I.8).

        Closed form: per circle a von Mises posterior of the phase with κ_j = R ρ_j / σ², whose mean point is
        (I₁/I₀)(κ_j) π_j(x); the circles are weighted by I₀(κ_j) (scaled Bessel functions, overflow-free).

        Parameters
        ----------
        x : (..., n) array-like
        sigma : float > 0

        Returns
        -------
        (..., n) tensor
        """
        sigma = check_positive(sigma, "sigma")
        xf, lead = self._flat(x, "x")
        scale = math.sqrt(2) / self.size                                   # ‖cos ψ_j‖ = ‖sin ψ_j‖ = N/√2
        uv = self._plane(xf) * scale                                       # (B, J, 2) orthonormal plane coordinates
        rho = uv.norm(dim=-1)                                              # (B, J)
        kappa = self.radius * rho / sigma ** 2
        log_i0 = torch.log(torch.special.i0e(kappa)) + kappa               # log I₀(κ_j)
        weight = torch.softmax(log_i0, dim=-1) * (torch.special.i1e(kappa) / torch.special.i0e(kappa))
        unit = uv / rho.clamp_min(torch.finfo(uv.dtype).tiny)[..., None]   # (B, J, 2); weight 0 where ρ = 0
        nearest = self.amplitude * (unit[..., :1] * self._cos + unit[..., 1:] * self._sin)   # (B, J, n): π_j(x)
        out = (weight[..., None] * nearest).sum(dim=1)                     # (B, n)
        return out.reshape(*lead, self.ambient_dim).to(self.dtype)

    def _orientation_phase(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        theta = torch.remainder(params[:, 0], _TWO_PI * len(self.wavevectors))
        j = torch.div(theta, _TWO_PI, rounding_mode="floor").long().clamp(max=len(self.wavevectors) - 1)
        return j, theta - _TWO_PI * j

    def _point_base(self, params):
        j, phi = self._orientation_phase(params)
        return self.amplitude * (torch.cos(phi)[:, None] * self._cos[j] - torch.sin(phi)[:, None] * self._sin[j])

    def _tangent_base(self, y, params):
        j, phi = self._orientation_phase(params)
        d = -(torch.sin(phi)[:, None] * self._cos[j] + torch.cos(phi)[:, None] * self._sin[j])   # ∂φ / A
        return (d * (math.sqrt(2) / self.size))[..., None]                 # unit: ‖∂φ‖ = A N/√2 = R

    def reach_sample(self, num: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``num`` points equally spaced in θ over all J circles (contains the bottleneck pairs of I.7)."""
        num = check_int(num, "num", minimum=2)
        theta = torch.arange(num, dtype=self.dtype) * (_TWO_PI * len(self.wavevectors) / num)
        return self.from_params(theta[:, None])

    def _sample_params(self, num, generator, density):
        return _TWO_PI * len(self.wavevectors) * torch.rand(num, 1, generator=generator, dtype=self.dtype)
