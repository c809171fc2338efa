"""T4/T6 oracles: Bayes-optimal denoisers against quadrature, Monte Carlo, mpmath/scipy and regression."""
import itertools
import math

import mpmath
import numpy as np
import pytest
import scipy.special
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from manifold_ae.manifolds import make_manifold
from manifold_ae.theory import (bessel_ratio, circle_posterior_mean, flat_torus_posterior_covariance,
                                flat_torus_posterior_mean, gaussian_subspace_posterior_mean, jacobian,
                                log_density_quadrature, masked_gaussian_mask_posterior,
                                masked_gaussian_posterior_mean, masked_posterior_mean_quadrature,
                                posterior_covariance_quadrature, posterior_mean_quadrature, sphere_log_density,
                                posterior_covariance, posterior_mean, sphere_posterior_covariance,
                                sphere_posterior_mean, tweedie_denoiser, wiener_filter)

DT = torch.float64


def _embedding(seed, n, m):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, m)))
    return torch.tensor(q), torch.tensor(rng.standard_normal(n)), rng


def _importance_mean(x_tilde, samples, sigma):
    """Self-normalised importance estimate of E[Y | x̃] from prior samples (numpy, written independently)."""
    d2 = ((x_tilde[:, None, :] - samples[None]) ** 2).sum(-1)
    logw = -d2 / (2 * sigma ** 2)
    w = np.exp(logw - logw.max(1, keepdims=True))
    return (w @ samples) / w.sum(1, keepdims=True), w.sum(1) ** 2 / (w ** 2).sum(1)  # (mean, ESS)


# ---------------------------------------------------------------------------------------------- Bessel ratio
@pytest.mark.parametrize("nu", [0.5, 1.0, 1.5, 2.0, 3.5])
def test_bessel_ratio_matches_mpmath_from_tiny_to_huge_kappa(nu):
    mpmath.mp.dps = 30
    kappa = np.logspace(-8, 12, 41)
    ref = np.array([float(mpmath.besseli(nu, mpmath.mpf(k)) / mpmath.besseli(nu - 1, mpmath.mpf(k))) for k in kappa])
    got = bessel_ratio(nu, torch.tensor(kappa)).numpy()
    np.testing.assert_allclose(got, ref, rtol=2e-15)


@settings(max_examples=30, deadline=None)
@given(nu=st.sampled_from([1.0, 1.5, 2.0, 2.5]), log_kappa=st.floats(-6, 7))
def test_bessel_ratio_matches_scipy(nu, log_kappa):
    k = 10.0 ** log_kappa
    ref = scipy.special.ive(nu, k) / scipy.special.ive(nu - 1, k)
    assert float(bessel_ratio(nu, torch.tensor([k], dtype=DT))[0]) == pytest.approx(ref, rel=1e-13)


# ---------------------------------------------------------------------------------------------- circle
def test_circle_posterior_mean_matches_grid_quadrature_and_monte_carlo():
    q, c, rng = _embedding(0, 10, 2)
    radius, sigma = 1.5, 0.3
    x_tilde = c + torch.tensor(rng.standard_normal((20, 10))) * 1.2
    got = circle_posterior_mean(x_tilde, radius=radius, sigma=sigma, centre=c, Q=q)
    theta = torch.linspace(0, 2 * math.pi, 4097, dtype=DT)[:-1]
    grid = c + radius * torch.stack([theta.cos(), theta.sin()], -1) @ q.T
    torch.testing.assert_close(got, posterior_mean_quadrature(x_tilde, grid, sigma=sigma), atol=1e-12, rtol=0)
    # Monte Carlo: random uniform prior samples, importance weights (in the base plane: the rest cancels)
    th = rng.uniform(0, 2 * np.pi, 200_000)
    y = radius * np.stack([np.cos(th), np.sin(th)], 1)
    u = ((x_tilde - c) @ q).numpy()
    mc, ess = _importance_mean(u, y, sigma)
    assert ess.min() > 2000
    np.testing.assert_allclose(((got - c) @ q).numpy(), mc, atol=0.02)


