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

from manifold_ae.claims.base import Check, ClaimResult, worst
from manifold_ae.theory import pca_basis, principal_angles
from manifold_ae.toys.linear import gaussian_data, train_linear_ae

__all__ = ["ANGLE_TARGET", "PROJECTOR_TARGET", "run"]

#: largest principal angle (rad) allowed between the trained range and PCA's subspace
ANGLE_TARGET = 1e-3
#: relative Frobenius distance ‖EᵀE − U Uᵀ‖_F / √d allowed for the tied product (‖U Uᵀ‖_F = √d)
PROJECTOR_TARGET = 1e-3


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
        theta = principal_angles(model.decoder_weight.detach().double(), u_d)  # (d,) span(D) vs span(U_d)
        angle = worst(theta.tolist(), op="<=")  # the largest; a NaN angle decides (and fails)
        rel = float(torch.linalg.matrix_norm(w - projector) / math.sqrt(d))  # ‖U Uᵀ‖_F = √d
        numbers[label] = {"max_principal_angle": angle, "product_vs_projector_rel_frobenius": rel,
                          "principal_angles": theta}
        curves[f"{label} AE"] = angles
        checks.append(Check(f"{label}: max principal angle span(D) vs PCA (rad)", angle, "<=", ANGLE_TARGET,
                            note="range of the trained map vs the top-3 eigenvectors of the sample covariance"))
        if tied:
            checks.append(Check("tied: ‖EᵀE − U Uᵀ‖_F / √d", rel, "<=", PROJECTOR_TARGET,
                                note="a tied product is symmetric, so it converges to the projector itself"))
    fig = rate_plot(steps_seen, curves, fit=False, xlabel="training step", ylabel="max principal angle (rad)",
                    title="T2: linear AE subspace vs PCA", hlines={f"target {ANGLE_TARGET:g}": ANGLE_TARGET})
    figures = [save_figure(fig, out_dir, "t2_principal_angles")]
    numbers["angle_curve"] = {"step": steps_seen, **curves}
    return ClaimResult("T2", "a linear AE trained with squared error spans PCA's subspace", checks, numbers,
                       figures, time.perf_counter() - start)
