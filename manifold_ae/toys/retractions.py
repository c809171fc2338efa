"""Maps onto M that are not π: skewed, radial and oblique retractions, and how much more they change x (T5, T7).

Every retraction here fixes M and is idempotent; on M its Jacobian satisfies ``J P_T = P_T``, so
``‖J‖_F² − d = ‖J P_N‖_F²`` (docs/theory.md, T5). Two of them have that excess in closed form, used by T5 as an
independent check of autograd through ``Manifold.project``:

* skewed retraction ``x ↦ π(x + s A (x − π(x)))``: ``J = P_T + s P_T A P_N``, excess ``s² ‖P_T A P_N‖_F²``;
* radial retraction of a sphere from a shifted centre: ``J`` is the oblique projector onto T_pM along the ray
  ``r = p − c'``, excess ``tan² θ`` with θ the angle between r and the normal at p.

T7 uses the same maps as competitors of π: ``‖x − ρ(x)‖ ≥ dist(x, M)`` for every map ρ into M.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from manifold_ae.manifolds.base import Manifold, normalize
from manifold_ae.manifolds.sphere import Sphere
from manifold_ae.manifolds.subspace import Subspace
from manifold_ae.manifolds.torus import FlatTorus

__all__ = ["Map", "skewed_retraction", "skew_excess", "radial_retraction", "radial_excess",
           "torus_radial_retraction", "angular_slide", "oblique_projection", "nearest_node_map", "retraction_excess"]

Map = Callable[[torch.Tensor], torch.Tensor]


def skewed_retraction(manifold: Manifold, *, A: torch.Tensor, strength: float) -> Map:
    """``x ↦ π(x + s A (x − π(x)))``: fixes M, idempotent, Jacobian ``P_T + s P_T A P_N`` on M (T5a).

    Parameters
    ----------
    manifold : Manifold
    A : (n, n) tensor
        Direction of the skew.
    strength : float
        s; 0 gives π itself.

    Returns
    -------
    map (..., n) -> (..., n)
    """
    if A.shape != (manifold.ambient_dim, manifold.ambient_dim):
        raise ValueError(f"A must have shape ({manifold.ambient_dim}, {manifold.ambient_dim}), got {tuple(A.shape)}")

    def f(x: torch.Tensor) -> torch.Tensor:
        residual = x - manifold.project(x)  # (..., n), normal to M
        return manifold.project(x + strength * residual @ A.T)
    return f


def skew_excess(manifold: Manifold, p: torch.Tensor, *, A: torch.Tensor, strength: float) -> torch.Tensor:
    """Closed-form ``‖J‖_F² − d = s² ‖P_T A P_N‖_F²`` of :func:`skewed_retraction` at points p (P, n) of M: (P,).

    With ``J = P_T + s P_T A P_N`` the cross term ``2 s tr(P_T P_T A P_N) = 2 s tr(P_N P_T A)`` vanishes (T5a).
    """
    p_t = manifold.tangent_projector(p)                                        # (P, n, n)
    p_n = torch.eye(manifold.ambient_dim, dtype=p.dtype) - p_t
    return strength ** 2 * ((p_t @ A.to(p.dtype) @ p_n) ** 2).sum((-1, -2))


def _check_shift(sphere: Manifold, shift: torch.Tensor, radius: float) -> None:
    norm = float(torch.linalg.vector_norm(shift))
    if shift.shape != (sphere.base_dim,) or not norm < radius:
        raise ValueError(f"shift must have shape ({sphere.base_dim},) and norm < radius {radius}, "
                         f"got shape {tuple(shift.shape)} and norm {norm:.3g}")


def _base(manifold: Manifold, x: torch.Tensor) -> torch.Tensor:
    """Base-space coordinates ``y = Qᵀ(x − c)``: (..., n) -> (..., m)."""
    return (x - manifold.centre) @ manifold.Q


def _ray_to_sphere(y: torch.Tensor, shift: torch.Tensor, radius: float) -> torch.Tensor:
    """Where the ray from ``shift`` (inside the ball) through y (..., m) meets ``‖·‖ = radius``: (..., m)."""
    fallback = torch.zeros(y.shape[-1], dtype=y.dtype)
    fallback[0] = 1.0
    u, _ = normalize(y - shift, fallback=fallback)                  # (..., m); at y = shift: e₁ (convention)
    b = u @ shift                                                   # (...,) ⟨u, a⟩
    s = -b + torch.sqrt(b * b - shift @ shift + radius ** 2)        # positive root of ‖a + s u‖ = R
    return shift + s.unsqueeze(-1) * u


def radial_retraction(sphere: Sphere, *, shift: torch.Tensor) -> Map:
    """Retraction of a circle/sphere along rays from a shifted centre ``c' = c + Q a`` (T5a, T7).

    x is first projected orthogonally onto the sphere's affine hull ``c + span(Q)``, then moved along the ray from
    c' to where it meets the sphere. Fixes M and is idempotent; on M its kernel is the ray direction, not the
    normal, so ``‖J‖_F² > d`` unless ``a = 0`` (then it is π). See :func:`radial_excess`.

    Parameters
    ----------
    sphere : Sphere
        A circle or sphere of ``manifold_ae.manifolds`` (``sphere.radius``).
    shift : (m,) tensor
        a, the shifted centre in base coordinates, ``‖a‖ < radius``.

    Returns
    -------
    map (..., n) -> (..., n)
    """
    if not isinstance(sphere, Sphere):
        raise ValueError(f"radial_retraction needs a circle or sphere (manifold_ae.manifolds.Sphere), got "
                         f"{getattr(sphere, 'name', type(sphere).__name__)!r}")
    radius = float(sphere.radius)
    _check_shift(sphere, shift, radius)
    a = shift.to(sphere.dtype)
    return lambda x: sphere.centre + _ray_to_sphere(_base(sphere, x), a, radius) @ sphere.Q.T


def radial_excess(sphere: Sphere, p: torch.Tensor, *, shift: torch.Tensor) -> torch.Tensor:
    """Closed-form ``‖J‖_F² − d = tan² θ`` of :func:`radial_retraction` at points p (P, n) of the sphere: (P,).

    In the base space R^m (m = d + 1) the Jacobian at y = Qᵀ(p − c) is the oblique projector
    ``I − r νᵀ / (ν·r)`` onto ν^⊥ = T along the ray ``r = y − a`` (ν = y / R): its image is T because ρ maps
    into M, its kernel is r because ρ is constant along rays, and it is a projector because ρ∘ρ = ρ. Its squared
    Frobenius norm is ``m − 2 + ‖r‖²/(ν·r)² = d + tan² θ``, with ``cos θ = ν·r / ‖r‖``, so the excess is
    ``‖r‖² R² / (R² − y·a)² − 1`` (T5a).
    """
    y = _base(sphere, p)                                            # (P, m), ‖y‖ = R
    a = shift.to(y.dtype)
    r = y - a                                                       # (P, m) ray direction
    radius_sq = float(sphere.radius) ** 2
    return (r * r).sum(-1) * radius_sq / (radius_sq - y @ a) ** 2 - 1.0


def torus_radial_retraction(torus: FlatTorus, *, shift: torch.Tensor) -> Map:
    """Radial retraction of each circle factor of S¹(a) × S¹(b) from shifted centres ``shift`` (4,) (T7).

    Returns
    -------
    map (..., n) -> (..., n)
    """
    if shift.shape != (4,) or not (float(shift[:2].norm()) < torus.a and float(shift[2:].norm()) < torus.b):
        raise ValueError(f"shift must have shape (4,) with ‖shift[:2]‖ < a = {torus.a} and ‖shift[2:]‖ < b = "
                         f"{torus.b}, got shape {tuple(shift.shape)}")
    a = shift.to(torus.dtype)

    def rho(x: torch.Tensor) -> torch.Tensor:
        y = _base(torus, x)                                          # (..., 4)
        p = torch.cat([_ray_to_sphere(y[..., :2], a[:2], torus.a),
                       _ray_to_sphere(y[..., 2:], a[2:], torus.b)], dim=-1)
        return torus.centre + p @ torus.Q.T
    return rho


def angular_slide(circle: Sphere, *, rate: float) -> Map:
    """ρ(x) = φ(θ(π(x)) + rate · dist(x, M)) on a circle: moves along M by an amount that vanishes on M (T7)."""
    if not (isinstance(circle, Sphere) and circle.intrinsic_dim == 1):
        raise ValueError(f"angular_slide needs a circle (a Sphere with k = 1), got "
                         f"{getattr(circle, 'name', type(circle).__name__)!r}")

    def rho(x: torch.Tensor) -> torch.Tensor:
        info = circle.project_with_info(x)
        return circle.from_params(info.params + rate * info.distance.unsqueeze(-1))
    return rho


def oblique_projection(subspace: Subspace, direction: torch.Tensor) -> Map:
    """ρ(x) = c + U (VᵀU)⁻¹ Vᵀ (x − c): the projection onto span(U) along ker Vᵀ (idempotent, T7).

    ``direction`` is V (n, d); U = Q is the subspace's orthonormal basis.
    """
    U = subspace.Q                                                   # (n, d)
    P = U @ torch.linalg.solve(direction.T @ U, direction.T)         # (n, n), P² = P, range U
    return lambda x: subspace.centre + (x - subspace.centre) @ P.T


def nearest_node_map(nodes: torch.Tensor) -> Map:
    """x (B, n) -> the nearest of a few points (K, n) of M: a map into M that is not a retraction (T7)."""
    return lambda x: nodes[torch.cdist(x, nodes).argmin(-1)]


def retraction_excess(x: torch.Tensor, rho_x: torch.Tensor, pi_x: torch.Tensor) -> dict[str, float]:
    """How much more ρ changes x than π does (T7).

    Parameters
    ----------
    x, rho_x, pi_x : (B, n) tensors

    Returns
    -------
    dict
        ``max_violation = max (dist − ‖x − ρ(x)‖)`` (<= 0 by T7), ``min_normalised_excess`` =
        min over points with ‖ρ(x) − π(x)‖ > 1e-6 of ``(‖x − ρ(x)‖² − dist²)/‖ρ(x) − π(x)‖²`` (> 0 by T7; inf
        when ρ = π everywhere), ``mean_ratio`` = mean ``‖x − ρ(x)‖ / dist``, ``fraction_differing``.
    """
    d_rho = torch.linalg.vector_norm(x - rho_x, dim=-1)              # (B,)
    d_pi = torch.linalg.vector_norm(x - pi_x, dim=-1)                # (B,)
    gap = torch.linalg.vector_norm(rho_x - pi_x, dim=-1)
    differ = gap > 1e-6
    excess = (d_rho ** 2 - d_pi ** 2)[differ] / gap[differ] ** 2
    ratio = d_rho / d_pi.clamp_min(1e-300)
    return {"max_violation": float((d_pi - d_rho).max()),
            "min_normalised_excess": float(excess.min()) if differ.any() else math.inf,
            "mean_ratio": float(ratio.mean()), "fraction_differing": float(differ.double().mean())}