def test_circle_posterior_mean_matches_nearest_neighbour_regression():
    radius, sigma, h = 1.0, 0.25, 0.035
    rng = np.random.default_rng(11)
    th = rng.uniform(0, 2 * np.pi, 2_000_000)
    y = radius * np.stack([np.cos(th), np.sin(th)], 1)
    x_tilde = y + sigma * rng.standard_normal(y.shape)
    queries = np.array([[1.1, 0.2], [0.3, -0.8], [-0.5, 0.1], [0.0, 1.3]])
    got = circle_posterior_mean(torch.tensor(queries), radius=radius, sigma=sigma).numpy()
    for qpt, g in zip(queries, got):
        near = ((x_tilde - qpt) ** 2).sum(1) < h * h  # simulate-and-regress: average clean y over a small ball
        assert near.sum() > 300
        se = y[near].std(0) / math.sqrt(near.sum())
        assert np.all(np.abs(y[near].mean(0) - g) < 5 * se + 2e-3)


# ---------------------------------------------------------------------------------------------- spheres
def _sphere2_grid(radius, nodes=120):
    """Gauss–Legendre in cos(polar) × uniform azimuth: weights for the uniform area measure on S²."""
    ct, wt = np.polynomial.legendre.leggauss(nodes)
    phi = np.linspace(0, 2 * np.pi, 2 * nodes, endpoint=False)
    ct_g, phi_g = np.meshgrid(ct, phi, indexing="ij")
    st_g = np.sqrt(1 - ct_g ** 2)
    pts = radius * np.stack([st_g * np.cos(phi_g), st_g * np.sin(phi_g), ct_g], -1).reshape(-1, 3)
    return torch.tensor(pts), torch.tensor(np.repeat(wt, 2 * nodes))


def test_sphere2_posterior_moments_match_grid_quadrature():
    q, c, rng = _embedding(1, 8, 3)
    radius, sigma = 1.2, 0.25
    x_tilde = c + torch.tensor(rng.standard_normal((15, 8))) * 0.9
    pts, w = _sphere2_grid(radius)
    grid = c + pts @ q.T
    mean = sphere_posterior_mean(x_tilde, radius=radius, sigma=sigma, centre=c, Q=q)
    torch.testing.assert_close(mean, posterior_mean_quadrature(x_tilde, grid, w, sigma=sigma), atol=1e-12, rtol=0)
    cov = sphere_posterior_covariance(x_tilde, radius=radius, sigma=sigma, centre=c, Q=q)
    torch.testing.assert_close(cov, posterior_covariance_quadrature(x_tilde, grid, w, sigma=sigma),
                               atol=1e-12, rtol=0)
    logp = sphere_log_density(x_tilde, radius=radius, sigma=sigma, centre=c, Q=q)
    torch.testing.assert_close(logp, log_density_quadrature(x_tilde, grid, w, sigma=sigma), atol=1e-10, rtol=0)


def test_sphere3_posterior_mean_matches_monte_carlo():
    q, c, rng = _embedding(2, 9, 4)
    radius, sigma = 1.0, 0.35
    x_tilde = c + torch.tensor(rng.standard_normal((10, 9))) * 0.8
    g = rng.standard_normal((300_000, 4))
    y = radius * g / np.linalg.norm(g, axis=1, keepdims=True)  # uniform on S³
    mc, ess = _importance_mean(((x_tilde - c) @ q).numpy(), y, sigma)
    assert ess.min() > 1000
    got = sphere_posterior_mean(x_tilde, radius=radius, sigma=sigma, centre=c, Q=q)
    np.testing.assert_allclose(((got - c) @ q).numpy(), mc, atol=0.02)
    # noise orthogonal to span(Q) is removed entirely (T1)
    resid = (got - c) - ((got - c) @ q) @ q.T
    assert float(resid.abs().max()) < 1e-12


