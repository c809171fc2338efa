"""T6 masked projection: subspace closed form and point-cloud search against brute force and least squares."""
import math

import numpy as np
import pytest
import scipy.optimize
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from manifold_ae.theory import (masked_posterior_mean_quadrature, masked_projection_pointcloud,
                                masked_projection_subspace)

DT = torch.float64


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), num_masked=st.integers(0, 4))
def test_subspace_masked_projection_is_least_squares_on_clean_coordinates(seed, num_masked):
    rng = np.random.default_rng(seed)
    n, d = 8, 3
    u = rng.standard_normal((n, d))  # a non-orthonormal basis
    c = rng.standard_normal(n)
    x_hat = rng.standard_normal((5, n))
    masks = np.zeros((5, n))
    for row in masks:
        row[rng.choice(n, num_masked, replace=False)] = 1.0
    got = masked_projection_subspace(torch.tensor(x_hat), torch.tensor(masks), basis=torch.tensor(u),
                                     centre=torch.tensor(c)).numpy()
    for i in range(5):
        keep = masks[i] == 0
        z = np.linalg.lstsq(u[keep], x_hat[i, keep] - c[keep], rcond=None)[0]
        np.testing.assert_allclose(got[i], c + u @ z, atol=1e-10)
        # the clean residual is orthogonal to the clean rows of U (normal equations)
        np.testing.assert_allclose(u[keep].T @ (x_hat[i, keep] - got[i, keep]), 0.0, atol=1e-10)


def test_unmasked_subspace_projection_is_the_orthogonal_projection():
    rng = np.random.default_rng(1)
    u, _ = np.linalg.qr(rng.standard_normal((6, 2)))
    x = rng.standard_normal((4, 6))
    got = masked_projection_subspace(torch.tensor(x), torch.zeros(6), basis=torch.tensor(u)).numpy()
    np.testing.assert_allclose(got, x @ u @ u.T, atol=1e-12)


def test_masked_projection_recovers_the_clean_point_and_differs_from_full_projection():
    rng = np.random.default_rng(2)
    u, _ = np.linalg.qr(rng.standard_normal((6, 2)))
    x = rng.standard_normal((3, 2)) @ u.T
    mask = np.array([1.0, 1.0, 0, 0, 0, 0])
    x_hat = (1 - mask) * x + mask * 3.0 * rng.standard_normal((3, 6))
    got = masked_projection_subspace(torch.tensor(x_hat), torch.tensor(mask), basis=torch.tensor(u)).numpy()
    np.testing.assert_allclose(got, x, atol=1e-12)
    full = x_hat @ u @ u.T
    assert np.linalg.norm(full - x, axis=1).min() > 0.05  # the full projection is pulled by the corruption
    # the masked projection leaves the clean coordinates untouched (conservation, T7)
    np.testing.assert_allclose(got[:, mask == 0], x_hat[:, mask == 0], atol=1e-12)


def _circle(q, c, radius):
    def phi(theta):  # (B, 1) -> (B, n)
        return c + radius * torch.cat([theta.cos(), theta.sin()], -1) @ q.T
    return phi


def test_pointcloud_masked_projection_matches_fine_brute_force_on_a_circle():
    rng = np.random.default_rng(3)
    n = 6
    q = torch.tensor(np.linalg.qr(rng.standard_normal((n, 2)))[0])
    c = torch.tensor(rng.standard_normal(n))
    radius = 1.4
    phi = _circle(q, c, radius)
    theta_true = torch.tensor(rng.uniform(0, 2 * np.pi, (6, 1)))
    mask = torch.tensor(np.array([[1.0, 0, 0, 1, 0, 0]] * 3 + [[0, 1.0, 0, 0, 0, 1]] * 3))
    x_hat = phi(theta_true) * (1 - mask) + mask * torch.tensor(rng.standard_normal((6, n))) * 2
    x_hat = x_hat + 0.1 * torch.tensor(rng.standard_normal((6, n)))  # the clean part is also off M
    coarse = torch.linspace(0, 2 * math.pi, 721, dtype=DT)[:-1, None]
    res = masked_projection_pointcloud(x_hat, mask, phi(coarse), params=coarse, parametrisation=phi, steps=30)
    brute = masked_projection_pointcloud(x_hat, mask, phi(coarse), params=coarse)
    # independent reference: a 1-D search on a 10⁵-point grid, then bounded Brent refinement (numpy/scipy)
    qn, cn, xn, mn = q.numpy(), c.numpy(), x_hat.numpy(), mask.numpy()
    fine = np.linspace(0, 2 * np.pi, 100_000, endpoint=False)
    pts = cn + radius * np.stack([np.cos(fine), np.sin(fine)], 1) @ qn.T
    for i in range(6):
        w = 1 - mn[i]

        def cost(t, i=i, w=w):
            return float((w * (xn[i] - cn - radius * np.array([np.cos(t), np.sin(t)]) @ qn.T) ** 2).sum())

        t0 = fine[((w * (xn[i] - pts) ** 2).sum(1)).argmin()]
        t_ref = scipy.optimize.minimize_scalar(cost, bounds=(t0 - 1e-4, t0 + 1e-4), method="bounded",
                                               options={"xatol": 1e-12}).x
        ref = cn + radius * np.array([np.cos(t_ref), np.sin(t_ref)]) @ qn.T
        np.testing.assert_allclose(res.point[i].numpy(), ref, atol=1e-7)
        assert float(res.distance[i]) == pytest.approx(math.sqrt(cost(t_ref)), abs=1e-9)
        assert float(brute.distance[i]) >= float(res.distance[i]) - 1e-12  # refinement never worsens
        assert np.linalg.norm(brute.point[i].numpy() - ref) < radius * 2 * math.pi / 720  # within one grid cell


