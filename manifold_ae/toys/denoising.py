"""Denoising toy experiments of T4 (docs/theory.md): the manifolds, r*, noisy inputs, trained DAEs, Cov[X | x̃].

The T4 manifolds (circle, S², flat torus) are embedded in R^10 by a random isometry (``make_toy``); their
Bayes-optimal denoiser is the closed-form posterior mean of ``manifold_ae.theory`` (``bayes_denoiser``). Noisy
inputs share their random numbers across σ (``noisy_points``), DAEs are MLPs trained with ``Denoising``
(``train_dae``), and the second-order identity of Tweedie's formula, ``J_{r*}(x̃) = Cov[X | x̃] / σ²``, is
measured against autograd and against quadrature over the uniform measure of M (``posterior_covariance_identity``,
``uniform_quadrature``). The claim in ``manifold_ae.claims.t4_denoising`` compares these numbers with criteria.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from manifold_ae.checks import check_positive
from manifold_ae.loop import fit
from manifold_ae.manifolds import Manifold, make_manifold
from manifold_ae.models import MLPAutoencoder
from manifold_ae.objectives import Denoising
from manifold_ae.theory import (CLOSED_FORM_MANIFOLDS, jacobian, posterior_covariance,
                                posterior_covariance_quadrature, posterior_mean)

__all__ = ["AMBIENT_DIM", "MANIFOLD_SPECS", "make_toy", "bayes_denoiser", "noisy_points", "train_dae", "as_map",
           "plane_slice", "uniform_quadrature", "posterior_covariance_identity"]

#: name -> parameters of make_manifold (radius 1 circle and sphere, flat torus S¹(1) × S¹(0.5))
MANIFOLD_SPECS: dict[str, dict[str, float]] = {"circle": {"radius": 1.0}, "sphere": {"k": 2, "radius": 1.0},
                                               "flat_torus": {"a": 1.0, "b": 0.5}}
AMBIENT_DIM = 10

Map = Callable[[torch.Tensor], torch.Tensor]


def make_toy(name: str, *, seed: int) -> Manifold:
    """One of the T4 manifolds (``MANIFOLD_SPECS``) embedded in R^10."""
    if name not in MANIFOLD_SPECS:
        raise ValueError(f"name must be one of {list(MANIFOLD_SPECS)}, got {name!r}")
    return make_manifold(name, ambient_dim=AMBIENT_DIM, seed=seed, **MANIFOLD_SPECS[name])


def bayes_denoiser(manifold: Manifold, *, sigma: float) -> Map:
    """The closed-form posterior mean r* (..., n) -> (..., n) for uniform data on ``manifold`` (T4)."""
    if getattr(manifold, "name", None) not in CLOSED_FORM_MANIFOLDS:
        raise ValueError(f"no closed-form Bayes denoiser for {manifold!r}; expected one of "
                         f"{list(CLOSED_FORM_MANIFOLDS)}")
    return lambda x: posterior_mean(manifold, x, sigma=sigma)


def noisy_points(manifold: Manifold, num: int, *, sigma: float, seed: int) -> torch.Tensor:
    """``x + σ ε`` with x uniform on M and ε ~ N(0, I), float64 (num, n); the same draws for every σ."""
    g = torch.Generator().manual_seed(seed)
    x, _ = manifold.sample(num, generator=g)
    return x + sigma * torch.randn(x.shape, generator=g, dtype=x.dtype)


def train_dae(manifold: Manifold, *, sigma: float, steps: int, seed: int, num_train: int = 20000,
              width: int = 64) -> MLPAutoencoder:
    """An MLP DAE (tanh, two hidden layers) trained on uniform samples of ``manifold`` with noise σ."""
    g = torch.Generator().manual_seed(seed)
    x, _ = manifold.sample(num_train, generator=g)
    torch.manual_seed(seed)
    model = MLPAutoencoder(manifold.ambient_dim, hidden=(width, width), activation="tanh")
    fit(Denoising(model, sigma=sigma), x.float(), steps=steps, batch_size=256, lr=1e-2, seed=seed)
    return model


def as_map(model: torch.nn.Module) -> Map:
    """A trained float32 model as a float64 map (..., n) -> (..., n), without gradients."""
    def f(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(x.float()).double()
    return f


def plane_slice(f: Map, manifold: Manifold) -> Callable[[np.ndarray], np.ndarray]:
    """Restrict a map on R^n to the plane of the circle: (G, 2) base coordinates -> (G, 2)."""
    q2 = manifold.Q[:, :2]  # (n, 2)

    def g(uv: np.ndarray) -> np.ndarray:
        x = manifold.centre + torch.as_tensor(uv, dtype=torch.float64) @ q2.T  # (G, n)
        return ((f(x) - manifold.centre) @ q2).numpy()  # (G, 2)
    return g


def uniform_quadrature(manifold: Manifold, *, spacing: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights of a product rule for the uniform (area) measure of a T4 manifold.

    Circle and flat torus: the trapezoid rule in the angles (spectrally accurate for periodic integrands);
    S²: Gauss–Legendre in z = cos φ₁ (the area element is dz dφ₂) times the trapezoid rule in φ₂. Node spacing
    along M is at most ``spacing``; for the posterior at noise σ a spacing of σ/4 leaves the rule's error far
    below 1e-12 (a Gaussian sampled four times per standard deviation).

    Parameters
    ----------
    manifold : Manifold
        ``circle``, ``sphere`` with k = 2, or ``flat_torus``.
    spacing : float
        Largest arc length between neighbouring nodes, > 0.

    Returns
    -------
    points : (K, n) float64 tensor
        Nodes on M.
    weights : (K,) float64 tensor
        Positive, proportional to the area each node stands for.
    """
    spacing = check_positive(spacing, "spacing")
    name = getattr(manifold, "name", None)

    def angles(length: float) -> torch.Tensor:  # trapezoid nodes on [0, 2π) for a circle of this length
        k = math.ceil(length / spacing)
        return torch.arange(k, dtype=torch.float64) * (2 * math.pi / k)

    if name == "circle":
        theta = angles(2 * math.pi * manifold.radius)
        params, weights = theta[:, None], torch.ones_like(theta)
    elif name == "flat_torus":
        u, v = angles(2 * math.pi * manifold.a), angles(2 * math.pi * manifold.b)
        params = torch.cartesian_prod(u, v)  # (Ku·Kv, 2)
        weights = torch.ones(len(params), dtype=torch.float64)
    elif name == "sphere" and manifold.k == 2:
        z, w_z = np.polynomial.legendre.leggauss(math.ceil(math.pi * manifold.radius / spacing))
        phi = angles(2 * math.pi * manifold.radius)
        params = torch.cartesian_prod(torch.as_tensor(np.arccos(z)), phi)  # (Kz·Kφ, 2): (φ₁, φ₂)
        weights = torch.as_tensor(w_z).repeat_interleave(len(phi))
    else:
        raise ValueError(f"manifold must be a circle, a sphere with k = 2 or a flat_torus for uniform_quadrature, "
                         f"got {manifold!r}")
    return manifold.from_params(params), weights


