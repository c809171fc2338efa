"""Image manifolds with exact nearest points (docs/theory.md, "Image manifolds (T9 groundwork)").

The T1 property checks (normal rays, idempotence, residual normality, Dπ = P_T by autograd) run unchanged on the
translation and grating families; the projection, the masked projection and the Bayes denoiser are compared with
brute force over a fine grid of shifts written here (shifted templates evaluated directly as trigonometric
polynomials in numpy, not through the package's FFT code).
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from manifold_ae.manifolds import (IMAGE_MANIFOLDS, MANIFOLDS, GratingManifold, TranslationManifold,
                                   band_limited_template, estimate_reach, make_image_manifold)
from manifold_ae.manifolds.translation import lattice_index
from manifold_ae.theory.diagnostics import loglog_fit

N = 16
K = 3


@pytest.fixture(scope="module")
def translation() -> TranslationManifold:
    return make_image_manifold("translation", size=N, bandwidth=K, seed=3)


@pytest.fixture(scope="module")
def grating() -> GratingManifold:
    return make_image_manifold("grating", size=N)


def _shift_bank(template: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Every shift g(x − τ) with τ on the grid (step Z / N Z)², as flattened images (G, N²), and the τ (G, 2).

    Band-limited interpolation by zero-padding the spectrum in numpy (upsampling by U = 1/step), then reading
    g(x − τ) off the fine image at fine index U x − U τ (mod N U).
    """
    n = template.shape[0]
    U = round(1 / step)
    spec = np.fft.fftshift(np.fft.fft2(template))
    pad = (n * U - n) // 2
    fine = np.fft.ifft2(np.fft.ifftshift(np.pad(spec, pad))).real * U * U           # (nU, nU), g at x / U
    j = np.arange(n * U)
    x = np.arange(n) * U
    rows = (x[None, :] - j[:, None]) % (n * U)                                      # (nU, n)
    bank = fine[rows[:, None, :, None], rows[None, :, None, :]]                      # (nU, nU, n, n)
    taus = np.stack(np.meshgrid(j * step, j * step, indexing="ij"), -1).reshape(-1, 2)
    return bank.reshape(-1, n * n), taus


def _torus_gap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    d = torch.remainder(a - b + N / 2, N) - N / 2
    return d.abs().amax(-1)


# ---------------------------------------------------------------------------- conventions and geometry
def test_translation_integer_shift_is_roll_and_norm_is_constant(translation):
    g = translation.template
    taus = torch.tensor([[0.0, 0.0], [3.0, 5.0], [15.0, 1.0]], dtype=torch.float64)
    for tau, img in zip(taus, translation.as_images(translation.from_params(taus))):
        assert float((img - torch.roll(g, (int(tau[0]), int(tau[1])), (0, 1))).abs().max()) < 1e-12
    p, _ = translation.sample(50, generator=torch.Generator().manual_seed(0))
    assert float((p.norm(dim=-1) - g.norm()).abs().max()) < 1e-11
    # continuous shifts agree with band-limited interpolation of the template (numpy, zero-padded spectrum)
    bank, taus = _shift_bank(g.numpy(), 1 / 4)
    assert np.abs(translation.from_params(torch.tensor(taus)).numpy() - bank).max() < 1e-11


def test_translation_metric_is_gram_of_finite_differences(translation):
    tau = torch.tensor([[2.3, 11.7]], dtype=torch.float64)
    h = 1e-5
    d = [(translation.from_params(tau + h * e) - translation.from_params(tau - h * e)) / (2 * h)
         for e in torch.eye(2, dtype=torch.float64)]
    D = torch.cat(d)                                                       # (2, n)
    assert torch.allclose(D @ D.T, translation.metric, rtol=1e-8, atol=0)
    T = translation.tangent_basis(translation.from_params(tau))[0]         # (n, 2) orthonormal, spans D
    assert float((D.T - T @ (T.T @ D.T)).abs().max()) < 1e-7 * float(D.abs().max())


