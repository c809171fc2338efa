"""How far a map is from the orthogonal projection: gaps, Jacobians, idempotence, rates (docs/theory.md, T1–T7).

Every function takes plain tensors (or a row-wise map ``f: (..., n) -> (..., n)``), so it serves trained models,
closed-form oracles and the projection itself alike. ``loglog_slope`` is the one rate estimator used for all
claims that hold only in a limit.
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import numpy as np
import torch

from manifold_ae.checks import as_tensor, check_int

__all__ = ["jacobian", "ProjectionGap", "projection_gap", "jacobian_gap", "idempotence_error",
           "residual_normal_angle", "LogLogFit", "loglog_fit", "loglog_slope"]

Map = Callable[[torch.Tensor], torch.Tensor]


def _values(f: Map | torch.Tensor, x: torch.Tensor, name: str = "f") -> torch.Tensor:
    """``f(x)`` for a map, or ``f`` itself when it already holds the values (same shape as x)."""
    fx = f(x) if callable(f) else as_tensor(f, name=name, dtype=None)
    if fx.shape != x.shape:
        raise ValueError(f"{name}(x) must have the shape of x {tuple(x.shape)}, got {tuple(fx.shape)}")
    return fx


def jacobian(f: Map, x: Any, *, event_dims: int = 1,
             return_output: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Jacobian of a sample-wise map at every sample of a batch (torch.func): the one Jacobian of the package.

    The last ``event_dims`` axes of ``x`` hold one sample (``(n,)`` for vectors, ``(C, H, W)`` for images with
    ``event_dims=3``); the leading axes are flattened into one batch axis, ``f`` is called once on the batch
    ``(B, *event)`` and must act on each sample alone (no batch statistics, e.g. BatchNorm in train mode). The
    derivative of ``Σ_b f(x)_b`` with respect to sample b is then that sample's Jacobian, so ``jacrev`` of the sum
    costs ``prod(out)`` batched backward passes for the whole batch. The result is differentiable with respect
    to the parameters ``f`` closes over (``objectives`` trains the exact contractive penalty with it).

    Parameters
    ----------
    f : callable
        Sample-wise map, batched over a leading axis: ``(B, *event) -> (B, *out)``.
    x : (..., *event) tensor
    event_dims : int
        Number of trailing axes of ``x`` that form one sample, >= 1.
    return_output : bool
        Also return ``f(x)``, from the same forward pass.

    Returns
    -------
    J : (..., *out, *event) tensor
        ``J[i] = d f(x)[i] / d x[i]`` for every leading index i.
    fx : (..., *out) tensor
        Only with ``return_output``.
    """
    x = as_tensor(x, name="x", dtype=None)
    event_dims = check_int(event_dims, "event_dims", minimum=1)
    if x.ndim < event_dims:
        raise ValueError(f"x must have at least event_dims = {event_dims} axes (..., *event), got shape "
                         f"{tuple(x.shape)}")
    lead, event = x.shape[:x.ndim - event_dims], x.shape[x.ndim - event_dims:]
    flat = x.reshape((-1, *event))  # (B, *event)

    def summed(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fv = f(v)  # (B, *out)
        return fv.sum(0), fv

    jac, fx = torch.func.jacrev(summed, has_aux=True)(flat)  # (*out, B, *event), (B, *out)
    jac = jac.movedim(fx.ndim - 1, 0)  # (B, *out, *event)
    jac = jac.reshape(lead + jac.shape[1:])
    return (jac, fx.reshape(lead + fx.shape[1:])) if return_output else jac


class ProjectionGap(NamedTuple):
    """``absolute = ‖f(x) − π(x)‖`` (...); ``relative = absolute / dist(x, M)`` (nan where x ∈ M)."""

    absolute: torch.Tensor
    relative: torch.Tensor


def projection_gap(f: Map | torch.Tensor, x: Any, pi_x: Any) -> ProjectionGap:
    """Distance of a map's output to the exact projection, absolute and relative to ``dist(x, M)`` (T1, T4, T6).

    Parameters
    ----------
    f : callable or (..., n) tensor
        The map, or its values ``f(x)``.
    x : (..., n) tensor
    pi_x : (..., n) tensor
        ``π(x)``.

    Returns
    -------
    ProjectionGap
    """
    x = as_tensor(x, name="x", dtype=None)
    pi = as_tensor(pi_x, name="pi_x", dtype=None)
    if pi.shape != x.shape:
        raise ValueError(f"pi_x must have the shape of x {tuple(x.shape)}, got {tuple(pi.shape)}")
    gap = torch.linalg.vector_norm(_values(f, x) - pi, dim=-1)
    dist = torch.linalg.vector_norm(x - pi, dim=-1)
    rel = torch.where(dist > 0, gap / torch.where(dist > 0, dist, torch.ones_like(dist)),
                      torch.full_like(gap, math.nan))
    return ProjectionGap(gap, rel)


def jacobian_gap(J: Any, P_T: Any) -> torch.Tensor:
    """``‖J − P_T‖_F`` (...): distance of a Jacobian to the tangent projector ``Dπ(p) = P_T(p)`` on M (T1, T5).

    Parameters
    ----------
    J, P_T : (..., n, n) tensors
    """
    j = as_tensor(J, name="J", dtype=None)
    p = as_tensor(P_T, name="P_T", dtype=None)
    if j.ndim < 2 or j.shape[-2:] != p.shape[-2:]:
        raise ValueError(f"J and P_T must be (..., n, n) matrices of the same size, got {tuple(j.shape)} and "
                         f"{tuple(p.shape)}")
    return torch.linalg.matrix_norm(j - p)


def idempotence_error(f: Map, x: Any) -> torch.Tensor:
    """``‖f(f(x)) − f(x)‖`` (...): zero for a retraction such as π (T1, T7)."""
    x = as_tensor(x, name="x", dtype=None)
    fx = _values(f, x)
    return torch.linalg.vector_norm(_values(f, fx) - fx, dim=-1)


def residual_normal_angle(x: Any, fx: Any, tangent_basis: Any) -> torch.Tensor:
    """Angle between the residual ``x − f(x)`` and the normal space ``N = T^⊥`` (T1, T7), in radians.

    ``atan2(‖P_T r‖, ‖P_N r‖)``: 0 when the residual is normal (as for π, with the basis taken at π(x)), π/2 when
    it is tangent; 0 for a zero residual. Accurate for tiny angles.

    Parameters
    ----------
    x, fx : (..., n) tensors
    tangent_basis : (..., n, d) tensor
        Spans the tangent space (usually at f(x) or π(x)); orthonormalised here.

    Returns
    -------
    (...) tensor in [0, π/2]
    """
    x = as_tensor(x, name="x", dtype=None)
    fx = as_tensor(fx, name="fx", dtype=None)
    t = as_tensor(tangent_basis, name="tangent_basis", dtype=None)
    if fx.shape != x.shape:
        raise ValueError(f"fx must have the shape of x {tuple(x.shape)}, got {tuple(fx.shape)}")
    if t.ndim < 2 or t.shape[-2] != x.shape[-1]:
        raise ValueError(f"tangent_basis must have shape (..., {x.shape[-1]}, d), got {tuple(t.shape)}")
    q, _ = torch.linalg.qr(t)  # (..., n, d)
    r = x - fx  # (..., n)
    tangential = (q @ (q.transpose(-1, -2) @ r.unsqueeze(-1))).squeeze(-1)  # (..., n)
    return torch.atan2(torch.linalg.vector_norm(tangential, dim=-1),
                       torch.linalg.vector_norm(r - tangential, dim=-1))


class LogLogFit(NamedTuple):
    """``log y ≈ intercept + slope · log x``; ``r_squared`` of that line."""

    slope: float
    intercept: float
    r_squared: float


def loglog_fit(xs: Any, ys: Any) -> LogLogFit:
    """Least-squares line through ``(log x, log y)``: the rate of a claim that holds in a limit.

    Parameters
    ----------
    xs, ys : (k,) array-like
        Positive and finite, k >= 2 with at least two distinct x.

    Returns
    -------
    LogLogFit
    """
    x = np.asarray(as_tensor(xs, name="xs").detach().cpu(), dtype=np.float64).ravel()
    y = np.asarray(as_tensor(ys, name="ys").detach().cpu(), dtype=np.float64).ravel()
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"xs and ys must be 1-D of the same length >= 2, got {x.size} and {y.size} values")
    if (x <= 0).any() or (y <= 0).any():
        raise ValueError(f"xs and ys must be > 0 for a log-log fit, got min(xs) = {x.min():.3g}, "
                         f"min(ys) = {y.min():.3g}")
    lx, ly = np.log(x), np.log(y)
    if np.ptp(lx) == 0:
        raise ValueError("xs must contain at least two distinct values")
    slope, intercept = np.polyfit(lx, ly, 1)
    resid = ly - (intercept + slope * lx)
    total = ((ly - ly.mean()) ** 2).sum()
    r2 = 1.0 - (resid ** 2).sum() / total if total > 0 else 1.0
    return LogLogFit(float(slope), float(intercept), float(r2))


def loglog_slope(xs: Any, ys: Any) -> float:
    """Least-squares slope of ``log y`` against ``log x`` (see :func:`loglog_fit`)."""
    return loglog_fit(xs, ys).slope
