"""The corruption interface shared by vectors and images (docs/theory.md, T6).

A corruption maps a clean batch ``x`` of shape (B, ...) to ``(x_tilde, mask)``:

* ``mask`` has the shape of ``x`` with the feature axes that are corrupted together collapsed to 1 where the
  corruption is spatial (images: (B, 1, H, W)); it is a float tensor in [0, 1] with 1 = corrupted.
* ``x_tilde = (1 - a * mask) * x + a * mask * content + noise_sigma * eps`` with an opacity ``a`` per sample
  and, optionally, Gaussian noise ``eps`` on every entry (the Filtering Autoencoder, docs/theory.md).

A corruption is the product of a **mask sampler** (where) and a **fill** (what). Both are small callables
taking an explicit ``torch.Generator`` so every corruption is reproducible from a seed.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from manifold_ae.checks import check_fraction, check_positive
from manifold_ae.rng import rand, randn

__all__ = ["MaskSampler", "Fill", "Corruption", "MaskedCorruption", "Identity", "corrupt_per_sample"]


class MaskSampler(Protocol):
    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return a float mask in [0, 1] broadcastable to ``x`` (B, ...); 1 = corrupted."""


class Fill(Protocol):
    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return replacement content with the shape of ``x`` (B, ...), independent of ``x`` where the theory needs it."""


class Corruption(Protocol):
    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(x_tilde, mask)``."""


def _uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator | None,
             like: torch.Tensor) -> torch.Tensor:
    u = rand(shape, generator=generator, device=like.device,
             dtype=like.dtype if like.is_floating_point() else torch.float32)
    return low + (high - low) * u


class MaskedCorruption:
    """Blend a fill into ``x`` inside a sampled mask: ``x_tilde = (1 - a m) x + a m c``.

    Parameters
    ----------
    mask : MaskSampler
        Where to corrupt.
    fill : Fill
        What to put there.
    opacity : (float, float), default (1, 1)
        Per-sample opacity ``a`` drawn uniformly from this interval.
    clean_fraction : float, default 0
        Fraction of samples left uncorrupted (their mask is all zeros), so the model also sees normal inputs.
    noise_sigma : float, default 0
        Standard deviation of Gaussian noise added to every entry of every sample after the blend, clean
        samples included (Bauer & Müller's Filtering Autoencoder, arXiv 2511.07233: occlusions plus noise, clean
        target). Not clipped; the returned mask still marks only the occlusion.
    """

    def __init__(self, mask: MaskSampler, fill: Fill, *, opacity: tuple[float, float] = (1.0, 1.0),
                 clean_fraction: float = 0.0, noise_sigma: float = 0.0) -> None:
        lo, hi = opacity
        check_fraction(lo, "opacity[0]")
        check_fraction(hi, "opacity[1]")
        if lo > hi:
            raise ValueError(f"opacity must be an interval (low <= high), got {opacity!r}")
        self.mask = mask
        self.fill = fill
        self.opacity = (float(lo), float(hi))
        self.clean_fraction = check_fraction(clean_fraction, "clean_fraction")
        self.noise_sigma = float(check_positive(noise_sigma, "noise_sigma", allow_zero=True))

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.mask(x, generator)  # broadcastable to x, e.g. (B, 1, H, W) or (B, D)
        batch = x.shape[0]
        keep_shape = (batch,) + (1,) * (m.ndim - 1)
        if self.clean_fraction > 0:
            clean = _uniform(keep_shape, 0.0, 1.0, generator, x) < self.clean_fraction
            m = m * (~clean).to(m.dtype)
        a = _uniform(keep_shape, self.opacity[0], self.opacity[1], generator, x).to(x.dtype)
        content = self.fill(x, generator)
        am = a * m.to(x.dtype)
        x_tilde = (1 - am) * x + am * content
        if self.noise_sigma > 0:
            x_tilde = x_tilde + self.noise_sigma * randn(x.shape, generator=generator, device=x.device,
                                                         dtype=x.dtype)
        return x_tilde, m.to(x.dtype)

    def __repr__(self) -> str:
        return (f"MaskedCorruption(mask={self.mask!r}, fill={self.fill!r}, opacity={self.opacity}, "
                f"clean_fraction={self.clean_fraction}, noise_sigma={self.noise_sigma})")


class Identity:
    """No corruption: ``(x, zeros)``; turns the self-supervised objective into plain reconstruction."""

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return x, torch.zeros_like(x)

    def __repr__(self) -> str:
        return "Identity()"


def corrupt_per_sample(corruption: Corruption, x: torch.Tensor,
                       seeds: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt every sample alone, from a generator seeded with its own seed (on ``x.device``).

    A sample's corruption then depends only on its image and its seed, not on the other samples of the batch
    nor on where the batch is split: K processes that each corrupt their shard of a batch produce exactly what
    one process corrupting the whole batch produces. Fills that draw from the batch (``PatchFill`` without a
    bank) see a batch of one, i.e. the image itself, cyclically shifted.

    Parameters
    ----------
    corruption : Corruption
        ``corruption(x, generator) -> (x_tilde, mask)``.
    x : torch.Tensor
        Clean batch, shape (B, ...).
    seeds : sequence of B ints in [0, 2**63)
        One seed per sample (host integers: no device value is read).

    Returns
    -------
    (x_tilde, mask) : the per-sample results concatenated, shapes (B, ...) and (B, ...) broadcastable to x.
    """
    seeds = [int(s) for s in seeds]
    if len(seeds) != x.shape[0]:
        raise ValueError(f"seeds must hold one seed per sample ({x.shape[0]}), got {len(seeds)}")
    if any(not 0 <= s < 2 ** 63 for s in seeds):
        raise ValueError(f"seeds must be integers in [0, 2**63), got {seeds!r}")
    parts = [corruption(x[i:i + 1], torch.Generator(device=x.device).manual_seed(s)) for i, s in enumerate(seeds)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