def test_translation_reach_against_federer_on_a_dense_shift_grid(translation):
    """Federer's infimum over pairs (g, T_s g), s on a 1/16-px grid: an upper bound >= τ, and close to it."""
    g = translation.template.numpy()
    bank, taus = _shift_bank(g, 1 / 16)                                    # (G, n)
    p = g.reshape(-1)
    k = np.fft.fftfreq(N, 1.0 / N)
    spec = np.fft.fft2(g)
    T = np.stack([np.fft.ifft2(2j * np.pi * kk / N * spec).real.reshape(-1)     # ∂τ_i g(x − τ) = −∂_i g
                  for kk in (k[:, None] + 0 * k[None, :], 0 * k[:, None] + k[None, :])], -1)   # (n, 2)
    Qt, _ = np.linalg.qr(T)
    V = bank - p
    num = (V ** 2).sum(-1)
    perp = np.linalg.norm(V - (V @ Qt) @ Qt.T, axis=-1)
    keep = num > 1e-6
    federer = float((num[keep] / (2 * perp[keep])).min())
    assert federer >= translation.reach * (1 - 1e-9)
    assert federer <= translation.reach * (1 + 2e-3)
    assert translation.reach == min(translation.curvature_radius, translation.bottleneck)


def test_grating_reach_is_closed_form_and_matches_federer(grating):
    R = grating.amplitude * N / math.sqrt(2)
    assert grating.reach == pytest.approx(R / math.sqrt(2), rel=1e-15)
    theta = torch.linspace(0, 2 * math.pi * len(grating.wavevectors), 601, dtype=torch.float64)[:-1, None]
    pts = grating.from_params(theta)
    assert float((pts.norm(dim=-1) - R).abs().max()) < 1e-11            # circles of radius A N / √2
    est = estimate_reach(pts, grating.tangent_basis(pts))
    assert abs(est - grating.reach) / grating.reach < 1e-9                # bottleneck pairs lie on the sample
    single = GratingManifold(size=N, wavevectors=[(2, 1)])
    th = torch.linspace(0, 2 * math.pi, 401, dtype=torch.float64)[:-1, None]
    p1 = single.from_params(th)
    assert abs(estimate_reach(p1, single.tangent_basis(p1)) - R) / R < 1e-5   # one circle: reach R


# ---------------------------------------------------------------------------- T1 properties, unchanged
@pytest.mark.parametrize("name", IMAGE_MANIFOLDS)
def test_image_manifold_normal_ray_ground_truth(name, translation, grating):
    M = {"translation": translation, "grating": grating}[name]
    ray = M.sample_normal_ray(300, fraction=0.9, generator=torch.Generator().manual_seed(1))
    assert float(ray.t.max()) > 0.8 * M.reach
    res = M.project_with_info(ray.x)
    assert float((res.point - ray.p).norm(dim=-1).max()) / M.reach <= 1e-9
    assert torch.allclose(res.distance, ray.t, atol=1e-9 * M.reach, rtol=0)
    assert bool(res.within_reach.all())
    T = M.tangent_basis(ray.p)
    assert float((T.transpose(-1, -2) @ ray.nu[..., None]).abs().max()) < 1e-12
    with pytest.raises(ValueError, match="outside"):
        M.sample_normal_ray(3, normal="outside")


@pytest.mark.parametrize("name", IMAGE_MANIFOLDS)
@pytest.mark.parametrize("spread", [0.3, 1.0, 3.0])
def test_image_manifold_idempotent_and_residual_normal(name, spread, translation, grating):
    M = {"translation": translation, "grating": grating}[name]
    gen = torch.Generator().manual_seed(int(10 * spread))
    p, _ = M.sample(64, generator=gen)
    x = p + spread * M.reach / math.sqrt(M.ambient_dim) * torch.randn(64, M.ambient_dim, generator=gen,
                                                                      dtype=torch.float64)
    res = M.project_with_info(x)
    assert float((M.project(res.point) - res.point).norm(dim=-1).max()) <= 1e-10 * M.reach
    assert bool(M.contains(res.point, atol=1e-10 * M.reach).all())
    T = M.tangent_basis(res.point)
    inner = (T.transpose(-1, -2) @ (x - res.point)[..., None]).squeeze(-1).norm(dim=-1)
    assert float(inner.max()) <= 1e-9 * (1 + float(res.distance.max()))


