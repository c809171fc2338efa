"""Linear toy experiments of T2 and T3 (docs/theory.md): Gaussian data, trained linear AEs, the denoising identity.

T2 trains rank-d linear AEs with squared error on centred Gaussian data (``gaussian_data``, ``train_linear_ae``);
T3 trains tied linear DAEs and reconstruction-contractive AEs on data spanning a subspace (``subspace_data``,
``train_linear``), checks the exact identity ``E‖W(x+ε) − x‖² = E‖Wx − x‖² + σ²‖W‖_F²`` on the library's
objectives (``identity_check``) and builds the anisotropic-noise negative control (``oblique_limit``,
``anisotropic_control``). The claims in ``manifold_ae.claims`` only compare these numbers with their criteria.
"""
from __future__ import annotations

import math

import torch

from manifold_ae.checks import check_int, check_positive
from manifold_ae.loop import fit
from manifold_ae.models import LinearAutoencoder
from manifold_ae.objectives import Denoising, Reconstruction, ReconstructionContractive
from manifold_ae.theory import linear_dae_optimum, linear_dae_risk, moment_matrix, pca_basis, principal_angles
from manifold_ae.toys.rates import loglog_rate

__all__ = ["gaussian_data", "train_linear_ae", "subspace_data", "train_linear", "identity_check", "oblique_limit",
           "anisotropic_control"]


def gaussian_data(num: int, *, ambient_dim: int, eigenvalues: tuple[float, ...], tail: float,
                  seed: int) -> torch.Tensor:
    """Centred Gaussian sample whose covariance has the given top eigenvalues and a geometric tail.

    Parameters
    ----------
    num : int
        Number of samples N.
    ambient_dim : int
        n.
    eigenvalues : tuple of float
        The top d variances.
    tail : float
        Variance of the first discarded direction; the others decay by 0.7 each.
    seed : int

    Returns
    -------
    x : (N, n) float64 tensor
        Exactly centred (sample mean removed), in a random orthonormal basis.
    """
    d = len(eigenvalues)
    n = check_int(ambient_dim, "ambient_dim", minimum=max(d, 1))
    for i, v in enumerate(eigenvalues):
        check_positive(v, f"eigenvalues[{i}]")
    check_positive(tail, "tail", allow_zero=True)
    g = torch.Generator().manual_seed(seed)
    variances = torch.tensor(list(eigenvalues) + [tail * 0.7 ** i for i in range(n - d)], dtype=torch.float64)
    basis, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))  # (n, n)
    x = torch.randn(num, n, generator=g, dtype=torch.float64) * variances.sqrt() @ basis.T  # (N, n)
    return x - x.mean(0)


def train_linear_ae(x: torch.Tensor, rank: int, *, tied: bool, steps: int, batch_size: int, lr: float,
                    seed: int, every: int = 25) -> tuple[LinearAutoencoder, list[int], list[float]]:
    """Train a bias-free linear AE with squared error; record the largest principal angle to PCA on the way.

    Parameters
    ----------
    x : (N, n) tensor
    rank : int
        Code dimension d.
    tied : bool
    steps, batch_size, lr, seed : training settings of ``loop.fit``.
    every : int, default 25
        Record the angle every ``every`` steps.

    Returns
    -------
    model : LinearAutoencoder
    steps_seen : list of int
    angles : list of float
        max principal angle between span(D) and span(U_d), radians.
    """
    u_d, _ = pca_basis(x, rank)  # (n, d) top-d eigenvectors of E[x xᵀ]  T2
    torch.manual_seed(seed)
    model = LinearAutoencoder(x.shape[1], rank, tied=tied)
    seen: list[int] = []
    angles: list[float] = []

    def record(step: int, loss: float) -> None:
        if step % every == 0 or step == steps - 1:
            seen.append(step + 1)
            angles.append(float(principal_angles(model.decoder_weight.detach().double(), u_d).max()))

    fit(Reconstruction(model), x.float(), steps=steps, batch_size=batch_size, lr=lr, seed=seed, callback=record)
    return model, seen, angles


