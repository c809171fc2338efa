"""T2/T3 oracles: PCA projector, principal angles, linear DAE optimum, checked against independent references."""
import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from manifold_ae.theory import (linear_contractive_optimum, linear_dae_optimum, linear_dae_risk, moment_matrix,
                                pca_basis, principal_angles, principal_components, shrinkage_eigenvalues)


def _orthonormal(rng, n, d):
    q, _ = np.linalg.qr(rng.standard_normal((n, d)))
    return q


def _spectrum_data(rng, num, n, scales):
    """Samples x = V diag(scales) g with a random rotation V: distinct, known second-moment eigenvalues."""
    v = _orthonormal(rng, n, n)
    return rng.standard_normal((num, n)) * scales @ v.T


@pytest.mark.parametrize("centre", [False, True])
def test_pca_basis_projector_matches_numpy_svd(centre):
    rng = np.random.default_rng(0)
    x = _spectrum_data(rng, 500, 6, np.array([3.0, 2.0, 1.0, 0.3, 0.2, 0.1])) + (1.5 if centre else 0.0)
    xc = x - x.mean(0) if centre else x
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    ref = vt[:2].T @ vt[:2]
    u, _ = pca_basis(torch.tensor(x), 2, centre=centre)
    np.testing.assert_allclose((u @ u.T).numpy(), ref, atol=1e-10)


def test_principal_components_with_more_features_than_samples_match_the_covariance_eigenpairs():
    # n = 60 features, N = 12 samples (the image case): numpy's eigendecomposition of the n x n covariance
    rng = np.random.default_rng(7)
    x = rng.standard_normal((12, 60)) * np.linspace(2.0, 0.1, 60) + 0.7
    pc = principal_components(torch.tensor(x), centre=True)
    assert pc.mean.shape == (60,) and pc.basis.shape == (60, 12) and pc.eigenvalues.shape == (12,)
    evals, evecs = np.linalg.eigh(np.cov(x.T, bias=True))
    evals, evecs = evals[::-1], evecs[:, ::-1]
    np.testing.assert_allclose(pc.mean.numpy(), x.mean(0), atol=1e-14)
    np.testing.assert_allclose(pc.eigenvalues.numpy()[:11], evals[:11], rtol=1e-10)
    assert abs(float(pc.eigenvalues[11])) < 1e-12  # centring leaves N - 1 = 11 directions
    top = pc.basis[:, :5].numpy()
    np.testing.assert_allclose(top @ top.T, evecs[:, :5] @ evecs[:, :5].T, atol=1e-10)
    np.testing.assert_allclose(pc.basis.T @ pc.basis, np.eye(12), atol=1e-12)
    none = principal_components(torch.tensor(x), 0)
    assert none.basis.shape == (60, 0) and float(none.mean.abs().max()) == 0.0
    with pytest.raises(ValueError, match="rank"):
        principal_components(torch.tensor(x), 13)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., N, n\)"):
        principal_components(torch.zeros(5))


def test_pca_basis_is_batched_and_orders_eigenvalues():
    rng = np.random.default_rng(1)
    x = np.stack([_spectrum_data(rng, 400, 5, np.array([2.0, 1.5, 1.0, 0.5, 0.1])) for _ in range(3)])
    u, evals = pca_basis(torch.tensor(x), 3)
    assert u.shape == (3, 5, 3) and evals.shape == (3, 3)
    for b in range(3):
        ref = np.sort(np.linalg.eigvalsh(x[b].T @ x[b] / 400))[::-1][:3]
        np.testing.assert_allclose(evals[b].numpy(), ref, rtol=1e-12)
    sigma, mean = moment_matrix(torch.tensor(x[0]), centre=True)
    np.testing.assert_allclose(sigma.numpy(), np.cov(x[0].T, bias=True), atol=1e-12)
    np.testing.assert_allclose(mean.numpy(), x[0].mean(0), atol=1e-14)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), p=st.integers(1, 4), q=st.integers(1, 4))
def test_principal_angles_match_scipy(seed, p, q):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((8, p)), rng.standard_normal((8, q))
    ref = np.sort(scipy.linalg.subspace_angles(a, b))
    got = principal_angles(torch.tensor(a), torch.tensor(b)).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-12)


@pytest.mark.parametrize("theta", [1e-12, 1e-6, 0.3, 1.2])
def test_principal_angles_exact_for_a_rotated_plane(theta):
    rng = np.random.default_rng(2)
    e = _orthonormal(rng, 7, 3)
    u = e[:, :2]
    v = np.stack([e[:, 0], np.cos(theta) * e[:, 1] + np.sin(theta) * e[:, 2]], axis=1)
    mix = rng.standard_normal((2, 2))  # a non-orthonormal basis of the same span
    got = principal_angles(torch.tensor(u @ mix), torch.tensor(v)).numpy()
    np.testing.assert_allclose(got, [0.0, theta], rtol=1e-9, atol=1e-15)


def _circle_plus_line(rng, num, radius=1.5, line_sd=0.4):
    """Non-Gaussian data: a circle in one plane plus a Gaussian along a third direction, in R^5."""
    q = _orthonormal(rng, 5, 3)
    theta = rng.uniform(0, 2 * np.pi, num)
    y = np.stack([radius * np.cos(theta), radius * np.sin(theta), line_sd * rng.standard_normal(num)], axis=1)
    sigma_pop = q @ np.diag([radius ** 2 / 2, radius ** 2 / 2, line_sd ** 2]) @ q.T
    return y @ q.T, sigma_pop