@pytest.mark.parametrize("name", IMAGE_MANIFOLDS)
def test_image_manifold_jacobian_on_manifold_is_tangent_projector(name, translation, grating):
    M = {"translation": translation, "grating": grating}[name]
    p, _ = M.sample(3, generator=torch.Generator().manual_seed(2))
    for q in p:
        J = torch.autograd.functional.jacobian(M.project, q)              # (n, n) Dπ(p) by autograd
        assert float((J - M.tangent_projector(q)).abs().max()) < 1e-9
        assert abs(float(torch.trace(J)) - M.intrinsic_dim) < 1e-9        # ‖P_T‖_F² = tr P_T = d


def test_translation_jacobian_off_manifold_is_shape_operator_formula(translation):
    """Dπ(p + tν) = (I − t S_ν)⁻¹ P_T with S_ν from the second derivatives of the parametrisation."""
    ray = translation.sample_normal_ray(2, fraction=0.5, generator=torch.Generator().manual_seed(3))
    h = 1e-4
    for x, tau, t, nu in zip(ray.x, ray.params, ray.t, ray.nu):
        J = torch.autograd.functional.jacobian(translation.project, x)
        f = lambda s: translation.from_params(s[None])[0]
        E = torch.eye(2, dtype=torch.float64)
        D = torch.stack([(f(tau + h * e) - f(tau - h * e)) / (2 * h) for e in E], -1)          # (n, 2)
        H = torch.stack([torch.stack([(f(tau + h * (a + b)) - f(tau + h * (a - b)) - f(tau - h * (a - b))
                                       + f(tau - h * (a + b))) / (4 * h * h) for b in E]) for a in E])  # (2, 2, n)
        G = D.T @ D
        second = H @ nu                                                    # ⟨∂_ij γ, ν⟩, (2, 2)
        # x = γ(τ) + t ν: dτ/dx = (G − t II_ν)⁻¹ Dᵀ, Dπ = D dτ/dx
        expected = D @ torch.linalg.solve(G - t * second, D.T)
        assert float((J - expected).abs().max()) < 1e-5


def test_image_manifold_batched_equals_looped(translation):
    gen = torch.Generator().manual_seed(6)
    p, _ = translation.sample(6, generator=gen)
    x = (p + 0.5 * torch.randn(6, translation.ambient_dim, generator=gen, dtype=torch.float64)).reshape(2, 3, -1)
    batched = translation.project_with_info(x)
    assert batched.point.shape == (2, 3, N * N) and batched.params.shape == (2, 3, 2)
    for i, j in itertools.product(range(2), range(3)):
        single = translation.project_with_info(x[i, j])
        assert float((single.point - batched.point[i, j]).abs().max()) < 1e-12


