"""A PCA reconstruction baseline for images, scored by exactly the same path as the autoencoders (T2, T8).

The optimal *linear* autoencoder with a k-dimensional code is the orthogonal projection onto the affine span of
the top-k principal directions of the training images (docs/theory.md, T2). :class:`PCAReconstruction` is that
projection as a plain ``nn.Module`` mapping images (B, C, H, W) to reconstructions of the same shape, so it
drops into :class:`~manifold_ae.images.pipeline.Pipeline`: the same loading, resizing, residual map, smoothing and
image score as every trained model. It is fitted by the package's one PCA, ``theory.principal_components`` (an
exact thin SVD of the centred training images, float64).

    pca = fit_pca(images, n_components=64)                     # images: (N, C, H, W) in [0, 1]
    pipe = Pipeline(pca, image_size=128, channels=1, score=ScoreConfig(sigma=3.0), resize_mode="pad")
    scored = pipe.score_dataset(test_set)
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from manifold_ae.checks import check_int
from manifold_ae.theory.linear import principal_components

__all__ = ["PCAReconstruction", "fit_pca", "stack_images", "pca_state"]


class PCAReconstruction(nn.Module):
    """``x -> mean + V^T V (x - mean)``: orthogonal projection onto the top-k principal affine subspace (T2).

    Parameters
    ----------
    mean : (D,) tensor
        Mean of the flattened training images, ``D = C * H * W``.
    components : (k, D) tensor
        Orthonormal principal directions (rows).
    shape : (C, H, W)
        Image shape; inputs must be (B, C, H, W).
    """

    def __init__(self, mean: torch.Tensor, components: torch.Tensor, *, shape: tuple[int, int, int]) -> None:
        super().__init__()
        if components.ndim != 2 or mean.ndim != 1 or components.shape[1] != mean.shape[0]:
            raise ValueError(f"components must have shape (k, D) and mean shape (D,), got "
                             f"{tuple(components.shape)} and {tuple(mean.shape)}")
        if int(np.prod(shape)) != mean.shape[0]:
            raise ValueError(f"shape {tuple(shape)} has {int(np.prod(shape))} values; expected D = {mean.shape[0]}")
        self.shape = tuple(int(s) for s in shape)
        self.register_buffer("mean", mean.detach().float().clone())  # (D,)
        self.register_buffer("components", components.detach().float().clone())  # (k, D)

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Principal coordinates: (B, C, H, W) -> (B, k)."""
        if x.ndim != 4 or tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"x must have shape (B, {', '.join(map(str, self.shape))}), got {tuple(x.shape)}")
        flat = x.reshape(x.shape[0], -1).to(self.mean.dtype)  # (B, D)
        return (flat - self.mean) @ self.components.T  # (B, k)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, k) -> images (B, C, H, W) on the principal affine subspace."""
        flat = z @ self.components + self.mean  # (B, D)
        return flat.reshape(z.shape[0], *self.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))  # (B, C, H, W), T2: the projection

    def extra_repr(self) -> str:
        return f"n_components={self.n_components}, shape={self.shape}"


def stack_images(dataset: Dataset | torch.Tensor) -> torch.Tensor:
    """All images of a dataset of ``{"image": (C, H, W)}`` items as one (N, C, H, W) float32 tensor.

    A tensor (N, C, H, W) is returned as it is (as float32).
    """
    if isinstance(dataset, torch.Tensor):
        if dataset.ndim != 4:
            raise ValueError(f"images must have shape (N, C, H, W), got {tuple(dataset.shape)}")
        return dataset.float()
    if len(dataset) == 0:
        raise ValueError("cannot stack the images of an empty dataset; expected at least one item")
    images = [dataset[i]["image"] for i in range(len(dataset))]
    return torch.stack(images).float()  # (N, C, H, W)


def fit_pca(images: Dataset | torch.Tensor, *, n_components: int = 64) -> PCAReconstruction:
    """Fit the top-``n_components`` principal affine subspace of training images and return its projection.

    Parameters
    ----------
    images : (N, C, H, W) tensor in [0, 1], or a dataset of ``{"image": (C, H, W)}`` items
        Normal training images only.
    n_components : int
        k, the dimension of the principal subspace; at most ``min(N, D)``.

    Returns
    -------
    PCAReconstruction with ``mean`` (D,) and ``components`` (k, D); ``explained_variance_`` (k,) is kept as
    an attribute for reports: the covariance eigenvalues with the unbiased ``1/(N − 1)`` normalisation (0 for
    ``N = 1``).
    """
    x = stack_images(images)  # (N, C, H, W)
    n, d = x.shape[0], int(np.prod(x.shape[1:]))
    check_int(n_components, "n_components", minimum=1, maximum=min(n, d))
    pc = principal_components(x.reshape(n, d).double(), n_components, centre=True)  # T2, exact thin SVD
    module = PCAReconstruction(pc.mean, pc.basis.T, shape=tuple(x.shape[1:]))
    module.explained_variance_ = (pc.eigenvalues * (n / (n - 1) if n > 1 else 0.0)).float()  # (k,)
    return module


def pca_state(module: PCAReconstruction) -> dict[str, Any]:
    """A ``torch.save``-able record of a fitted PCA baseline (tensors and plain values only).

    ``PCAReconstruction(state["mean"], state["components"], shape=tuple(state["shape"]))`` rebuilds the module.
    """
    return {"mean": module.mean, "components": module.components, "shape": list(module.shape)}
