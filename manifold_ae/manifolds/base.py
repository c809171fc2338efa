"""The ``Manifold`` base class: a manifold M₀ in a base space R^m embedded isometrically in R^n (T1).

Every manifold is defined once in its base space R^m (the circle in R², the Swiss roll in R³, ...) and placed
in the ambient space R^n by ``x = centre + Q y`` with Q (n, m) having orthonormal columns. Because the
embedding is an isometry onto an affine subspace, the nearest-point map factorises (docs/theory.md, T1):

    π_M(x) = centre + Q π₀(Qᵀ(x − centre)),        P_T(x) = Q P_T,0 Qᵀ,

and everything orthogonal to span(Q) is removed entirely. Subclasses implement only the base-space geometry
(``_project_base``, ``_point_base``, ``_tangent_base``, ``_normal_base``, ``_sample_params``); this class does
the embedding, input checks, batching over leading dimensions and the normal-ray construction.

Hooks that claims and tests use instead of asking for a manifold by name (docs/new-manifold.md), each with a
default that is right for a manifold without boundary and with a closed-form projection:
``interior_params`` (parameters away from a boundary), ``on_boundary``, ``reach_sample`` (dense sample for
Federer's formula), ``numeric_projection`` with ``brute_force_distance`` (the independent oracle of a numeric
projection), and ``projection_jacobian`` (a closed-form Dπ off M, where one is known).
"""
from __future__ import annotations

import abc
import math
from typing import ClassVar, NamedTuple

import torch

from manifold_ae.checks import as_tensor, check_choice, check_fraction, check_int, check_points, check_positive
from manifold_ae.manifolds.reach import within_reach

__all__ = ["Manifold", "ProjectionResult", "NormalRaySample", "normalize"]


class ProjectionResult(NamedTuple):
    """Nearest point and what is known about it, batched over the leading dims ``...`` of the input."""

    point: torch.Tensor         # (..., n)  π(x)
    params: torch.Tensor        # (..., d)  latent parameters of π(x)
    distance: torch.Tensor      # (...,)    ‖x − π(x)‖ = dist(x, M)
    within_reach: torch.Tensor  # (...,)    bool: dist(x, M) < (1 − REACH_RTOL)·reach: unique nearest point (Federer)


class NormalRaySample(NamedTuple):
    """Points x = p + t ν on normal rays, with π(x) = p exactly because t < reach (T1, normal-ray truth)."""

    x: torch.Tensor       # (num, n)
    p: torch.Tensor       # (num, n)  foot point on M, = π(x)
    t: torch.Tensor       # (num,)    distance along the ray, 0 <= t <= fraction * reach
    nu: torch.Tensor      # (num, n)  unit normal at p
    params: torch.Tensor  # (num, d)  latent parameters of p