# ---------------------------------------------------------------------------- against brute force
def test_translation_projection_against_brute_force_over_shifts(translation):
    g = translation.template.numpy()
    gen = torch.Generator().manual_seed(7)
    p, _ = translation.sample(12, generator=gen)
    scales = torch.tensor([0.2, 1.0, 3.0, 10.0], dtype=torch.float64).repeat_interleave(3)[:, None]   # ‖noise‖ ≈ scale·τ
    x = p + scales * translation.reach / N * torch.randn(12, N * N, generator=gen, dtype=torch.float64)
    res = translation.project_with_info(x)
    step = 1 / 16
    bank, taus = _shift_bank(g, step)                                      # (G, n)
    d2 = (x.numpy() ** 2).sum(-1)[:, None] - 2 * x.numpy() @ bank.T + (g ** 2).sum()
    brute = np.sqrt(np.maximum(d2.min(-1), 0))
    ours = res.distance.numpy()
    assert (ours <= brute + 1e-10).all()                                  # never worse than the dense search
    lam = float(torch.linalg.eigvalsh(translation.metric).max())
    assert (brute - ours <= math.sqrt(lam) * step / math.sqrt(2)).all()   # within the grid's own error
    within = res.within_reach.numpy()
    assert within[:3].all() and not within[-6:].any()                     # near points certified, far ones not
    best = torch.tensor(taus[d2.argmin(-1)])
    assert float(_torus_gap(res.params, best)[torch.from_numpy(within)].max()) <= 2 * step


def test_translation_masked_projection_against_brute_force(translation):
    g = translation.template.numpy()
    gen = torch.Generator().manual_seed(8)
    p, tau_true = translation.sample(6, generator=gen)
    imgs = translation.as_images(p).clone()
    mask = torch.zeros(6, N, N, dtype=torch.float64)
    for i in range(6):                                                     # a random square defect per image
        r, c = torch.randint(0, N - 6, (2,), generator=gen).tolist()
        mask[i, r:r + 6, c:c + 6] = 1.0
        imgs[i, r:r + 6, c:c + 6] = 3.0 * torch.rand(6, 6, generator=gen, dtype=torch.float64)
    x_tilde = translation.as_points(imgs)
    m = translation.as_points(mask)
    x_tilde = x_tilde + 0.05 * torch.randn(x_tilde.shape, generator=gen, dtype=torch.float64)
    res = translation.masked_project(x_tilde, m)
    step = 1 / 16
    bank, taus = _shift_bank(g, step)
    keep = (1 - m).numpy()
    d2 = ((keep * x_tilde.numpy()) ** 2).sum(-1)[:, None] - 2 * (keep * x_tilde.numpy()) @ bank.T \
        + keep @ (bank ** 2).T
    brute = np.sqrt(np.maximum(d2.min(-1), 0))
    ours = res.distance.numpy()
    assert (ours <= brute + 1e-10).all()
    lam = float(torch.linalg.eigvalsh(translation.metric).max())
    assert (brute - ours <= math.sqrt(lam) * step / math.sqrt(2)).all()   # masked distance: same Lipschitz bound
    assert float(_torus_gap(res.params, torch.tensor(taus[d2.argmin(-1)])).max()) <= 2 * step
    assert float(_torus_gap(res.params, tau_true).max()) < 0.1            # the clean part finds the true shift
    plain = translation.project_with_info(x_tilde)                        # the full projection is pulled away
    assert float((plain.point - p).norm(dim=-1).mean()) > float((res.point - p).norm(dim=-1).mean())


# ---------------------------------------------------------------------------- Bayes-optimal denoiser
def test_translation_posterior_mean_against_brute_force_quadrature(translation):
    g = translation.template.numpy()
    gen = torch.Generator().manual_seed(9)
    # the posterior's width in τ is σ / λ(G)^{1/2}: four brute-force nodes (step 1/16 px) across it
    sigma = 4 / 16 * math.sqrt(float(torch.linalg.eigvalsh(translation.metric).max()))
    p, _ = translation.sample(3, generator=gen)
    x = p + sigma * torch.randn(p.shape, generator=gen, dtype=torch.float64)
    bank, taus = _shift_bank(g, 1 / 16)                                    # (G, n)
    logw = -((x.numpy()[:, None, :] - bank[None]) ** 2).sum(-1) / (2 * sigma ** 2)   # exact Gaussian likelihood
    w = np.exp(logw - logw.max(-1, keepdims=True))
    brute = (w / w.sum(-1, keepdims=True)) @ bank
    ours = translation.posterior_mean(x, sigma=sigma)
    assert np.abs(ours.numpy() - brute).max() < 1e-9 * np.abs(brute).max()
    finer = translation.posterior_mean(x, sigma=sigma, grid=2 * _default_grid(translation, sigma))
    assert float((finer - ours).abs().max()) < 1e-12 * float(ours.abs().max())   # grid refinement: converged


