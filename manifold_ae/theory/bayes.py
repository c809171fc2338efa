"""Bayes-optimal denoisers: posterior means ``r*(x̃) = E[X | X̃ = x̃]`` (docs/theory.md, T4 and T6).

For ``X̃ = X + σ ε`` the optimal denoiser is the posterior mean, and Tweedie's formula
``r*(x̃) = x̃ + σ² ∇ log p_σ(x̃)`` holds for every σ; its Jacobian is ``Cov[X | x̃] / σ²`` (symmetric PSD).
Closed forms here, for uniform (area) data on a round sphere ``S^k`` of radius ``R`` (the circle is ``k = 1``),
a flat torus ``S¹(a) × S¹(b)`` and a Gaussian latent on a subspace, each embedded as ``x = c + Q y``
(``Q`` (n, m) orthonormal columns). A generic importance-weighted quadrature over a dense weighted sample of
any manifold checks them and covers the manifolds without closed form.

Why only ``u = Qᵀ(x̃ − c)`` enters: write ``ε = Q Qᵀ ε + (I − Q Qᵀ) ε``. For isotropic Gaussian noise the two
parts are independent, and the second is independent of ``y``, so ``p(x̃ | y) = N(u; y, σ² I_m) ·
N(x̃_⊥; 0, σ² (I − Q Qᵀ))``: the orthogonal factor cancels from the posterior. ``u`` is sufficient, and the
posterior mean lies in ``c + span(Q)`` (noise orthogonal to the embedding is removed entirely, T1).

Sphere ``S^k ⊂ R^p`` (``p = k + 1``): the posterior of ``y`` is von Mises–Fisher with mean direction ``u/‖u‖``
and concentration ``κ = R ‖u‖ / σ²``, so ``r* = c + Q R A_p(κ) u/‖u‖`` with
``A_p = I_{p/2}(κ) / I_{p/2−1}(κ)`` and posterior covariance ``R² [ (A/κ) (I − μμᵀ) + A'(κ) μμᵀ ]``.
We evaluate ``g(κ) = A(κ)/κ`` (smooth at κ = 0) in pure torch so autograd and ``torch.func`` see it: a
continued fraction for moderate κ and the large-κ asymptotic series beyond, so tiny σ (κ ~ 1e12) stays finite
and accurate.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch

from manifold_ae.checks import as_tensor, check_points, check_positive
from manifold_ae.theory.linear import linear_dae_optimum

__all__ = ["bessel_ratio", "sphere_posterior_mean", "sphere_posterior_covariance", "sphere_log_density",
           "circle_posterior_mean", "flat_torus_posterior_mean", "flat_torus_posterior_covariance",
           "wiener_filter", "gaussian_subspace_posterior_mean", "tweedie_denoiser",
           "posterior_mean_quadrature", "posterior_covariance_quadrature", "log_density_quadrature",
           "masked_gaussian_posterior_mean", "masked_gaussian_mask_posterior",
           "masked_posterior_mean_quadrature", "posterior_mean", "posterior_covariance", "CLOSED_FORM_MANIFOLDS"]

CLOSED_FORM_MANIFOLDS = ("circle", "sphere", "flat_torus", "subspace")

_SERIES_TERMS = 24


# --------------------------------------------------------------------------------------------------------------
# Bessel ratios
# --------------------------------------------------------------------------------------------------------------
def _switch(nu: float) -> float:
    """κ above which the asymptotic series is used (its terms shrink until k ~ 2κ; ν² keeps a_k small)."""
    return 40.0 + nu * nu


def _g_continued_fraction(nu: float, kappa_sq: torch.Tensor) -> torch.Tensor:
    """``g_ν = I_ν/(κ I_{ν−1}) = 1/(2ν + κ² g_{ν+1})`` by backward recurrence (stable; exact at κ = 0)."""
    terms = int(2 * _switch(nu)) + 60
    top = nu + terms
    g = 1.0 / (2.0 * top + kappa_sq / (2.0 * top + 2.0))
    for j in range(terms - 1, -1, -1):
        g = 1.0 / (2.0 * (nu + j) + kappa_sq * g)
    return g


def _hankel_series(mu: float, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``S(κ) = √(2πκ) e^{−κ} I_μ(κ) ≈ Σ_k (−1)^k a_k(μ) t^k`` (t = 1/κ) and ``dS/dκ``."""
    s = torch.ones_like(t)
    ds = torch.zeros_like(t)
    a, power = 1.0, torch.ones_like(t)
    for k in range(1, _SERIES_TERMS + 1):
        a *= (4.0 * mu * mu - (2 * k - 1) ** 2) / (8.0 * k)
        power = power * t
        term = (-1) ** k * a * power
        s = s + term
        ds = ds - k * term * t  # d(t^k)/dκ = −k t^{k+1}
    return s, ds