# ---------------------------------------------------------------------------------------------- flat torus
def test_flat_torus_posterior_matches_grid_quadrature_and_monte_carlo():
    q, c, rng = _embedding(3, 10, 4)
    a, b, sigma = 1.5, 0.7, 0.2
    x_tilde = c + torch.tensor(rng.standard_normal((12, 10)))
    t = np.linspace(0, 2 * np.pi, 256, endpoint=False)
    th, ph = np.meshgrid(t, t, indexing="ij")
    base = np.stack([a * np.cos(th), a * np.sin(th), b * np.cos(ph), b * np.sin(ph)], -1).reshape(-1, 4)
    grid = c + torch.tensor(base) @ q.T
    got = flat_torus_posterior_mean(x_tilde, radii=(a, b), sigma=sigma, centre=c, Q=q)
    torch.testing.assert_close(got, posterior_mean_quadrature(x_tilde, grid, sigma=sigma), atol=1e-12, rtol=0)
    cov = flat_torus_posterior_covariance(x_tilde, radii=(a, b), sigma=sigma, centre=c, Q=q)
    torch.testing.assert_close(cov, posterior_covariance_quadrature(x_tilde, grid, sigma=sigma), atol=1e-12, rtol=0)
    s1, s2 = rng.uniform(0, 2 * np.pi, (2, 300_000))
    y = np.stack([a * np.cos(s1), a * np.sin(s1), b * np.cos(s2), b * np.sin(s2)], 1)
    mc, ess = _importance_mean(((x_tilde - c) @ q).numpy(), y, sigma)
    keep = ess > 500
    assert keep.sum() >= 6
    np.testing.assert_allclose(((got - c) @ q).numpy()[keep], mc[keep], atol=0.03)


# ---------------------------------------------------------------------------------------------- Jacobian, limits
@pytest.mark.parametrize("kind", ["circle", "sphere2", "torus"])
def test_jacobian_of_posterior_mean_is_posterior_covariance_over_sigma_sq(kind):
    m = {"circle": 2, "sphere2": 3, "torus": 4}[kind]
    q, c, rng = _embedding(4, 7, m)
    sigma = 0.3
    x_tilde = c + torch.tensor(rng.standard_normal((6, 7)))
    if kind == "torus":
        mean_fn = lambda v: flat_torus_posterior_mean(v, radii=(1.2, 0.6), sigma=sigma, centre=c, Q=q)  # noqa: E731
        cov = flat_torus_posterior_covariance(x_tilde, radii=(1.2, 0.6), sigma=sigma, centre=c, Q=q)
    else:
        mean_fn = lambda v: sphere_posterior_mean(v, radius=1.1, sigma=sigma, centre=c, Q=q)  # noqa: E731
        cov = sphere_posterior_covariance(x_tilde, radius=1.1, sigma=sigma, centre=c, Q=q)
    jac = jacobian(mean_fn, x_tilde)
    torch.testing.assert_close(jac, cov / sigma ** 2, atol=1e-11, rtol=0)
    torch.testing.assert_close(jac, jac.transpose(-1, -2), atol=1e-12, rtol=0)
    assert float(torch.linalg.eigvalsh(jac).min()) > -1e-12
    # central finite differences as a reference independent of autograd
    h = 1e-6
    fd = torch.stack([(mean_fn(x_tilde + h * e) - mean_fn(x_tilde - h * e)) / (2 * h)
                      for e in torch.eye(7, dtype=DT)], -1)
    torch.testing.assert_close(jac, fd, atol=1e-7, rtol=0)


def _circle_geometry(q, c, radius, theta):
    p = c + radius * torch.stack([theta.cos(), theta.sin()], -1) @ q.T  # (k, n)
    tangent = torch.stack([-theta.sin(), theta.cos()], -1) @ q.T  # (k, n) unit
    normal = torch.stack([theta.cos(), theta.sin()], -1) @ q.T
    return p, tangent, normal


def test_posterior_mean_minus_projection_is_order_sigma_squared():
    q, c, _ = _embedding(5, 10, 2)
    radius = 1.0
    theta = torch.tensor([0.3, 2.0, 4.0], dtype=DT)
    t = torch.tensor([0.4, -0.5, 0.0], dtype=DT)  # inside the reach (|t| < R), on M for the last one
    p, _, normal = _circle_geometry(q, c, radius, theta)
    x = p + t[:, None] * normal  # normal-ray points: π(x) = p exactly (T1)
    sigmas = np.logspace(-4, -2, 6)
    gaps = np.array([(circle_posterior_mean(x, radius=radius, sigma=s, centre=c, Q=q) - p).norm(dim=-1).numpy()
                     for s in sigmas])  # (6, 3)
    for j in range(3):
        slope = np.polyfit(np.log(sigmas), np.log(gaps[:, j]), 1)[0]
        assert abs(slope - 2.0) < 0.02
        # asymptotic constant R(1 − A(κ)) ≈ σ²/(2‖u‖) with ‖u‖ = R + t
        np.testing.assert_allclose(gaps[0, j], sigmas[0] ** 2 / (2 * (radius + float(t[j]))), rtol=1e-3)