def _default_grid(M: TranslationManifold, sigma: float) -> int:
    lam = float(torch.linalg.eigvalsh(M.metric).max())
    L = max(2 * M.bandwidth + 1, math.ceil(M.size * 2 * math.sqrt(lam) / sigma))
    return L + L % 2


def test_translation_posterior_mean_tends_to_projection_at_rate_sigma_squared(translation):
    gen = torch.Generator().manual_seed(10)
    p, _ = translation.sample(2, generator=gen)
    width = torch.tensor([0.025, 0.05, 0.1, 0.2], dtype=torch.float64)   # posterior width in τ (px), ≪ N / 2πK
    sigmas = math.sqrt(float(torch.linalg.eigvalsh(translation.metric).max())) * width
    errs = [float((translation.posterior_mean(p, sigma=float(s)) - p).norm(dim=-1).mean()) for s in sigmas]
    fit = loglog_fit(sigmas, errs)
    assert abs(fit.slope - 2.0) < 0.1 and fit.r_squared > 0.999
    # leading term: r*(p) − p = (σ²/2) Σ_ij G⁻¹_ij ∂_ij T_τ g, i.e. coefficients −(σ²/2) (2π/N)² kᵀG⁻¹k ĝ_k
    spec = np.fft.fft2(translation.template.numpy())
    k = np.fft.fftfreq(N, 1.0 / N)
    K1, K2 = np.meshgrid(k, k, indexing="ij")
    Gi = np.linalg.inv(translation.metric.numpy())
    quad = (2 * np.pi / N) ** 2 * (Gi[0, 0] * K1 ** 2 + 2 * Gi[0, 1] * K1 * K2 + Gi[1, 1] * K2 ** 2)
    limit = np.linalg.norm(np.fft.ifft2(0.5 * quad * spec).real)          # ‖(r* − p)/σ²‖ as σ → 0
    assert abs(errs[0] / float(sigmas[0]) ** 2 - limit) < 0.02 * limit


def test_image_manifold_hooks(translation, grating):
    assert translation.numeric_projection and not grating.numeric_projection
    gen = torch.Generator().manual_seed(11)
    p, _ = translation.sample(4, generator=gen)
    x = p + 2 * translation.reach / N * torch.randn(p.shape, generator=gen, dtype=torch.float64)
    brute = translation.brute_force_distance(x, nodes=128 ** 2)
    ours = translation.distance(x)
    assert bool((ours <= brute + 1e-10).all()) and float((brute - ours).max()) < 0.05 * float(ours.min())
    pts = grating.reach_sample(600)
    assert abs(estimate_reach(pts, grating.tangent_basis(pts)) - grating.reach) / grating.reach < 1e-9


