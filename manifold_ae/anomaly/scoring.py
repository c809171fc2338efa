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

__all__ = ["residual_map", "pyramid_residuals", "normalise_levels", "smooth", "gaussian_kernel1d", "image_scores",
           "vector_scores", "REDUCTIONS", "LEVEL_NORMS"]

REDUCTIONS = ("max", "topk", "mean")
#: how the levels of :func:`pyramid_residuals` are put on one scale before their maximum is taken
LEVEL_NORMS = ("none", "level", "pixel")


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


def _block_means(t: torch.Tensor, s: int) -> torch.Tensor:
    """Means of the s × s blocks of images (B, C, H, W); a partial block at the border averages what it holds."""
    return F.avg_pool2d(t, kernel_size=s, stride=s, ceil_mode=True, count_include_pad=False)


def pyramid_residuals(x: Any, x_hat: Any, *, scales: tuple[int, ...]) -> torch.Tensor:
    """Residuals compared at several resolutions: the channel-mean squared difference of the s × s local means.

    For each scale s the images are reduced to their s × s block means (a partial block at the border averages
    what it holds), their squared difference is taken (:func:`residual_map`) and brought back to (H, W) by
    bilinear interpolation (scale factor s, cropped). Scale 1 is :func:`residual_map`.
    A deviation d spread coherently over a region much larger than s keeps its energy d² at scale s, while
    pixel noise of variance v averages down to v / s²: large faint regions stand out at coarse scales, thin
    defects at fine ones.

    Parameters
    ----------
    x, x_hat : (B, C, H, W) tensors
    scales : tuple of ints >= 1, each at most min(H, W)

    Returns
    -------
    (B, S, H, W) float tensor, one level per scale in the order given.
    """
    x, x_hat = _pair(x, x_hat)
    if x.ndim != 4:
        raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if not scales or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 1 <= s <= min(h, w)
                         for s in scales):
        raise ValueError(f"scales must be a non-empty tuple of ints in [1, min(H, W) = {min(h, w)}], got {scales!r}")
    x, x_hat = x.float(), x_hat.float()
    levels = []
    for s in scales:
        if s == 1:
            levels.append(residual_map(x, x_hat))
            continue
        coarse = residual_map(_block_means(x, s), _block_means(x_hat, s))[:, None]  # (B, 1, ⌈H/s⌉, ⌈W/s⌉)
        fine = F.interpolate(coarse, scale_factor=float(s), mode="bilinear", align_corners=False)
        levels.append(fine[:, 0, :h, :w])
    return torch.stack(levels, dim=1)  # (B, S, H, W)


def normalise_levels(levels: torch.Tensor, *, norm: str, normal_mean: torch.Tensor | None = None) -> torch.Tensor:
    """Put the levels (B, S, H, W) of :func:`pyramid_residuals` on one scale and take their pixelwise maximum.

    ``norm``:

    * ``none``: the levels as they are (a single level is returned unchanged);
    * ``level``: each level divided by its mean over normal images and pixels (``normal_mean`` (S, H, W)
      averaged over H, W), so a value of 1 is a normal pixel's expected residual at every scale;
    * ``pixel``: each level divided by ``(normal_mean + its spatial mean) / 2``, the per-pixel normal residual
      shrunk halfway towards the level's mean (pixels where normal images already have large residuals, such as
      edges, count less, without dividing by the noisy estimate of a quiet pixel alone).

    Returns (B, H, W).
    """
    check_choice(norm, "norm", LEVEL_NORMS)
    if levels.ndim != 4:
        raise ValueError(f"levels must have shape (B, S, H, W), got {tuple(levels.shape)}")
    if norm != "none":
        if normal_mean is None or tuple(normal_mean.shape) != tuple(levels.shape[1:]):
            got = None if normal_mean is None else tuple(normal_mean.shape)
            raise ValueError(f"norm {norm!r} needs normal_mean of shape {tuple(levels.shape[1:])} (per-level mean "
                             f"residual maps of normal images), got {got}")
        mean = normal_mean.to(levels).clamp_min(1e-12)
        level_mean = mean.mean(dim=(1, 2), keepdim=True)  # (S, 1, 1)
        levels = levels / (level_mean if norm == "level" else 0.5 * (mean + level_mean))
    return levels.amax(dim=1)  # (B, H, W)


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
