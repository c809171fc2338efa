"""Masked projection: the nearest point of M measured on the uncorrupted coordinates only (docs/theory.md, T6).

``π_S(x̂) = argmin_{y ∈ M} ‖(x̂ − y)_{Sᶜ}‖``. When the corrupted set S is identifiable from x̂ and the clean
coordinates determine the point of M, this is the Bayes-optimal self-supervised-corruption map (the posterior
concentrates on it). It changes x̂ mostly on S, and can differ from the full orthogonal projection ``π(x̂)``.

Masks follow ``manifold_ae.corruptions``: float in [0, 1], 1 = corrupted; the clean weight of a coordinate is
``1 − mask`` (soft masks give a weighted least-squares problem).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch

from manifold_ae.checks import as_tensor, check_int, check_points
from manifold_ae.theory.diagnostics import jacobian

__all__ = ["MaskedProjection", "masked_projection_subspace", "masked_projection_pointcloud"]


class MaskedProjection(NamedTuple):
    """Result of :func:`masked_projection_pointcloud`.

    point : (..., n) the masked projection; params : (..., d) its parameters (None without ``params``);
    distance : (...) the masked distance ``‖(x̂ − point)_{Sᶜ}‖``.
    """

    point: torch.Tensor
    params: torch.Tensor | None
    distance: torch.Tensor


def _clean_weights(mask: Any, x: torch.Tensor) -> torch.Tensor:
    m = as_tensor(mask, name="mask").to(x)
    if m.ndim == 0 or m.shape[-1] != x.shape[-1]:
        raise ValueError(f"mask must have shape (..., {x.shape[-1]}) broadcastable to x_hat {tuple(x.shape)}, "
                         f"got {tuple(m.shape)}")
    if bool(((m < 0) | (m > 1)).any()):
        raise ValueError("mask must lie in [0, 1] (1 = corrupted)")
    try:
        return torch.broadcast_to(1.0 - m, x.shape)
    except RuntimeError as err:
        raise ValueError(f"mask of shape {tuple(m.shape)} does not broadcast to x_hat {tuple(x.shape)}") from err


def masked_projection_subspace(x_hat: Any, mask: Any, *, basis: Any, centre: Any = None) -> torch.Tensor:
    """Masked projection onto the affine subspace ``c + span(U)``: ``c + U (U_{Sᶜ})⁺ (x̂ − c)_{Sᶜ}`` (T6).

    Parameters
    ----------
    x_hat : (..., n) tensor
    mask : (..., n) tensor
        1 = corrupted, broadcastable to ``x_hat``.
    basis : (n, d) tensor
        Any basis ``U`` of the subspace (need not be orthonormal).
    centre : (n,) tensor, optional
        ``c`` (default 0).

    Returns
    -------
    (..., n) tensor
        Weighted least squares on the clean coordinates; the minimum-norm solution in the latent when fewer
        than d clean coordinates leave it underdetermined.
    """
    u = as_tensor(basis, name="basis")
    if u.ndim != 2:
        raise ValueError(f"basis must have shape (n, d), got {tuple(u.shape)}")
    n = u.shape[0]
    x = check_points(x_hat, ambient_dim=n, name="x_hat").to(u)
    c = torch.zeros(n, dtype=u.dtype) if centre is None else check_points(centre, ambient_dim=n, name="centre").to(u)
    root_w = _clean_weights(mask, x).sqrt()  # (..., n)
    a = root_w.unsqueeze(-1) * u  # (..., n, d) rows of U weighted by the clean mask
    z = (torch.linalg.pinv(a) @ (root_w * (x - c)).unsqueeze(-1)).squeeze(-1)  # (..., d) = (U_{Sᶜ})⁺ (x̂ − c)_{Sᶜ}
    return c + z @ u.T


def _masked_sq_dist(x: torch.Tensor, w: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``Σ_j w_bj (x_bj − p_kj)²`` for x, w (B, n) and p (K, n): (B, K)."""
    return ((w * x * x).sum(-1, keepdim=True) - 2.0 * (w * x) @ p.T + w @ (p * p).T).clamp(min=0.0)