def test_sphere_posterior_mean_finite_and_accurate_for_tiny_sigma():
    q, c, rng = _embedding(6, 6, 3)
    radius = 2.0
    u = torch.tensor(rng.standard_normal((5, 3)))
    x = c + u @ q.T
    proj = c + radius * (u / u.norm(dim=-1, keepdim=True)) @ q.T
    for sigma in [1e-4, 1e-5, 1e-7, 1e-9]:
        got = sphere_posterior_mean(x, radius=radius, sigma=sigma, centre=c, Q=q)
        cov = sphere_posterior_covariance(x, radius=radius, sigma=sigma, centre=c, Q=q)
        assert bool(torch.isfinite(got).all()) and bool(torch.isfinite(cov).all())
        # k = 2: A = coth κ − 1/κ (Langevin), so ‖r* − π‖ = R(1 − A) = σ²/‖u‖ up to e^{−2κ}
        gap = (got - proj).norm(dim=-1).numpy()
        np.testing.assert_allclose(gap, sigma ** 2 / u.norm(dim=-1).numpy(), rtol=1e-5, atol=1e-14)


def test_jacobian_on_manifold_tends_to_tangent_projector_at_rate_sigma_squared():
    q, c, _ = _embedding(7, 8, 2)
    radius = 1.3
    theta = torch.tensor([0.1, 1.7], dtype=DT)
    p, tangent, normal = _circle_geometry(q, c, radius, theta)
    p_t = tangent[:, :, None] * tangent[:, None, :]
    sigmas = np.logspace(-3, -1.5, 5)
    gaps = [float(torch.linalg.matrix_norm(
        jacobian(lambda v: circle_posterior_mean(v, radius=radius, sigma=s, centre=c, Q=q), p) - p_t).max())
        for s in sigmas]
    assert gaps[0] < 1e-5
    assert abs(np.polyfit(np.log(sigmas), np.log(gaps), 1)[0] - 2.0) < 0.05
    # off M at x = p + tν: J → Dπ(x) = R/(R + t) P_T (T1)
    x = p + 0.3 * normal
    jac = jacobian(lambda v: circle_posterior_mean(v, radius=radius, sigma=1e-4, centre=c, Q=q), x)
    torch.testing.assert_close(jac, radius / (radius + 0.3) * p_t, atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------- Tweedie
def test_tweedie_with_independent_scipy_log_density_matches_closed_forms():
    rng = np.random.default_rng(8)
    radius, sigma, h = 1.1, 0.3, 1e-5

    def log_p_circle(u):  # log ∫ N(u; y, σ²) dU(y) up to a constant: −‖u‖²/2σ² + log I0(κ)
        k = radius * np.linalg.norm(u) / sigma ** 2
        return -(u @ u) / (2 * sigma ** 2) + np.log(scipy.special.ive(0, k)) + k

    def log_p_sphere2(u):  # E_U[exp(κ cos)] on S² = sinh(κ)/κ
        k = radius * np.linalg.norm(u) / sigma ** 2
        return -(u @ u) / (2 * sigma ** 2) + k + np.log1p(-np.exp(-2 * k)) - np.log(2 * k)

    for dim, log_p, fn in [(2, log_p_circle, circle_posterior_mean), (3, log_p_sphere2, sphere_posterior_mean)]:
        for u in rng.standard_normal((5, dim)):
            grad = np.array([(log_p(u + h * e) - log_p(u - h * e)) / (2 * h) for e in np.eye(dim)])
            got = fn(torch.tensor(u), radius=radius, sigma=sigma).numpy()
            np.testing.assert_allclose(got, u + sigma ** 2 * grad, atol=1e-8)


def test_tweedie_by_autograd_matches_closed_form_and_quadrature():
    q, c, rng = _embedding(9, 6, 3)
    radius, sigma = 0.9, 0.2
    x_tilde = c + torch.tensor(rng.standard_normal((8, 6)))
    closed = sphere_posterior_mean(x_tilde, radius=radius, sigma=sigma, centre=c, Q=q)
    tw = tweedie_denoiser(lambda v: sphere_log_density(v, radius=radius, sigma=sigma, centre=c, Q=q), x_tilde,
                          sigma=sigma)
    torch.testing.assert_close(tw, closed, atol=1e-12, rtol=0)
    pts, w = _sphere2_grid(radius, nodes=80)
    grid = c + pts @ q.T
    tw_q = tweedie_denoiser(lambda v: log_density_quadrature(v, grid, w, sigma=sigma), x_tilde, sigma=sigma)
    torch.testing.assert_close(tw_q, closed, atol=1e-10, rtol=0)


# ---------------------------------------------------------------------------------------------- Gaussian (Wiener)
def test_wiener_filter_matches_least_squares_regression():
    q, c, rng = _embedding(10, 6, 2)
    lam = np.array([2.0, 0.3])
    sigma = 0.4
    z = rng.standard_normal((200_000, 2)) * np.sqrt(lam)
    x = c.numpy() + z @ q.numpy().T
    x_tilde = x + sigma * rng.standard_normal(x.shape)
    design = np.hstack([x_tilde, np.ones((len(x), 1))])
    coef = np.linalg.lstsq(design, x, rcond=None)[0]  # affine regression of x on x̃
    probe = torch.tensor(rng.standard_normal((5, 6)))
    ref = probe.numpy() @ coef[:6] + coef[6]
    got = gaussian_subspace_posterior_mean(probe, latent_cov=torch.tensor(lam), sigma=sigma, centre=c, Q=q)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-2)
    cov = q @ torch.diag(torch.tensor(lam)) @ q.T
    torch.testing.assert_close(wiener_filter(probe, cov=cov, sigma=sigma, mean=c), got, atol=1e-12, rtol=0)


