"""T2 (docs/theory.md): a rank-d linear AE trained with squared error spans PCA's top-d subspace.

Baldi & Hornik (1989): every minimum of ``E‖D E x − x‖²`` over rank-d factorisations is the PCA projector
``U_d U_dᵀ`` of the second moment (the data here are centred, so second moment = covariance); the factors
themselves are only fixed up to an invertible d × d matrix, so the check compares subspaces by principal
angles, never raw weights.

Two models are trained with ``loop.fit``: the general untied AE ``W = D E`` and the tied one ``W = Eᵀ E``.
The untied product converges slowly in one direction: the part of E acting on the discarded directions only
costs ``(tail variance) × ‖D E_⊥‖²``, so the *range* of W (span D, where every reconstruction lies) reaches PCA's
subspace long before the product ``D E`` reaches the projector. Both numbers are reported.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from manifold_ae.checks import check_int, check_positive
from manifold_ae.claims.base import Check, ClaimResult
from manifold_ae.loop import fit
from manifold_ae.models import LinearAutoencoder
from manifold_ae.objectives import Reconstruction
from manifold_ae.theory import pca_basis, principal_angles

__all__ = ["ANGLE_TARGET", "gaussian_data", "train_linear_ae", "run"]

#: largest principal angle (rad) allowed between the trained range and PCA's subspace (issue 3)
ANGLE_TARGET = 1e-3


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


def run(*, fast: bool, out_dir: Path, seed: int = 0) -> ClaimResult:
    """Train untied and tied rank-3 linear AEs in R^10 and compare their subspaces with PCA's (T2)."""
    from manifold_ae.viz.figures import rate_plot, save_figure

    start = time.perf_counter()
    n, eigenvalues, tail = 10, (4.0, 2.0, 1.0), 0.01
    d = len(eigenvalues)
    num, steps, batch = (4096, 1500, 1024) if fast else (8192, 2500, 2048)
    x = gaussian_data(num, ambient_dim=n, eigenvalues=eigenvalues, tail=tail, seed=seed)
    u_d, _ = pca_basis(x, d)
    projector = u_d @ u_d.T  # (n, n)  U_d U_dᵀ
    checks: list[Check] = []
    numbers: dict[str, object] = {"ambient_dim": n, "rank": d, "eigenvalues": list(eigenvalues), "tail": tail,
                                  "num_samples": num, "steps": steps, "batch_size": batch}
    curves: dict[str, list[float]] = {}
    steps_seen: list[int] = []
    for tied in (False, True):
        label = "tied" if tied else "untied"
        model, steps_seen, angles = train_linear_ae(x, d, tied=tied, steps=steps, batch_size=batch, lr=3e-2,
                                                    seed=seed + 1)
        w = model.matrix.detach().double()  # (n, n)
        angle = angles[-1]
        rel = float(torch.linalg.matrix_norm(w - projector) / math.sqrt(d))  # ‖U Uᵀ‖_F = √d
        numbers[label] = {"max_principal_angle": angle, "product_vs_projector_rel_frobenius": rel,
                          "principal_angles": principal_angles(model.decoder_weight.detach().double(), u_d)}
        curves[f"{label} AE"] = angles
        checks.append(Check(f"{label}: max principal angle span(D) vs PCA (rad)", angle, "<=", ANGLE_TARGET,
                            note="range of the trained map vs the top-3 eigenvectors of the sample covariance"))
        if tied:
            checks.append(Check("tied: ‖EᵀE − U Uᵀ‖_F / √d", rel, "<=", ANGLE_TARGET,
                                note="a tied product is symmetric, so it converges to the projector itself"))
    fig = rate_plot(steps_seen, curves, fit=False, xlabel="training step", ylabel="max principal angle (rad)",
                    title="T2: linear AE subspace vs PCA", hlines={f"target {ANGLE_TARGET:g}": ANGLE_TARGET})
    figures = [save_figure(fig, out_dir, "t2_principal_angles")]
    numbers["angle_curve"] = {"step": steps_seen, **curves}
    return ClaimResult("T2", "a linear AE trained with squared error spans PCA's subspace", checks, numbers,
                       figures, time.perf_counter() - start)
