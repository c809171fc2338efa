"""T1: the exact toy manifolds (docs/theory.md T1): normal rays, idempotence, normality, Jacobians, embedding."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from manifold_ae.manifolds import MANIFOLDS, estimate_reach, make_manifold
from manifold_ae.manifolds.swiss_roll import Spiral

N_AMBIENT = 7          # > every base dimension, so "outside" normals exist


def _make(name: str, *, ambient_dim: int | None = N_AMBIENT, seed: int = 0):
    return make_manifold(name, ambient_dim=ambient_dim, seed=seed)


def _scale(M) -> float:
    return M.reach if math.isfinite(M.reach) else 1.0


@pytest.mark.parametrize("name", MANIFOLDS)
@pytest.mark.parametrize("normal", ["any", "inside", "outside"])
def test_manifold_normal_ray_ground_truth(name, normal):
    M = _make(name)
    if normal == "inside" and M.base_dim == M.intrinsic_dim:
        pytest.skip("no normal space inside the base space (affine subspace)")
    ray = M.sample_normal_ray(400, fraction=0.9, normal=normal, generator=torch.Generator().manual_seed(1))
    assert float(ray.t.max()) > 0.8 * _scale(M)                       # rays really reach out to ~0.9 τ
    res = M.project_with_info(ray.x)
    err = float((res.point - ray.p).norm(dim=-1).max()) / _scale(M)
    assert err <= 1e-9
    assert torch.allclose(res.distance, ray.t, atol=1e-9 * _scale(M), rtol=0)
    assert bool(res.within_reach.all())
    # the normals are unit and orthogonal to the tangent space at p
    T = M.tangent_basis(ray.p)
    assert float((T.transpose(-1, -2) @ ray.nu[..., None]).abs().max()) < 1e-12
    assert torch.allclose(ray.nu.norm(dim=-1), torch.ones(400, dtype=torch.float64), atol=1e-13)


@settings(max_examples=8, deadline=None)
@given(name=st.sampled_from(MANIFOLDS), seed=st.integers(0, 10_000), spread=st.floats(0.1, 3.0))
def test_manifold_idempotent_and_residual_normal(name, seed, spread):
    M = _make(name, seed=seed % 7)
    gen = torch.Generator().manual_seed(seed)
    p = M.from_params(M.interior_params(64, generator=gen))
    x = p + spread * _scale(M) * torch.randn(64, M.ambient_dim, generator=gen, dtype=torch.float64)
    res = M.project_with_info(x)
    again = M.project(res.point)
    assert float((again - res.point).norm(dim=-1).max()) <= 1e-10 * _scale(M)      # π∘π = π
    assert bool(M.contains(res.point, atol=1e-10 * _scale(M)).all())
    # residual ⟂ T_{π(x)}M wherever π(x) is not on the boundary of a bounded piece
    T = M.tangent_basis(res.point)
    resid = (x - res.point)[..., None]
    inner = (T.transpose(-1, -2) @ resid).squeeze(-1).norm(dim=-1)
    interior = ~M.on_boundary(res.params)
    assert float(inner[interior].max()) <= 1e-9 * (1 + float(res.distance.max()))


@pytest.mark.parametrize("name", MANIFOLDS)
def test_manifold_jacobian_on_manifold_is_tangent_projector(name):
    M = _make(name, ambient_dim=5 if name != "flat_torus" else 6)
    params = M.interior_params(4, generator=torch.Generator().manual_seed(2))
    for p in M.from_params(params):
        J = torch.autograd.functional.jacobian(M.project, p)         # (n, n) Dπ(p) by autograd
        P = M.tangent_projector(p)
        assert float((J - P).abs().max()) < 1e-9


def test_manifold_boundary_hooks():
    """``on_boundary`` against hand-written boundary parameters; ``interior_params`` keep their margins."""
    helix = make_manifold("helix", turns=2.0)
    s_max = 4 * math.pi
    assert helix.on_boundary(torch.tensor([[0.0], [1e-10], [2.0], [s_max]], dtype=torch.float64)).tolist() \
        == [True, True, False, True]
    roll = make_manifold("swiss_roll", height=21.0)
    t0, t1 = 1.5 * math.pi, 4.5 * math.pi
    params = torch.tensor([[t0, 5.0], [10.0, 0.0], [10.0, 21.0], [10.0, 5.0], [t1, 1.0]], dtype=torch.float64)
    assert roll.on_boundary(params).tolist() == [True, True, True, False, True]
    s_curve = make_manifold("s_curve", height=2.0)
    params = torch.tensor([[-1.5 * math.pi, 1.0], [0.0, 1.0], [1.0, 2.0], [1.5 * math.pi, 1.0]], dtype=torch.float64)
    assert s_curve.on_boundary(params).tolist() == [True, False, True, True]
    gen = torch.Generator().manual_seed(12)
    for name in MANIFOLDS:
        M = _make(name)
        params = M.interior_params(500, generator=gen)
        assert params.shape == (500, M.intrinsic_dim)
        assert not bool(M.on_boundary(params, atol=0.09).any()), name
        assert bool(M.contains(M.from_params(params), atol=1e-10 * _scale(M)).all())
    assert float(helix.interior_params(500, generator=gen).min()) == 0.5      # the margin is 0.5 in s


@pytest.mark.parametrize("name", MANIFOLDS)
def test_manifold_brute_force_hook(name):
    """Numeric projections are never worse than their exhaustive grid; closed forms need no grid."""
    M = _make(name)
    if not M.numeric_projection:
        with pytest.raises(NotImplementedError, match="brute_force_distance"):
            M.brute_force_distance(torch.zeros(2, M.ambient_dim), nodes=10)
        return
    gen = torch.Generator().manual_seed(13)
    x = M.from_params(M.interior_params(100, generator=gen))
    x = x + 2 * _scale(M) * torch.randn(100, M.ambient_dim, generator=gen, dtype=torch.float64)
    d, d_grid = M.distance(x), M.brute_force_distance(x, nodes=200_000)
    assert float((d - d_grid).max()) <= 1e-12 * _scale(M)
    assert float((d_grid - d).max()) <= 1e-6 * _scale(M)
    assert M.brute_force_distance(x.reshape(4, 25, -1), nodes=1000).shape == (4, 25)


@pytest.mark.parametrize("name,k", [("circle", 1), ("sphere", 2), ("sphere", 4)])
def test_manifold_jacobian_off_manifold_circle_sphere(name, k):
    params = {} if name == "circle" else {"k": k}
    M = make_manifold(name, ambient_dim=k + 4, seed=3, radius=1.7, centre=torch.arange(k + 4.0), **params)
    ray = M.sample_normal_ray(6, fraction=0.9, generator=torch.Generator().manual_seed(4))
    hook = M.projection_jacobian(ray.x)                             # (6, n, n) the closed form of the manifold
    for x, J_hook in zip(ray.x, hook):
        J = torch.autograd.functional.jacobian(M.project, x)
        y_norm = float((M.Q.T @ (x - M.centre)).norm())             # ‖Qᵀ(x − c)‖ (= ‖x − c‖ for inside rays)
        expected = (1.7 / y_norm) * M.Q @ M.Q.T @ M.tangent_projector(x) @ M.Q @ M.Q.T
        assert float((J - expected).abs().max()) < 1e-10
        assert float((J_hook - expected).abs().max()) < 1e-12
    inside = M.sample_normal_ray(6, normal="inside", generator=torch.Generator().manual_seed(5))
    for x in inside.x:
        J = torch.autograd.functional.jacobian(M.project, x)
        expected = 1.7 / float((x - M.centre).norm()) * M.tangent_projector(x)   # (R/‖x − c‖) P_T
        assert float((J - expected).abs().max()) < 1e-10


@pytest.mark.parametrize("name", MANIFOLDS)
def test_manifold_batched_equals_looped(name):
    M = _make(name)
    gen = torch.Generator().manual_seed(6)
    x = 2 * torch.randn(3, 4, M.ambient_dim, generator=gen, dtype=torch.float64)
    batched = M.project_with_info(x)
    assert batched.point.shape == (3, 4, M.ambient_dim) and batched.distance.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            single = M.project_with_info(x[i, j])
            assert torch.equal(single.within_reach, batched.within_reach[i, j])
            assert float((single.point - batched.point[i, j]).abs().max()) < 1e-12


@pytest.mark.parametrize("name", MANIFOLDS)
def test_manifold_embedding_commutes_with_rotations(name):
    M = _make(name, seed=8)
    gen = torch.Generator().manual_seed(9)
    R, _ = torch.linalg.qr(torch.randn(N_AMBIENT, N_AMBIENT, generator=gen, dtype=torch.float64))
    c = torch.randn(N_AMBIENT, generator=gen, dtype=torch.float64)
    M1 = make_manifold(name, Q=M.Q, centre=c)
    M2 = make_manifold(name, Q=R @ M.Q, centre=R @ c)
    x = c + 2 * torch.randn(50, N_AMBIENT, generator=gen, dtype=torch.float64)
    lhs = M2.project(x @ R.T)                                          # π'(R x)
    rhs = M1.project(x) @ R.T                                          # R π(x)
    assert float((lhs - rhs).abs().max()) < 1e-10
    # and noise outside span(Q) is removed entirely
    ray = M1.sample_normal_ray(50, normal="outside", generator=gen)
    assert float((M1.project(ray.x) - ray.p).abs().max()) < 1e-12


@pytest.mark.parametrize("name", MANIFOLDS)
def test_manifold_bases_are_orthonormal_and_complementary(name):
    M = _make(name)
    p, _ = M.sample(20, generator=torch.Generator().manual_seed(10))
    T, N = M.tangent_basis(p), M.normal_basis(p)
    B = torch.cat([T, N], dim=-1)                                       # (20, n, n)
    eye = torch.eye(M.ambient_dim, dtype=torch.float64)
    assert float((B.transpose(-1, -2) @ B - eye).abs().max()) < 1e-12
    # tangent vectors are velocities of the parametrisation (finite differences of from_params)
    params = M.interior_params(20, generator=torch.Generator().manual_seed(10))
    P = M.tangent_projector(M.from_params(params))
    for i in range(M.intrinsic_dim):
        e = torch.zeros(M.intrinsic_dim, dtype=torch.float64)
        e[i] = 1e-6
        vel = (M.from_params(params + e) - M.from_params(params - e)) / 2e-6
        off = vel[..., None] - P @ vel[..., None]
        assert float(off.abs().max()) < 1e-6 * (1 + float(vel.abs().max()))


def test_manifold_sklearn_swiss_roll_and_s_curve_match():
    from scipy.stats import ks_2samp
    from sklearn.datasets import make_s_curve, make_swiss_roll

    for name, maker in (("swiss_roll", make_swiss_roll), ("s_curve", make_s_curve)):
        M = make_manifold(name)
        X, t = maker(n_samples=3000, random_state=0)
        res = M.project_with_info(X)
        assert float(res.distance.max()) < 1e-12                        # sklearn's points lie on M
        assert np.allclose(res.params[:, 0].numpy(), t, atol=1e-10)     # and their latent t is ours
        _, params = M.sample(3000, generator=torch.Generator().manual_seed(0), density="parameter")
        assert ks_2samp(params[:, 0].numpy(), t).pvalue > 1e-3          # same distribution of t
        assert ks_2samp(params[:, 1].numpy(), X[:, 1]).pvalue > 1e-3    # and of the height


def test_manifold_area_densities():
    from scipy.stats import kstest

    gen = torch.Generator().manual_seed(11)
    # ring torus: v has density ∝ R + r cos v, so E[cos v] = r / (2R) (vs 0 for "parameter")
    M = make_manifold("ring_torus", R=1.0, r=0.4)
    _, params = M.sample(200_000, generator=gen)
    assert abs(float(torch.cos(params[:, 1]).mean()) - 0.2) < 0.006
    _, params = M.sample(200_000, generator=gen, density="parameter")
    assert abs(float(torch.cos(params[:, 1]).mean())) < 0.006
    # Swiss roll: t has CDF (s(t) − s(t0)) / (s(t1) − s(t0)) with s the arc length ½(t√(1+t²) + asinh t)
    S = make_manifold("swiss_roll")
    _, params = S.sample(5000, generator=gen)
    s = lambda t: 0.5 * (t * np.sqrt(1 + t * t) + np.arcsinh(t))
    t0, t1 = 1.5 * np.pi, 4.5 * np.pi
    assert kstest(params[:, 0].numpy(), lambda t: (s(t) - s(t0)) / (s(t1) - s(t0))).pvalue > 1e-3
    # sphere S²: area-uniform ⇔ cos(polar angle) uniform on [−1, 1]
    Sp = make_manifold("sphere", k=2)
    pts, params = Sp.sample(5000, generator=gen)
    assert kstest(np.cos(params[:, 0].numpy()), "uniform", args=(-1, 2)).pvalue > 1e-3
    assert torch.allclose(Sp.from_params(params), pts, atol=1e-12)


def test_manifold_centre_and_distance_of_degenerate_points():
    M = make_manifold("sphere", k=3, radius=2.0, ambient_dim=6)
    res = M.project_with_info(M.centre)                               # every point is nearest: flagged
    assert not bool(res.within_reach) and abs(float(res.distance) - 2.0) < 1e-12
    T = make_manifold("ring_torus", R=1.0, r=0.4)
    res = T.project_with_info(torch.tensor([0.0, 0.0, 0.1], dtype=torch.float64))          # on the axis: distance from geometry
    assert not bool(res.within_reach)
    assert abs(float(res.distance) - math.hypot(1.0, 0.1) + 0.4) < 1e-12


@pytest.mark.parametrize("call,match", [
    (lambda: make_manifold("circle", radius=0.0), r"radius must be > 0.*0\.0"),
    (lambda: make_manifold("circle", radius=-1), r"radius must be > 0.*-1"),
    (lambda: make_manifold("ring_torus", R=1.0, r=1.0), r"r must be smaller than R.*r=1\.0.*R=1\.0"),
    (lambda: make_manifold("sphere", k=3, ambient_dim=3), r"ambient_dim must be an integer in \[4, None\].*3"),
    (lambda: make_manifold("swiss_roll", ambient_dim=2), r"ambient_dim must be an integer in \[3, None\].*2"),
    (lambda: make_manifold("torus"), r"name must be one of .*'torus'"),
    (lambda: make_manifold("helix", b=float("nan")), r"b must be > 0 and finite.*nan"),
    (lambda: make_manifold("circle", centre=[0.0, 1.0, 2.0]), r"centre must have shape \(2,\).*\(3,\)"),
    (lambda: make_manifold("circle", Q=torch.ones(3, 2)), r"Q must have orthonormal columns"),
    (lambda: make_manifold("circle", spin=2), r"invalid parameters \['spin'\] for manifold 'circle'"),
    (lambda: make_manifold("sphere", k=0), r"k must be an integer in \[1, None\].*0"),
])
def test_manifold_bad_parameters(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("name", MANIFOLDS)
def test_manifold_bad_points(name):
    M = _make(name)
    n = M.ambient_dim
    with pytest.raises(ValueError, match=rf"x must have shape \(\.\.\., {n}\).*\(4, {n + 1}\)"):
        M.project(torch.zeros(4, n + 1))
    with pytest.raises(ValueError, match=r"x contains 1 NaN or Inf"):
        M.project(torch.tensor([[0.5] * (n - 1) + [math.nan]]))
    with pytest.raises(ValueError, match=r"x contains 2 NaN or Inf"):
        M.distance(torch.tensor([[math.inf] * 2 + [0.0] * (n - 2)]))
    with pytest.raises(ValueError, match=r"p must have shape"):
        M.tangent_basis(torch.zeros(n - 1))
    with pytest.raises(ValueError, match=r"params must have shape \(\.\.\., \d\)"):
        M.from_params(torch.zeros(5, M.intrinsic_dim + 1))
    with pytest.raises(ValueError, match=r"fraction must lie in \(0\.0, 1\.0\).*1\.5"):
        M.sample_normal_ray(3, fraction=1.5)
    with pytest.raises(ValueError, match=r"density must be one of .*'volume'"):
        M.sample(3, density="volume")
    with pytest.raises(ValueError, match=r"num must be an integer.*-1"):
        M.sample(-1)


def test_manifold_empty_normal_space_is_refused():
    M = make_manifold("circle")                                        # n = m = 2: nothing outside span(Q)
    with pytest.raises(ValueError, match=r"normal='outside' needs a non-empty normal space.*ambient_dim=2"):
        M.sample_normal_ray(3, normal="outside")


@pytest.mark.parametrize("name", [n for n in MANIFOLDS if n not in ("circle", "sphere")])
def test_manifold_without_closed_form_jacobian_says_so(name):
    M = _make(name)
    with pytest.raises(NotImplementedError, match="off-manifold Jacobian"):
        M.projection_jacobian(torch.zeros(M.ambient_dim))


def test_spiral_is_the_swiss_roll_profile_scaled():
    """``Spiral``: the Swiss roll's profile in a plane, scaled; its reach, rays and densities follow."""
    from scipy.stats import kstest

    spiral = Spiral(scale=0.1, ambient_dim=5, seed=2)
    roll = make_manifold("swiss_roll")
    assert spiral.reach == pytest.approx(0.1 * roll.reach, rel=1e-15)
    gen = torch.Generator().manual_seed(14)
    t = torch.linspace(1.5 * math.pi, 4.5 * math.pi, 7, dtype=torch.float64)
    w = 0.1 * torch.stack([t * torch.cos(t), t * torch.sin(t)], -1)                  # (7, 2) by hand
    assert torch.allclose(spiral.from_params(t[:, None]), spiral.centre + w @ spiral.Q.T, atol=1e-15)
    ray = spiral.sample_normal_ray(2000, fraction=0.9, generator=gen)
    res = spiral.project_with_info(ray.x)
    assert float((res.point - ray.p).norm(dim=-1).max()) <= 1e-9 * spiral.reach
    assert bool(res.within_reach.all())
    x = spiral.from_params(spiral.interior_params(200, generator=gen)) \
        + spiral.reach * torch.randn(200, 5, generator=gen, dtype=torch.float64)
    assert float((spiral.distance(x) - spiral.brute_force_distance(x, nodes=200_000)).max()) <= 1e-12
    est = estimate_reach(spiral.reach_sample(3000), spiral.tangent_basis(spiral.reach_sample(3000)))
    assert abs(est - spiral.reach) <= 1e-4 * spiral.reach
    s = lambda t: 0.5 * (t * np.sqrt(1 + t * t) + np.arcsinh(t))                        # arc length
    t0, t1 = 1.5 * np.pi, 4.5 * np.pi
    _, params = spiral.sample(5000, generator=gen)
    assert kstest(params[:, 0].numpy(), lambda t: (s(t) - s(t0)) / (s(t1) - s(t0))).pvalue > 1e-3
    assert spiral.on_boundary(torch.tensor([[t0], [10.0], [t1]], dtype=torch.float64)).tolist() == [True, False, True]


def test_template_manifold_passes_the_generic_checks():
    """The template of docs/new-manifold.md runs: normal rays, idempotence, Dπ = P_T, Federer's reach."""
    from manifold_ae.manifolds._template import TemplateManifold

    M = TemplateManifold(radius=1.5, ambient_dim=5, seed=3)
    gen = torch.Generator().manual_seed(15)
    ray = M.sample_normal_ray(300, generator=gen)
    assert float((M.project(ray.x) - ray.p).norm(dim=-1).max()) <= 1e-12
    x = M.from_params(M.interior_params(50, generator=gen)) + torch.randn(50, 5, generator=gen, dtype=torch.float64)
    assert float((M.project(M.project(x)) - M.project(x)).norm(dim=-1).max()) <= 1e-12
    p = M.sample(3, generator=gen)[0]
    for q in p:
        J = torch.autograd.functional.jacobian(M.project, q)
        assert float((J - M.tangent_projector(q)).abs().max()) < 1e-12
    pts = M.reach_sample(400, generator=gen)
    assert abs(estimate_reach(pts, M.tangent_basis(pts)) - 1.5) < 1e-3