# ---------------------------------------------------------------------------------------------- masked mixture (T6)
def _pair_masks(n):
    pairs = list(itertools.combinations(range(n), 2))
    masks = np.zeros((len(pairs), n))
    for i, pr in enumerate(pairs):
        masks[i, list(pr)] = 1.0
    return masks


def test_masked_mixture_matches_importance_sampling_of_the_forward_model():
    rng = np.random.default_rng(12)
    n = 4
    q, _ = np.linalg.qr(rng.standard_normal((n, 2)))
    cov = q @ np.diag([1.5, 0.4]) @ q.T
    masks = _pair_masks(n)
    probs = rng.uniform(0.5, 1.5, len(masks))
    probs /= probs.sum()
    fill_mean, fill_std, noise_var = 0.3, 1.2, 0.05
    # a few x̂ simulated from the forward model
    z = rng.standard_normal((6, 2)) * np.sqrt([1.5, 0.4])
    s_idx = rng.choice(len(masks), 6, p=probs)
    m = masks[s_idx]
    x_hat = (1 - m) * (z @ q.T) + m * (fill_mean + fill_std * rng.standard_normal((6, n)))
    x_hat += np.sqrt(noise_var) * rng.standard_normal((6, n))
    # importance sampling: prior samples x_j, weights p(x̂ | x_j) = Σ_S P(S) Π_i N(x̂_i; mean_i, var_i)
    xs = (rng.standard_normal((400_000, 2)) * np.sqrt([1.5, 0.4])) @ q.T
    ref = []
    for xh in x_hat:
        like = np.zeros(len(xs))
        for mk, pr in zip(masks, probs):
            mean = (1 - mk) * xs + mk * fill_mean
            var = noise_var + mk * fill_std ** 2
            like += pr * np.exp(-0.5 * (((xh - mean) ** 2) / var).sum(1)) / np.sqrt(np.prod(2 * np.pi * var))
        ref.append(like @ xs / like.sum())
    got = masked_gaussian_posterior_mean(torch.tensor(x_hat), cov=torch.tensor(cov), masks=torch.tensor(masks),
                                         mask_probs=torch.tensor(probs), fill_std=fill_std, fill_mean=fill_mean,
                                         noise_var=noise_var)
    np.testing.assert_allclose(got.numpy(), np.array(ref), atol=0.01)


