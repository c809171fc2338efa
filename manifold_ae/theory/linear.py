"""Closed-form optima of linear autoencoders (docs/theory.md, T2 and T3).

* T2 (Baldi & Hornik 1989): a rank-``d`` linear AE trained with squared error reaches the PCA projector
  ``U_d U_dᵀ``. Which PCA depends on the model: a bias-free map ``W x`` sees the *second moment*
  ``E[x xᵀ]``; an affine map ``W x + b`` sees the *covariance* and the mean. ``principal_components`` (the one
  PCA of the package) computes either, chosen by ``centre``; pass the same choice you made for the model.
* T3: for a linear map ``W`` and noise ``ε ~ N(0, σ² I)``,
  ``E‖W(x + ε) − x‖² = E‖W x − x‖² + σ² ‖W‖_F²`` so the linear DAE and the linear reconstruction-contractive
  AE (penalty ``λ ‖W‖_F²`` with ``λ = σ²``) share the optimum ``W* = Σ (Σ + σ² I)⁻¹``, whose eigenvalues are
  ``λ_i / (λ_i + σ²)``.

Subspaces are compared by their projectors or by principal angles, never by raw weights (the factorisation
``W = D E`` is only defined up to an invertible ``d × d`` matrix).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch

from manifold_ae.checks import as_tensor, check_int, check_positive

__all__ = ["moment_matrix", "PrincipalComponents", "principal_components", "pca_basis", "principal_angles",
           "linear_dae_optimum", "linear_contractive_optimum", "linear_dae_risk", "shrinkage_eigenvalues"]


def _check_square(matrix: Any, name: str) -> torch.Tensor:
    m = as_tensor(matrix, name=name)
    if m.ndim < 2 or m.shape[-1] != m.shape[-2]:
        raise ValueError(f"{name} must be a square matrix of shape (..., n, n), got shape {tuple(m.shape)}")
    return m


def _noise_variances(sigma: Any, n: int, *, like: torch.Tensor) -> torch.Tensor:
    """Return the per-coordinate noise variances (n,) from a scalar or (n,) vector of standard deviations."""
    s = as_tensor(sigma, name="sigma").to(like)
    if s.ndim == 0:
        check_positive(float(s), "sigma")
        return s.expand(n) ** 2
    if s.shape != (n,) or not bool((s > 0).all()):
        raise ValueError(f"sigma must be a positive scalar or a positive vector of shape ({n},), "
                         f"got {tuple(s.shape)} with minimum {float(s.min()):.3g}")
    return s ** 2


def moment_matrix(x: Any, *, centre: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Second-moment (``centre=False``) or covariance (``centre=True``) matrix of a sample.

    Parameters
    ----------
    x : (..., N, n) tensor
        ``N`` samples in R^n (leading dims are independent batches).
    centre : bool
        Subtract the sample mean first (covariance) or not (second moment ``E[x xᵀ]``).

    Returns
    -------
    Sigma : (..., n, n) tensor
        ``(1/N) Σ_i (x_i − m)(x_i − m)ᵀ`` with ``m`` the mean (``centre=True``) or 0.
    mean : (..., n) tensor
        The subtracted mean (zeros when ``centre=False``).
    """
    x = as_tensor(x, name="x")
    if x.ndim < 2 or x.shape[-2] < 1:
        raise ValueError(f"x must have shape (..., N, n) with N >= 1 samples, got shape {tuple(x.shape)}")
    mean = x.mean(dim=-2) if centre else torch.zeros_like(x[..., 0, :])  # (..., n)
    xc = x - mean.unsqueeze(-2)  # (..., N, n)
    return xc.transpose(-1, -2) @ xc / x.shape[-2], mean


class PrincipalComponents(NamedTuple):
    """A principal subspace of a sample: ``mean`` (..., n), ``basis`` (..., n, r) with orthonormal columns,
    ``eigenvalues`` (..., r) of the second moment or covariance (``1/N`` normalisation), in decreasing order."""

    mean: torch.Tensor
    basis: torch.Tensor
    eigenvalues: torch.Tensor