def test_linear_dae_optimum_minimises_monte_carlo_loss():
    rng = np.random.default_rng(3)
    x, sigma_pop = _circle_plus_line(rng, 200_000)
    s = 0.3
    x_tilde = x + s * rng.standard_normal(x.shape)
    w_ls = np.linalg.lstsq(x_tilde, x, rcond=None)[0].T  # argmin_W Σ ‖W x̃_i − x_i‖²
    w_star = linear_dae_optimum(torch.tensor(sigma_pop), sigma=s).numpy()
    assert np.linalg.norm(w_ls - w_star) / np.linalg.norm(w_star) < 1e-2


def test_anisotropic_dae_optimum_minimises_monte_carlo_loss():
    rng = np.random.default_rng(4)
    x, sigma_pop = _circle_plus_line(rng, 200_000)
    s = np.array([0.1, 0.5, 0.2, 0.3, 0.05])
    x_tilde = x + s * rng.standard_normal(x.shape)
    w_ls = np.linalg.lstsq(x_tilde, x, rcond=None)[0].T
    w_star = linear_dae_optimum(torch.tensor(sigma_pop), sigma=torch.tensor(s)).numpy()
    assert np.linalg.norm(w_ls - w_star) / np.linalg.norm(w_star) < 1e-2
    assert np.linalg.norm(w_star - w_star.T) > 1e-2  # no longer symmetric: not a projection


def test_t3_identity_denoising_risk_equals_contractive_risk_monte_carlo():
    rng = np.random.default_rng(5)
    x, sigma_pop = _circle_plus_line(rng, 400_000)
    w = rng.standard_normal((5, 5)) * 0.4
    s = 0.25
    eps = s * rng.standard_normal(x.shape)
    mc = np.mean(np.sum(((x + eps) @ w.T - x) ** 2, axis=1))
    exact = float(linear_dae_risk(torch.tensor(w), torch.tensor(sigma_pop), sigma=s))
    assert abs(mc - exact) / exact < 1e-2


def test_linear_contractive_optimum_is_ridge_least_squares():
    rng = np.random.default_rng(6)
    x, _ = _circle_plus_line(rng, 5000)
    lam = 0.07
    sample_moment = x.T @ x / len(x)
    # min_W (1/N) Σ ‖W x_i − x_i‖² + λ ‖W‖_F²  as an augmented least-squares problem, solved by numpy.
    a = np.vstack([x / np.sqrt(len(x)), np.sqrt(lam) * np.eye(5)])
    b = np.vstack([x / np.sqrt(len(x)), np.zeros((5, 5))])
    w_ridge = np.linalg.lstsq(a, b, rcond=None)[0].T
    got = linear_contractive_optimum(torch.tensor(sample_moment), lam=lam).numpy()
    np.testing.assert_allclose(got, w_ridge, atol=1e-10)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), s=st.floats(0.01, 2.0))
def test_dae_optimum_spectrum_is_shrunk_projector(seed, s):
    rng = np.random.default_rng(seed)
    lam = np.array([4.0, 1.0, 0.25, 0.0, 0.0])
    v = _orthonormal(rng, 5, 5)
    sigma_pop = v @ np.diag(lam) @ v.T
    w = linear_dae_optimum(torch.tensor(sigma_pop), sigma=s).numpy()
    ref = v @ np.diag(lam / (lam + s * s)) @ v.T
    np.testing.assert_allclose(w, ref, atol=1e-12)
    np.testing.assert_allclose(shrinkage_eigenvalues(torch.tensor(lam), sigma=s).numpy(), lam / (lam + s * s))
    # the optimum beats random perturbations of itself (exact risk, T3)
    risk = linear_dae_risk(torch.tensor(w), torch.tensor(sigma_pop), sigma=s)
    for _ in range(5):
        pert = torch.tensor(w + 1e-3 * rng.standard_normal((5, 5)))
        assert float(linear_dae_risk(pert, torch.tensor(sigma_pop), sigma=s)) > float(risk)


def test_distance_to_projector_has_slope_two_in_sigma():
    rng = np.random.default_rng(7)
    u = _orthonormal(rng, 6, 2)
    sigma_pop = u @ np.diag([2.0, 0.5]) @ u.T
    sigmas = np.logspace(-3, -1, 7)
    gaps = [np.linalg.norm(linear_dae_optimum(torch.tensor(sigma_pop), sigma=s).numpy() - u @ u.T) for s in sigmas]
    slope = np.polyfit(np.log(sigmas), np.log(gaps), 1)[0]
    assert abs(slope - 2.0) < 0.01


def test_linear_bad_inputs_name_the_argument():
    good = torch.eye(3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"Sigma must be a square matrix"):
        linear_dae_optimum(torch.ones(3, 2), sigma=0.1)
    with pytest.raises(ValueError, match=r"sigma must be > 0"):
        linear_dae_optimum(good, sigma=0.0)
    with pytest.raises(ValueError, match=r"sigma must be a positive scalar or a positive vector of shape \(3,\)"):
        linear_dae_optimum(good, sigma=torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match=r"rank must be an integer in \[1, 3\]"):
        pca_basis(torch.randn(10, 3), 4)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., N, n\)"):
        pca_basis(torch.randn(3), 1)
    with pytest.raises(ValueError, match=r"x contains 1 NaN"):
        pca_basis(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), 1)
    with pytest.raises(ValueError, match=r"U and V must have shapes"):
        principal_angles(torch.randn(4, 2), torch.randn(5, 2))
    with pytest.raises(ValueError, match=r"eigenvalues must be >= 0"):
        shrinkage_eigenvalues(torch.tensor([1.0, -0.5]), sigma=0.1)
    with pytest.raises(ValueError, match=r"lam must be > 0"):
        linear_contractive_optimum(good, lam=-1.0)
    with pytest.raises(ValueError, match=r"W and Sigma must be \(\.\.\., n, n\) with the same n"):
        linear_dae_risk(torch.eye(2), good, sigma=0.1)
