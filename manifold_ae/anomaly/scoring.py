"""Anomaly scores from reconstructions: residual maps, smoothing, image scores; one module for toys and images.

The residual ``x - f(x)`` of a model that acts as the orthogonal projection onto the normal manifold is the
distance to that manifold (T8, conservation T7), so its squared norm is the anomaly score: per coordinate for
vectors, per pixel (mean over colour channels) for images. Higher scores mean more anomalous.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from manifold_ae.checks import as_tensor, check_choice, check_positive

__all__ = ["residual_map", "smooth", "gaussian_kernel1d", "image_scores", "vector_scores", "REDUCTIONS"]

REDUCTIONS = ("max", "topk", "mean")


def _pair(x: Any, x_hat: Any) -> tuple[torch.Tensor, torch.Tensor]:
    x = as_tensor(x, name="x", dtype=None)
    x_hat = as_tensor(x_hat, name="x_hat", dtype=None)
    if x.shape != x_hat.shape:
        raise ValueError(f"x and x_hat must have the same shape, got {tuple(x.shape)} and {tuple(x_hat.shape)}")
    return x, x_hat


def residual_map(x: Any, x_hat: Any) -> torch.Tensor:
    """Channel-mean squared difference of images (T8).

    Parameters
    ----------
    x, x_hat : (B, C, H, W) tensors or arrays
        Inputs and reconstructions.

    Returns
    -------
    (B, H, W) tensor ``mean_c (x - x_hat)^2``, in the dtype of ``x`` (bf16 is promoted to float32).
    """
    x, x_hat = _pair(x, x_hat)
    if x.ndim != 4:
        raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
    diff = x.float() - x_hat.float() if x.dtype in (torch.bfloat16, torch.float16) else x - x_hat
    return diff.square().mean(dim=1)  # (B, H, W)


def vector_scores(x: Any, x_hat: Any) -> torch.Tensor:
    """Squared residual norm ``||x - x_hat||^2`` over the last axis: (..., n) -> (...,) (T8)."""
    x, x_hat = _pair(x, x_hat)
    if x.ndim == 0:
        raise ValueError("x must have shape (..., n), got a scalar")
    return (x - x_hat).square().sum(dim=-1)


def gaussian_kernel1d(sigma: float, *, truncate: float = 4.0, dtype: torch.dtype = torch.float64,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """Normalised Gaussian taps on ``-r..r`` with ``r = int(truncate * sigma + 0.5)`` (as scipy.ndimage)."""
    radius = int(truncate * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    phi = torch.exp(-0.5 * (t / sigma) ** 2)
    return (phi / phi.sum()).to(dtype=dtype, device=device)  # (2r + 1,)


def _reflect_index(n: int, radius: int, device: torch.device) -> torch.Tensor:
    """Indices of a length-n axis padded by ``radius`` with half-sample symmetric reflection (d c b a | a b c d)."""
    i = torch.arange(-radius, n + radius, device=device) % (2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def smooth(maps: Any, *, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Gaussian smoothing of heat maps by a separable convolution with reflect padding.

    Matches ``scipy.ndimage.gaussian_filter(map, sigma, mode="reflect", truncate=truncate)`` applied to each
    map (scipy's ``reflect`` repeats the edge sample: d c b a | a b c d), for any radius, also one larger
    than the map.

    Parameters
    ----------
    maps : (..., H, W) tensor or array
    sigma : float
        Standard deviation in pixels; ``0`` returns the maps unchanged.
    truncate : float
        Kernel radius in standard deviations.

    Returns
    -------
    (..., H, W) tensor, same dtype as ``maps``.
    """
    maps = as_tensor(maps, name="maps", dtype=None)
    sigma = check_positive(sigma, "sigma", allow_zero=True)
    check_positive(truncate, "truncate")
    if maps.ndim < 2:
        raise ValueError(f"maps must have shape (..., H, W), got {tuple(maps.shape)}")
    if sigma == 0:
        return maps
    shape = maps.shape
    h, w = shape[-2:]
    dtype = maps.dtype if maps.dtype in (torch.float32, torch.float64) else torch.float32
    kernel = gaussian_kernel1d(sigma, truncate=truncate, dtype=dtype, device=maps.device)  # (K,)
    radius = (kernel.numel() - 1) // 2
    m = maps.to(dtype).reshape(-1, 1, h, w)  # (N, 1, H, W)
    m = m.index_select(3, _reflect_index(w, radius, m.device))  # (N, 1, H, W + 2r)
    m = F.conv2d(m, kernel.view(1, 1, 1, -1))  # (N, 1, H, W)
    m = m.index_select(2, _reflect_index(h, radius, m.device))  # (N, 1, H + 2r, W)
    m = F.conv2d(m, kernel.view(1, 1, -1, 1))  # (N, 1, H, W)
    return m.reshape(shape).to(maps.dtype)