def posterior_covariance_identity(manifold: Manifold, x_tilde: torch.Tensor, *, sigma: float,
                                  spacing: float | None = None) -> dict[str, torch.Tensor]:
    """Measure ``J_{r*}(x̃) = Cov[X | x̃] / σ²`` (symmetric PSD) at every row of ``x_tilde`` (T4).

    Differentiating Tweedie's formula ``r* = x̃ + σ² ∇ log p_σ`` once more gives ``J_{r*} = I + σ² ∇² log p_σ``,
    which equals ``Cov[X | x̃] / σ²``: a covariance, so symmetric and positive semi-definite. Three independent
    computations enter: the Jacobian of the closed-form posterior mean by autograd, the closed-form covariance
    (``theory.posterior_covariance``), and, when ``spacing`` is given, the covariance by quadrature over
    ``uniform_quadrature(manifold, spacing=spacing)``.

    Parameters
    ----------
    manifold : Manifold
        A T4 manifold with a closed-form posterior.
    x_tilde : (B, n) float64 tensor
        Noisy inputs.
    sigma : float
        Noise standard deviation, > 0.
    spacing : float, optional
        Node spacing of the quadrature reference; without it ``quadrature`` is left out.

    Returns
    -------
    dict of (B,) float64 tensors
        ``tweedie``: ‖J − Cov/σ²‖_F / ‖Cov/σ²‖_F; ``asymmetry``: ‖J − Jᵀ‖_F / ‖J‖_F; ``min_eigenvalue``: the
        smallest eigenvalue of Cov/σ² (of its symmetric part; ``tweedie`` sees any asymmetric part);
        ``quadrature``: ‖Cov − Cov_quad‖_F / ‖Cov_quad‖_F.
    """
    sigma = check_positive(sigma, "sigma")
    jac = jacobian(bayes_denoiser(manifold, sigma=sigma), x_tilde)  # (B, n, n) autograd of r*
    cov = posterior_covariance(manifold, x_tilde, sigma=sigma)  # (B, n, n) closed form
    scaled = cov / sigma ** 2  # (B, n, n)  Cov[X | x̃] / σ²  (T4)
    out = {"tweedie": torch.linalg.matrix_norm(jac - scaled) / torch.linalg.matrix_norm(scaled),
           "asymmetry": torch.linalg.matrix_norm(jac - jac.transpose(-1, -2)) / torch.linalg.matrix_norm(jac),
           "min_eigenvalue": torch.linalg.eigvalsh(0.5 * (scaled + scaled.transpose(-1, -2)))[..., 0]}
    if spacing is not None:
        points, weights = uniform_quadrature(manifold, spacing=spacing)
        reference = posterior_covariance_quadrature(x_tilde, points, weights, sigma=sigma)  # (B, n, n)
        out["quadrature"] = torch.linalg.matrix_norm(cov - reference) / torch.linalg.matrix_norm(reference)
    return out
