"""T2 (linear AE = PCA) and T3 (linear DAE = linear contractive AE = shrunk projector), fast forms.

References are computed here independently: PCA by NumPy's SVD, principal angles by scipy, W* by a NumPy solve,
the denoising risk by direct matrix algebra.
"""
import json
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from manifold_ae.claims import t2_linear_ae, t3_linear_dae


def _pca_numpy(x: np.ndarray, d: int) -> np.ndarray:
    _, _, vt = np.linalg.svd(x, full_matrices=False)  # x is centred, so right singular vectors = PCA axes
    return vt[:d].T


def test_t2_gaussian_data_is_centred_with_the_stated_spectrum():
    x = t2_linear_ae.gaussian_data(20000, ambient_dim=6, eigenvalues=(4.0, 1.0), tail=0.1, seed=3).numpy()
    assert np.abs(x.mean(0)).max() < 1e-12
    evals = np.sort(np.linalg.eigvalsh(np.cov(x.T, bias=True)))[::-1]
    expected = np.array([4.0, 1.0, 0.1, 0.07, 0.049, 0.0343])
    np.testing.assert_allclose(evals, expected, rtol=0.05)  # Monte Carlo, N = 20000: ~1 % std


@pytest.mark.parametrize("tied", [False, True])
def test_t2_trained_linear_ae_spans_pca_subspace(tied):
    x = t2_linear_ae.gaussian_data(2048, ambient_dim=6, eigenvalues=(3.0, 1.5), tail=0.01, seed=1)
    model, steps, angles = t2_linear_ae.train_linear_ae(x, 2, tied=tied, steps=800, batch_size=1024, lr=3e-2,
                                                        seed=2, every=100)
    reference = scipy.linalg.subspace_angles(model.decoder_weight.detach().double().numpy(),
                                             _pca_numpy(x.numpy(), 2))
    assert reference.max() < 2e-3
    assert angles[-1] == pytest.approx(reference.max(), abs=1e-6)  # the recorded curve ends at the same angle
    assert steps[-1] == 800 and angles[0] > 10 * angles[-1]  # it starts far away


def test_t2_run_fast(tmp_path):
    result = t2_linear_ae.run(fast=True, out_dir=tmp_path, seed=0)
    assert result.passed, [c for c in result.checks if not c.passed]
    assert all((tmp_path / f).is_file() for f in result.figures)
    assert result.numbers["untied"]["max_principal_angle"] < t2_linear_ae.ANGLE_TARGET
    curve = result.numbers["angle_curve"]
    assert curve["step"][-1] == result.numbers["steps"] and len(curve["untied AE"]) == len(curve["step"])


def test_t3_identity_check_matches_direct_algebra():
    x, _ = t3_linear_dae.subspace_data(500, ambient_dim=5, eigenvalues=(2.0, 1.0), seed=4)
    w = np.random.default_rng(5).standard_normal((5, 5)) / 2
    torch.manual_seed(5)
    out = t3_linear_dae.identity_check(x, torch.tensor(w), sigma=0.3, repeats=200)
    xn = x.numpy()
    direct = (((xn @ w.T - xn) ** 2).sum(1).mean() + 0.09 * (w ** 2).sum()) / 5  # E‖Wx−x‖² + σ²‖W‖², / D
    assert out["closed_form"] == pytest.approx(direct, rel=1e-12)
    assert out["contractive_rel_error"] < 1e-12
    assert out["dae_z"] < 4.0 and out["dae_mean"] == pytest.approx(direct, rel=0.02)
    with pytest.raises(ValueError, match=r"W must have shape \(5, 5\)"):
        t3_linear_dae.identity_check(x, torch.eye(4, dtype=torch.float64), sigma=0.3, repeats=2)


def test_t3_trained_linear_dae_and_contractive_match_closed_form():
    x, u = t3_linear_dae.subspace_data(2048, ambient_dim=6, eigenvalues=(3.0, 1.0), seed=6)
    xn = x.numpy()
    sigma_hat = xn.T @ xn / len(xn)
    for sigma in (0.1, 0.3):
        w_star = sigma_hat @ np.linalg.inv(sigma_hat + sigma ** 2 * np.eye(6))  # Σ(Σ + σ²I)⁻¹
        for objective in ("dae", "contractive"):
            w = t3_linear_dae.train_linear(x, 2, objective=objective, sigma=sigma, steps=600, batch_size=512,
                                           lr=1e-2, seed=7).numpy()
            assert np.linalg.norm(w - w_star) / np.linalg.norm(w_star) < 0.01, (sigma, objective)
        # eigenvalues of W* are λ/(λ + σ²) on span(U): a shrunk projector
        lam = np.linalg.eigvalsh(u.numpy().T @ sigma_hat @ u.numpy())
        np.testing.assert_allclose(np.sort(np.linalg.eigvalsh((w_star + w_star.T) / 2))[-2:],
                                   np.sort(lam / (lam + sigma ** 2)), rtol=1e-10)


