"""The Filtering Autoencoder's closed forms (docs/theory.md, "Filtering AE: occlusion plus noise").

References are independent of ``toys.filtering``: the moments by a plain loop over the masks and by Monte Carlo
through the package's corruption, the best linear map by least squares on samples and by T3's Wiener filter,
gradient descent by iterating it with autograd, the no-occlusion descent by its eigenvalue formula.
"""
from __future__ import annotations

import math

import pytest
import torch

from manifold_ae.theory.linear import linear_dae_optimum
from manifold_ae.toys.filtering import (best_linear_map, clean_frobenius, descent_map, filtering_toy, frobenius_sq,
                                        least_squares_map, moments, toy_corruption, train_filtering_unet)
from manifold_ae.toys.image_tasks import image_manifolds

torch.set_num_threads(1)


def _brute_moments(toy, sigma):
    """E[x x̃ᵀ], E[x̃ x̃ᵀ] summed mask by mask: x̃ = D x + M c + σ ε with D = diag(1 − m), M = diag(m)."""
    Sigma = toy.basis @ torch.diag(toy.variances) @ toy.basis.T
    n = toy.ambient_dim
    A = torch.zeros(n, n, dtype=torch.float64)
    C = torch.zeros(n, n, dtype=torch.float64)
    for m, prob in zip(toy.masks, toy.probs):
        D, Mm = torch.diag(1 - m), torch.diag(m)
        A += prob * Sigma @ D
        C += prob * (D @ Sigma @ D + toy.fill_std ** 2 * Mm @ Mm)
    return A, C + sigma ** 2 * torch.eye(n, dtype=torch.float64)


@pytest.mark.parametrize("clean_fraction", [0.0, 0.3])
def test_moments_match_a_loop_over_the_masks(clean_fraction):
    toy = filtering_toy(ambient_dim=8, mask_sizes=(1, 3), clean_fraction=clean_fraction, fill_std=0.7, seed=2)
    for sigma in (0.0, 0.4):
        A, C = moments(toy, sigma=sigma)
        A_ref, C_ref = _brute_moments(toy, sigma)
        assert torch.allclose(A, A_ref, atol=1e-13) and torch.allclose(C, C_ref, atol=1e-13)


def test_best_linear_map_matches_least_squares_on_corrupted_samples():
    """Samples through the package's MaskedCorruption(noise_sigma=σ): lstsq → A C⁻¹ at rate 1/√B."""
    toy = filtering_toy(ambient_dim=8, mask_sizes=(2,), fill_std=1.0, seed=0)
    gen = torch.Generator().manual_seed(11)
    z = torch.randn(200_000, 2, generator=gen, dtype=torch.float64) * toy.variances.sqrt()
    x = z @ toy.basis.T                                                    # (B, n)
    for sigma in (0.0, 0.5):
        x_tilde, mask = toy_corruption(toy, sigma=sigma)(x, gen)
        assert torch.all(mask.sum(-1) == 2)                                # the mask marks the occlusion only
        W_hat = least_squares_map(x, x_tilde)
        W = best_linear_map(toy, sigma=sigma)
        assert float(torch.linalg.matrix_norm(W_hat - W)) <= 0.02 * float(torch.linalg.matrix_norm(W))
        assert abs(frobenius_sq(W_hat) - frobenius_sq(W)) <= 0.03 * frobenius_sq(W)


def test_without_occlusion_the_best_map_is_t3s_wiener_filter():
    toy = filtering_toy(ambient_dim=6, seed=1)
    clean = toy._replace(masks=torch.zeros(1, 6, dtype=torch.float64), probs=torch.ones(1, dtype=torch.float64))
    for sigma in (0.1, 0.5, 2.0):
        W = best_linear_map(clean, sigma=sigma)
        ref = linear_dae_optimum(toy.basis @ torch.diag(toy.variances) @ toy.basis.T, sigma=sigma)
        assert torch.allclose(W, ref, atol=1e-12)
        shrunk = float(sum((lam / (lam + sigma ** 2)) ** 2 for lam in toy.variances))
        assert frobenius_sq(W) == pytest.approx(shrunk, rel=1e-12) and shrunk < toy.intrinsic_dim


