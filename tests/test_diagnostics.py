"""Diagnostics against hand-computed values and plain reference implementations."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from manifold_ae.theory import (idempotence_error, jacobian, jacobian_gap, loglog_fit, loglog_slope, projection_gap,
                                residual_normal_angle)

DT = torch.float64


def test_jacobian_of_a_linear_map_is_its_matrix():
    a = torch.tensor([[1.0, 2.0, 0.0], [0.5, -1.0, 3.0]], dtype=DT)
    x = torch.randn(4, 5, 3, dtype=DT, generator=torch.Generator().manual_seed(0))
    jac = jacobian(lambda v: v @ a.T, x)
    assert jac.shape == (4, 5, 2, 3)
    torch.testing.assert_close(jac, a.expand(4, 5, 2, 3), atol=0, rtol=0)


def test_jacobian_of_elementwise_map_is_diagonal_derivative():
    x = torch.linspace(-2, 2, 12, dtype=DT).reshape(3, 4)
    jac = jacobian(lambda v: torch.tanh(v) * 2.0, x)
    torch.testing.assert_close(jac, torch.diag_embed(2.0 / torch.cosh(x) ** 2), atol=1e-15, rtol=0)


def test_jacobian_of_an_mlp_matches_a_per_sample_autograd_loop():
    torch.manual_seed(1)
    mlp = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Softplus(), torch.nn.Linear(16, 5)).double()
    x = torch.randn(7, 5, dtype=DT)
    ref = torch.stack([torch.autograd.functional.jacobian(lambda v: mlp(v[None])[0], xi) for xi in x])
    torch.testing.assert_close(jacobian(mlp, x), ref, atol=1e-14, rtol=0)


def test_jacobian_of_a_conv_net_on_images_matches_a_per_sample_autograd_loop_and_keeps_the_graph():
    torch.manual_seed(2)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.Tanh(),
                              torch.nn.Conv2d(3, 1, 3, padding=1)).double()
    x = torch.randn(4, 2, 5, 6, dtype=DT)
    ref = torch.stack([torch.autograd.functional.jacobian(lambda v: net(v[None])[0], xi) for xi in x])
    jac, fx = jacobian(net, x, event_dims=3, return_output=True)
    assert jac.shape == (4, 1, 5, 6, 2, 5, 6)
    torch.testing.assert_close(jac, ref, atol=1e-14, rtol=0)
    torch.testing.assert_close(fx, net(x), atol=0, rtol=0)
    # differentiable in the parameters: d/dθ of Σ J² by autograd against a central finite difference in one weight
    weight = net[2].weight
    (grad,) = torch.autograd.grad(jac.pow(2).sum(), weight)
    h, idx = 1e-6, (0, 1, 1, 2)
    with torch.no_grad():
        weight[idx] += h
        up = jacobian(net, x, event_dims=3).pow(2).sum()
        weight[idx] -= 2 * h
        down = jacobian(net, x, event_dims=3).pow(2).sum()
        weight[idx] += h
    assert float(grad[idx]) == pytest.approx(float((up - down) / (2 * h)), rel=1e-6)


def test_projection_gap_hand_values():
    x = torch.tensor([[3.0, 4.0], [0.6, 0.8]], dtype=DT)
    pi_x = torch.tensor([[0.6, 0.8], [0.6, 0.8]], dtype=DT)  # unit circle; the second point lies on M
    fx = torch.tensor([[0.6, 1.8], [0.6, 0.8]], dtype=DT)
    gap = projection_gap(fx, x, pi_x)
    torch.testing.assert_close(gap.absolute, torch.tensor([1.0, 0.0], dtype=DT))
    assert float(gap.relative[0]) == pytest.approx(1.0 / 4.0)
    assert math.isnan(float(gap.relative[1]))
    gap_fn = projection_gap(lambda v: v / v.norm(dim=-1, keepdim=True), x, pi_x)  # π itself
    assert float(gap_fn.absolute.max()) < 1e-15


def _frobenius_sq(j):
    return (j ** 2).sum((-1, -2))


def test_jacobian_gap_and_frobenius_for_perfect_reconstructors_on_a_circle():
    """T5(a): maps fixing the unit circle have ‖J‖_F² = 1 + ‖J P_N‖_F² >= d = 1, equality only for Dπ = P_T."""
    theta = torch.linspace(0, 2 * math.pi, 9, dtype=DT)[:-1]
    p = torch.stack([theta.cos(), theta.sin()], -1)  # (8, 2)
    tangent = torch.stack([-theta.sin(), theta.cos()], -1)
    p_t = tangent[:, :, None] * tangent[:, None, :]
    j_proj = jacobian(lambda v: v / v.norm(dim=-1, keepdim=True), p)
    assert float(jacobian_gap(j_proj, p_t).max()) < 1e-14
    torch.testing.assert_close(_frobenius_sq(j_proj), torch.ones(8, dtype=DT))
    # ... a skewed perfect reconstructor: f(x) = π(x) + (‖x‖ − 1) w, identity on M, J = P_T + w pᵀ on M
    w = torch.tensor([0.5, 0.2], dtype=DT)
    j_skew = jacobian(lambda v: v / v.norm(dim=-1, keepdim=True) + (v.norm(dim=-1, keepdim=True) - 1) * w, p)
    expected = 1.0 + float(w @ w)  # ‖P_T + w pᵀ‖_F² = 1 + ‖w‖² (P_T p = 0)
    torch.testing.assert_close(_frobenius_sq(j_skew), torch.full((8,), expected, dtype=DT))
    torch.testing.assert_close(jacobian_gap(j_skew, p_t), torch.full((8,), float(w.norm()), dtype=DT))
    # radial retraction from a shifted centre s: also fixes M (and is idempotent), but J ≠ P_T on M
    s = torch.tensor([0.3, -0.2], dtype=DT)

    def radial(v):
        d = v - s
        sd, dd = (d * s).sum(-1, keepdim=True), (d * d).sum(-1, keepdim=True)
        t = (-sd + torch.sqrt(sd ** 2 - dd * (float(s @ s) - 1.0))) / dd  # ‖s + t d‖ = 1, t > 0
        return s + t * d

    torch.testing.assert_close(radial(p), p, atol=1e-14, rtol=0)
    assert float(idempotence_error(radial, 2.0 * p).max()) < 1e-14
    assert float(_frobenius_sq(jacobian(radial, p)).min()) > 1.0 + 1e-3


def test_idempotence_error_hand_values():
    x = torch.tensor([[3.0, 4.0], [0.0, 2.0]], dtype=DT)
    assert float(idempotence_error(lambda v: v / v.norm(dim=-1, keepdim=True), x).max()) < 1e-15
    torch.testing.assert_close(idempotence_error(lambda v: 0.5 * v, x), 0.25 * x.norm(dim=-1))


@pytest.mark.parametrize("angle", [0.0, 1e-12, 0.3, math.pi / 4, math.pi / 2])
def test_residual_normal_angle_hand_values(angle):
    # residual r = (sin a, cos a) in the plane, tangent e1 (scaled: the basis is orthonormalised)
    x = torch.tensor([[math.sin(angle), math.cos(angle), 0.0]], dtype=DT)
    basis = torch.tensor([[[3.0], [0.0], [0.0]]], dtype=DT)
    got = residual_normal_angle(x, torch.zeros_like(x), basis)
    assert float(got[0]) == pytest.approx(angle, rel=1e-12, abs=1e-15)


@settings(max_examples=20, deadline=None)
@given(slope=st.floats(-3, 3), scale=st.floats(0.1, 10.0))
def test_loglog_slope_recovers_power_laws(slope, scale):
    xs = np.logspace(-3, 0, 8)
    fit = loglog_fit(xs, scale * xs ** slope)
    assert fit.slope == pytest.approx(slope, abs=1e-10)
    assert fit.intercept == pytest.approx(math.log(scale), abs=1e-9)
    assert fit.r_squared == pytest.approx(1.0, abs=1e-12) or slope == pytest.approx(0.0, abs=1e-9)


def test_loglog_slope_matches_numpy_lstsq_on_noisy_data():
    rng = np.random.default_rng(0)
    xs = np.logspace(-2, 0, 10)
    ys = 0.3 * xs ** 2 * np.exp(0.05 * rng.standard_normal(10))
    design = np.stack([np.log(xs), np.ones(10)], 1)
    ref = np.linalg.lstsq(design, np.log(ys), rcond=None)[0][0]
    assert loglog_slope(torch.tensor(xs), torch.tensor(ys)) == pytest.approx(ref, abs=1e-12)


def test_diagnostics_bad_inputs_name_the_argument():
    x = torch.zeros(2, 3, dtype=DT)
    with pytest.raises(ValueError, match=r"xs and ys must be > 0"):
        loglog_slope([1.0, 2.0], [0.0, 1.0])
    with pytest.raises(ValueError, match=r"xs and ys must be 1-D of the same length >= 2"):
        loglog_slope([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"xs must contain at least two distinct values"):
        loglog_slope([2.0, 2.0], [1.0, 3.0])
    with pytest.raises(ValueError, match=r"pi_x must have the shape of x"):
        projection_gap(x, x, torch.zeros(3))
    with pytest.raises(ValueError, match=r"f\(x\) must have the shape of x"):
        projection_gap(lambda v: v[..., :2], x, x)
    with pytest.raises(ValueError, match=r"J and P_T must be \(\.\.\., n, n\) matrices of the same size"):
        jacobian_gap(torch.zeros(2, 3, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"tangent_basis must have shape \(\.\.\., 3, d\)"):
        residual_normal_angle(x, x, torch.zeros(2, 2, 1))
    with pytest.raises(ValueError, match=r"fx must have the shape of x"):
        residual_normal_angle(x, torch.zeros(3), torch.zeros(2, 3, 1))
    with pytest.raises(ValueError, match=r"x contains 1 NaN"):
        idempotence_error(lambda v: v, torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ValueError, match=r"x must have at least event_dims = 1 axes"):
        jacobian(lambda v: v, torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"event_dims"):
        jacobian(lambda v: v, x, event_dims=0)