def test_data_generators_reject_bad_sizes():
    with pytest.raises(ValueError, match=r"ambient_dim must be an integer in \[3, None\]"):
        t2_linear_ae.gaussian_data(10, ambient_dim=2, eigenvalues=(3.0, 2.0, 1.0), tail=0.1, seed=0)
    with pytest.raises(ValueError, match=r"eigenvalues\[1\] must be > 0"):
        t2_linear_ae.gaussian_data(10, ambient_dim=4, eigenvalues=(3.0, -1.0), tail=0.1, seed=0)
    with pytest.raises(ValueError, match=r"tail must be >= 0"):
        t2_linear_ae.gaussian_data(10, ambient_dim=4, eigenvalues=(3.0,), tail=-0.1, seed=0)
    with pytest.raises(ValueError, match=r"ambient_dim must be an integer in \[2, None\]"):
        t3_linear_dae.subspace_data(10, ambient_dim=1, eigenvalues=(2.0, 1.0), seed=0)
    with pytest.raises(ValueError, match=r"eigenvalues\[0\] must be > 0"):
        t3_linear_dae.subspace_data(10, ambient_dim=4, eigenvalues=(0.0,), seed=0)


def test_t3_train_linear_rejects_unknown_objective():
    x, _ = t3_linear_dae.subspace_data(10, ambient_dim=3, eigenvalues=(1.0,), seed=0)
    with pytest.raises(ValueError, match="objective must be 'dae' or 'contractive'"):
        t3_linear_dae.train_linear(x, 1, objective="pca", sigma=0.1, steps=1, batch_size=4, lr=1e-2, seed=0)


def test_t3_run_fast(tmp_path):
    result = t3_linear_dae.run(fast=True, out_dir=tmp_path, seed=0)
    assert result.passed, [c for c in result.checks if not c.passed]
    numbers = result.numbers
    # independent closed form of ‖W* − UUᵀ‖_F from the sample's eigenvalues on span(U)
    x, u = t3_linear_dae.subspace_data(numbers["num_samples"], ambient_dim=10, eigenvalues=(4.0, 2.0, 1.0), seed=0)
    lam = np.linalg.eigvalsh(u.numpy().T @ (x.numpy().T @ x.numpy() / len(x)) @ u.numpy())
    sigmas = np.array(t3_linear_dae.SIGMAS)
    gaps = [math.sqrt(((s ** 2 / (lam + s ** 2)) ** 2).sum()) for s in sigmas]
    np.testing.assert_allclose(numbers["W_star_minus_projector"], gaps, rtol=1e-8)
    assert numbers["slope_W_star"] == pytest.approx(np.polyfit(np.log(sigmas), np.log(gaps), 1)[0], abs=1e-9)
    assert max(numbers["dae_rel_error"]) < t3_linear_dae.REL_TARGET
    json.dumps(result.to_dict())  # every number is JSON-serialisable


def test_t3_anisotropic_limit_is_the_gls_projector_not_the_orthogonal_one():
    """The oblique limit is idempotent, fixes span(U), and its residual is D⁻¹-orthogonal to span(U)."""
    from manifold_ae.claims.t3_linear_dae import anisotropic_control, oblique_limit

    g = torch.Generator().manual_seed(3)
    U, _ = torch.linalg.qr(torch.randn(8, 2, generator=g, dtype=torch.float64))
    var = torch.rand(8, generator=g, dtype=torch.float64) + 0.2
    P = oblique_limit(U, var)
    assert torch.allclose(P @ P, P, atol=1e-12) and torch.allclose(P @ U, U, atol=1e-12)
    x = torch.randn(8, 5, generator=g, dtype=torch.float64)
    assert torch.allclose(U.T @ torch.diag(1 / var) @ (x - P @ x), torch.zeros(2, 5, dtype=torch.float64), atol=1e-12)
    # brute-force check of the limit itself: Σ(Σ + εD)⁻¹ by a direct solve at tiny ε
    Sigma = U @ torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64)) @ U.T
    eps = 1e-7
    W = Sigma @ torch.linalg.inv(Sigma + eps * torch.diag(var))
    assert torch.allclose(W, P, atol=1e-5)
    control = anisotropic_control(Sigma, U)
    assert 1.8 <= control["slope_to_oblique_limit"] <= 2.2
    assert control["to_orthogonal_projector"][-1] > 0.5 * control["oblique_vs_orthogonal"] > 0