def test_masked_mixture_single_mask_is_the_linear_regression_of_x_on_x_hat():
    rng = np.random.default_rng(13)
    n = 5
    q, _ = np.linalg.qr(rng.standard_normal((n, 2)))
    cov = q @ np.diag([1.0, 0.5]) @ q.T + 0.01 * np.eye(n)
    mask = np.array([[0.0, 1.0, 0.0, 1.0, 0.0]])
    x = rng.multivariate_normal(np.zeros(n), cov, 200_000)
    x_hat = (1 - mask) * x + mask * 0.8 * rng.standard_normal(x.shape)
    coef = np.linalg.lstsq(x_hat, x, rcond=None)[0]
    probe = rng.standard_normal((4, n))
    got = masked_gaussian_posterior_mean(torch.tensor(probe), cov=torch.tensor(cov), masks=torch.tensor(mask),
                                         fill_std=0.8)
    np.testing.assert_allclose(got.numpy(), probe @ coef, atol=1e-2)


def test_noiseless_masked_mixture_identifies_the_mask_and_recovers_the_clean_point():
    rng = np.random.default_rng(14)
    n, d = 6, 2
    q, _ = np.linalg.qr(rng.standard_normal((n, d)))
    cov = torch.tensor(q @ np.diag([2.0, 0.5]) @ q.T)
    masks = _pair_masks(n)
    idx = rng.integers(0, len(masks), 8)
    x = (rng.standard_normal((8, d)) * np.sqrt([2.0, 0.5])) @ q.T
    x_hat = (1 - masks[idx]) * x + masks[idx] * 1.5 * rng.standard_normal((8, n))
    post = masked_gaussian_mask_posterior(torch.tensor(x_hat), cov=cov, masks=torch.tensor(masks), fill_std=1.5)
    assert np.array_equal(post.argmax(-1).numpy(), idx) and float(post.max(-1).values.min()) > 1 - 1e-9
    got = masked_gaussian_posterior_mean(torch.tensor(x_hat), cov=cov, masks=torch.tensor(masks), fill_std=1.5)
    # 4 clean coordinates determine the latent: E[x | x̂] = U (U_{Sᶜ})⁺ x̂_{Sᶜ} = x (numpy lstsq reference)
    for row, k in enumerate(idx):
        keep = masks[k] == 0
        z = np.linalg.lstsq(q[keep], x_hat[row, keep], rcond=None)[0]
        np.testing.assert_allclose(got[row].numpy(), q @ z, atol=1e-7)
        np.testing.assert_allclose(got[row].numpy(), x[row], atol=1e-7)


def test_masked_quadrature_matches_gaussian_mixture_on_hermite_grid():
    rng = np.random.default_rng(15)
    n = 5
    q, _ = np.linalg.qr(rng.standard_normal((n, 2)))
    lam = np.array([1.5, 0.6])
    nodes, wts = np.polynomial.hermite_e.hermegauss(90)
    zg = np.stack(np.meshgrid(nodes, nodes, indexing="ij"), -1).reshape(-1, 2) * np.sqrt(lam)
    pts, w = torch.tensor(zg @ q.T), torch.tensor(np.outer(wts, wts).ravel())
    masks = torch.tensor(_pair_masks(n))
    x_hat = torch.tensor(rng.standard_normal((6, n)))
    got = masked_posterior_mean_quadrature(x_hat, pts, w, masks=masks, fill_std=1.3, noise_std=0.5, fill_mean=0.2)
    ref = masked_gaussian_posterior_mean(x_hat, cov=torch.tensor(q @ np.diag(lam) @ q.T), masks=masks,
                                         fill_std=1.3, fill_mean=0.2, noise_var=0.25)
    torch.testing.assert_close(got, ref, atol=1e-9, rtol=0)


