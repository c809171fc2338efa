"""T4: the Bayes-optimal DAE r* and its rate towards π; trained DAEs against r* (fast form).

The closed forms used by the claim are checked against posterior means computed here by plain quadrature
over the latent angles (circle, flat torus) and against scipy's Bessel functions.
"""
import numpy as np
import pytest
import scipy.special
import torch

from manifold_ae.claims import t4_denoising as t4
from manifold_ae.manifolds import make_manifold


def _quadrature_circle(x_tilde: np.ndarray, radius: float, sigma: float, c: np.ndarray, q: np.ndarray,
                       num: int = 20000) -> np.ndarray:
    """Posterior mean of a uniform circle point given x̃: weights exp(−‖x̃ − p(θ)‖²/2σ²) on a θ grid."""
    theta = np.linspace(0, 2 * np.pi, num, endpoint=False)
    pts = c + radius * np.stack([np.cos(theta), np.sin(theta)], 1) @ q.T  # (K, n)
    logw = -((x_tilde[:, None, :] - pts[None]) ** 2).sum(-1) / (2 * sigma ** 2)  # (B, K)
    w = np.exp(logw - logw.max(1, keepdims=True))
    return (w @ pts) / w.sum(1, keepdims=True)


def test_circle_oracle_matches_quadrature_and_bessel_formula():
    m = t4.make_toy("circle", seed=0)
    sigma = 0.2
    xt = t4.noisy_points(m, 50, sigma=sigma, seed=1)
    r_star = t4.bayes_denoiser(m, sigma=sigma)(xt).numpy()
    c, q = m.centre.numpy(), m.Q.numpy()
    np.testing.assert_allclose(r_star, _quadrature_circle(xt.numpy(), 1.0, sigma, c, q), atol=1e-8)
    u = (xt.numpy() - c) @ q  # (B, 2) in-plane coordinates
    kappa = np.linalg.norm(u, axis=1) / sigma ** 2
    a = scipy.special.i1e(kappa) / scipy.special.i0e(kappa)  # von Mises mean resultant length
    np.testing.assert_allclose(r_star, c + (a[:, None] * u / np.linalg.norm(u, axis=1, keepdims=True)) @ q.T,
                               atol=1e-10)


def test_flat_torus_oracle_is_the_product_of_two_circle_posteriors():
    m = t4.make_toy("flat_torus", seed=2)
    sigma = 0.1
    xt = t4.noisy_points(m, 40, sigma=sigma, seed=3)
    r_star = t4.bayes_denoiser(m, sigma=sigma)(xt).numpy()
    q = m.Q.numpy()
    y = (xt.numpy() - m.centre.numpy()) @ q  # (B, 4)
    eye = np.eye(2)
    first = _quadrature_circle(y[:, :2], 1.0, sigma, np.zeros(2), eye)
    second = _quadrature_circle(y[:, 2:], 0.5, sigma, np.zeros(2), eye)
    np.testing.assert_allclose(r_star, m.centre.numpy() + np.concatenate([first, second], 1) @ q.T, atol=1e-8)


def test_sphere_oracle_gap_follows_k_sigma_squared_over_two_norm_u():
    # r* − π = R (1 − A(κ)) u/‖u‖ with 1 − A(κ) ≈ k/(2κ): at fixed points the gap is ≈ k σ² / (2‖u‖)
    m = t4.make_toy("sphere", seed=4)
    ray = m.sample_normal_ray(200, fraction=0.5, generator=torch.Generator().manual_seed(5))
    u = ((ray.x - m.centre) @ m.Q).norm(dim=-1).numpy()
    for sigma in (0.01, 0.02):
        gap = (t4.bayes_denoiser(m, sigma=sigma)(ray.x) - ray.p).norm(dim=-1).numpy()
        np.testing.assert_allclose(gap, 2 * sigma ** 2 / (2 * u), rtol=0.02)


def test_make_toy_and_bayes_denoiser_reject_unknown_manifolds():
    with pytest.raises(ValueError, match="name must be one of"):
        t4.make_toy("torus", seed=0)
    helix = make_manifold("helix", ambient_dim=10, seed=0)
    with pytest.raises(ValueError, match="no closed-form Bayes denoiser"):
        t4.bayes_denoiser(helix, sigma=0.1)


def test_noisy_points_share_draws_across_sigma():
    m = t4.make_toy("circle", seed=0)
    a = t4.noisy_points(m, 100, sigma=0.1, seed=7)
    b = t4.noisy_points(m, 100, sigma=0.2, seed=7)
    # same base points x and same ε (common random numbers): 2a − b = x lies on M, and b − a = 0.1 ε
    assert float(m.distance(2 * a - b).max()) < 1e-12
    eps = ((b - a) / 0.1).numpy()
    assert abs(eps.std() - 1) < 0.05 and abs(eps.mean()) < 0.05


def test_t4_run_fast(tmp_path):
    result = t4.run(fast=True, out_dir=tmp_path, seed=0)
    assert result.passed, [c for c in result.checks if not c.passed]
    assert all((tmp_path / f).is_file() for f in result.figures)
    numbers = result.numbers
    # the oracle rate, recomputed here from the asymptotic formula k σ²/(2‖u‖) on the same ray points
    m = t4.make_toy("circle", seed=0)
    ray = m.sample_normal_ray(2000, fraction=0.5, generator=torch.Generator().manual_seed(1))
    u = ((ray.x - m.centre) @ m.Q).norm(dim=-1).numpy()
    sigma = t4.ORACLE_SIGMAS[0]
    expected = np.sqrt(((sigma ** 2 / (2 * u)) ** 2).mean())
    assert numbers["oracle_rms_rstar_minus_pi"]["circle"][0] == pytest.approx(expected, rel=0.01)
    sweep = numbers["circle_sweep"]
    assert sweep["fitting_floor"] == min(sweep["rms_f_minus_pi"])
    for name, err in numbers["fit_error_over_sigma"].items():
        assert 0 < err < 0.5, name