def _ratio_and_derivative(nu: float, kappa_sq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``g = A/κ`` and ``A' = dA/dκ`` for ``A = I_ν/I_{ν−1}``, each (...,), stable for all κ >= 0."""
    k0 = _switch(nu)
    small = kappa_sq <= k0 * k0
    ks_small = kappa_sq.clamp(max=k0 * k0)  # clamping keeps the unused branch finite, so gradients stay clean
    g_small = _g_continued_fraction(nu, ks_small)
    d_small = 1.0 - ks_small * g_small ** 2 - (2.0 * nu - 1.0) * g_small  # A' = 1 − A² − (2ν−1) A/κ
    t = kappa_sq.clamp(min=k0 * k0).rsqrt()  # 1/κ
    s_nu, ds_nu = _hankel_series(nu, t)
    s_lo, ds_lo = _hankel_series(nu - 1.0, t)
    g_large = t * s_nu / s_lo
    # Quotient rule on the series: cancels nothing at leading order, unlike 1 − A² − (2ν−1)A/κ ~ 1/κ².
    d_large = (ds_nu * s_lo - s_nu * ds_lo) / s_lo ** 2
    return torch.where(small, g_small, g_large), torch.where(small, d_small, d_large)


def bessel_ratio(nu: float, kappa: Any) -> torch.Tensor:
    """``A_ν(κ) = I_ν(κ) / I_{ν−1}(κ)`` for ``ν >= 1/2`` and ``κ >= 0``, differentiable, overflow-free.

    Parameters
    ----------
    nu : float
        Order, >= 0.5 (the sphere ``S^k`` uses ``ν = (k+1)/2``).
    kappa : (...) tensor
        Concentrations, >= 0.

    Returns
    -------
    (...) tensor
        In [0, 1); ``κ/(2ν)`` near 0 and ``1 − (2ν−1)/(2κ)`` for large κ.
    """
    nu = check_positive(nu, "nu")
    if nu < 0.5:
        raise ValueError(f"nu must be >= 0.5, got {nu!r}")
    kappa = as_tensor(kappa, name="kappa")
    if bool((kappa < 0).any()):
        raise ValueError(f"kappa must be >= 0, got minimum {float(kappa.min()):.3g}")
    g, _ = _ratio_and_derivative(nu, kappa * kappa)
    return kappa * g


# --------------------------------------------------------------------------------------------------------------
# Embedding helpers
# --------------------------------------------------------------------------------------------------------------
def _embedding(x_tilde: Any, centre: Any, Q: Any, *, base_dim: int | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate ``(x̃, c, Q)`` and return ``x̃`` (..., n), ``c`` (n,), ``Q`` (n, m)."""
    x = as_tensor(x_tilde, name="x_tilde")
    if x.ndim == 0:
        raise ValueError("x_tilde must have shape (..., n), got a scalar")
    n = x.shape[-1]
    if Q is None:
        q = torch.eye(n, dtype=x.dtype, device=x.device)
    else:
        q = as_tensor(Q, name="Q").to(x)
        if q.ndim != 2 or q.shape[0] != n or q.shape[1] > n:
            raise ValueError(f"Q must have shape (n, m) = ({n}, m <= {n}) matching x_tilde (..., {n}), "
                             f"got {tuple(q.shape)}")
        gram = q.T @ q
        if not torch.allclose(gram, torch.eye(q.shape[1], dtype=q.dtype, device=q.device), atol=1e-8):
            raise ValueError(f"Q must have orthonormal columns (QᵀQ = I), got max |QᵀQ − I| = "
                             f"{float((gram - torch.eye(q.shape[1], dtype=q.dtype)).abs().max()):.3g}")
    if base_dim is not None and q.shape[1] != base_dim:
        raise ValueError(f"Q must have {base_dim} columns (the base space R^{base_dim}), got shape {tuple(q.shape)}")
    c = torch.zeros(n, dtype=x.dtype, device=x.device) if centre is None else \
        check_points(centre, ambient_dim=n, name="centre").to(x)
    if c.ndim != 1:
        raise ValueError(f"centre must have shape ({n},), got {tuple(c.shape)}")
    return x, c, q


# --------------------------------------------------------------------------------------------------------------
# Sphere, circle, flat torus (T4)
# --------------------------------------------------------------------------------------------------------------
def _sphere_base_mean(u: torch.Tensor, radius: float, sigma: float) -> torch.Tensor:
    """``R A(κ) u/‖u‖ = (R²/σ²) g(κ) u`` in base coordinates u (..., p)."""
    p = u.shape[-1]
    kappa_sq = (radius / sigma ** 2) ** 2 * (u * u).sum(-1)  # (...,)  κ² = R²‖u‖²/σ⁴
    g, _ = _ratio_and_derivative(p / 2.0, kappa_sq)
    return (radius ** 2 / sigma ** 2) * g.unsqueeze(-1) * u  # T4 (von Mises–Fisher mean)


def _sphere_base_cov(u: torch.Tensor, radius: float, sigma: float) -> torch.Tensor:
    """``R² [g I + (A' − g) μμᵀ]`` (..., p, p): the vMF covariance (tangential A/κ, radial A')."""
    p = u.shape[-1]
    norm_sq = (u * u).sum(-1)  # (...,)
    g, d = _ratio_and_derivative(p / 2.0, (radius / sigma ** 2) ** 2 * norm_sq)
    eye = torch.eye(p, dtype=u.dtype, device=u.device)
    safe = torch.where(norm_sq > 0, norm_sq, torch.ones_like(norm_sq))
    radial = torch.where(norm_sq > 0, (d - g) / safe, torch.zeros_like(norm_sq))  # A'(0) = g(0) = 1/p
    cov = g[..., None, None] * eye + radial[..., None, None] * u.unsqueeze(-1) * u.unsqueeze(-2)
    return radius ** 2 * cov


def sphere_posterior_mean(x_tilde: Any, *, radius: float, sigma: float, centre: Any = None, Q: Any = None
                          ) -> torch.Tensor:
    """Bayes-optimal denoiser for uniform data on a round sphere ``S^k`` embedded by ``c + Q y`` (T4).

    Parameters
    ----------
    x_tilde : (..., n) tensor
        Noisy points ``x + σ ε``.
    radius : float
        Sphere radius ``R`` > 0.
    sigma : float
        Noise standard deviation > 0.
    centre : (n,) tensor, optional
        Centre ``c`` (default 0).
    Q : (n, k+1) tensor, optional
        Orthonormal embedding of the base space ``R^{k+1}`` (default identity: ``n = k + 1``).

    Returns
    -------
    (..., n) tensor
        ``c + Q R A(κ) u/‖u‖`` with ``u = Qᵀ(x̃ − c)``, ``κ = R‖u‖/σ²``, ``A = I_{(k+1)/2}/I_{(k−1)/2}``.
        Inside the reach it tends to the projection ``c + Q R u/‖u‖`` with error
        ``R (1 − A(κ)) ≈ k σ² / (2‖u‖)``, i.e. O(σ²).
    """
    radius = check_positive(radius, "radius")
    sigma = check_positive(sigma, "sigma")
    x, c, q = _embedding(x_tilde, centre, Q)
    if q.shape[1] < 2:
        raise ValueError(f"Q must have at least 2 columns (a sphere S^k lives in R^(k+1)), got {tuple(q.shape)}")
    u = (x - c) @ q  # (..., p) sufficient statistic (module docstring)
    return c + _sphere_base_mean(u, radius, sigma) @ q.T


def sphere_posterior_covariance(x_tilde: Any, *, radius: float, sigma: float, centre: Any = None,
                                Q: Any = None) -> torch.Tensor:
    """Posterior covariance ``Cov[X | x̃]`` for the sphere (T4); divided by σ² it is the Jacobian of r*.

    Returns
    -------
    (..., n, n) tensor
        ``Q R² [(A/κ)(I − μμᵀ) + A'(κ) μμᵀ] Qᵀ`` with ``μ = u/‖u‖``. On the sphere, as σ → 0,
        ``Cov/σ² → P_T`` (tangential eigenvalue ``A·R/‖u‖ → 1``, radial ``κA'·R/‖u‖ → 0``).
    """
    radius = check_positive(radius, "radius")
    sigma = check_positive(sigma, "sigma")
    x, c, q = _embedding(x_tilde, centre, Q)
    u = (x - c) @ q  # (..., p)
    return q @ _sphere_base_cov(u, radius, sigma) @ q.T


def circle_posterior_mean(x_tilde: Any, *, radius: float, sigma: float, centre: Any = None, Q: Any = None
                          ) -> torch.Tensor:
    """Circle of radius R (von Mises posterior, ``A = I₁/I₀``): :func:`sphere_posterior_mean` with ``Q`` (n, 2)."""
    x, c, q = _embedding(x_tilde, centre, Q, base_dim=2)
    return sphere_posterior_mean(x, radius=radius, sigma=sigma, centre=c, Q=q)


def _torus_blocks(x_tilde: Any, radii: Any, sigma: float, centre: Any, Q: Any):
    sigma = check_positive(sigma, "sigma")
    if not hasattr(radii, "__len__") or len(radii) != 2:
        raise ValueError(f"radii must be a pair (a, b) of circle radii, got {radii!r}")
    a = check_positive(radii[0], "radii[0]")
    b = check_positive(radii[1], "radii[1]")
    x, c, q = _embedding(x_tilde, centre, Q, base_dim=4)
    u = (x - c) @ q  # (..., 4) = (first circle plane, second circle plane)
    return u, a, b, sigma, c, q


def flat_torus_posterior_mean(x_tilde: Any, *, radii: tuple[float, float], sigma: float, centre: Any = None,
                              Q: Any = None) -> torch.Tensor:
    """Flat torus ``S¹(a) × S¹(b) ⊂ R⁴`` (base coords ``(a cos θ, a sin θ, b cos φ, b sin φ)``) (T4).

    Uniform area on the flat torus is uniform in (θ, φ) and the isotropic noise factorises over the two planes,
    so the posterior is a product of two von Mises laws: the mean is the pair of circle means.

    Parameters
    ----------
    x_tilde : (..., n) tensor
    radii : (float, float)
    sigma : float
    centre : (n,) tensor, optional
    Q : (n, 4) tensor, optional

    Returns
    -------
    (..., n) tensor
    """
    u, a, b, sigma, c, q = _torus_blocks(x_tilde, radii, sigma, centre, Q)
    y = torch.cat([_sphere_base_mean(u[..., :2], a, sigma), _sphere_base_mean(u[..., 2:], b, sigma)], dim=-1)
    return c + y @ q.T


def flat_torus_posterior_covariance(x_tilde: Any, *, radii: tuple[float, float], sigma: float,
                                    centre: Any = None, Q: Any = None) -> torch.Tensor:
    """Posterior covariance (..., n, n) for the flat torus: block-diagonal in the two planes (T4)."""
    u, a, b, sigma, c, q = _torus_blocks(x_tilde, radii, sigma, centre, Q)
    cov = torch.zeros(u.shape[:-1] + (4, 4), dtype=u.dtype, device=u.device)
    cov[..., :2, :2] = _sphere_base_cov(u[..., :2], a, sigma)
    cov[..., 2:, 2:] = _sphere_base_cov(u[..., 2:], b, sigma)
    return q @ cov @ q.T


def _log_bessel_over_power(mu: float, kappa_sq: torch.Tensor) -> torch.Tensor:
    """``log(I_μ(κ) / κ^μ)`` for integer or half-integer μ >= −1/2, via ratios ``g`` from μ0 ∈ {0, −1/2}."""
    kappa = kappa_sq.sqrt()
    if float(mu).is_integer():
        start, out = 0.0, torch.log(torch.special.i0e(kappa)) + kappa
    else:  # I_{−1/2}(κ) κ^{1/2} = √(2/π) cosh κ
        start = -0.5
        out = 0.5 * math.log(2.0 / math.pi) + kappa + torch.log1p(torch.exp(-2.0 * kappa)) - math.log(2.0)
    order = start + 1.0
    while order <= mu + 1e-9:  # I_ν/κ^ν = (I_{ν−1}/κ^{ν−1}) g_ν
        g, _ = _ratio_and_derivative(order, kappa_sq)
        out = out + torch.log(g)
        order += 1.0
    return out


def sphere_log_density(x_tilde: Any, *, radius: float, sigma: float, centre: Any = None, Q: Any = None
                       ) -> torch.Tensor:
    """Exact ``log p_σ(x̃)`` in R^n of uniform-sphere data plus ``N(0, σ² I_n)`` noise (for Tweedie, T4).

    ``log p_σ = −(n/2) log(2πσ²) − (‖x̃ − c‖² + R²)/(2σ²) + log[Γ(p/2) (κ/2)^{1−p/2} I_{p/2−1}(κ)]``.

    Returns
    -------
    (...) tensor
    """
    radius = check_positive(radius, "radius")
    sigma = check_positive(sigma, "sigma")
    x, c, q = _embedding(x_tilde, centre, Q)
    n, p = x.shape[-1], q.shape[1]
    u = (x - c) @ q  # (..., p)
    kappa_sq = (radius / sigma ** 2) ** 2 * (u * u).sum(-1)
    mu = p / 2.0 - 1.0
    return (-0.5 * n * math.log(2 * math.pi * sigma ** 2) - (((x - c) ** 2).sum(-1) + radius ** 2) / (2 * sigma ** 2)
            + math.lgamma(p / 2.0) + mu * math.log(2.0) + _log_bessel_over_power(mu, kappa_sq))


# --------------------------------------------------------------------------------------------------------------
# Gaussian data (Wiener filter)
# --------------------------------------------------------------------------------------------------------------
def wiener_filter(x_tilde: Any, *, cov: Any, sigma: float, mean: Any = None) -> torch.Tensor:
    """Posterior mean for ``x ~ N(m, Σ)`` (Σ may be singular) and noise ``N(0, σ² I)``: ``m + Σ(Σ+σ²I)⁻¹(x̃ − m)``.

    Parameters
    ----------
    x_tilde : (..., n) tensor
    cov : (n, n) tensor
    sigma : float
    mean : (n,) tensor, optional

    Returns
    -------
    (..., n) tensor
        Linear in x̃ (T3's ``W*`` applied to the centred input); Jacobian ``W* = Cov[X | x̃]/σ²``.
    """
    sigma = check_positive(sigma, "sigma")
    s = as_tensor(cov, name="cov")
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"cov must be an (n, n) matrix, got shape {tuple(s.shape)}")
    x = check_points(x_tilde, ambient_dim=s.shape[0], name="x_tilde")
    m = torch.zeros_like(s[0]) if mean is None else check_points(mean, ambient_dim=s.shape[0], name="mean")
    w = linear_dae_optimum(s, sigma=sigma)  # (n, n)
    return m + (x - m) @ w.T


def gaussian_subspace_posterior_mean(x_tilde: Any, *, latent_cov: Any, sigma: float, centre: Any = None,
                                     Q: Any = None) -> torch.Tensor:
    """Wiener filter for ``x = c + Q z``, ``z ~ N(0, Λ)``: ``c + Q Λ(Λ + σ² I)⁻¹ Qᵀ(x̃ − c)`` (T4).

    Parameters
    ----------
    x_tilde : (..., n) tensor
    latent_cov : (d, d) tensor or (d,) variances
    sigma : float
    centre : (n,) tensor, optional
    Q : (n, d) tensor, optional

    Returns
    -------
    (..., n) tensor
    """
    sigma = check_positive(sigma, "sigma")
    x, c, q = _embedding(x_tilde, centre, Q)
    lam = as_tensor(latent_cov, name="latent_cov").to(x)
    d = q.shape[1]
    if lam.shape == (d,):
        lam = torch.diag(lam)
    if lam.shape != (d, d):
        raise ValueError(f"latent_cov must have shape ({d}, {d}) or ({d},) to match Q (n, {d}), got {tuple(lam.shape)}")
    w = linear_dae_optimum(lam, sigma=sigma)  # (d, d) on the sufficient statistic u
    return c + ((x - c) @ q) @ w.T @ q.T


# --------------------------------------------------------------------------------------------------------------
# Tweedie and quadrature over a dense weighted sample of any manifold
# --------------------------------------------------------------------------------------------------------------
def tweedie_denoiser(log_density: Callable[[torch.Tensor], torch.Tensor], x_tilde: Any, *, sigma: float
                     ) -> torch.Tensor:
    """Tweedie's formula ``x̃ + σ² ∇ log p_σ(x̃)`` (Efron 2011), by autograd (``torch.func.grad``).

    Parameters
    ----------
    log_density : callable (..., n) -> (...)
        ``log p_σ`` up to an additive constant, applied row-wise.
    x_tilde : (..., n) tensor
    sigma : float

    Returns
    -------
    (..., n) tensor
        Equal to the posterior mean for every σ (T4).
    """
    sigma = check_positive(sigma, "sigma")
    x = as_tensor(x_tilde, name="x_tilde")
    grad = torch.func.grad(lambda v: log_density(v).sum())(x)  # (..., n)
    return x + sigma ** 2 * grad


def _quadrature_inputs(x_tilde: Any, points: Any, weights: Any, sigma: float, *, name: str = "x_tilde",
                       sigma_name: str = "sigma") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    sigma = check_positive(sigma, sigma_name)
    p = as_tensor(points, name="points")
    if p.ndim != 2 or p.shape[0] < 1:
        raise ValueError(f"points must have shape (K, n) with K >= 1, got {tuple(p.shape)}")
    x = check_points(x_tilde, ambient_dim=p.shape[1], name=name).to(p)
    if weights is None:
        log_w = torch.full((p.shape[0],), -math.log(p.shape[0]), dtype=p.dtype, device=p.device)
    else:
        w = as_tensor(weights, name="weights").to(p)
        if w.shape != (p.shape[0],) or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise ValueError(f"weights must be non-negative of shape ({p.shape[0]},) with a positive sum, "
                             f"got shape {tuple(w.shape)}")
        log_w = torch.log(w) - torch.log(w.sum())
    return x, p, log_w, sigma


def _quadrature_logits(x: torch.Tensor, p: torch.Tensor, log_w: torch.Tensor, sigma: float) -> torch.Tensor:
    """``log w_i − ‖x̃ − p_i‖²/(2σ²)`` up to a per-row constant: (B, K). ``‖x̃‖²`` is dropped (cancels)."""
    return log_w + (x @ p.T - 0.5 * (p * p).sum(-1)) / sigma ** 2


def _chunks(k: int, n: int) -> int:
    """Rows per chunk so that a (rows, k, n) intermediate holds about 4e6 numbers."""
    return max(1, int(4e6 // max(1, k * n)))


def posterior_mean_quadrature(x_tilde: Any, points: Any, weights: Any = None, *, sigma: float) -> torch.Tensor:
    """Posterior mean by importance weighting over a dense weighted sample of M (T4; log-sum-exp stable).

    ``E[X | x̃] ≈ Σ_i w_i N(x̃; p_i, σ²I) p_i / Σ_i w_i N(x̃; p_i, σ²I)``: exact for the discrete prior
    ``Σ w_i δ_{p_i}``, and a quadrature for a continuous one when the sample spacing is well below σ.

    Parameters
    ----------
    x_tilde : (..., n) tensor
    points : (K, n) tensor
        Quadrature nodes on M.
    weights : (K,) tensor, optional
        Quadrature weights (prior mass of each node, any scale; default equal).
    sigma : float

    Returns
    -------
    (..., n) tensor
    """
    x, p, log_w, sigma = _quadrature_inputs(x_tilde, points, weights, sigma)
    flat = x.reshape(-1, p.shape[1])  # (B, n)
    step = _chunks(*p.shape)
    out = [torch.softmax(_quadrature_logits(xb, p, log_w, sigma), dim=-1) @ p for xb in flat.split(step)]
    return torch.cat(out).reshape(x.shape)


def posterior_covariance_quadrature(x_tilde: Any, points: Any, weights: Any = None, *, sigma: float
                                    ) -> torch.Tensor:
    """Posterior covariance ``Cov[X | x̃]`` (..., n, n) by the same importance weighting (centred sums)."""
    x, p, log_w, sigma = _quadrature_inputs(x_tilde, points, weights, sigma)
    flat = x.reshape(-1, p.shape[1])  # (B, n)
    out = []
    for xb in flat.split(max(1, _chunks(*p.shape) // p.shape[1])):
        s = torch.softmax(_quadrature_logits(xb, p, log_w, sigma), dim=-1)  # (b, K)
        dev = p.unsqueeze(0) - (s @ p).unsqueeze(1)  # (b, K, n)
        out.append(torch.einsum("bk,bki,bkj->bij", s, dev, dev))
    return torch.cat(out).reshape(x.shape + (p.shape[1],))


def log_density_quadrature(x_tilde: Any, points: Any, weights: Any = None, *, sigma: float) -> torch.Tensor:
    """``log p_σ(x̃) = log Σ_i w̄_i N(x̃; p_i, σ² I)`` (...,), differentiable (Tweedie on any manifold)."""
    x, p, log_w, sigma = _quadrature_inputs(x_tilde, points, weights, sigma)
    n = p.shape[1]
    flat = x.reshape(-1, n)
    out = []
    for xb in flat.split(_chunks(*p.shape)):
        logits = _quadrature_logits(xb, p, log_w, sigma) - 0.5 * (xb * xb).sum(-1, keepdim=True) / sigma ** 2
        out.append(torch.logsumexp(logits, dim=-1))
    return torch.cat(out).reshape(x.shape[:-1]) - 0.5 * n * math.log(2 * math.pi * sigma ** 2)


# --------------------------------------------------------------------------------------------------------------
# Self-supervised partial corruption (T6)
# --------------------------------------------------------------------------------------------------------------
def _mask_family(masks: Any, mask_probs: Any, n: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    m = as_tensor(masks, name="masks").to(like)
    if m.ndim != 2 or m.shape[1] != n or m.shape[0] < 1:
        raise ValueError(f"masks must have shape (S, {n}) (one 0/1 row per mask, 1 = corrupted), got {tuple(m.shape)}")
    if not bool(((m == 0) | (m == 1)).all()):
        raise ValueError("masks must contain only 0 (clean) and 1 (corrupted)")
    if mask_probs is None:
        log_prior = torch.full((m.shape[0],), -math.log(m.shape[0]), dtype=like.dtype, device=like.device)
    else:
        pr = as_tensor(mask_probs, name="mask_probs").to(like)
        if pr.shape != (m.shape[0],) or bool((pr < 0).any()) or float(pr.sum()) <= 0:
            raise ValueError(f"mask_probs must be non-negative of shape ({m.shape[0]},) with a positive sum, "
                             f"got shape {tuple(pr.shape)}")
        log_prior = torch.log(pr) - torch.log(pr.sum())
    return m, log_prior


def _masked_gaussian_terms(x_hat: Any, cov: Any, masks: Any, mask_probs: Any, fill_std: float, fill_mean: float,
                           mean: Any, noise_var: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-mask log-posterior weights (B, S) and conditional means (B, S, n)."""
    fill_std = check_positive(fill_std, "fill_std")
    noise_var = check_positive(noise_var, "noise_var", allow_zero=True)
    s = as_tensor(cov, name="cov")
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"cov must be an (n, n) matrix, got shape {tuple(s.shape)}")
    n = s.shape[0]
    x = check_points(x_hat, ambient_dim=n, name="x_hat").to(s).reshape(-1, n)  # (B, n)
    mu = torch.zeros(n, dtype=s.dtype) if mean is None else check_points(mean, ambient_dim=n, name="mean").to(s)
    m, log_prior = _mask_family(masks, mask_probs, n, s)  # (S, n), (S,)
    clean = 1.0 - m  # diagonal of D_S
    # Noiseless limit: a relative jitter keeps C_S invertible; off-support masks then get weight ~ exp(−ρ²/2ε).
    eps = noise_var if noise_var > 0 else 1e-10 * max(float(torch.diagonal(s).mean()), fill_std ** 2)
    eye = torch.eye(n, dtype=s.dtype)
    c_s = clean[:, :, None] * s * clean[:, None, :] + torch.diag_embed(fill_std ** 2 * m) + eps * eye  # (S, n, n)
    chol = torch.linalg.cholesky(c_s)
    mean_hat = clean * mu + fill_mean * m  # (S, n)  E[x̂ | S]
    r = x.unsqueeze(0) - mean_hat.unsqueeze(1)  # (S, B, n)
    alpha = torch.cholesky_solve(r.transpose(1, 2), chol)  # (S, n, B) = C_S⁻¹ (x̂ − E[x̂|S])
    quad = (r.transpose(1, 2) * alpha).sum(1)  # (S, B)
    logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # (S,)
    log_w = log_prior[:, None] - 0.5 * quad - 0.5 * logdet[:, None]  # (S, B)  log P(S) N(x̂; ., C_S) + const
    cond = mu + ((s * clean[:, None, :]) @ alpha).transpose(1, 2)  # (S, B, n)  μ + Σ D_S C_S⁻¹ (x̂ − E[x̂|S])
    return log_w.T, cond.transpose(0, 1)


def masked_gaussian_mask_posterior(x_hat: Any, *, cov: Any, masks: Any, fill_std: float, mask_probs: Any = None,
                                   fill_mean: float = 0.0, mean: Any = None, noise_var: float = 0.0) -> torch.Tensor:
    """Posterior probabilities ``P(S | x̂)`` (..., S) of each mask in the family (see the mean below)."""
    log_w, _ = _masked_gaussian_terms(x_hat, cov, masks, mask_probs, fill_std, fill_mean, mean, noise_var)
    shape = as_tensor(x_hat, name="x_hat").shape[:-1]
    return torch.softmax(log_w, dim=-1).reshape(shape + (log_w.shape[-1],))


def masked_gaussian_posterior_mean(x_hat: Any, *, cov: Any, masks: Any, fill_std: float, mask_probs: Any = None,
                                   fill_mean: float = 0.0, mean: Any = None, noise_var: float = 0.0) -> torch.Tensor:
    """Exact Bayes-optimal map ``E[x | x̂]`` of self-supervised partial corruption for Gaussian data (T6).

    Model: ``x ~ N(μ, Σ)`` (Σ may be singular: a Gaussian latent on a subspace), a mask ``S`` drawn from a finite
    family with probabilities ``P(S)``, ``x̂ = D_S x + M_S f + η`` with ``D_S = diag(1 − m_S)``,
    ``M_S = diag(m_S)``, fill ``f ~ N(fill_mean, fill_std² I)`` independent of x, and ``η ~ N(0, noise_var I)``.
    Given S, ``(x, x̂)`` is jointly Gaussian, so

    ``E[x | x̂] = Σ_S w_S(x̂) [μ + Σ D_S C_S⁻¹ (x̂ − D_S μ − fill_mean m_S)]``,
    ``C_S = D_S Σ D_S + fill_std² M_S + noise_var I``, ``w_S ∝ P(S) N(x̂; D_S μ + fill_mean m_S, C_S)``.

    With ``noise_var = 0`` the noiseless limit (pseudo-inverse ``C_S⁺``) is taken with a relative jitter 1e-10;
    when the clean coordinates determine the point it equals the masked projection ``U (U_{Sᶜ})⁺ x̂_{Sᶜ}``.

    Parameters
    ----------
    x_hat : (..., n) tensor
        Corrupted inputs.
    cov : (n, n) tensor
        ``Σ``.
    masks : (S, n) tensor
        0/1 rows, 1 = corrupted coordinate.
    fill_std : float
        Standard deviation of the fill, > 0.
    mask_probs : (S,) tensor, optional
        Prior mask probabilities (default uniform).
    fill_mean : float
    mean : (n,) tensor, optional
        ``μ`` (default 0).
    noise_var : float
        Variance of an isotropic observation noise on x̂ (>= 0).

    Returns
    -------
    (..., n) tensor
    """
    log_w, cond = _masked_gaussian_terms(x_hat, cov, masks, mask_probs, fill_std, fill_mean, mean, noise_var)
    post = torch.softmax(log_w, dim=-1)  # (B, S)
    shape = as_tensor(x_hat, name="x_hat").shape
    return torch.einsum("bs,bsn->bn", post, cond).reshape(shape)


def masked_posterior_mean_quadrature(x_hat: Any, points: Any, weights: Any = None, *, masks: Any,
                                     fill_std: float, noise_std: float, mask_probs: Any = None,
                                     fill_mean: float = 0.0) -> torch.Tensor:
    """``E[x | x̂]`` for partial corruption of data on any manifold, by quadrature over a weighted sample (T6).

    Same model as :func:`masked_gaussian_posterior_mean` with the prior ``Σ_i w_i δ_{p_i}`` in place of the
    Gaussian and observation noise ``N(0, noise_std² I)`` (> 0: without it the clean coordinates must match a
    node exactly). As ``noise_std → 0`` it tends to the masked projection when S is identifiable from x̂ and the
    clean coordinates determine the point.

    Parameters
    ----------
    x_hat : (..., n) tensor
    points : (K, n) tensor
    weights : (K,) tensor, optional
    masks : (S, n) tensor
        0/1 rows, 1 = corrupted.
    fill_std, noise_std : float
        > 0.
    mask_probs : (S,) tensor, optional
    fill_mean : float

    Returns
    -------
    (..., n) tensor
    """
    noise_std = check_positive(noise_std, "noise_std")
    fill_std = check_positive(fill_std, "fill_std")
    x, p, log_w, _ = _quadrature_inputs(x_hat, points, weights, noise_std, name="x_hat", sigma_name="noise_std")
    n = p.shape[1]
    m, log_prior = _mask_family(masks, mask_probs, n, p)  # (S, n), (S,)
    clean = 1.0 - m
    v_fill = fill_std ** 2 + noise_std ** 2  # variance of a corrupted coordinate
    flat = x.reshape(-1, n)
    out = []
    p_sq = (p * p) @ clean.T  # (K, S)
    for xb in flat.split(max(1, _chunks(p.shape[0] * m.shape[0], 1))):
        # log N over corrupted coordinates (independent of the node) and over clean ones (node-dependent).
        ll_fill = -0.5 * (((xb.unsqueeze(1) - fill_mean) ** 2 / v_fill + math.log(2 * math.pi * v_fill)) * m).sum(-1)
        cross = torch.einsum("bn,sn,kn->bsk", xb, clean, p)  # (b, S, K)
        sq = ((xb * xb) @ clean.T).unsqueeze(-1) - 2 * cross + p_sq.T.unsqueeze(0)  # (b, S, K) clean ‖x̂ − p‖²
        log_norm = 0.5 * clean.sum(-1)[None, :, None] * math.log(2 * math.pi * noise_std ** 2)  # (1, S, 1)
        ll_clean = -0.5 * sq / noise_std ** 2 - log_norm
        logits = log_prior[None, :, None] + log_w[None, None, :] + ll_fill.unsqueeze(-1) + ll_clean  # (b, S, K)
        post = torch.softmax(logits.reshape(logits.shape[0], -1), dim=-1).reshape(logits.shape)
        out.append(torch.einsum("bsk,kn->bn", post, p))
    return torch.cat(out).reshape(x.shape)


# --------------------------------------------------------------------------------------------------------------
# Thin wrappers over manifold objects (duck-typed: .name, .Q, .centre and the shape parameters)
# --------------------------------------------------------------------------------------------------------------
def _dispatch(manifold: Any) -> tuple[str, dict[str, Any]]:
    name = getattr(manifold, "name", None)
    if name not in CLOSED_FORM_MANIFOLDS:
        raise ValueError(f"manifold must be one of {list(CLOSED_FORM_MANIFOLDS)} for a closed-form posterior, "
                         f"got {name!r}; use posterior_mean_quadrature with a dense weighted sample instead")
    kw = {"centre": manifold.centre, "Q": manifold.Q}
    if name in ("circle", "sphere"):
        kw["radius"] = manifold.radius
    elif name == "flat_torus":
        kw["radii"] = (manifold.a, manifold.b)
    else:
        kw["latent_cov"] = torch.full((manifold.Q.shape[1],), float(manifold.scale) ** 2, dtype=torch.float64)
    return name, kw


def posterior_mean(manifold: Any, x_tilde: Any, *, sigma: float) -> torch.Tensor:
    """Bayes-optimal denoiser ``r*(x̃)`` (..., n) for a manifold object sampled with its default density (T4).

    ``circle``/``sphere`` (uniform area, ``.radius``), ``flat_torus`` (uniform area, ``.a``, ``.b``),
    ``subspace`` (Gaussian latent ``N(0, scale² I)``, the ``"gaussian"`` density); embedding from ``.Q``,
    ``.centre``. Other manifolds: :func:`posterior_mean_quadrature` over ``manifold.sample`` or a grid.
    """
    name, kw = _dispatch(manifold)
    if name in ("circle", "sphere"):
        return sphere_posterior_mean(x_tilde, sigma=sigma, **kw)
    if name == "flat_torus":
        return flat_torus_posterior_mean(x_tilde, sigma=sigma, **kw)
    return gaussian_subspace_posterior_mean(x_tilde, sigma=sigma, **kw)


def posterior_covariance(manifold: Any, x_tilde: Any, *, sigma: float) -> torch.Tensor:
    """Posterior covariance ``Cov[X | x̃]`` (..., n, n) for the manifolds of :func:`posterior_mean` (T4)."""
    name, kw = _dispatch(manifold)
    if name in ("circle", "sphere"):
        return sphere_posterior_covariance(x_tilde, sigma=sigma, **kw)
    if name == "flat_torus":
        return flat_torus_posterior_covariance(x_tilde, sigma=sigma, **kw)
    sigma = check_positive(sigma, "sigma")
    q = as_tensor(kw["Q"], name="Q")
    lam = kw["latent_cov"].to(q)
    x = check_points(x_tilde, ambient_dim=q.shape[0], name="x_tilde")
    cov = q @ torch.diag(sigma ** 2 * lam / (lam + sigma ** 2)) @ q.T  # σ² W*: constant in x̃
    return cov.expand(x.shape[:-1] + cov.shape)