def normalize(v: torch.Tensor, *, fallback: torch.Tensor, eps: float = 1e-300) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit vector ``v / ‖v‖`` along the last axis, ``fallback`` where ‖v‖ <= eps; also returns ‖v‖.

    Written with the double-``where`` trick so autograd never sees a division by zero.

    Parameters
    ----------
    v : (..., k) tensor
    fallback : (k,) or (..., k) tensor, unit vector used where ``v`` vanishes.
    """
    norm = torch.linalg.vector_norm(v, dim=-1, keepdim=True)          # (..., 1)
    ok = norm > eps
    safe = torch.where(ok, v, fallback.to(v).expand_as(v))
    return safe / torch.where(ok, norm, torch.ones_like(norm)), norm.squeeze(-1)


def _orthonormal(n: int, m: int, generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """A random (n, m) matrix with orthonormal columns (Haar, via QR with sign fix)."""
    g = torch.randn(n, m, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    q = q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, torch.ones(()))
    return q.to(dtype)


class Manifold(abc.ABC):
    """A compact (or affine) C² submanifold of R^n with exact nearest-point projection (T1).

    Parameters
    ----------
    base_dim : int
        Dimension m of the base space in which the manifold is defined.
    intrinsic_dim : int
        Manifold dimension d.
    reach : float
        Analytic reach τ (``math.inf`` for an affine subspace).
    ambient_dim : int or None, default None
        Ambient dimension n >= m. ``None`` means no embedding: n = m and Q = I.
    seed : int, default 0
        Seed of the random orthonormal Q (ignored when ``ambient_dim`` is None or ``Q`` is given).
    Q : (n, m) array-like, optional
        Explicit embedding with orthonormal columns (overrides ``seed``).
    centre : (n,) array-like, optional
        Offset of the embedding; default the origin.
    dtype : torch.dtype, default torch.float64

    Notes
    -----
    Inputs of ``project`` and friends have shape (..., n); every output keeps the leading dims ``...``.
    """

    name: ClassVar[str] = "manifold"
    densities: ClassVar[tuple[str, ...]] = ("area", "parameter")
    default_density: ClassVar[str] = "area"
    numeric_projection: ClassVar[bool] = False   # π is a numeric search: T1 checks it against brute_force_distance

    def __init__(self, *, base_dim: int, intrinsic_dim: int, reach: float, ambient_dim: int | None = None,
                 seed: int = 0, Q=None, centre=None, dtype: torch.dtype = torch.float64) -> None:
        self.base_dim = base_dim
        self.intrinsic_dim = intrinsic_dim
        self.reach = float(reach)
        self.dtype = dtype
        self.seed = check_int(seed, "seed")
        if Q is not None:
            Q = as_tensor(Q, name="Q", dtype=dtype)
            if Q.ndim != 2 or Q.shape[1] != base_dim or Q.shape[0] < base_dim:
                raise ValueError(f"Q must have shape (n, {base_dim}) with n >= {base_dim} (base dimension of "
                                 f"{self.name}), got shape {tuple(Q.shape)}")
            gram_err = float((Q.T @ Q - torch.eye(base_dim, dtype=dtype)).abs().max())
            if gram_err > 1e-10:
                raise ValueError(f"Q must have orthonormal columns (QᵀQ = I), got max |QᵀQ − I| = {gram_err:.3g}")
            if ambient_dim is not None and ambient_dim != Q.shape[0]:
                raise ValueError(f"ambient_dim={ambient_dim!r} disagrees with Q of shape {tuple(Q.shape)}")
            self.ambient_dim = Q.shape[0]
            self.Q = Q
            self._identity = False
        elif ambient_dim is None:
            self.ambient_dim = base_dim
            self.Q = torch.eye(base_dim, dtype=dtype)
            self._identity = True
        else:
            self.ambient_dim = check_int(ambient_dim, "ambient_dim", minimum=base_dim)
            gen = torch.Generator().manual_seed(self.seed)
            self.Q = _orthonormal(self.ambient_dim, base_dim, gen, dtype)   # (n, m)
            self._identity = False
        n = self.ambient_dim
        if centre is None:
            self.centre = torch.zeros(n, dtype=dtype)
        else:
            self.centre = as_tensor(centre, name="centre", dtype=dtype)
            if self.centre.shape != (n,):
                raise ValueError(f"centre must have shape ({n},) (ambient dimension), got {tuple(self.centre.shape)}")
        self._centre_base = self.centre @ self.Q              # (m,)
        self._has_centre = bool((self.centre != 0).any())
        self._Q_perp: torch.Tensor | None = None

    # ------------------------------------------------------------------ base-space geometry (subclasses)
    @abc.abstractmethod
    def _project_base(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest point of M₀ to ``y`` (B, m): returns (point (B, m), params (B, d)); differentiable."""

    @abc.abstractmethod
    def _point_base(self, params: torch.Tensor) -> torch.Tensor:
        """Parametrisation: params (B, d) -> points (B, m)."""

    @abc.abstractmethod
    def _tangent_base(self, y: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Orthonormal tangent basis (B, m, d) at the point ``y`` (B, m) on M₀ with parameters ``params``."""

    @abc.abstractmethod
    def _normal_base(self, y: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Orthonormal basis (B, m, m − d) of the normal space of M₀ inside R^m at ``y``."""

    @abc.abstractmethod
    def _sample_params(self, num: int, generator: torch.Generator | None, density: str) -> torch.Tensor:
        """``num`` parameter vectors (num, d) drawn from ``density``."""

    def _ray_radius(self) -> float:
        """Length scale of normal rays: the reach, or 1 where the reach is infinite."""
        return self.reach if math.isfinite(self.reach) else 1.0

    # ------------------------------------------------------------------ hooks for claims and tests (defaults)
    def interior_params(self, num: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Parameters (num, d) of random points away from the boundary of a bounded piece.

        Where M has a boundary (a curve's ends, a height interval) π is only one-sidedly differentiable and
        the residual need not be normal, so the checks of Dπ = P_T and of residual normality use these.
        Default: ``sample(num, generator=generator)`` parameters (no boundary). Bounded manifolds clamp them
        to a fixed margin inside their parameter box.
        """
        return self.sample(num, generator=generator)[1]

    def on_boundary(self, params, *, atol: float = 1e-9) -> torch.Tensor:
        """Boolean (...,): the parameters (..., d) lie within ``atol`` of the boundary. Default: all False."""
        params = check_points(params, ambient_dim=self.intrinsic_dim, name="params", dtype=self.dtype)
        check_positive(atol, "atol", allow_zero=True)
        return torch.zeros(params.shape[:-1], dtype=torch.bool)

    def reach_sample(self, num: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """A dense sample (N, n) of M for Federer's formula (``estimate_reach``), N <= num.

        Default: ``num`` random points from ``sample``. Curves and tori override it with parameter grids
        (grids find the bottleneck pairs that random samples miss).
        """
        return self.sample(num, generator=generator)[0]

    def brute_force_distance(self, x, *, nodes: int) -> torch.Tensor:
        """dist(x, M) (...,) by exhaustive search over a dense grid of ``nodes`` parameter values.

        The independent oracle of a numeric projection (``numeric_projection = True``): a grid can only
        over-estimate the distance, so ``distance(x) <= brute_force_distance(x)`` must hold for every x.
        Manifolds with a closed-form projection need not implement it.
        """
        raise NotImplementedError(f"{type(self).__name__} has no brute-force distance; manifolds with "
                                  "numeric_projection = True must implement brute_force_distance(x, *, nodes)")

    def projection_jacobian(self, x) -> torch.Tensor:
        """Closed-form Dπ(x) (..., n, n) for x off M inside the reach (T1: Dπ(p + tν) = (I − tS_ν)⁻¹ P_T(p)).

        Only manifolds with a simple shape operator implement it (circle and sphere); T1 compares it with the
        autograd Jacobian of ``project``. Default: NotImplementedError.
        """
        raise NotImplementedError(f"{type(self).__name__} has no closed-form off-manifold Jacobian of π")

    def _split(self, x) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
        """x (..., n) -> base coordinates y = Qᵀ(x − c) (B, m), the norm (B,) of the part outside span(Q), dims."""
        xf, lead = self._flat(x, "x")
        y = self._to_base(xf)                                                # (B, m)
        return y, torch.linalg.vector_norm(xf - self._from_base(y), dim=-1), lead

    # ------------------------------------------------------------------ embedding
    def _to_base(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n) -> (B, m): y = Qᵀ(x − centre)."""
        if self._identity:
            return x - self.centre if self._has_centre else x
        y = x @ self.Q.to(x.device)                                     # (B, m)
        return y - self._centre_base.to(x.device) if self._has_centre else y

    def _from_base(self, y: torch.Tensor) -> torch.Tensor:
        """(B, m) -> (B, n): x = centre + Q y."""
        if self._identity:
            return y + self.centre if self._has_centre else y
        return torch.addmm(self.centre.to(y.device), y, self.Q.T.to(y.device))

    @property
    def Q_perp(self) -> torch.Tensor:
        """(n, n − m) orthonormal basis of the complement of span(Q) (computed once, seeded)."""
        if self._Q_perp is None:
            n, m = self.ambient_dim, self.base_dim
            if n == m:
                self._Q_perp = torch.zeros(n, 0, dtype=self.dtype)
            else:
                gen = torch.Generator().manual_seed(self.seed + 1)
                extra = torch.randn(n, n - m, generator=gen, dtype=torch.float64).to(self.dtype)
                extra = extra - self.Q @ (self.Q.T @ extra)
                q, _ = torch.linalg.qr(extra)
                q = q - self.Q @ (self.Q.T @ q)                        # one re-orthogonalisation pass
                self._Q_perp, _ = torch.linalg.qr(q)
        return self._Q_perp

    # ------------------------------------------------------------------ public API
    def _flat(self, x, name: str) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Validate x (..., n) and flatten it to (B, n).

        Finiteness is screened with one sum (no temporary the size of x); only if the sum is not finite does
        ``check_points`` scan x element-wise and raise its ValueError naming the argument.
        """
        t = as_tensor(x, name=name, dtype=self.dtype, allow_nonfinite=True)
        if t.ndim == 0 or t.shape[-1] != self.ambient_dim or not bool(torch.isfinite(t.sum())):
            t = check_points(t, ambient_dim=self.ambient_dim, name=name, dtype=self.dtype)
        return t.reshape(-1, self.ambient_dim), tuple(t.shape[:-1])

    def project_with_info(self, x) -> ProjectionResult:
        """Nearest point π(x) with parameters, distance and the within-reach flag (T1).

        Parameters
        ----------
        x : (..., n) array-like

        Returns
        -------
        ProjectionResult
            ``point`` (..., n), ``params`` (..., d), ``distance`` (...,), ``within_reach`` (...,) bool:
            ``manifolds.reach.within_reach(distance, reach)``, False on the medial axis and in a band of
            relative width ``REACH_RTOL`` below the reach.
        """
        xf, lead = self._flat(x, "x")                                     # (B, n)
        p0, params = self._project_base(self._to_base(xf))                # (B, m), (B, d)
        p = self._from_base(p0)                                           # (B, n)  T1: c + Q π₀(Qᵀ(x − c))
        dist = torch.linalg.vector_norm(xf - p, dim=-1)                   # (B,)
        return ProjectionResult(p.reshape(*lead, -1), params.reshape(*lead, -1), dist.reshape(lead),
                                within_reach(dist, self.reach).reshape(lead))

    def project(self, x) -> torch.Tensor:
        """Exact nearest point π(x), shape (..., n); differentiable by autograd (Dπ(p) = P_T(p) on M, T1)."""
        xf, lead = self._flat(x, "x")                                     # (B, n)
        p0, _ = self._project_base(self._to_base(xf))                     # (B, m)
        return self._from_base(p0).reshape(*lead, self.ambient_dim)

    def distance(self, x) -> torch.Tensor:
        """dist(x, M) = ‖x − π(x)‖, shape (...,)."""
        return self.project_with_info(x).distance

    def contains(self, x, *, atol: float = 1e-9) -> torch.Tensor:
        """Boolean (...,): dist(x, M) <= atol."""
        atol = check_positive(atol, "atol", allow_zero=True)
        return self.distance(x) <= atol

    def from_params(self, params) -> torch.Tensor:
        """Points of M for latent parameters (..., d) -> (..., n)."""
        params = check_points(params, ambient_dim=self.intrinsic_dim, name="params", dtype=self.dtype)
        lead = params.shape[:-1]
        p = self._from_base(self._point_base(params.reshape(-1, self.intrinsic_dim)))
        return p.reshape(*lead, self.ambient_dim)

    def _frame(self, p, name: str) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
        pf, lead = self._flat(p, name)
        y0, params = self._project_base(self._to_base(pf).detach())       # foot point in the base space
        return y0, params, lead

    def tangent_basis(self, p) -> torch.Tensor:
        """Orthonormal tangent basis at π(p): (..., n, d) (for p on M this is T_pM)."""
        y0, params, lead = self._frame(p, "p")
        T = torch.einsum("nm,bmd->bnd", self.Q.to(y0), self._tangent_base(y0, params))   # (B, n, d)
        return T.reshape(*lead, self.ambient_dim, self.intrinsic_dim)

    def tangent_projector(self, p) -> torch.Tensor:
        """P_T = T Tᵀ at π(p): (..., n, n)."""
        T = self.tangent_basis(p)
        return T @ T.transpose(-1, -2)

    def normal_basis(self, p) -> torch.Tensor:
        """Orthonormal normal basis at π(p): (..., n, n − d); the first m − d columns lie inside span(Q)."""
        y0, params, lead = self._frame(p, "p")
        inside = torch.einsum("nm,bmk->bnk", self.Q.to(y0), self._normal_base(y0, params))   # (B, n, m − d)
        outside = self.Q_perp.to(y0).expand(inside.shape[0], -1, -1)                        # (B, n, n − m)
        N = torch.cat([inside, outside], dim=-1)
        return N.reshape(*lead, self.ambient_dim, self.ambient_dim - self.intrinsic_dim)

    def sample(self, num: int, *, generator: torch.Generator | None = None,
               density: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Random points of M with their latent parameters.

        Parameters
        ----------
        num : int
        generator : torch.Generator, optional
        density : str, optional
            One of ``self.densities``; default ``self.default_density``. ``"area"`` is uniform with respect to
            the Riemannian volume (arc length / area), ``"parameter"`` uniform in the latent parameters.

        Returns
        -------
        points : (num, n)
        params : (num, d)
        """
        num = check_int(num, "num", minimum=0)
        density = check_choice(self.default_density if density is None else density, "density", self.densities)
        params = self._sample_params(num, generator, density)
        return self._from_base(self._point_base(params)), params

    def sample_normal_ray(self, num: int, *, fraction: float = 0.9, normal: str = "any",
                          generator: torch.Generator | None = None, density: str | None = None) -> NormalRaySample:
        """Points x = p + t ν with ν a unit normal at p and t ~ U[0, fraction·τ], so π(x) = p exactly (T1).

        Parameters
        ----------
        num : int
        fraction : float in (0, 1), default 0.9
            Largest t as a fraction of the reach τ (of 1 where τ is infinite).
        normal : {"any", "inside", "outside"}
            ν uniform on the unit sphere of the whole normal space, of the normal space inside span(Q)
            (the base space), or of the orthogonal complement of span(Q).
        generator, density : as in ``sample``.

        Notes
        -----
        Foot points may lie on the boundary of a bounded piece: the reach used here is Federer's formula with
        full tangent spaces at every point, which is exactly the condition for π(p + tν) = p (docs/theory.md, section 1.3).
        """
        fraction = check_fraction(fraction, "fraction", low_inclusive=False, high_inclusive=False)
        normal = check_choice(normal, "normal", ("any", "inside", "outside"))
        n, m, d = self.ambient_dim, self.base_dim, self.intrinsic_dim
        k = {"any": n - d, "inside": m - d, "outside": n - m}[normal]
        if k == 0:
            raise ValueError(f"normal={normal!r} needs a non-empty normal space, but {self.name} has "
                             f"ambient_dim={n}, base_dim={m}, intrinsic_dim={d}; choose another normal or ambient_dim")
        p, params = self.sample(num, generator=generator, density=density)             # (num, n), (num, d)
        # ν ∝ Q N₀ c_in + Q_⊥ c_out with Gaussian coefficients: uniform on the unit sphere of the chosen space
        nu = torch.zeros_like(p)                                                       # (num, n)
        if normal in ("any", "inside") and m > d:
            c_in = torch.randn(num, m - d, generator=generator, dtype=self.dtype)
            nu0 = torch.einsum("bmk,bk->bm", self._normal_base(self._to_base(p), params), c_in)   # (num, m)
            nu = nu + nu0 @ self.Q.T
        if normal in ("any", "outside") and n > m:
            c_out = torch.randn(num, n - m, generator=generator, dtype=self.dtype)
            nu = nu + c_out @ self.Q_perp.T
        nu = nu / torch.linalg.vector_norm(nu, dim=-1, keepdim=True)
        t = fraction * self._ray_radius() * torch.rand(num, generator=generator, dtype=self.dtype)
        return NormalRaySample(p + t[:, None] * nu, p, t, nu, params)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(ambient_dim={self.ambient_dim}, base_dim={self.base_dim}, "
                f"intrinsic_dim={self.intrinsic_dim}, reach={self.reach:.6g})")