def principal_components(x: Any, rank: int | None = None, *, centre: bool = False) -> PrincipalComponents:
    """Top-``rank`` principal directions of ``x`` from the thin SVD of the (centred) data matrix (T2).

    The one PCA of the package: the T2 oracle, the toy ``ProjectionDetector`` and the image PCA baseline all
    call it. The SVD of the ``N × n`` data matrix never forms the ``n × n`` moment matrix, so it serves images
    (``n = C·H·W`` far above ``N``) as well as toy vectors. ``eigenvalues = s² / N`` for singular values ``s``.

    Parameters
    ----------
    x : (..., N, n) tensor
        ``N`` samples in R^n (leading dims are independent batches).
    rank : int or None
        Number of directions, ``0 <= rank <= min(N, n)``; None: all ``min(N, n)``.
    centre : bool
        ``False``: directions of the second moment ``E[x xᵀ]`` (the optimum of a bias-free linear AE) and a
        zero ``mean``; ``True``: of the covariance (the optimum of a linear AE with biases, ``m + P (x − m)``).

    Returns
    -------
    PrincipalComponents
        ``mean`` (..., n), ``basis`` (..., n, rank), ``eigenvalues`` (..., rank).
    """
    x = as_tensor(x, name="x")
    if x.ndim < 2 or x.shape[-2] < 1:
        raise ValueError(f"x must have shape (..., N, n) with N >= 1 samples, got shape {tuple(x.shape)}")
    num, n = x.shape[-2], x.shape[-1]
    rank = min(num, n) if rank is None else check_int(rank, "rank", minimum=0, maximum=min(num, n))
    mean = x.mean(dim=-2) if centre else torch.zeros_like(x[..., 0, :])  # (..., n)
    _, s, vh = torch.linalg.svd(x - mean.unsqueeze(-2), full_matrices=False)  # s: (..., min(N, n)) descending
    return PrincipalComponents(mean, vh[..., :rank, :].transpose(-1, -2), s[..., :rank] ** 2 / num)