def test_best_map_norm_falls_with_sigma_like_sigma_to_the_minus_four():
    toy = filtering_toy(seed=3)
    sigmas = [0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 20.0]
    F = [frobenius_sq(best_linear_map(toy, sigma=s)) for s in sigmas]
    assert all(b < a for a, b in zip(F, F[1:])), F
    slope = math.log(F[-1] / F[-2]) / math.log(sigmas[-1] / sigmas[-2])   # ‖A‖²/σ⁴ far out
    assert abs(slope + 4) < 0.05, slope
    with pytest.raises(ValueError, match="singular"):
        best_linear_map(toy._replace(masks=toy.masks[:1] * 0, probs=torch.ones(1, dtype=torch.float64)), sigma=0.0)


def test_descent_map_matches_gradient_descent_by_autograd():
    toy = filtering_toy(ambient_dim=6, mask_sizes=(1, 2), clean_fraction=0.2, seed=4)
    A, C = _brute_moments(toy, 0.3)
    W = torch.eye(6, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([W], lr=0.05)
    for _ in range(40):
        opt.zero_grad()
        loss = torch.trace(W @ C @ W.T) - 2 * torch.trace(W @ A.T)         # E‖W x̃ − x‖² − E‖x‖²
        loss.backward()
        opt.step()
    assert torch.allclose(descent_map(toy, sigma=0.3, steps=40, lr=0.05), W.detach(), atol=1e-12)
    assert torch.allclose(descent_map(toy, sigma=0.3, steps=20000, lr=0.05), best_linear_map(toy, sigma=0.3),
                          atol=1e-9)
    with pytest.raises(ValueError, match="diverges"):
        descent_map(toy, sigma=0.3, steps=1, lr=10.0)


def test_identity_anchored_descent_moves_from_n_to_d_and_below():
    """No occlusion (the pixels a restorer trusts): w = λ/(λ+σ²) + σ²/(λ+σ²)(1 − 2η(λ+σ²))^k on the plane,
    (1 − 2ησ²)^k off it: n at σ = 0, about d once σ² k η is large, Σ λ²/(λ+σ²)² < d for large σ."""
    toy = filtering_toy(ambient_dim=16, seed=5)
    clean = toy._replace(masks=torch.zeros(1, 16, dtype=torch.float64), probs=torch.ones(1, dtype=torch.float64))
    eta, k, n, d = 0.05, 1000, 16, 2
    values = []
    for sigma in (0.0, 0.1, 0.3, 1.0):
        s2 = sigma ** 2
        lam = toy.variances
        tangent = lam / (lam + s2) + s2 / (lam + s2) * (1 - 2 * eta * (lam + s2)) ** k
        ref = float(tangent.square().sum()) + (n - d) * (1 - 2 * eta * s2) ** (2 * k)
        got = frobenius_sq(descent_map(clean, sigma=sigma, steps=k, lr=eta))
        assert got == pytest.approx(ref, rel=1e-10)
        values.append(got)
    assert values[0] == pytest.approx(n, rel=1e-12)
    assert values[0] > values[1] > d > values[2] > values[3], values


@pytest.mark.slow
def test_trained_unet_jacobian_falls_with_the_filtering_noise():
    """GatedUNet (width 8, 600 steps) on the translation manifold, occlusion + noise σ ∈ {0, 0.3, 1}: the exact
    ‖J_f‖_F² on clean images falls, from well above d = 2 (a partial copy of its input) towards d.

    Measured (seed 0): 65, 49, 17 (the Hutchinson probe of docs/theory.md agrees within its error)."""
    M = image_manifolds()["translation"]
    values = []
    for sigma in (0.0, 0.3, 1.0):
        model = train_filtering_unet(M, noise_sigma=sigma, width=8, steps=600, batch_size=32, num_train=1024, seed=0)
        values.append(float(clean_frobenius(model, M, num=8, seed=7).mean()))
    assert values[0] > 1.2 * values[1] > 1.2 * 1.2 * values[2] > 2, values
    assert values[0] > 20, values                                           # far from a projection without noise
