"""The self-supervised partial-corruption toys (T6) and their exact references; the circle task is shared with T7
and T8.

Training pairs are ``x̂ = D_S x + M_S c + η`` (a mask S drawn from a finite family, fill ``c ~ N(0, τ² I)``
independent of x, small observation noise η ~ N(0, η² I)) and the target is the clean x (docs/theory.md, T6).
Two tasks, each with an exact Bayes map E[x | x̂]:

* :func:`gaussian_task`: a Gaussian latent on a plane of R^8; :func:`gaussian_bayes_map` is the closed-form
  mixture over masks of Gaussian conditionals;
* :func:`circle_task`: the unit circle in R^10; :func:`circle_oracles` gives the posterior mean by quadrature and
  the masked projection π_S with the true mask.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch

from manifold_ae.corruptions.vector import PartialCorruption, block_masks
from manifold_ae.loop import fit
from manifold_ae.manifolds.base import Manifold
from manifold_ae.manifolds.sphere import Sphere
from manifold_ae.manifolds.subspace import Subspace
from manifold_ae.models import MLPAutoencoder
from manifold_ae.objectives import SelfSupervised
from manifold_ae.theory.bayes import masked_gaussian_posterior_mean, masked_posterior_mean_quadrature
from manifold_ae.theory.masked import masked_projection_pointcloud

__all__ = ["ToyTask", "CIRCLE_DIM", "CIRCLE_SIZES", "FILL_STD", "NOISE_STD", "train_selfsupervised", "predict",
           "circle_task", "gaussian_task", "gaussian_bayes_map", "circle_masked_projection",
           "circle_oracles"]

CIRCLE_DIM = 10            # ambient dimension n of the circle task
CIRCLE_SIZES = (1, 2, 3)   # block lengths of the mask family
FILL_STD = 0.5             # τ, comparable to a coordinate's spread (≈ sqrt(2/n) R)
NOISE_STD = 0.01           # η


class ToyTask(NamedTuple):
    """A manifold, the corruption used in training and the trained self-supervised model."""

    manifold: Manifold
    corruption: PartialCorruption
    model: MLPAutoencoder          # float32, eval mode
    history: list[float]           # training losses


def train_selfsupervised(x: torch.Tensor, corruption: PartialCorruption, *, steps: int, seed: int,
                         lr: float = 5e-3, hidden: tuple[int, ...] = (128, 128)) -> tuple[MLPAutoencoder, list[float]]:
    """Train a ReLU MLP autoencoder to regress clean x from ``corruption(x)`` (the paper's objective, T6).

    Parameters
    ----------
    x : (N, n) tensor
        Clean training data (cast to float32).
    corruption : PartialCorruption
    steps : int
    seed : int
    lr : float
    hidden : tuple of int

    Returns
    -------
    model : MLPAutoencoder in eval mode; history : list of float
    """
    torch.manual_seed(seed)  # model initialisation
    model = MLPAutoencoder(x.shape[1], hidden=hidden, activation="relu")
    objective = SelfSupervised(model, corruption=corruption)
    history = fit(objective, x.float(), steps=steps, batch_size=256, lr=lr, seed=seed)
    model.eval()
    return model, history


def predict(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``f(x)`` of a float32 model without gradients, returned in float64: (B, n) -> (B, n)."""
    with torch.no_grad():
        return model(x.float()).double()


@functools.lru_cache(maxsize=4)
def circle_task(*, fast: bool, seed: int = 0) -> ToyTask:
    """The unit circle in R^10 with cyclic block masks of length 1-3, and its trained model (cached).

    Shared by T6 (against the oracles), T7 (localisation) and T8 (anomaly scores), so all three test one model.
    """
    manifold = Sphere(1, radius=1.0, ambient_dim=CIRCLE_DIM, seed=seed)
    corruption = PartialCorruption(block_masks(CIRCLE_DIM, CIRCLE_SIZES), fill_std=FILL_STD, noise_std=NOISE_STD)
    gen = torch.Generator().manual_seed(seed)
    x, _ = manifold.sample(20_000, generator=gen)                              # (N, n)
    model, history = train_selfsupervised(x, corruption, steps=1500 if fast else 6000, seed=seed)
    return ToyTask(manifold, corruption, model, history)


def gaussian_task(*, fast: bool, seed: int = 0) -> ToyTask:
    """Gaussian latent N(0, I₂) on a 2-plane of R^8, blocks of length 1-3, τ = 0.5, η = 0.05; trained model."""
    manifold = Subspace(2, scale=1.0, ambient_dim=8, seed=seed)
    corruption = PartialCorruption(block_masks(8, (1, 2, 3)), fill_std=0.5, noise_std=0.05)
    gen = torch.Generator().manual_seed(seed + 1)
    x, _ = manifold.sample(20_000, generator=gen)
    model, history = train_selfsupervised(x, corruption, steps=1500 if fast else 6000, seed=seed)
    return ToyTask(manifold, corruption, model, history)


def gaussian_bayes_map(task: ToyTask, x_hat: torch.Tensor) -> torch.Tensor:
    """Exact E[x | x̂] of the Gaussian task (T6 closed form), (B, n) -> (B, n)."""
    m, c = task.manifold, task.corruption
    cov = m.scale ** 2 * m.Q @ m.Q.T  # (n, n) Σ = U Uᵀ, singular: the data lie on the plane
    return masked_gaussian_posterior_mean(x_hat, cov=cov, masks=c.masks, fill_std=c.fill_std,
                                          noise_var=c.noise_std ** 2)


def circle_masked_projection(task: ToyTask, x_hat: torch.Tensor, mask: torch.Tensor, *, nodes: int = 1024,
                             steps: int = 20) -> torch.Tensor:
    """Masked projection π_S(x̂) onto the task's circle with the true mask (T6, T7): (B, n), (B, n) -> (B, n).

    A search over ``nodes`` equally spaced angles, refined by ``steps`` Levenberg–Marquardt steps in the angle
    (``theory.masked.masked_projection_pointcloud``).
    """
    m = task.manifold
    theta = (2 * math.pi / nodes) * torch.arange(nodes, dtype=torch.float64)[:, None]  # (K, 1)
    return masked_projection_pointcloud(x_hat, mask, m.from_params(theta), params=theta,
                                        parametrisation=m.from_params, steps=steps).point


def circle_oracles(task: ToyTask, x_hat: torch.Tensor, mask: torch.Tensor, *, nodes: int = 1024
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean E[x | x̂] by quadrature and masked projection π_S(x̂) with the true mask, each (B, n).

    The grid of ``nodes`` equally spaced angles is a trapezoid rule on a periodic integrand whose width in
    the angle is >= η, so 1024 nodes (spacing 0.006 < η = 0.01) make the quadrature error negligible.
    """
    m, c = task.manifold, task.corruption
    theta = (2 * math.pi / nodes) * torch.arange(nodes, dtype=torch.float64)[:, None]  # (K, 1)
    posterior = masked_posterior_mean_quadrature(x_hat, m.from_params(theta), masks=c.masks, fill_std=c.fill_std,
                                                 noise_std=c.noise_std)                  # (B, n)
    return posterior, circle_masked_projection(task, x_hat, mask, nodes=nodes, steps=20)
