"""T5: perfect reconstructors obey ‖J_f‖² = d + ‖J_f P_N‖² ≥ d; rescaling loophole; Hutchinson; fast run.

Jacobians are checked against central finite differences and closed forms written here; the Hutchinson error
against its exact variance for a linear map.
"""
import math

import numpy as np
import pytest
import torch

from manifold_ae.claims import t5_contractive as t5
from manifold_ae.manifolds import make_manifold
from manifold_ae.models import LinearAutoencoder, MLPAutoencoder
from manifold_ae.toys import contractive, retractions


def _fd_jacobian(f, x: torch.Tensor, h: float = 1e-6) -> np.ndarray:
    """Central differences, one point x (n,) -> (n_out, n)."""
    cols = []
    for i in range(x.shape[0]):
        e = torch.zeros_like(x)
        e[i] = h
        cols.append(((f(x + e) - f(x - e)) / (2 * h)).numpy())
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("name,params", [("circle", {}), ("sphere", {"k": 2}), ("flat_torus", {})])
def test_skewed_retraction_jacobian_is_pt_plus_skew(name, params):
    m = make_manifold(name, ambient_dim=5, seed=1, **params)
    p, _ = m.sample(3, generator=torch.Generator().manual_seed(2))
    a = torch.randn(5, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    s = 0.7
    f = retractions.skewed_retraction(m, A=a, strength=s)
    for pi in p:
        p_t = m.tangent_projector(pi).numpy()
        p_n = np.eye(5) - p_t
        expected = p_t + s * p_t @ a.numpy() @ p_n  # J = Dπ (I + s A P_N) on M
        np.testing.assert_allclose(_fd_jacobian(f, pi), expected, atol=1e-6)
        x = pi + 0.05 * torch.randn(5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
        np.testing.assert_allclose(f(f(x)).numpy(), f(x).numpy(), atol=1e-12)  # a retraction: idempotent
    stats = contractive.reconstructor_stats(f, m, p)
    excess = [s ** 2 * np.linalg.norm(m.tangent_projector(pi).numpy() @ a.numpy()
                                      @ (np.eye(5) - m.tangent_projector(pi).numpy())) ** 2 for pi in p]
    assert stats["mean_excess"] == pytest.approx(np.mean(excess), rel=1e-9)
    assert stats["max_identity_error"] < 1e-12 and stats["fixes_M"] < 1e-12


def test_radial_retraction_is_the_oblique_projection_along_the_ray():
    m = make_manifold("circle", ambient_dim=4, seed=5, radius=2.0)
    shift = torch.tensor([0.6, -0.3], dtype=torch.float64)
    f = retractions.radial_retraction(m, shift=shift)
    p, _ = m.sample(4, generator=torch.Generator().manual_seed(6))
    np.testing.assert_allclose(f(p).numpy(), p.numpy(), atol=1e-12)
    c_prime = (m.centre + shift @ m.Q.T).numpy()
    for pi in p:
        jac = _fd_jacobian(f, pi)
        ray = pi.numpy() - c_prime
        normal = (pi.numpy() - m.centre.numpy()) / 2.0
        p_base = (m.Q @ m.Q.T).numpy()
        # kernel along the ray inside the plane, everything outside the plane removed: oblique projector onto T
        expected = (np.eye(4) - np.outer(ray, normal) / (normal @ ray)) @ p_base
        np.testing.assert_allclose(jac, expected, atol=1e-6)
        assert (jac ** 2).sum() > 1.0  # ‖J‖² > d = 1 unless the ray is normal
    out = f(torch.randn(6, 4, generator=torch.Generator().manual_seed(7), dtype=torch.float64))
    np.testing.assert_allclose(m.distance(out).numpy(), 0.0, atol=1e-12)  # lands on M


@pytest.mark.parametrize("name,shift", [("circle", [0.6, -0.3]), ("sphere", [0.2, -0.4, 0.3])])
def test_radial_excess_is_tan_squared_of_the_angle_between_ray_and_normal(name, shift):
    """‖J‖_F² − d from central differences and tan²θ from the geometry (numpy) against ``radial_excess``."""
    m = make_manifold(name, ambient_dim=5, seed=8, radius=1.5)
    shift = torch.tensor(shift, dtype=torch.float64)
    f = retractions.radial_retraction(m, shift=shift)
    p, _ = m.sample(5, generator=torch.Generator().manual_seed(9))
    got = retractions.radial_excess(m, p, shift=shift).numpy()
    c_prime = (m.centre + shift @ m.Q.T).numpy()
    for pi, value in zip(p, got):
        ray = pi.numpy() - c_prime                        # in the sphere's affine hull
        normal = (pi.numpy() - m.centre.numpy()) / 1.5
        theta = np.arccos(ray @ normal / np.linalg.norm(ray))
        assert value == pytest.approx(np.tan(theta) ** 2, rel=1e-9, abs=1e-12)
        jac = _fd_jacobian(f, pi)
        assert (jac ** 2).sum() - m.intrinsic_dim == pytest.approx(value, abs=1e-6)
    centred = retractions.radial_excess(m, p, shift=torch.zeros_like(shift))
    np.testing.assert_allclose(centred.numpy(), 0.0, atol=1e-12)  # no shift: π, no excess


def test_skew_excess_is_s_squared_times_the_tangent_normal_block():
    m = make_manifold("flat_torus", ambient_dim=6, seed=2)
    p, _ = m.sample(4, generator=torch.Generator().manual_seed(3))
    a = torch.randn(6, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    got = retractions.skew_excess(m, p, A=a, strength=0.3).numpy()
    for pi, value in zip(p, got):
        jac = _fd_jacobian(retractions.skewed_retraction(m, A=a, strength=0.3), pi)
        assert (jac ** 2).sum() - 2 == pytest.approx(value, abs=1e-6)
        p_t = m.tangent_projector(pi).numpy()
        assert value == pytest.approx(0.09 * np.linalg.norm(p_t @ a.numpy() @ (np.eye(6) - p_t)) ** 2, rel=1e-12)


def test_reconstructor_stats_compares_with_the_expected_excess_and_checks_its_shape():
    m = make_manifold("circle", ambient_dim=4, seed=0)
    p, _ = m.sample(6, generator=torch.Generator().manual_seed(1))
    stats = contractive.reconstructor_stats(lambda v: 2 * v - m.project(v), m, p,   # fixes M, J = 2I − P_T on M
                                            expected_excess=torch.full((6,), 3.0, dtype=torch.float64))
    # ‖2I − P_T‖² = 4n − 3d = 13 (n = 4, d = 1), so the excess is 12 and its error against 3 is 9
    assert stats["max_excess_error"] == pytest.approx(9.0, abs=1e-9)
    with pytest.raises(ValueError, match=r"expected_excess must have shape \(6,\)"):
        contractive.reconstructor_stats(m.project, m, p, expected_excess=torch.zeros(5, dtype=torch.float64))


def test_constructor_errors_name_the_argument():
    m = make_manifold("sphere", ambient_dim=5, seed=0)
    with pytest.raises(ValueError, match=r"A must have shape \(5, 5\)"):
        retractions.skewed_retraction(m, A=torch.eye(4, dtype=torch.float64), strength=1.0)
    with pytest.raises(ValueError, match="shift must have shape \\(3,\\) and norm < radius"):
        retractions.radial_retraction(m, shift=torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="needs a circle or sphere"):
        retractions.radial_retraction(make_manifold("flat_torus", ambient_dim=5),
                                      shift=torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="untied MLPAutoencoder with a linear bottleneck"):
        contractive.rescale_code(MLPAutoencoder(4, hidden=(8,), bottleneck=2, tied=True), 0.1)


def test_rescale_code_keeps_f_and_scales_the_encoder_jacobian_by_alpha_squared():
    torch.manual_seed(0)
    model = MLPAutoencoder(4, hidden=(16,), bottleneck=2, activation="tanh", dtype=torch.float64)
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    scaled = contractive.rescale_code(model, 0.01)
    with torch.no_grad():
        np.testing.assert_allclose(scaled(x).numpy(), model(x).numpy(), atol=1e-12)
    for xi in x:  # per-sample loop with autograd.functional, independent of the objectives' vmap code
        j0 = torch.autograd.functional.jacobian(model.encode, xi)
        j1 = torch.autograd.functional.jacobian(scaled.encode, xi)
        assert float((j1 ** 2).sum() / (j0 ** 2).sum()) == pytest.approx(1e-4, rel=1e-10)
        f0 = torch.autograd.functional.jacobian(model, xi)
        f1 = torch.autograd.functional.jacobian(scaled, xi)
        np.testing.assert_allclose(f1.numpy(), f0.numpy(), atol=1e-10)


def test_hutchinson_error_matches_the_exact_variance_for_a_linear_map():
    torch.manual_seed(2)
    model = LinearAutoencoder(6, 6, dtype=torch.float64)
    w = model.matrix.detach().numpy()
    x = torch.randn(64, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    exact, errors = contractive.hutchinson_errors(model, x, (1, 4), repeats=400, seed=4)
    assert exact == pytest.approx((w ** 2).sum(), rel=1e-12)
    # Rademacher u: Var(uᵀ M u) = 2 Σ_{i≠j} M_ij², M = W Wᵀ; the batch mean averages 64·k independent probes
    mat = w @ w.T
    var = 2 * ((mat ** 2).sum() - (np.diag(mat) ** 2).sum())
    for k, err in zip((1, 4), errors):
        assert err == pytest.approx(math.sqrt(var / (64 * k)) / exact, rel=0.15)  # 400 repeats: ~4 % std


def test_off_manifold_profile_of_the_projection_is_zero_and_of_identity_is_t():
    m = make_manifold("sphere", ambient_dim=5, seed=0)
    ts = (0.1, 0.3)
    profile = contractive.off_manifold_profile(m.project, m, ts, num=50, seed=1)
    assert max(profile) < 1e-12  # π(p + tν) = p for t < reach
    np.testing.assert_allclose(contractive.off_manifold_profile(lambda v: v, m, ts, num=50, seed=1), ts, rtol=1e-12)


def test_t5_run_fast(tmp_path):
    result = t5.run(fast=True, out_dir=tmp_path, seed=0)
    assert result.passed, [c for c in result.checks if not c.passed]
    assert all((tmp_path / f).is_file() for f in result.figures)
    numbers = result.numbers
    loophole = numbers["rescaling_loophole"]
    ratios = np.array(loophole["encoder_penalty"]) / loophole["encoder_penalty"][0]
    np.testing.assert_allclose(ratios, np.array(loophole["alpha"]) ** 2, rtol=1e-8)
    for key, slope in numbers["skew_excess_slope_in_s"].items():
        assert slope == pytest.approx(2.0, abs=1e-9), key  # excess = s² ‖P_T A P_N‖² exactly
    assert all(v["max_excess_error"] < 1e-12 for v in numbers["perfect_reconstructors"].values())
    # the r² of the Hutchinson rate, recomputed with numpy from the reported errors
    hutch = numbers["hutchinson"]
    lx, ly = np.log(hutch["probes"]), np.log(hutch["rms_relative_error"])
    slope, intercept = np.polyfit(lx, ly, 1)
    r2 = 1 - ((ly - intercept - slope * lx) ** 2).sum() / ((ly - ly.mean()) ** 2).sum()
    assert hutch["r_squared"] == pytest.approx(r2, rel=1e-9) and hutch["slope"] == pytest.approx(slope, rel=1e-9)
    r2_check = next(c for c in result.checks if c.name.startswith("(e) r²"))
    assert r2_check.measured == hutch["r_squared"] and r2_check.target == t5.HUTCHINSON_R2
    sweep = numbers["sweep"]
    best = sweep["lam"].index(sweep["best_lam"])
    assert sweep["gap"][best] == min(sweep["gap"]) < t5.GAP_TARGET
