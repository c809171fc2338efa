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
from manifold_ae.toys import linear
from manifold_ae.toys.rates import loglog_rate


def _pca_numpy(x: np.ndarray, d: int) -> np.ndarray:
    _, _, vt = np.linalg.svd(x, full_matrices=False)  # x is centred, so right singular vectors = PCA axes
    return vt[:d].T


def test_t2_gaussian_data_is_centred_with_the_stated_spectrum():
    x = linear.gaussian_data(20000, ambient_dim=6, eigenvalues=(4.0, 1.0), tail=0.1, seed=3).numpy()
    assert np.abs(x.mean(0)).max() < 1e-12
    evals = np.sort(np.linalg.eigvalsh(np.cov(x.T, bias=True)))[::-1]
    expected = np.array([4.0, 1.0, 0.1, 0.07, 0.049, 0.0343])
    np.testing.assert_allclose(evals, expected, rtol=0.05)  # Monte Carlo, N = 20000: ~1 % std


@pytest.mark.parametrize("tied", [False, True])
def test_t2_trained_linear_ae_spans_pca_subspace(tied):
    x = linear.gaussian_data(2048, ambient_dim=6, eigenvalues=(3.0, 1.5), tail=0.01, seed=1)
    model, steps, angles = linear.train_linear_ae(x, 2, tied=tied, steps=800, batch_size=1024, lr=3e-2,
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
    x, _ = linear.subspace_data(500, ambient_dim=5, eigenvalues=(2.0, 1.0), seed=4)
    w = np.random.default_rng(5).standard_normal((5, 5)) / 2
    torch.manual_seed(5)
    out = linear.identity_check(x, torch.tensor(w), sigma=0.3, repeats=200)
    xn = x.numpy()
    direct = (((xn @ w.T - xn) ** 2).sum(1).mean() + 0.09 * (w ** 2).sum()) / 5  # E‖Wx−x‖² + σ²‖W‖², / D
    assert out["closed_form"] == pytest.approx(direct, rel=1e-12)
    assert out["contractive_rel_error"] < 1e-12
    assert out["dae_z"] < 4.0 and out["dae_mean"] == pytest.approx(direct, rel=0.02)
    with pytest.raises(ValueError, match=r"W must have shape \(5, 5\)"):
        linear.identity_check(x, torch.eye(4, dtype=torch.float64), sigma=0.3, repeats=2)


def test_t3_trained_linear_dae_and_contractive_match_closed_form():
    x, u = linear.subspace_data(2048, ambient_dim=6, eigenvalues=(3.0, 1.0), seed=6)
    xn = x.numpy()
    sigma_hat = xn.T @ xn / len(xn)
    for sigma in (0.1, 0.3):
        w_star = sigma_hat @ np.linalg.inv(sigma_hat + sigma ** 2 * np.eye(6))  # Σ(Σ + σ²I)⁻¹
        for objective in ("dae", "contractive"):
            w = linear.train_linear(x, 2, objective=objective, sigma=sigma, steps=600, batch_size=512,
                                           lr=1e-2, seed=7).numpy()
            assert np.linalg.norm(w - w_star) / np.linalg.norm(w_star) < 0.01, (sigma, objective)
        # eigenvalues of W* are λ/(λ + σ²) on span(U): a shrunk projector
        lam = np.linalg.eigvalsh(u.numpy().T @ sigma_hat @ u.numpy())
        np.testing.assert_allclose(np.sort(np.linalg.eigvalsh((w_star + w_star.T) / 2))[-2:],
                                   np.sort(lam / (lam + sigma ** 2)), rtol=1e-10)


def test_data_generators_reject_bad_sizes():
    with pytest.raises(ValueError, match=r"ambient_dim must be an integer in \[3, None\]"):
        linear.gaussian_data(10, ambient_dim=2, eigenvalues=(3.0, 2.0, 1.0), tail=0.1, seed=0)
    with pytest.raises(ValueError, match=r"eigenvalues\[1\] must be > 0"):
        linear.gaussian_data(10, ambient_dim=4, eigenvalues=(3.0, -1.0), tail=0.1, seed=0)
    with pytest.raises(ValueError, match=r"tail must be >= 0"):
        linear.gaussian_data(10, ambient_dim=4, eigenvalues=(3.0,), tail=-0.1, seed=0)
    with pytest.raises(ValueError, match=r"ambient_dim must be an integer in \[2, None\]"):
        linear.subspace_data(10, ambient_dim=1, eigenvalues=(2.0, 1.0), seed=0)
    with pytest.raises(ValueError, match=r"eigenvalues\[0\] must be > 0"):
        linear.subspace_data(10, ambient_dim=4, eigenvalues=(0.0,), seed=0)


def test_t3_train_linear_rejects_unknown_objective():
    x, _ = linear.subspace_data(10, ambient_dim=3, eigenvalues=(1.0,), seed=0)
    with pytest.raises(ValueError, match="objective must be 'dae' or 'contractive'"):
        linear.train_linear(x, 1, objective="pca", sigma=0.1, steps=1, batch_size=4, lr=1e-2, seed=0)


def test_t3_run_fast(tmp_path):
    result = t3_linear_dae.run(fast=True, out_dir=tmp_path, seed=0)
    assert result.passed, [c for c in result.checks if not c.passed]
    numbers = result.numbers
    # independent closed form of ‖W* − UUᵀ‖_F from the sample's eigenvalues on span(U)
    x, u = linear.subspace_data(numbers["num_samples"], ambient_dim=10, eigenvalues=(4.0, 2.0, 1.0), seed=0)
    lam = np.linalg.eigvalsh(u.numpy().T @ (x.numpy().T @ x.numpy() / len(x)) @ u.numpy())
    sigmas = np.array(t3_linear_dae.SIGMAS)
    gaps = [math.sqrt(((s ** 2 / (lam + s ** 2)) ** 2).sum()) for s in sigmas]
    np.testing.assert_allclose(numbers["W_star_minus_projector"], gaps, rtol=1e-8)
    line = np.polyfit(np.log(sigmas), np.log(gaps), 1)
    assert numbers["slope_W_star"] == pytest.approx(line[0], abs=1e-9)
    resid = np.log(gaps) - np.polyval(line, np.log(sigmas))
    r2 = 1 - (resid ** 2).sum() / ((np.log(gaps) - np.log(gaps).mean()) ** 2).sum()
    assert numbers["r_squared_W_star"] == pytest.approx(r2, abs=1e-12)
    r2_check = next(c for c in result.checks if c.name == "r² of that log-log fit")
    assert r2_check.measured == numbers["r_squared_W_star"] and r2_check.target == t3_linear_dae.R2_MIN
    assert max(numbers["dae_rel_error"]) < t3_linear_dae.REL_TARGET
    json.dumps(result.to_dict())  # every number is JSON-serialisable


def test_t3_anisotropic_limit_is_the_gls_projector_not_the_orthogonal_one():
    """The oblique limit is idempotent, fixes span(U), and its residual is D⁻¹-orthogonal to span(U)."""
    g = torch.Generator().manual_seed(3)
    U, _ = torch.linalg.qr(torch.randn(8, 2, generator=g, dtype=torch.float64))
    var = torch.rand(8, generator=g, dtype=torch.float64) + 0.2
    P = linear.oblique_limit(U, var)
    assert torch.allclose(P @ P, P, atol=1e-12) and torch.allclose(P @ U, U, atol=1e-12)
    x = torch.randn(8, 5, generator=g, dtype=torch.float64)
    assert torch.allclose(U.T @ torch.diag(1 / var) @ (x - P @ x), torch.zeros(2, 5, dtype=torch.float64), atol=1e-12)
    # brute-force check of the limit itself: Σ(Σ + εD)⁻¹ by a direct solve at tiny ε
    Sigma = U @ torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64)) @ U.T
    eps = 1e-7
    W = Sigma @ torch.linalg.inv(Sigma + eps * torch.diag(var))
    assert torch.allclose(W, P, atol=1e-5)
    control = linear.anisotropic_control(Sigma, U)
    assert 1.8 <= control["slope_to_oblique_limit"] <= 2.2
    assert control["to_orthogonal_projector"][-1] > 0.5 * control["oblique_vs_orthogonal"] > 0