# ---------------------------------------------------------------------------- errors, registry, lattice
def test_image_manifold_bad_input_names_the_argument():
    g = band_limited_template(N, bandwidth=K, seed=0)
    with pytest.raises(ValueError, match="template must be a square image"):
        TranslationManifold(g[:, :-1])
    with pytest.raises(ValueError, match="NaN"):
        TranslationManifold(torch.where(torch.arange(N)[:, None] == 2, math.nan, g))
    with pytest.raises(ValueError, match="constant"):
        TranslationManifold(torch.full((N, N), 0.7))
    nyquist = g + torch.tensor([(-1.0) ** i for i in range(N)])[:, None] * torch.ones(N)
    with pytest.raises(ValueError, match="Nyquist"):
        TranslationManifold(nyquist)
    with pytest.raises(ValueError, match="bandwidth=2"):
        TranslationManifold(g, bandwidth=2)
    x = torch.arange(N, dtype=torch.float64)
    periodic = torch.cos(2 * math.pi * 2 * x / N)[:, None] + torch.cos(2 * math.pi * x / N)[None, :]
    with pytest.raises(ValueError, match="index 2"):
        TranslationManifold(periodic)                                      # frequencies (±2, 0), (0, ±1)
    M = TranslationManifold(g)
    with pytest.raises(ValueError, match=r"images must have shape \(\.\.\., 16, 16\)"):
        M.as_points(torch.zeros(3, 16, 15))
    with pytest.raises(ValueError, match="x contains"):
        M.project(torch.full((N * N,), math.nan))
    with pytest.raises(ValueError, match="ambient dimension"):
        M.project(torch.zeros(3, N * N - 1))
    with pytest.raises(ValueError, match="mask must have shape"):
        M.masked_project(torch.zeros(N * N), torch.zeros(5))
    with pytest.raises(ValueError, match="sigma=1e-06 needs a quadrature grid"):
        M.posterior_mean(torch.zeros(N * N), sigma=1e-6)
    with pytest.raises(ValueError, match="distinct up to sign"):
        GratingManifold(size=N, wavevectors=[(3, 1), (-3, -1)])
    with pytest.raises(ValueError, match="N/2"):
        GratingManifold(size=N, wavevectors=[(8, 0)])


def test_image_manifolds_have_their_own_registry():
    assert set(IMAGE_MANIFOLDS).isdisjoint(MANIFOLDS)
    with pytest.raises(ValueError, match="invalid parameters"):
        make_image_manifold("grating", radius=2)
    M = make_image_manifold("translation", size=N, bandwidth=K, seed=3)
    assert M.bandwidth == K and M.ambient_dim == N * N and M.intrinsic_dim == 2


def test_lattice_index_against_gcd_of_minors():
    rng = np.random.default_rng(0)
    for _ in range(200):
        v = rng.integers(-6, 7, size=(rng.integers(1, 6), 2))
        minors = [abs(int(a[0] * b[1] - a[1] * b[0])) for a, b in itertools.combinations(v, 2)]
        expected = math.gcd(*minors) if minors else 0
        assert lattice_index(v) == expected


def test_grating_bayes_denoiser_closed_form_matches_quadrature_and_tends_to_the_projection_like_sigma_squared():
    """(I.8) against a brute-force posterior over 4096 phases per circle (a softmax written here), and the T4
    rate: RMS ||r* - pi|| at fixed points inside the reach falls like sigma^2 (log-log slope ~2)."""
    M = GratingManifold(size=16)
    g = torch.Generator().manual_seed(0)
    p = M.sample(6, generator=g)
    p = p[0] if isinstance(p, tuple) else p
    theta = torch.arange(4096 * len(M.wavevectors), dtype=torch.float64) * (2 * math.pi / 4096)
    P = M.from_params(theta[:, None])  # (J * 4096, n)
    for sigma in (0.3, 1.0, 3.0):
        x = p + sigma * torch.randn(p.shape, generator=g, dtype=p.dtype)
        ref = torch.softmax((x @ P.T) / sigma ** 2, dim=1) @ P
        assert torch.allclose(M.posterior_mean(x, sigma=sigma), ref, atol=1e-10)
    x = p + 0.3 * M.reach * torch.nn.functional.normalize(torch.randn(p.shape, generator=g, dtype=p.dtype), dim=1)
    sigmas = np.array([0.05, 0.1, 0.2, 0.4])
    gaps = [float((M.posterior_mean(x, sigma=s) - M.project(x)).norm(dim=1).pow(2).mean().sqrt()) for s in sigmas]
    slope = np.polyfit(np.log(sigmas), np.log(gaps), 1)[0]
    assert 1.9 < slope < 2.1
    with pytest.raises(ValueError, match="sigma"):
        M.posterior_mean(x, sigma=0.0)