# ---------------------------------------------------------------------------------------------- bad input
def test_bayes_bad_inputs_name_the_argument():
    x = torch.zeros(3, 4, dtype=DT)
    q = torch.eye(4, dtype=DT)[:, :2]
    with pytest.raises(ValueError, match=r"sigma must be > 0"):
        circle_posterior_mean(x, radius=1.0, sigma=0.0, Q=q)
    with pytest.raises(ValueError, match=r"radius must be > 0"):
        sphere_posterior_mean(x, radius=-1.0, sigma=0.1, Q=q)
    with pytest.raises(ValueError, match=r"Q must have orthonormal columns"):
        circle_posterior_mean(x, radius=1.0, sigma=0.1, Q=2 * q)
    with pytest.raises(ValueError, match=r"Q must have 2 columns"):
        circle_posterior_mean(x, radius=1.0, sigma=0.1, Q=torch.eye(4, dtype=DT)[:, :3])
    with pytest.raises(ValueError, match=r"Q must have shape \(n, m\) = \(4, m <= 4\)"):
        sphere_posterior_mean(x, radius=1.0, sigma=0.1, Q=torch.eye(5, dtype=DT)[:, :3])
    with pytest.raises(ValueError, match=r"centre must have shape \(\.\.\., 4\)"):
        sphere_posterior_mean(x, radius=1.0, sigma=0.1, centre=torch.zeros(3))
    with pytest.raises(ValueError, match=r"radii must be a pair"):
        flat_torus_posterior_mean(x, radii=1.0, sigma=0.1)
    with pytest.raises(ValueError, match=r"x_tilde contains 1 NaN"):
        sphere_posterior_mean(torch.tensor([[float("nan"), 0.0]]), radius=1.0, sigma=0.1)
    with pytest.raises(ValueError, match=r"weights must be non-negative of shape \(5,\)"):
        posterior_mean_quadrature(x, torch.zeros(5, 4), -torch.ones(5), sigma=0.1)
    with pytest.raises(ValueError, match=r"x_tilde must have shape \(\.\.\., 4\)"):
        posterior_mean_quadrature(torch.zeros(2, 3), torch.zeros(5, 4), sigma=0.1)
    with pytest.raises(ValueError, match=r"masks must contain only 0 \(clean\) and 1 \(corrupted\)"):
        masked_gaussian_posterior_mean(x, cov=torch.eye(4), masks=torch.full((2, 4), 0.5), fill_std=1.0)
    with pytest.raises(ValueError, match=r"masks must have shape \(S, 4\)"):
        masked_gaussian_posterior_mean(x, cov=torch.eye(4), masks=torch.ones(2, 3), fill_std=1.0)
    with pytest.raises(ValueError, match=r"fill_std must be > 0"):
        masked_gaussian_posterior_mean(x, cov=torch.eye(4), masks=torch.ones(2, 4), fill_std=0.0)
    with pytest.raises(ValueError, match=r"noise_std must be > 0"):
        masked_posterior_mean_quadrature(x, torch.zeros(5, 4), masks=torch.ones(1, 4), fill_std=1.0, noise_std=0)
    with pytest.raises(ValueError, match=r"latent_cov must have shape \(2, 2\) or \(2,\)"):
        gaussian_subspace_posterior_mean(x, latent_cov=torch.ones(3), sigma=0.1, Q=q)
    with pytest.raises(ValueError, match=r"nu must be >= 0.5"):
        bessel_ratio(0.25, torch.ones(2))
    with pytest.raises(ValueError, match=r"kappa must be >= 0"):
        bessel_ratio(1.0, -torch.ones(2))


# ---------------------------------------------------------------------------------------------- manifold wrappers
def test_wrappers_dispatch_on_duck_typed_manifolds():
    from types import SimpleNamespace
    q, c, rng = _embedding(16, 9, 4)
    x = c + torch.tensor(rng.standard_normal((5, 9)))
    torus = SimpleNamespace(name="flat_torus", a=1.2, b=0.5, Q=q, centre=c)
    torch.testing.assert_close(posterior_mean(torus, x, sigma=0.2),
                               flat_torus_posterior_mean(x, radii=(1.2, 0.5), sigma=0.2, centre=c, Q=q))
    sphere = SimpleNamespace(name="sphere", radius=0.8, Q=q[:, :3], centre=c)
    torch.testing.assert_close(posterior_covariance(sphere, x, sigma=0.2),
                               sphere_posterior_covariance(x, radius=0.8, sigma=0.2, centre=c, Q=q[:, :3]))
    sub = SimpleNamespace(name="subspace", scale=0.7, Q=q[:, :2], centre=c)
    cov = q[:, :2] @ q[:, :2].T * 0.49
    torch.testing.assert_close(posterior_mean(sub, x, sigma=0.3), wiener_filter(x, cov=cov, sigma=0.3, mean=c))
    jac = jacobian(lambda v: posterior_mean(sub, v, sigma=0.3), x)
    torch.testing.assert_close(posterior_covariance(sub, x, sigma=0.3) / 0.09, jac)
    with pytest.raises(ValueError, match=r"manifold must be one of \['circle', 'sphere', 'flat_torus', 'subspace'\]"):
        posterior_mean(SimpleNamespace(name="helix"), x, sigma=0.1)