def subspace_data(num: int, *, ambient_dim: int, eigenvalues: tuple[float, ...],
                  seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian data on a random d-dimensional subspace of R^n.

    Returns
    -------
    x : (N, n) float64 tensor
        ``x = U z`` with ``z ~ N(0, diag(eigenvalues))``.
    U : (n, d) float64 tensor
        Orthonormal basis of the subspace.
    """
    d = len(eigenvalues)
    check_int(ambient_dim, "ambient_dim", minimum=max(d, 1))
    for i, v in enumerate(eigenvalues):
        check_positive(v, f"eigenvalues[{i}]")
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(ambient_dim, d, generator=g, dtype=torch.float64))  # (n, d)
    z = torch.randn(num, d, generator=g, dtype=torch.float64) * torch.tensor(eigenvalues).sqrt()  # (N, d)
    return z @ u.T, u


def train_linear(x: torch.Tensor, rank: int, *, objective: str, sigma: float, steps: int, batch_size: int,
                 lr: float, seed: int, tied: bool = True) -> torch.Tensor:
    """Train a bias-free linear AE with ``Denoising(sigma)`` (``"dae"``) or ``ReconstructionContractive``
    with ``lam = sigma**2`` (``"contractive"``, exact Jacobian); return its matrix W (n, n) in float64."""
    torch.manual_seed(seed)
    model = LinearAutoencoder(x.shape[1], rank, tied=tied)
    if objective == "dae":
        loss = Denoising(model, sigma=sigma)
    elif objective == "contractive":
        loss = ReconstructionContractive(model, lam=sigma ** 2, estimator="exact")  # λ = σ²  T3
    else:
        raise ValueError(f"objective must be 'dae' or 'contractive', got {objective!r}")
    fit(loss, x.float(), steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    return model.matrix.detach().double()


def identity_check(x: torch.Tensor, W: torch.Tensor, *, sigma: float, repeats: int) -> dict[str, float]:
    """Check ``E‖W(x+ε) − x‖² = ‖W x − x‖² + σ²‖W‖_F²`` for a given W on the sample ``x`` (T3).

    Evaluates the library's objectives on a float64 linear model with matrix W: the reconstruction-contractive
    loss (deterministic, λ = σ²) against the closed form, and the denoising loss (random; torch's global RNG)
    averaged over ``repeats`` noise draws against the same closed form, as a z-score.

    Parameters
    ----------
    x : (N, n) float64 tensor
    W : (n, n) float64 tensor
    sigma : float
    repeats : int
    """
    n = x.shape[1]
    if W.shape != (n, n):
        raise ValueError(f"W must have shape ({n}, {n}) to act on x of shape {tuple(x.shape)}, got {tuple(W.shape)}")
    model = LinearAutoencoder(n, n, dtype=torch.float64)
    with torch.no_grad():  # W = D E with E = I, D = W
        model.encoder.weight.copy_(torch.eye(n, dtype=torch.float64))
        model.decoder.weight.copy_(W)
    sigma_hat, _ = moment_matrix(x)
    exact = float(linear_dae_risk(W, sigma_hat, sigma=sigma)) / n  # objectives divide by D = n
    with torch.no_grad():
        contractive = float(ReconstructionContractive(model, lam=sigma ** 2)(x))
        dae = Denoising(model, sigma=sigma)
        draws = torch.tensor([float(dae(x)) for _ in range(repeats)], dtype=torch.float64)
    stderr = float(draws.std() / math.sqrt(repeats))
    return {"closed_form": exact, "contractive_loss": contractive,
            "contractive_rel_error": abs(contractive - exact) / exact,
            "dae_mean": float(draws.mean()), "dae_stderr": stderr,
            "dae_z": abs(float(draws.mean()) - exact) / stderr}


def oblique_limit(U: torch.Tensor, noise_var: torch.Tensor) -> torch.Tensor:
    """Limit of the anisotropic linear DAE optimum as the noise shrinks with fixed shape (T3's negative control).

    With noise covariance ε·diag(noise_var) and data on span(U), ``Σ(Σ + ε D)⁻¹ → U (Uᵀ D⁻¹ U)⁻¹ Uᵀ D⁻¹`` as
    ε → 0: a projection onto span(U) *along the D-orthogonal complement* (the generalised-least-squares
    projector), which is the orthogonal projector U Uᵀ only when D is isotropic on the relevant directions.

    Parameters
    ----------
    U : (n, d) tensor with orthonormal columns
    noise_var : (n,) tensor of positive noise variances (the shape of D)

    Returns
    -------
    (n, n) tensor
    """
    d_inv = torch.diag(1.0 / noise_var)                               # (n, n)
    return U @ torch.linalg.solve(U.T @ d_inv @ U, U.T @ d_inv)       # (n, n)


def anisotropic_control(Sigma: torch.Tensor, U: torch.Tensor, *, ratio: float = 3.0,
                        scales: tuple[float, ...] = (0.1, 0.03, 0.01, 0.003)) -> dict[str, object]:
    """Negative control of T3: anisotropic noise makes the optimal linear DAE an *oblique* projection.

    Noise standard deviation ``s·ratio`` on the first half of the coordinates and ``s`` on the rest. Returns
    the distances of W*(s) = Σ(Σ + s² D)⁻¹ to the oblique limit and to the orthogonal projector U Uᵀ, and the
    log-log slope and r² of the first (σ² rate, like the isotropic case); the second stays bounded away from 0.

    Parameters
    ----------
    Sigma : (n, n) tensor
        Second moment of data on span(U).
    U : (n, d) tensor with orthonormal columns
    ratio : float, default 3.0
        Noise standard deviation on the first ``n // 2`` coordinates relative to the rest.
    scales : tuple of float
        Noise scales s, decreasing.

    Returns
    -------
    dict
        ``scales``, ``ratio``, ``to_oblique_limit``, ``to_orthogonal_projector`` (lists over s),
        ``slope_to_oblique_limit``, ``r_squared_to_oblique_limit`` and ``oblique_vs_orthogonal``
        (‖limit − U Uᵀ‖_F).
    """
    n = Sigma.shape[0]
    std = torch.ones(n, dtype=Sigma.dtype)
    std[: n // 2] = ratio
    limit = oblique_limit(U, std ** 2)
    to_limit, to_orthogonal = [], []
    for s in scales:
        w = linear_dae_optimum(Sigma, sigma=s * std)                   # Σ(Σ + s² D)⁻¹
        to_limit.append(float(torch.linalg.matrix_norm(w - limit)))
        to_orthogonal.append(float(torch.linalg.matrix_norm(w - U @ U.T)))
    rate = loglog_rate(scales, to_limit)
    return {"scales": list(scales), "ratio": ratio, "to_oblique_limit": to_limit,
            "to_orthogonal_projector": to_orthogonal, "slope_to_oblique_limit": rate.slope,
            "r_squared_to_oblique_limit": rate.r_squared,
            "oblique_vs_orthogonal": float(torch.linalg.matrix_norm(limit - U @ U.T))}