def masked_projection_pointcloud(x_hat: Any, mask: Any, points: Any, *, params: Any = None,
                                 parametrisation: Callable[[torch.Tensor], torch.Tensor] | None = None,
                                 steps: int = 30) -> MaskedProjection:
    """Masked projection onto a curved manifold given as a dense point cloud, optionally refined (T6).

    Brute force over the cloud, then (with ``params`` and ``parametrisation``) Levenberg–Marquardt on the
    parameters of the best node, minimising ``‖√w ⊙ (x̂ − φ(θ))‖²``, accepting only decreasing steps. The cloud
    must be dense enough for the brute-force winner to lie in the basin of the global minimiser (spacing well
    below the reach, T1).

    Parameters
    ----------
    x_hat : (..., n) tensor
    mask : (..., n) tensor
        1 = corrupted, broadcastable to ``x_hat``.
    points : (K, n) tensor
        Dense sample of M.
    params : (K, d) tensor, optional
        Parameters of ``points``; required for refinement.
    parametrisation : callable (B, d) -> (B, n), optional
        Row-wise, differentiable by autograd, defined on a neighbourhood of the parameter domain.
    steps : int
        Levenberg–Marquardt iterations (0 = brute force only).

    Returns
    -------
    MaskedProjection
    """
    p = as_tensor(points, name="points")
    if p.ndim != 2 or p.shape[0] < 1:
        raise ValueError(f"points must have shape (K, n) with K >= 1, got {tuple(p.shape)}")
    steps = check_int(steps, "steps", minimum=0)
    x = check_points(x_hat, ambient_dim=p.shape[1], name="x_hat").to(p)
    w = _clean_weights(mask, x)
    shape = x.shape[:-1]
    xf, wf = x.reshape(-1, p.shape[1]), w.reshape(-1, p.shape[1])  # (B, n)
    chunk = max(1, int(4e6 // p.shape[0]))
    best = torch.cat([_masked_sq_dist(xb, wb, p).argmin(-1) for xb, wb in zip(xf.split(chunk), wf.split(chunk))])
    point = p[best]  # (B, n)
    theta = None
    if params is not None:
        th = as_tensor(params, name="params").to(p)
        if th.ndim != 2 or th.shape[0] != p.shape[0]:
            raise ValueError(f"params must have shape ({p.shape[0]}, d) matching points, got {tuple(th.shape)}")
        theta = th[best]  # (B, d)
        if parametrisation is not None and steps > 0:
            theta, point = _refine(xf, wf, theta, point, parametrisation, steps)
    elif parametrisation is not None:
        raise ValueError("parametrisation needs params (the (K, d) parameters of points) to start the refinement")
    dist = (wf * (xf - point) ** 2).sum(-1).sqrt()
    return MaskedProjection(point.reshape(x.shape), None if theta is None else theta.reshape(shape + theta.shape[-1:]),
                            dist.reshape(shape))


def _refine(x: torch.Tensor, w: torch.Tensor, theta: torch.Tensor, point: torch.Tensor,
            phi: Callable[[torch.Tensor], torch.Tensor], steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Levenberg–Marquardt on θ (B, d) for the weighted residual ``√w (x − φ(θ))``; monotone per row."""
    cost = (w * (x - point) ** 2).sum(-1)  # (B,)
    damping = torch.full_like(cost, 1e-3)
    eye = torch.eye(theta.shape[-1], dtype=theta.dtype, device=theta.device)
    for _ in range(steps):
        jac = jacobian(phi, theta)  # (B, n, d), φ is row-wise
        jtw = jac.transpose(1, 2) * w.unsqueeze(1)  # (B, d, n)
        h = jtw @ jac  # (B, d, d) Gauss–Newton matrix
        scale = torch.diagonal(h, dim1=1, dim2=2).mean(-1).clamp(min=1e-300)  # (B,)
        a = h + (damping * scale)[:, None, None] * eye
        step = torch.linalg.solve(a, (jtw @ (x - point).unsqueeze(-1))).squeeze(-1)  # (B, d)
        cand_theta = theta + step
        cand_point = phi(cand_theta)
        cand_cost = (w * (x - cand_point) ** 2).sum(-1)
        better = cand_cost < cost
        theta = torch.where(better[:, None], cand_theta, theta)
        point = torch.where(better[:, None], cand_point, point)
        cost = torch.where(better, cand_cost, cost)
        damping = torch.where(better, damping / 3.0, damping * 4.0)
    return theta.detach(), point.detach()