def pca_basis(x: Any, rank: int, *, centre: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``rank`` eigenvectors and eigenvalues of the second moment or covariance of ``x`` (T2).

    The basis and eigenvalues of :func:`principal_components`; ``U Uᵀ`` is the PCA projector a rank-``d``
    linear AE converges to (Baldi & Hornik).

    Parameters
    ----------
    x : (..., N, n) tensor
    rank : int
        Number of principal directions, ``1 <= rank <= min(N, n)``.
    centre : bool
        ``False``: eigenvectors of ``E[x xᵀ]`` (the optimum of a bias-free linear AE);
        ``True``: of the covariance (the optimum of a linear AE with biases).

    Returns
    -------
    U : (..., n, rank) tensor
        Orthonormal columns, eigenvalues in decreasing order.
    eigenvalues : (..., rank) tensor
    """
    _, basis, eigenvalues = principal_components(x, centre=centre)  # the thin SVD yields all min(N, n) anyway
    rank = check_int(rank, "rank", minimum=1, maximum=eigenvalues.shape[-1])
    return basis[..., :rank], eigenvalues[..., :rank]


def principal_angles(U: Any, V: Any) -> torch.Tensor:
    """Principal angles between span(U) and span(V), accurate for tiny angles (Björck & Golub).

    Cosines come from the singular values of ``Q_Uᵀ Q_V``; angles below π/4 are recomputed from the sines
    (singular values of ``Q_V − Q_U Q_Uᵀ Q_V``) because ``arccos`` loses half the digits near 1.

    Parameters
    ----------
    U : (..., n, p) tensor
    V : (..., n, q) tensor
        Any bases (need not be orthonormal; they are orthonormalised by QR), full column rank.

    Returns
    -------
    angles : (..., min(p, q)) tensor
        In radians, ascending, in [0, π/2].
    """
    U = as_tensor(U, name="U")
    V = as_tensor(V, name="V")
    if U.ndim < 2 or V.ndim < 2 or U.shape[-2] != V.shape[-2]:
        raise ValueError(f"U and V must have shapes (..., n, p) and (..., n, q) with the same n, "
                         f"got {tuple(U.shape)} and {tuple(V.shape)}")
    qu, _ = torch.linalg.qr(U)  # (..., n, p)
    qv, _ = torch.linalg.qr(V)  # (..., n, q)
    if qu.shape[-1] < qv.shape[-1]:
        qu, qv = qv, qu  # qu spans the larger space
    cross = qu.transpose(-1, -2) @ qv  # (..., p, q), p >= q
    cos = torch.linalg.svdvals(cross).clamp(-1.0, 1.0)  # (..., q) descending
    sin = torch.linalg.svdvals(qv - qu @ cross).clamp(-1.0, 1.0)  # (..., q) descending
    # cos descending <-> angles ascending; sin descending <-> angles descending, hence the flip.
    return torch.where(cos ** 2 >= 0.5, torch.arcsin(sin.flip(-1)), torch.arccos(cos))


def linear_dae_optimum(Sigma: Any, *, sigma: Any) -> torch.Tensor:
    """Optimal linear denoiser ``W* = Σ (Σ + Ψ)⁻¹`` with ``Ψ = diag(σ²)`` (T3).

    Parameters
    ----------
    Sigma : (..., n, n) tensor
        ``E[x xᵀ]`` for a bias-free map (or the covariance, for an affine map ``m + W (x̃ − m)``).
    sigma : float or (n,) tensor
        Noise standard deviation; a vector gives anisotropic noise ``N(0, diag(σ²))`` (the negative control of
        T4: the optimum is then no longer symmetric).

    Returns
    -------
    W : (..., n, n) tensor
        Minimiser of ``E‖W(x + ε) − x‖²``. For isotropic noise it is symmetric with eigenvalues
        ``λ_i / (λ_i + σ²)`` on the eigenvectors of ``Σ`` and tends to ``U Uᵀ`` at rate O(σ²).
    """
    s = _check_square(Sigma, "Sigma")
    psi = torch.diag_embed(_noise_variances(sigma, s.shape[-1], like=s))  # (n, n)
    # Σ and Σ + Ψ are symmetric, so W = Σ (Σ+Ψ)⁻¹ is the transpose of (Σ+Ψ)⁻¹ Σ.  T3
    return torch.linalg.solve(s + psi, s).transpose(-1, -2)


def linear_contractive_optimum(Sigma: Any, *, lam: float) -> torch.Tensor:
    """Optimum of the linear reconstruction-contractive AE ``E‖W x − x‖² + λ ‖W‖_F²`` (T3).

    By the T3 identity it equals the linear DAE optimum with ``σ² = λ``: ``Σ (Σ + λ I)⁻¹``.

    Parameters
    ----------
    Sigma : (..., n, n) tensor
    lam : float
        Penalty weight, > 0.

    Returns
    -------
    W : (..., n, n) tensor
    """
    lam = check_positive(lam, "lam")
    return linear_dae_optimum(Sigma, sigma=lam ** 0.5)


def linear_dae_risk(W: Any, Sigma: Any, *, sigma: float) -> torch.Tensor:
    """Exact denoising risk ``E‖W(x + ε) − x‖² = tr((W − I) Σ (W − I)ᵀ) + σ² ‖W‖_F²`` (T3).

    Parameters
    ----------
    W : (..., n, n) tensor
    Sigma : (..., n, n) tensor
        ``E[x xᵀ]``.
    sigma : float
        Isotropic noise standard deviation, >= 0 (0 gives the plain reconstruction risk).

    Returns
    -------
    risk : (...) tensor
    """
    sigma = check_positive(sigma, "sigma", allow_zero=True)
    w = _check_square(W, "W")
    s = _check_square(Sigma, "Sigma")
    if w.shape[-1] != s.shape[-1]:
        raise ValueError(f"W and Sigma must be (..., n, n) with the same n, got {tuple(w.shape)} and {tuple(s.shape)}")
    e = w - torch.eye(w.shape[-1], dtype=w.dtype)  # (..., n, n)
    return torch.einsum("...ij,...jk,...ik->...", e, s, e) + sigma ** 2 * (w ** 2).sum((-1, -2))


def shrinkage_eigenvalues(eigenvalues: Any, *, sigma: float) -> torch.Tensor:
    """Eigenvalues ``λ / (λ + σ²)`` of the linear DAE optimum (T3): a shrunk projector.

    Parameters
    ----------
    eigenvalues : (..., n) tensor
        Eigenvalues of ``Σ`` (>= 0).
    sigma : float
        Noise standard deviation, > 0.

    Returns
    -------
    (..., n) tensor
        In [0, 1); ``1 − λ/(λ+σ²) = σ²/(λ+σ²)`` is the O(σ²) distance to the projector on span(Σ).
    """
    sigma = check_positive(sigma, "sigma")
    lam = as_tensor(eigenvalues, name="eigenvalues")
    if bool((lam < 0).any()):
        raise ValueError(f"eigenvalues must be >= 0 (a covariance spectrum), got minimum {float(lam.min()):.3g}")
    return lam / (lam + sigma ** 2)
