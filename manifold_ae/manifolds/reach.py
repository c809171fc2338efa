"""Federer's reach formula evaluated on a finite sample (T1 cross-check of the analytic reach values).

For a closed C² submanifold M (Federer 1959, Thm 4.18):

    τ(M) = inf_{p ≠ q ∈ M} ‖q − p‖² / (2 dist(q − p, T_pM)).

On a dense sample {p_i} with tangent bases T_i the infimum over sample pairs is an upper bound of τ that
converges as the sample gets denser (Aamari et al. 2019 study this estimator's rates).

``within_reach`` is the one test of "dist(x, M) < τ" that every manifold and the certified curve search use.
"""
from __future__ import annotations

import torch

from manifold_ae.checks import as_tensor, check_int

__all__ = ["estimate_reach", "within_reach", "REACH_RTOL"]

REACH_RTOL = 1e-9   # relative band below τ that counts as "not within the reach" (docs/theory.md, section 1.2)


def within_reach(distance: torch.Tensor, reach: float) -> torch.Tensor:
    """Boolean (...,): ``distance < (1 − REACH_RTOL) · reach``, so the nearest point is provably unique (T1).

    Points of the medial axis lie at distance >= τ, but their computed distance can fall a few ulps below τ
    (the ring torus's core circle: 0.39999999999999997 for τ = 0.4). The relative margin of 1e-9 lies far above
    float64 rounding (~1e-16 relative) and far below every distance the claims and tests use as "inside"
    (normal rays stop at 0.9 τ), so a point is flagged within the reach only where no rounding can put it
    on the wrong side of τ. An infinite reach (affine subspace) contains every finite distance.

    Parameters
    ----------
    distance : (...,) tensor
        dist(x, M) >= 0.
    reach : float
        τ > 0, possibly ``math.inf``.
    """
    return distance < (1.0 - REACH_RTOL) * reach


def estimate_reach(points, tangent_bases, *, chunk: int = 1 << 22) -> float:
    """Federer's formula minimised over all ordered pairs of a sample.

    Parameters
    ----------
    points : (N, n) array-like
        Sample of M.
    tangent_bases : (N, n, d) array-like
        Orthonormal tangent basis at each point.
    chunk : int, default 2**22
        Number of pair entries (pairs × n) processed at once.

    Returns
    -------
    float
        min_{i ≠ j} ‖p_j − p_i‖² / (2 ‖P_N(p_i)(p_j − p_i)‖); ``inf`` if every pair is tangent (a flat piece).
    """
    P = as_tensor(points, name="points")
    T = as_tensor(tangent_bases, name="tangent_bases")
    if P.ndim != 2 or P.shape[0] < 2:
        raise ValueError(f"points must have shape (N, n) with N >= 2, got shape {tuple(P.shape)}")
    N, n = P.shape
    if T.ndim != 3 or T.shape[:2] != (N, n):
        raise ValueError(f"tangent_bases must have shape ({N}, {n}, d) to match points, got shape {tuple(T.shape)}")
    chunk = check_int(chunk, "chunk", minimum=1)
    rows = max(1, chunk // (N * n))
    best = torch.inf
    for start in range(0, N, rows):
        p, Ti = P[start:start + rows], T[start:start + rows]               # (C, n), (C, n, d)
        V = P[None, :, :] - p[:, None, :]                                   # (C, N, n)  q − p
        perp = V - torch.einsum("cnd,cmd->cmn", Ti, torch.einsum("cmn,cnd->cmd", V, Ti))   # P_N (q − p)
        num = V.square().sum(-1)                                            # (C, N)
        den = 2 * torch.linalg.vector_norm(perp, dim=-1)
        ratio = torch.where((num > 0) & (den > 0), num / torch.where(den > 0, den, 1.0), torch.inf)
        best = min(best, float(ratio.min()))
    return best