def test_masked_posterior_quadrature_tends_to_masked_projection_as_noise_vanishes():
    rng = np.random.default_rng(4)
    n = 5
    q = torch.tensor(np.linalg.qr(rng.standard_normal((n, 2)))[0])
    c = torch.zeros(n, dtype=DT)
    phi = _circle(q, c, 1.0)
    theta = torch.linspace(0, 2 * math.pi, 20_001, dtype=DT)[:-1, None]
    pts = phi(theta)
    mask = torch.tensor([[1.0, 0, 0, 0, 0], [0, 0, 1.0, 0, 0]], dtype=DT)
    x_clean = phi(torch.tensor([[0.7], [2.9]], dtype=DT))
    x_hat = x_clean * (1 - mask) + mask * torch.tensor([[1.5], [-1.2]], dtype=DT)
    proj = masked_projection_pointcloud(x_hat, mask, pts, params=theta, parametrisation=phi).point
    torch.testing.assert_close(proj, x_clean, atol=1e-9, rtol=0)  # clean coordinates determine the point
    errors = []
    for noise in [0.02, 0.01, 0.005]:
        post = masked_posterior_mean_quadrature(x_hat, pts, masks=mask, mask_probs=None, fill_std=1.0,
                                                noise_std=noise)
        errors.append(float((post - proj).norm(dim=-1).max()))
    assert errors[-1] < 5e-5
    assert abs(np.polyfit(np.log([0.02, 0.01, 0.005]), np.log(errors), 1)[0] - 2.0) < 0.2  # O(noise²)


def test_masked_bad_inputs_name_the_argument():
    x = torch.zeros(2, 4, dtype=DT)
    basis = torch.eye(4, dtype=DT)[:, :2]
    with pytest.raises(ValueError, match=r"mask must have shape \(\.\.\., 4\)"):
        masked_projection_subspace(x, torch.zeros(2, 3), basis=basis)
    with pytest.raises(ValueError, match=r"mask must lie in \[0, 1\]"):
        masked_projection_subspace(x, torch.full((4,), 2.0), basis=basis)
    with pytest.raises(ValueError, match=r"does not broadcast to x_hat"):
        masked_projection_subspace(x, torch.zeros(3, 4), basis=basis)
    with pytest.raises(ValueError, match=r"basis must have shape \(n, d\)"):
        masked_projection_subspace(x, torch.zeros(4), basis=torch.zeros(4))
    with pytest.raises(ValueError, match=r"x_hat must have shape \(\.\.\., 4\)"):
        masked_projection_subspace(torch.zeros(2, 3), torch.zeros(3), basis=basis)
    with pytest.raises(ValueError, match=r"parametrisation needs params"):
        masked_projection_pointcloud(x, torch.zeros(4), torch.zeros(5, 4), parametrisation=lambda t: t)
    with pytest.raises(ValueError, match=r"params must have shape \(5, d\)"):
        masked_projection_pointcloud(x, torch.zeros(4), torch.zeros(5, 4), params=torch.zeros(4, 1))
    with pytest.raises(ValueError, match=r"points must have shape \(K, n\)"):
        masked_projection_pointcloud(x, torch.zeros(4), torch.zeros(4))
    with pytest.raises(ValueError, match=r"steps must be an integer"):
        masked_projection_pointcloud(x, torch.zeros(4), torch.zeros(5, 4), steps=-1)
