"""T6: self-supervised partial corruption learns E[x | x̂], the masked projection (docs/theory.md, T6).

Training pairs are ``x̂ = D_S x + M_S c + η`` (a mask S drawn from a finite family, fill ``c ~ N(0, τ² I)``
independent of x, small observation noise η ~ N(0, η² I)) and the target is the clean x. The risk minimiser is the
posterior mean E[x | x̂]; when S is identifiable from x̂ and the clean coordinates fix the point of M it is the
masked projection ``π_S(x̂) = argmin_{y ∈ M} ‖(x̂ − y)_{Sᶜ}‖`` (T6), which is *not* the full orthogonal projection
π(x̂). Two exact references:

* Gaussian latent on a subspace: the closed-form mixture over masks of Gaussian conditionals
  (``theory.bayes.masked_gaussian_posterior_mean``); the trained MLP must match it within 5 %.
* A circle embedded in R^n: the posterior mean by quadrature over a dense grid of the circle
  (``theory.bayes.masked_posterior_mean_quadrature``) and the masked projection with the true mask
  (``theory.masked.masked_projection_pointcloud``); the gap ``‖π_S(x̂) − π(x̂)‖`` is reported as the mask grows.

The tasks and oracles live in ``toys.selfsupervised``; the trained circle model is cached per (fast, seed), so
T7 (conservation) and T8 (anomaly scores) reuse it.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from manifold_ae.claims.base import Check, ClaimResult, worst
from manifold_ae.toys.measures import rms
from manifold_ae.toys.selfsupervised import (CIRCLE_DIM, CIRCLE_SIZES, FILL_STD, NOISE_STD, circle_oracles,
                                             circle_task, gaussian_bayes_map, gaussian_task, predict)

__all__ = ["TITLE", "run"]

TITLE = "partial-corruption training learns E[x | x̂], the masked projection, not the full projection"


def run(*, fast: bool, out_dir: Path, seed: int = 0) -> ClaimResult:
    """Train both toy tasks, compare with the exact Bayes maps, and report the gap to π as the mask grows."""
    from manifold_ae.viz.anomaly_figures import gap_vs_mask_figure
    from manifold_ae.viz.figures import save_figure

    start = time.perf_counter()
    out_dir = Path(out_dir)
    num_test = 500 if fast else 2000
    test_gen = torch.Generator().manual_seed(seed + 1000)

    # --- Gaussian latent on a subspace: trained model vs the exact mixture-of-Gaussian-conditionals map
    gauss = gaussian_task(fast=fast, seed=seed)
    x, _ = gauss.manifold.sample(num_test, generator=test_gen)
    x_hat, _ = gauss.corruption(x, test_gen)
    bayes = gaussian_bayes_map(gauss, x_hat)
    f = predict(gauss.model, x_hat)
    gauss_rel = rms(f - bayes) / rms(bayes)
    gauss_numbers = {"relative_error_to_bayes": gauss_rel,
                     "error_relative_to_bayes_correction": rms(f - bayes) / rms(bayes - x_hat),
                     "risk_model": rms(f - x) ** 2, "risk_bayes": rms(bayes - x) ** 2,
                     "risk_identity": rms(x_hat - x) ** 2, "steps": len(gauss.history)}

    # --- circle in R^10: trained model vs posterior mean (quadrature) and masked projection; gap to π
    circ = circle_task(fast=fast, seed=seed)
    x, _ = circ.manifold.sample(num_test, generator=test_gen)
    x_hat, mask = circ.corruption(x, test_gen)
    posterior, masked = circle_oracles(circ, x_hat, mask)
    full = circ.manifold.project(x_hat)
    f = predict(circ.model, x_hat)
    sizes = mask.sum(-1)
    keys = ("model_to_posterior", "model_to_masked", "model_to_full", "posterior_to_masked", "masked_to_full",
            "posterior_correction")
    per_size: dict[str, list[float]] = {key: [] for key in keys}
    for k in CIRCLE_SIZES:
        sel = sizes == k
        per_size["model_to_posterior"].append(rms(f[sel] - posterior[sel]))
        per_size["model_to_masked"].append(rms(f[sel] - masked[sel]))
        per_size["model_to_full"].append(rms(f[sel] - full[sel]))
        per_size["posterior_to_masked"].append(rms(posterior[sel] - masked[sel]))
        per_size["masked_to_full"].append(rms(masked[sel] - full[sel]))
        per_size["posterior_correction"].append(rms(posterior[sel] - x_hat[sel]))
    circ_rel = rms(f - posterior) / rms(posterior - x_hat)
    oracle_rel = rms(posterior - masked) / rms(masked - x_hat)
    resemble = worst([a / b for a, b in zip(per_size["model_to_masked"], per_size["masked_to_full"])], op="<=")
    growth = per_size["masked_to_full"][-1] / per_size["masked_to_full"][0]

    fast_note = "fast mode: 1500 training steps, target 0.10 (full run: 0.05)" if fast else ""
    checks = [
        Check("Gaussian subspace: RMS ‖f − E[x|x̂]‖ / RMS ‖E[x|x̂]‖", gauss_rel, "<=", 0.10 if fast else 0.05,
              note=fast_note),
        Check("circle: RMS ‖f − E[x|x̂]‖ / RMS ‖E[x|x̂] − x̂‖ (learned vs Bayes correction)", circ_rel, "<=",
              0.15 if fast else 0.10, note="fast mode: 1500 training steps" if fast else ""),
        Check("circle: posterior mean = masked projection, RMS ‖E[x|x̂] − π_S‖ / RMS ‖π_S − x̂‖", oracle_rel,
              "<=", 0.02, note="identifiable masks: the posterior concentrates on π_S"),
        Check("circle: max_k RMS ‖f − π_S‖ / RMS ‖π_S − π‖ (resembles the masked, not the full projection)",
              resemble, "<=", 0.25),
        Check("circle: gap ‖π_S − π‖ grows with the mask, ratio largest/smallest block", growth, ">=", 1.3),
    ]
    fig = gap_vs_mask_figure(list(CIRCLE_SIZES), {
        "‖f − E[x|x̂]‖ (model vs Bayes)": per_size["model_to_posterior"],
        "‖f − π_S(x̂)‖ (model vs masked proj.)": per_size["model_to_masked"],
        "‖f − π(x̂)‖ (model vs full proj.)": per_size["model_to_full"],
        "‖π_S(x̂) − π(x̂)‖ (masked vs full)": per_size["masked_to_full"],
    }, title=f"T6: circle in R^{CIRCLE_DIM}, block masks, τ = {FILL_STD}, η = {NOISE_STD}")
    figures = [save_figure(fig, out_dir, "t6_gap_vs_mask")]
    numbers = {"gaussian": gauss_numbers,
               "circle": {"mask_sizes": list(CIRCLE_SIZES), **per_size, "relative_error_to_posterior": circ_rel,
                          "posterior_vs_masked_relative": oracle_rel, "steps": len(circ.history),
                          "ambient_dim": CIRCLE_DIM, "fill_std": FILL_STD, "noise_std": NOISE_STD},
               "num_test": num_test}
    return ClaimResult("T6", TITLE, checks, numbers, figures, time.perf_counter() - start)
