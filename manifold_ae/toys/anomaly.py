"""Toy anomaly tasks, residual scores and trained baselines (T7 localisation, T8 detection).

Normal data are points of M observed with small noise; anomalies are pushed off M along a normal or partially
corrupted. The oracle scores by the exact distance dist(x, M) (``detectors.ProjectionDetector``), a trained AE
by its residual ``‖x − f(x)‖²`` (docs/theory.md, T8); the per-coordinate residual ``|x̂ − f(x̂)|`` localises the
corrupted coordinates (T7).
"""
from __future__ import annotations

import torch

from manifold_ae.anomaly.metrics import auroc
from manifold_ae.anomaly.scoring import vector_scores
from manifold_ae.corruptions.vector import PartialCorruption
from manifold_ae.loop import fit
from manifold_ae.manifolds.base import Manifold
from manifold_ae.models import MLPAutoencoder
from manifold_ae.objectives import Denoising, Reconstruction
from manifold_ae.toys.detectors import ProjectionDetector

__all__ = ["off_manifold_task", "corruption_task", "residual_score", "oracle_score", "train_baselines",
           "coordinate_auroc"]


def off_manifold_task(manifold: Manifold, num: int, *, delta: float, noise_std: float,
                      generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``num`` normal points ``p + η ε`` and ``num`` anomalies ``p + δ ν + η ε`` (T8).

    Returns
    -------
    x : (2 num, n) tensor; labels : (2 num,) tensor, 1 = anomalous
    """
    normal, _ = manifold.sample(num, generator=generator)                            # (num, n)
    ray = manifold.sample_normal_ray(num, generator=generator)
    anomalous = ray.p + delta * ray.nu                                               # dist = δ exactly (δ < reach)
    x = torch.cat([normal, anomalous])
    x = x + noise_std * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    labels = torch.cat([torch.zeros(num), torch.ones(num)])
    return x, labels


def corruption_task(manifold: Manifold, corruption: PartialCorruption, num: int, *,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``num`` normal points ``p + η ε`` and ``num`` partially corrupted points ``corruption(p)`` (T8).

    Returns
    -------
    x : (2 num, n) tensor; labels : (2 num,) tensor, 1 = anomalous
    """
    normal, _ = manifold.sample(num, generator=generator)
    normal = normal + corruption.noise_std * torch.randn(normal.shape, generator=generator, dtype=normal.dtype)
    clean, _ = manifold.sample(num, generator=generator)
    anomalous, _ = corruption(clean, generator)
    return torch.cat([normal, anomalous]), torch.cat([torch.zeros(num), torch.ones(num)])


def residual_score(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Anomaly score ``‖x − f(x)‖²`` (higher = more anomalous), (B, n) -> (B,) (C4, T8)."""
    with torch.no_grad():
        return vector_scores(x, model(x.float()).double())


def oracle_score(manifold: Manifold, train: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Exact distance dist(x, M) through the oracle detector (score_samples = −dist), (B, n) -> (B,)."""
    detector = ProjectionDetector(manifold).fit(train.numpy())
    return torch.as_tensor(-detector.score_samples(x.numpy()))


def train_baselines(x: torch.Tensor, *, steps: int, seed: int) -> dict[str, MLPAutoencoder]:
    """Denoising AE (σ = 0.1) and plain reconstruction AEs (no bottleneck; bottleneck 2) on clean data (N, n)."""
    models = {}
    recipes = {"denoising σ=0.1": (None, lambda m: Denoising(m, sigma=0.1)),
               "plain AE, no bottleneck": (None, Reconstruction),
               "plain AE, bottleneck 2": (2, Reconstruction)}
    for name, (bottleneck, objective) in recipes.items():
        torch.manual_seed(seed)
        model = MLPAutoencoder(x.shape[1], hidden=(128, 128), bottleneck=bottleneck, activation="relu")
        fit(objective(model), x.float(), steps=steps, batch_size=256, lr=5e-3, seed=seed)
        models[name] = model.eval()
    return models


def coordinate_auroc(x_hat: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> float:
    """AUROC of the per-coordinate residual |x̂ − f(x̂)| for detecting the corrupted coordinates (T7).

    Parameters
    ----------
    x_hat, image : (B, n) tensors
        The input and the map's output f(x̂).
    mask : (B, n) tensor
        1 on the corrupted coordinates S.
    """
    return auroc(mask.flatten() > 0.5, (x_hat - image).abs().flatten())