def test_t3_a_nan_measurement_fails_its_check_and_leaves_the_others(tmp_path, monkeypatch):
    """A trained W that is NaN at one σ (not the first, where ``max`` would still see it) must fail the DAE
    check; the fits that use it report NaN instead of raising, and the closed-form checks still pass."""
    def fake_train_linear(x, rank, *, objective, sigma, steps, batch_size, lr, seed, tied=True):
        sigma_hat = x.T @ x / len(x)
        w = sigma_hat @ torch.linalg.inv(sigma_hat + sigma ** 2 * torch.eye(x.shape[1], dtype=x.dtype))
        return torch.full_like(w, math.nan) if (objective, sigma) == ("dae", 0.1) else w

    monkeypatch.setattr(t3_linear_dae, "train_linear", fake_train_linear)
    result = t3_linear_dae.run(fast=True, out_dir=tmp_path, seed=0)
    verdicts = {c.name: c.passed for c in result.checks}
    assert not result.passed
    assert [name for name, ok in verdicts.items() if not ok] == ["trained linear DAE: max_σ ‖W − W*‖_F / ‖W*‖_F"]
    assert math.isnan(result.numbers["slope_trained_dae"]) and math.isnan(result.numbers["r_squared_trained_dae"])


@pytest.mark.parametrize("bad", [math.nan, math.inf, 0.0, -1.0])
def test_loglog_rate_turns_a_bad_value_into_a_nan_fit(bad):
    xs = [0.1, 0.2, 0.4, 0.8]
    ys = [3.0 * x ** 2 * (1 + 0.1 * x) for x in xs]
    line = np.polyfit(np.log(xs), np.log(ys), 1)
    fit = loglog_rate(xs, ys)
    assert fit.slope == pytest.approx(line[0], abs=1e-12) and fit.intercept == pytest.approx(line[1], abs=1e-12)
    assert 0.999 < fit.r_squared < 1.0
    fit = loglog_rate(xs, ys[:2] + [bad] + ys[3:])
    assert all(math.isnan(v) for v in fit)