def _top_count(n: int, topk: Any, top_fraction: Any) -> int:
    """How many of the ``n`` largest pixels the ``topk`` reduction averages: a count, or a fraction of ``n``."""
    if (topk is None) == (top_fraction is None):
        raise ValueError(f"reduction 'topk' needs exactly one of topk (a pixel count, int >= 1) or top_fraction "
                         f"(a fraction of the H*W pixels in (0, 1]), got topk={topk!r}, top_fraction={top_fraction!r}")
    if topk is not None:
        if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)):
            raise ValueError(f"topk must be an int pixel count in [1, H*W = {n}], got {topk!r}; for a fraction of "
                             "the pixels pass top_fraction")
        if not 1 <= topk <= n:
            raise ValueError(f"topk must be an int pixel count in [1, H*W = {n}], got {topk!r}")
        return int(topk)
    if isinstance(top_fraction, bool) or not isinstance(top_fraction, (int, float, np.integer, np.floating)):
        raise ValueError(f"top_fraction must be a number in (0, 1], got {top_fraction!r}")
    if not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction must lie in (0, 1], got {top_fraction!r}")
    return max(1, math.ceil(float(top_fraction) * n - 1e-9))


def image_scores(maps: Any, *, reduction: str = "max", topk: int | None = None,
                 top_fraction: float | None = None) -> torch.Tensor:
    """Reduce heat maps (B, H, W) to image scores (B,).

    Parameters
    ----------
    maps : (B, H, W) tensor or array
        Usually ``smooth(residual_map(x, x_hat), sigma=...)``.
    reduction : {"max", "topk", "mean"}
        ``max`` (the paper's score), ``topk`` (mean of the largest values), ``mean``.
    topk : int, optional
        For ``topk``: how many pixels, ``1 <= topk <= H*W`` (``topk=1`` is the max).
    top_fraction : float, optional
        For ``topk``: which fraction of the ``H*W`` pixels, in (0, 1], rounded up to at least one pixel
        (``top_fraction=1.0`` is the mean). ``topk`` needs exactly one of the two; the other reductions take
        neither.

    Returns
    -------
    (B,) tensor, higher = more anomalous.
    """
    maps = as_tensor(maps, name="maps", dtype=None)
    check_choice(reduction, "reduction", REDUCTIONS)
    if maps.ndim != 3 or maps.shape[1] == 0 or maps.shape[2] == 0:
        raise ValueError(f"maps must have shape (B, H, W) with H, W >= 1, got {tuple(maps.shape)}")
    flat = maps.reshape(maps.shape[0], -1)  # (B, H * W)
    if reduction != "topk":
        if topk is not None or top_fraction is not None:
            raise ValueError(f"topk and top_fraction are for reduction 'topk' only, got reduction {reduction!r} with "
                             f"topk={topk!r}, top_fraction={top_fraction!r}")
        return flat.amax(dim=1) if reduction == "max" else flat.mean(dim=1)
    count = _top_count(flat.shape[1], topk, top_fraction)
    return flat.topk(count, dim=1).values.mean(dim=1)