def test_wrapper_on_a_real_manifold_matches_quadrature_over_its_own_samples():
    torus = make_manifold("flat_torus", ambient_dim=10, a=1.0, b=0.6, seed=3)
    gen = torch.Generator().manual_seed(0)
    x = torus.sample(8, generator=gen)[0] + 0.2 * torch.randn(8, 10, generator=gen, dtype=DT)
    t = torch.linspace(0, 2 * math.pi, 201, dtype=DT)[:-1]
    grid = torus.from_params(torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2))
    torch.testing.assert_close(posterior_mean(torus, x, sigma=0.2), posterior_mean_quadrature(x, grid, sigma=0.2),
                               atol=1e-10, rtol=0)


def _uniform_base_grid(name):
    """Base-space nodes (K, m) and area weights (K,) for the T4 manifolds (numpy, written here)."""
    if name == "circle":
        t = np.linspace(0, 2 * np.pi, 2048, endpoint=False)
        return np.stack([np.cos(t), np.sin(t)], 1), np.ones_like(t)
    if name == "sphere":
        pts, w = _sphere2_grid(1.0, nodes=160)
        return pts.numpy(), w.numpy()
    u = np.linspace(0, 2 * np.pi, 256, endpoint=False)
    v = np.linspace(0, 2 * np.pi, 128, endpoint=False)
    uu, vv = np.meshgrid(u, v, indexing="ij")
    base = np.stack([np.cos(uu), np.sin(uu), 0.5 * np.cos(vv), 0.5 * np.sin(vv)], -1).reshape(-1, 4)
    return base, np.ones(len(base))


@pytest.mark.parametrize("name,params", [("circle", {"radius": 1.0}), ("sphere", {"k": 2, "radius": 1.0}),
                                         ("flat_torus", {"a": 1.0, "b": 0.5})])
def test_second_order_tweedie_on_the_t4_manifolds_against_numpy_quadrature(name, params):
    """J_{r*}(x̃) (autograd of the closed-form mean) = Cov[X | x̃]/σ², the covariance by numpy quadrature;
    symmetric PSD with d eigenvalues near 1 (tangential). T4's verify checks the same identity."""
    m = make_manifold(name, ambient_dim=10, seed=5, **params)
    sigma = 0.15
    gen = torch.Generator().manual_seed(6)
    x = m.sample(8, generator=gen)[0] + sigma * torch.randn(8, 10, generator=gen, dtype=DT)
    base, w_prior = _uniform_base_grid(name)
    pts = m.centre.numpy() + base @ m.Q.numpy().T  # (K, n) nodes on M
    logw = np.log(w_prior) - ((x.numpy()[:, None, :] - pts[None]) ** 2).sum(-1) / (2 * sigma ** 2)  # (B, K)
    w = np.exp(logw - logw.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    mean = w @ pts  # (B, n)
    dev = pts[None] - mean[:, None]  # (B, K, n)
    cov = np.einsum("bk,bki,bkj->bij", w, dev, dev)  # (B, n, n)
    jac = jacobian(lambda v: posterior_mean(m, v, sigma=sigma), x).numpy()
    np.testing.assert_allclose(posterior_mean(m, x, sigma=sigma).numpy(), mean, atol=1e-12)
    np.testing.assert_allclose(jac, cov / sigma ** 2, atol=1e-10)
    np.testing.assert_allclose(posterior_covariance(m, x, sigma=sigma).numpy(), cov, atol=1e-12)
    np.testing.assert_allclose(jac, jac.transpose(0, 2, 1), atol=1e-13)
    eig = np.linalg.eigvalsh(cov / sigma ** 2)  # (B, n)
    assert eig.min() > -1e-12
    assert ((eig > 0.3).sum(1) == m.intrinsic_dim).all()  # tangential ≈ R/‖u‖; radial ≈ σ²/(2R²); normal 0
