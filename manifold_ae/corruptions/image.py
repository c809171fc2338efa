"""Image corruptions for self-supervised training (docs/theory.md, T6): masks, fills and the paper's recipe.

Images are (B, C, H, W) in [0, 1] *before* any normalisation, so clean and corrupted inputs share one value
range. A mask sampler returns (B, 1, H, W) in {0, 1} (1 = corrupted, never empty); a fill returns content
(B, C, H, W) in [0, 1]; :class:`~manifold_ae.corruptions.base.MaskedCorruption` blends them with a random
opacity, ``x_tilde = (1 - a m) x + a m c``, so pixels outside the mask are returned unchanged. Every random
number comes from the explicit ``generator`` (drawn on its device), so a seed reproduces a corruption exactly.

Masks   ``PerlinMask`` thresholded Perlin blobs · ``BlobMask`` smooth random blobs · ``RectangleMask`` ·
        ``LineMask`` thin straight lines · ``CrackMask`` thin meandering curves · ``SmoothMask`` large
        low-frequency regions with soft edges and a partial transparency (values in [0, 1], not {0, 1})
Fills   ``NoiseFill`` Gaussian noise · ``PatchFill`` other normal images (the batch shuffled, or a bank) ·
        ``TextureFill`` textures (``data/textures.py`` bank by default) · ``ElasticFill`` the image itself,
        elastically deformed · ``ColorShiftFill`` brightness, contrast and colour shift
``RandomChoice`` picks one of several masks, fills or corruptions per sample; ``paper_corruption`` is the
default recipe.
"""
from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from manifold_ae.checks import check_fraction, check_int, check_positive
from manifold_ae.corruptions.base import MaskedCorruption
from manifold_ae.checks import as_hw
from manifold_ae.corruptions.textures import perlin_noise, texture_bank
from manifold_ae.rng import rand, randn, randperm

__all__ = ["PerlinMask", "BlobMask", "RectangleMask", "LineMask", "CrackMask", "SmoothMask", "NoiseFill", "PatchFill",
           "TextureFill", "ElasticFill", "ColorShiftFill", "ShadeFill", "RandomChoice", "paper_corruption", "MASK_WEIGHTS",
           "FILL_WEIGHTS", "recipe_weights"]

Generator = torch.Generator | None


def _check_images(x: torch.Tensor) -> tuple[int, int, int, int]:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        got = f"tensor of shape {tuple(x.shape)} and dtype {x.dtype}" if isinstance(x, torch.Tensor) else repr(x)
        raise ValueError(f"x must be a floating tensor of images (B, C, H, W) in [0, 1], got {got}")
    return tuple(x.shape)  # type: ignore[return-value]


def _rand(shape: Sequence[int], generator: Generator, like: torch.Tensor) -> torch.Tensor:
    """Uniform [0, 1) float32 numbers drawn on the generator's device, returned on ``like.device``."""
    return rand(shape, generator=generator, device=like.device)


def _uniform(shape: Sequence[int], interval: tuple[float, float], generator: Generator,
             like: torch.Tensor) -> torch.Tensor:
    return interval[0] + (interval[1] - interval[0]) * _rand(shape, generator, like)


def _randint(shape: Sequence[int], interval: tuple[int, int], generator: Generator,
             like: torch.Tensor) -> torch.Tensor:
    """Integers uniform in [low, high] (both included)."""
    low, high = interval
    return (low + (_rand(shape, generator, like) * (high - low + 1)).floor().clamp_max(high - low)).long()


def _interval(value: Sequence[float], name: str, *, low: float | None = None, high: float | None = None,
              ) -> tuple[float, float]:
    if not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"{name} must be an interval (low, high), got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    ok = lo <= hi and (low is None or lo >= low) and (high is None or hi <= high)
    if not ok:
        bounds = f" within [{low}, {high}]" if low is not None or high is not None else ""
        raise ValueError(f"{name} must be an interval (low, high) with low <= high{bounds}, got {value!r}")
    return lo, hi


def _int_interval(value: Sequence[int], name: str, *, minimum: int) -> tuple[int, int]:
    if not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"{name} must be an integer interval (low, high), got {value!r}")
    lo, hi = check_int(value[0], f"{name}[0]", minimum=minimum), check_int(value[1], f"{name}[1]", minimum=minimum)
    if lo > hi:
        raise ValueError(f"{name} must be an integer interval (low, high) with low <= high, got {value!r}")
    return lo, hi


def _pixel_grid(h: int, w: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates yy (H, 1), xx (1, W) as float32 on ``like.device``."""
    yy = torch.arange(h, device=like.device, dtype=torch.float32)[:, None]
    return yy, torch.arange(w, device=like.device, dtype=torch.float32)[None, :]


def _power_of_two_interval(value: Sequence[int], name: str) -> tuple[int, int]:
    lo, hi = _int_interval(value, name, minimum=1)
    if lo & (lo - 1) or hi & (hi - 1):
        raise ValueError(f"{name} must be powers of two (1, 2, 4, ...), got {value!r}")
    return lo, hi


def _host_generator(generator: Generator, *, salt: int) -> Generator:
    """The generator of the draws that decide which code runs (an option, a lattice size), drawn on the host so
    that no device value is ever read (a read is a host synchronisation on CUDA).

    A CPU generator, or None (torch's global CPU RNG), is used as it is. A CUDA generator gives a CPU generator
    seeded from its seed, its current offset (host values that advance with every draw on it) and ``salt``
    (one per kind of decision, so two decisions taken between the same device draws are independent).
    """
    if generator is None or generator.device.type == "cpu":
        return generator
    key = (generator.initial_seed() * 0x9E3779B97F4A7C15 + generator.get_offset() * 0xBF58476D1CE4E5B9 + salt)
    return torch.Generator().manual_seed(key % 2 ** 63)


_HOST = torch.empty(0)  # the ``like`` of host draws: a CPU float tensor


def _lattice_exponents(b: int, cells: tuple[int, int], generator: Generator) -> torch.Tensor:
    """(B, 2) log2 of the Perlin lattice (rows, cols) per sample, uniform over the powers of two in ``cells``;
    on the host (they choose the shapes of the Perlin calls)."""
    host = _host_generator(generator, salt=2)
    return _randint((b, 2), (cells[0].bit_length() - 1, cells[1].bit_length() - 1), host, _HOST)


def _lattice_noise(k: torch.Tensor, h: int, w: int, generator: Generator, like: torch.Tensor) -> torch.Tensor:
    """Perlin noise (B, H, W) with lattice ``2**k[i]`` cells for sample i (``k`` (B, 2) on the host; at most
    half the side, so features span at least 2 px); one Perlin call per distinct lattice, vectorised over its
    samples."""
    noise = torch.empty(len(k), h, w, device=like.device)
    for pair in torch.unique(k, dim=0).tolist():
        idx = (k == torch.tensor(pair)).all(1).nonzero().squeeze(1)  # host indices
        cells = (min(2 ** pair[0], max(1, h // 2)), min(2 ** pair[1], max(1, w // 2)))
        values = perlin_noise(len(idx), h, w, cells=cells, generator=generator, device=like.device)
        if len(idx) == len(k):
            noise = values
        else:
            noise[idx.to(like.device, non_blocking=True)] = values
    return noise


# ----------------------------------------------------------------------------------------------------- masks
class PerlinMask:
    """Perlin-noise blobs covering a random fraction of the image (DRAEM's anomaly shapes).

    Per sample: lattice cells ``2**a`` rows × ``2**b`` cols with powers of two drawn in ``cells`` (at most half
    the image side, so a blob spans at least 2 px), a coverage
    ``q`` uniform in ``coverage``, and the mask = the top ``q`` fraction of the noise (so it covers ≈ q·H·W
    pixels: one or several irregular blobs).
    """

    def __init__(self, *, cells: tuple[int, int] = (1, 16), coverage: tuple[float, float] = (0.05, 0.35)) -> None:
        self.cells = _power_of_two_interval(cells, "cells")
        self.coverage = _interval(coverage, "coverage", low=0.0, high=1.0)
        if self.coverage[0] <= 0:
            raise ValueError(f"coverage must be an interval within (0, 1], got {coverage!r}")

    def __call__(self, x: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        b, _, h, w = _check_images(x)
        k = _lattice_exponents(b, self.cells, generator)  # (B, 2)
        q = _uniform((b,), self.coverage, generator, x)  # (B,) target coverage
        noise = _lattice_noise(k, h, w, generator, x)  # (B, H, W)
        flat = noise.flatten(1).sort(dim=1, descending=True).values  # (B, H*W)
        rank = (q * h * w).round().long().clamp(1, h * w) - 1  # (B,) index of the q-th largest value
        thr = flat.gather(1, rank[:, None])  # (B, 1) per-sample level
        mask = noise >= thr[:, :, None]  # (B, H, W), the top q fraction (never empty)
        return mask[:, None].to(x.dtype)

    def __repr__(self) -> str:
        return f"PerlinMask(cells={self.cells}, coverage={self.coverage})"


class BlobMask:
    """Union of ``count`` smooth random blobs: discs of radius ``radius`` × min(H, W) with a Perlin-rough edge."""

    def __init__(self, *, count: tuple[int, int] = (1, 3), radius: tuple[float, float] = (0.05, 0.2),
                 roughness: float = 0.3) -> None:
        self.count = _int_interval(count, "count", minimum=1)
        self.radius = _interval(radius, "radius", low=0.0, high=1.0)
        self.roughness = check_fraction(roughness, "roughness", high_inclusive=False)

    def __call__(self, x: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        b, _, h, w = _check_images(x)
        kmax = self.count[1]
        n = _randint((b, 1), self.count, generator, x)  # (B, 1) blobs per sample
        cy = _rand((b, kmax), generator, x) * h  # (B, K)
        cx = _rand((b, kmax), generator, x) * w
        r = (_uniform((b, kmax), self.radius, generator, x) * min(h, w)).clamp_min(1.0)
        r = torch.where(torch.arange(kmax, device=x.device)[None] < n, r, torch.zeros_like(r))  # unused: r = 0
        yy, xx = _pixel_grid(h, w, x)
        d = torch.sqrt((yy - cy[..., None, None]) ** 2 + (xx - cx[..., None, None]) ** 2)  # (B, K, H, W)
        ratio = (d / r[..., None, None]).nan_to_num(float("inf"), float("inf")).amin(1)  # (B, H, W)
        edge = 1 + self.roughness * perlin_noise(b, h, w, cells=4, generator=generator, device=x.device)
        mask = ratio < edge
        # the pixel nearest each first centre is always inside: a blob never vanishes between pixel centres
        iy, ix = cy[:, 0].long().clamp(0, h - 1), cx[:, 0].long().clamp(0, w - 1)
        mask[torch.arange(b, device=x.device), iy, ix] = True
        return mask[:, None].to(x.dtype)

    def __repr__(self) -> str:
        return f"BlobMask(count={self.count}, radius={self.radius}, roughness={self.roughness})"


class RectangleMask:
    """Union of ``count`` axis-aligned rectangles with sides ``size`` × (H, W), fully inside the image."""

    def __init__(self, *, count: tuple[int, int] = (1, 3), size: tuple[float, float] = (0.05, 0.3)) -> None:
        self.count = _int_interval(count, "count", minimum=1)
        self.size = _interval(size, "size", low=0.0, high=1.0)

    def __call__(self, x: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        b, _, h, w = _check_images(x)
        kmax = self.count[1]
        n = _randint((b, 1), self.count, generator, x)
        rh = (_uniform((b, kmax), self.size, generator, x) * h).round().clamp(1, h)  # (B, K) px
        rw = (_uniform((b, kmax), self.size, generator, x) * w).round().clamp(1, w)
        top = (_rand((b, kmax), generator, x) * (h - rh + 1)).floor()
        left = (_rand((b, kmax), generator, x) * (w - rw + 1)).floor()
        yy, xx = _pixel_grid(h, w, x)
        inside = ((yy >= top[..., None, None]) & (yy < (top + rh)[..., None, None])
                  & (xx >= left[..., None, None]) & (xx < (left + rw)[..., None, None]))  # (B, K, H, W)
        used = torch.arange(kmax, device=x.device)[None] < n  # (B, K)
        return (inside & used[..., None, None]).any(1, keepdim=True).to(x.dtype)  # (B, 1, H, W)

    def __repr__(self) -> str:
        return f"RectangleMask(count={self.count}, size={self.size})"


class LineMask:
    """Union of ``count`` thin straight segments: length ``length`` × min(H, W), width ``width`` × min(H, W)
    (at least 1 px), random position and angle; pixels within width/2 of the segment."""

    def __init__(self, *, count: tuple[int, int] = (1, 4), width: tuple[float, float] = (0.005, 0.02),
                 length: tuple[float, float] = (0.2, 0.8)) -> None:
        self.count = _int_interval(count, "count", minimum=1)
        self.width = _interval(width, "width", low=0.0, high=1.0)
        self.length = _interval(length, "length", low=0.0)

    def __call__(self, x: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        b, _, h, w = _check_images(x)
        kmax, side = self.count[1], min(h, w)
        n = _randint((b, 1), self.count, generator, x)
        y0 = _rand((b, kmax), generator, x) * h  # (B, K) start point
        x0 = _rand((b, kmax), generator, x) * w
        angle = _rand((b, kmax), generator, x) * torch.pi
        length = _uniform((b, kmax), self.length, generator, x) * side
        half = (_uniform((b, kmax), self.width, generator, x) * side).clamp_min(1.0) / 2
        uy, ux = torch.sin(angle), torch.cos(angle)
        yy, xx = _pixel_grid(h, w, x)
        py, px = yy - y0[..., None, None], xx - x0[..., None, None]  # (B, K, H, W) from the start point
        t = (py * uy[..., None, None] + px * ux[..., None, None]).clamp(min=0)
        t = torch.minimum(t, length[..., None, None])  # foot of the perpendicular on the segment
        d2 = (py - t * uy[..., None, None]) ** 2 + (px - t * ux[..., None, None]) ** 2
        on = d2 <= half[..., None, None] ** 2
        used = torch.arange(kmax, device=x.device)[None] < n
        mask = (on & used[..., None, None]).any(1)  # (B, H, W)
        iy, ix = y0[:, 0].long().clamp(0, h - 1), x0[:, 0].long().clamp(0, w - 1)
        mask[torch.arange(b, device=x.device), iy, ix] = True  # never empty
        return mask[:, None].to(x.dtype)

    def __repr__(self) -> str:
        return f"LineMask(count={self.count}, width={self.width}, length={self.length})"


class CrackMask:
    """Thin meandering curves, like cracks: the zero set of Perlin noise thickened to ``width`` × min(H, W)
    (at least 1 px), kept inside a random box of ``extent`` × (H, W).

    Per sample: a lattice of ``2**a`` × ``2**b`` cells in ``cells`` sets how much the curves meander. A
    pixel is on the crack when its distance to the zero set, estimated to first order as |n| / |∇n| in pixels,
    is at most width / 2. Unlike :class:`LineMask` the curves bend and branch.
    """

    def __init__(self, *, cells: tuple[int, int] = (2, 8), width: tuple[float, float] = (0.005, 0.015),
                 extent: tuple[float, float] = (0.2, 0.6)) -> None:
        self.cells = _power_of_two_interval(cells, "cells")
        self.width = _interval(width, "width", low=0.0, high=1.0)
        self.extent = _interval(extent, "extent", low=0.0, high=1.0)
        if self.extent[0] <= 0:
            raise ValueError(f"extent must be an interval within (0, 1], got {extent!r}")

    def __call__(self, x: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        b, _, h, w = _check_images(x)
        noise = _lattice_noise(_lattice_exponents(b, self.cells, generator), h, w, generator, x)  # (B, H, W)
        gy, gx = torch.gradient(noise, dim=(1, 2))  # per pixel
        dist = noise.abs() / (gy ** 2 + gx ** 2).sqrt().clamp_min(1e-6)  # (B, H, W) px to the zero set
        half = (_uniform((b,), self.width, generator, x) * min(h, w)).clamp_min(1.0) / 2
        bh = _uniform((b,), self.extent, generator, x) * h  # box size and corner
        bw = _uniform((b,), self.extent, generator, x) * w
        y0 = _rand((b,), generator, x) * (h - bh)
        x0 = _rand((b,), generator, x) * (w - bw)
        yy, xx = _pixel_grid(h, w, x)
        box = ((yy >= y0[:, None, None]) & (yy <= (y0 + bh)[:, None, None])
               & (xx >= x0[:, None, None]) & (xx <= (x0 + bw)[:, None, None]))  # (B, H, W)
        dist = torch.where(box, dist, torch.inf)
        mask = dist <= half[:, None, None]
        nearest = dist.flatten(1).argmin(1)  # never empty: the box pixel closest to the zero set
        mask.view(b, -1)[torch.arange(b, device=x.device), nearest] = True
        return mask[:, None].to(x.dtype)

    def __repr__(self) -> str:
        return f"CrackMask(cells={self.cells}, width={self.width}, extent={self.extent})"


class SmoothMask:
    """Large, smooth, partly transparent regions: faint low-frequency defects such as uneven shading or texture.

    Per sample: Perlin noise on a coarse lattice (``2**a`` × ``2**b`` cells, powers of two in ``cells``), the
    top ``coverage`` fraction of it as the region, a soft edge ramp of ``edge`` × (the noise's range) below
    the region's level, and a peak value ``amplitude`` (so even at opacity 1 the fill is only partly blended in).
    Values are in [0, ``amplitude``], never all zero; ``mask > 0`` is the region with its soft border.
    """

    def __init__(self, *, cells: tuple[int, int] = (1, 4), coverage: tuple[float, float] = (0.1, 0.45),
                 amplitude: tuple[float, float] = (0.2, 0.7), edge: float = 0.15) -> None:
        self.cells = _power_of_two_interval(cells, "cells")
        self.coverage = _interval(coverage, "coverage", low=0.0, high=1.0)
        if self.coverage[0] <= 0:
            raise ValueError(f"coverage must be an interval within (0, 1], got {coverage!r}")
        self.amplitude = _interval(amplitude, "amplitude", low=0.0, high=1.0)
        if self.amplitude[0] <= 0:
            raise ValueError(f"amplitude must be an interval within (0, 1], got {amplitude!r}")
        self.edge = check_fraction(edge, "edge", high_inclusive=False)

    def __call__(self, x: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        b, _, h, w = _check_images(x)
        k = _lattice_exponents(b, self.cells, generator)  # (B, 2)
        q = _uniform((b,), self.coverage, generator, x)  # (B,) coverage of the full-strength region
        peak = _uniform((b,), self.amplitude, generator, x)  # (B,)
        noise = _lattice_noise(k, h, w, generator, x)  # (B, H, W)
        flat = noise.flatten(1).sort(dim=1, descending=True).values  # (B, H*W)
        rank = (q * h * w).round().long().clamp(1, h * w) - 1
        level = flat.gather(1, rank[:, None])[:, :, None]  # (B, 1, 1)
        ramp = (self.edge * (flat[:, :1] - flat[:, -1:]))[:, :, None].clamp_min(1e-6)  # (B, 1, 1)
        soft = ((noise - level) / ramp + 1).clamp(0, 1)  # 1 inside the region, 0 below level - ramp
        return (soft * peak[:, None, None])[:, None].to(x.dtype)  # (B, 1, H, W)

    def __repr__(self) -> str:
        return (f"SmoothMask(cells={self.cells}, coverage={self.coverage}, amplitude={self.amplitude}, "
                f"edge={self.edge})")


# ----------------------------------------------------------------------------------------------------- fills
class NoiseFill:
    """Gaussian noise with per-sample σ in ``sigma``: independent of x (mean uniform in [0, 1] per sample and
    channel, the T6 setting), or ``additive=True``: x + σ ε. Clipped to [0, 1]."""

    def __init__(self, *, sigma: tuple[float, float] = (0.05, 0.3), additive: bool = False) -> None:
        self.sigma = _interval(sigma, "sigma", low=0.0)
        self.additive = bool(additive)

    def __call__(self, x: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        b, c, h, w = _check_images(x)
        sigma = _uniform((b, 1, 1, 1), self.sigma, generator, x)
        eps = randn((b, c, h, w), generator=generator, device=x.device)
        base = x if self.additive else _rand((b, c, 1, 1), generator, x)
        return (base + sigma * eps).clamp(0, 1).to(x.dtype)

    def __repr__(self) -> str:
        return f"NoiseFill(sigma={self.sigma}, additive={self.additive})"


def _match_bank(bank: torch.Tensor, c: int, h: int, w: int) -> torch.Tensor:
    """Bank (N, C', H', W') → (N, c, h, w): gray ↔ RGB by repetition / ITU-R 601 luma, antialiased resize."""
    if bank.shape[1] != c:
        if c == 3 and bank.shape[1] == 1:
            bank = bank.expand(-1, 3, -1, -1)
        elif c == 1 and bank.shape[1] == 3:
            luma = torch.tensor([0.299, 0.587, 0.114], dtype=bank.dtype, device=bank.device)
            bank = (bank * luma[:, None, None]).sum(1, keepdim=True)
        else:
            raise ValueError(f"bank has {bank.shape[1]} channels; expected 1 or 3 to match images with {c}")
    if tuple(bank.shape[-2:]) != (h, w):
        bank = F.interpolate(bank, size=(h, w), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    return bank.contiguous()


def _check_bank(bank: Any, name: str) -> torch.Tensor:
    if not isinstance(bank, torch.Tensor) or bank.ndim != 4 or bank.shape[0] < 1 or not bank.is_floating_point():
        got = f"shape {tuple(bank.shape)}" if isinstance(bank, torch.Tensor) else repr(type(bank))
        raise ValueError(f"{name} must be a floating tensor (N, C, H, W) of images in [0, 1] with N >= 1, got {got}")
    return bank


def _gather_shifted(src: torch.Tensor, idx: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """out[b] = src[idx[b]] cyclically shifted by (dy[b], dx[b]) px. src (N, C, H, W) → (B, C, H, W)."""
    _, c, h, w = src.shape
    rows = (torch.arange(h, device=src.device)[None] + dy[:, None]) % h  # (B, H)
    cols = (torch.arange(w, device=src.device)[None] + dx[:, None]) % w  # (B, W)
    return src[idx[:, None, None, None], torch.arange(c, device=src.device)[None, :, None, None],
               rows[:, None, :, None], cols[:, None, None, :]]


class PatchFill:
    """Content from other normal images: the batch itself with every sample replaced by another one (a random
    derangement), or random images of ``bank`` (N, C, H, W). ``translate=True`` shifts the source cyclically by
    a random offset so the pasted patch does not sit where it came from. A batch of one uses itself, shifted."""

    def __init__(self, *, bank: torch.Tensor | None = None, translate: bool = True) -> None:
        self.bank = None if bank is None else _check_bank(bank, "bank")
        self.translate = bool(translate)
        self._matched: dict[tuple, torch.Tensor] = {}

    def __call__(self, x: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        b, c, h, w = _check_images(x)
        if self.bank is None:
            src = x
            perm = randperm(b, generator=generator, device=x.device)
            idx = torch.empty_like(perm)
            idx[perm] = perm.roll(-1)  # sample perm[i] takes perm[i+1]: nobody gets itself when b > 1
        else:
            key = (c, h, w, x.device, x.dtype)
            if key not in self._matched:
                self._matched[key] = _match_bank(self.bank.to(x.device, x.dtype), c, h, w)
            src = self._matched[key]
            idx = (_rand((b,), generator, x) * len(src)).long().clamp_max(len(src) - 1)
        if self.translate or (self.bank is None and b == 1):
            dy = (_rand((b,), generator, x) * h).long()
            dx = (_rand((b,), generator, x) * w).long()
        else:
            dy = dx = torch.zeros(b, dtype=torch.long, device=x.device)
        return _gather_shifted(src, idx, dy, dx)

    def __repr__(self) -> str:
        source = "batch" if self.bank is None else f"bank of {len(self.bank)}"
        return f"PatchFill(source={source}, translate={self.translate})"


class TextureFill:
    """Textures from ``bank`` (N, C, H, W) in [0, 1], each with a random flip and brightness gain
    ``1 ± jitter``. Default bank: ``count`` textures of ``data.textures.texture_bank`` (procedural + scikit-image's
    bundled photographs, random hues), built with ``seed`` at the images' size on first use."""

    def __init__(self, bank: torch.Tensor | None = None, *, count: int = 64, seed: int = 0,
                 jitter: float = 0.1) -> None:
        self.bank = None if bank is None else _check_bank(bank, "bank")
        self.count = check_int(count, "count", minimum=1)
        self.seed = check_int(seed, "seed", minimum=0)
        self.jitter = check_fraction(jitter, "jitter")
        self._matched: dict[tuple, torch.Tensor] = {}
        self._built: dict[tuple[int, int, int], torch.Tensor] = {}

    def source(self, channels: int, height: int, width: int, *, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The bank matched to (channels, height, width): (N, channels, height, width) (built once, cached)."""
        key = (channels, height, width, torch.device(device), dtype)
        if key not in self._matched:
            bank = self.bank
            if bank is None:  # generate once per image shape; other devices/dtypes reuse it (no regeneration)
                shape = (channels, height, width)
                if shape not in self._built:
                    self._built[shape] = texture_bank(self.count, height, width, channels=channels,
                                                      generator=torch.Generator().manual_seed(self.seed))
                bank = self._built[shape]
            self._matched[key] = _match_bank(bank.to(device, dtype), channels, height, width)
        return self._matched[key]

    def __call__(self, x: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        b, c, h, w = _check_images(x)
        src = self.source(c, h, w, device=x.device, dtype=x.dtype)
        idx = (_rand((b,), generator, x) * len(src)).long().clamp_max(len(src) - 1)
        out = src[idx]  # (B, C, H, W)
        flips = _rand((b, 2), generator, x) < 0.5
        out = torch.where(flips[:, 0, None, None, None], out.flip(-2), out)
        out = torch.where(flips[:, 1, None, None, None], out.flip(-1), out)
        gain = 1 + self.jitter * (2 * _rand((b, 1, 1, 1), generator, x) - 1)
        return (out * gain).clamp(0, 1).to(x.dtype)

    def __repr__(self) -> str:
        source = "texture_bank" if self.bank is None else f"bank of {len(self.bank)}"
        return f"TextureFill(source={source}, count={self.count}, seed={self.seed}, jitter={self.jitter})"


class ElasticFill:
    """The image itself, elastically deformed: a smooth Perlin displacement field (``cells`` lattice cells) of
    at most ``magnitude`` × (H, W) pixels per sample, applied by bilinear ``grid_sample`` (reflected border)."""

    def __init__(self, *, magnitude: tuple[float, float] = (0.02, 0.08), cells: int = 4) -> None:
        self.magnitude = _interval(magnitude, "magnitude", low=0.0, high=1.0)
        self.cells = check_int(cells, "cells", minimum=1)

    def __call__(self, x: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        b, _, h, w = _check_images(x)
        mag = _uniform((b, 1, 1, 1), self.magnitude, generator, x)
        field = perlin_noise(2 * b, h, w, cells=self.cells, generator=generator, device=x.device)
        disp = field.view(b, 2, h, w).permute(0, 2, 3, 1) * (2 * mag)  # (B, H, W, 2) normalised units, |.| ≤ 2 mag
        gy = (2 * torch.arange(h, device=x.device, dtype=torch.float32) + 1) / h - 1  # pixel centres in (-1, 1)
        gx = (2 * torch.arange(w, device=x.device, dtype=torch.float32) + 1) / w - 1
        base = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)  # (H, W, 2) as (x, y)
        grid = (base[None] + disp).to(x.dtype)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        return out.clamp(0, 1)

    def __repr__(self) -> str:
        return f"ElasticFill(magnitude={self.magnitude}, cells={self.cells})"


class ColorShiftFill:
    """Intensity and colour shift of the image itself: ``(x - m) * contrast + m + brightness + color_c``
    (m = the sample's mean), per-sample contrast and brightness, per-channel colour offset; clipped to [0, 1]."""

    def __init__(self, *, brightness: tuple[float, float] = (-0.3, 0.3), contrast: tuple[float, float] = (0.6, 1.4),
                 color: tuple[float, float] = (-0.15, 0.15)) -> None:
        self.brightness = _interval(brightness, "brightness", low=-1.0, high=1.0)
        self.contrast = _interval(contrast, "contrast", low=0.0)
        self.color = _interval(color, "color", low=-1.0, high=1.0)

    def __call__(self, x: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        b, c, _, _ = _check_images(x)
        m = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
        contrast = _uniform((b, 1, 1, 1), self.contrast, generator, x)
        bright = _uniform((b, 1, 1, 1), self.brightness, generator, x)
        colour = _uniform((b, c, 1, 1), self.color, generator, x)
        return ((x - m) * contrast + m + bright + colour).clamp(0, 1).to(x.dtype)

    def __repr__(self) -> str:
        return f"ColorShiftFill(brightness={self.brightness}, contrast={self.contrast}, color={self.color})"


class ShadeFill:
    """The image's own texture under a smooth gain field and a contrast change (uneven shading or texture):
    ``((x - m) * contrast + m) * (1 + gain * n)``, m = the sample's mean, n = Perlin noise in [-1, 1] on a coarse
    lattice (``2**a`` × ``2**b`` cells, powers of two in ``cells``), per-sample ``gain`` and ``contrast``; clipped
    to [0, 1].

    Unlike :class:`ColorShiftFill` the change varies smoothly over the image, so blended in through a soft mask
    (:class:`SmoothMask`) it leaves no edge that tells where it is: only the intensity and the texture's
    contrast over a large region differ from a normal image.
    """

    def __init__(self, *, gain: tuple[float, float] = (0.1, 0.4), contrast: tuple[float, float] = (0.4, 1.8),
                 cells: tuple[int, int] = (1, 4)) -> None:
        self.gain = _interval(gain, "gain", low=0.0, high=1.0)
        self.contrast = _interval(contrast, "contrast", low=0.0)
        self.cells = _power_of_two_interval(cells, "cells")

    def __call__(self, x: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        b, _, h, w = _check_images(x)
        m = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
        contrast = _uniform((b, 1, 1, 1), self.contrast, generator, x)
        gain = _uniform((b, 1, 1, 1), self.gain, generator, x)
        n = _lattice_noise(_lattice_exponents(b, self.cells, generator), h, w, generator, x)[:, None]  # (B,1,H,W)
        return (((x - m) * contrast + m) * (1 + gain * n)).clamp(0, 1).to(x.dtype)

    def __repr__(self) -> str:
        return f"ShadeFill(gain={self.gain}, contrast={self.contrast}, cells={self.cells})"


# ---------------------------------------------------------------------------------------------- combinators
class RandomChoice:
    """Apply one of ``options`` per sample, chosen with probabilities ∝ ``weights`` (default equal).

    Works for masks, fills and whole corruptions alike: each option runs once on the sub-batch of the samples
    that chose it, and the outputs (a tensor or a tuple of tensors) are put back in batch order.
    """

    def __init__(self, options: Sequence[Any], *, weights: Sequence[float] | None = None) -> None:
        self.options = tuple(options)
        if not self.options:
            raise ValueError("options must hold at least one mask, fill or corruption, got none")
        weights = [1.0] * len(self.options) if weights is None else [float(v) for v in weights]
        if len(weights) != len(self.options):
            raise ValueError(f"weights must have one entry per option ({len(self.options)}), got {len(weights)}")
        for i, v in enumerate(weights):
            check_positive(v, f"weights[{i}]", allow_zero=True)
        if sum(weights) <= 0:
            raise ValueError(f"weights must have a positive sum, got {weights}")
        self.weights = tuple(v / sum(weights) for v in weights)

    def __call__(self, x: torch.Tensor, generator: Generator = None) -> Any:
        b = x.shape[0]
        cdf = torch.tensor(self.weights).cumsum(0)  # on the host, like the choice: no device value is read
        u = _rand((b,), _host_generator(generator, salt=1), _HOST)
        choice = torch.searchsorted(cdf, u.clamp_max(float(cdf[-1]) - 1e-7), right=True)  # (B,) host
        counts = torch.bincount(choice, minlength=len(self.options)).tolist()
        if max(counts) == b:  # one option for the whole batch (always so for a batch of one)
            return self.options[counts.index(b)](x, generator)
        order = torch.argsort(choice, stable=True)  # the samples of option 0 first, each group in batch order
        x_sorted = x[order.to(x.device, non_blocking=True)]
        parts: list[tuple[torch.Tensor, ...]] = []
        start = 0
        for option, n in zip(self.options, counts):
            if n:
                out = option(x_sorted[start:start + n], generator)
                parts.append(out if isinstance(out, tuple) else (out,))
                start += n
        back = torch.argsort(order).to(x.device, non_blocking=True)  # sorted position of every sample
        outputs = [torch.cat(group)[back] for group in zip(*parts)]
        return tuple(outputs) if len(outputs) > 1 else outputs[0]

    def __repr__(self) -> str:
        inner = ", ".join(f"{w:.2f}: {o!r}" for o, w in zip(self.options, self.weights))
        return f"RandomChoice({inner})"


#: mask name -> weight in the default recipe (``paper_corruption``, ``corruption.mask_weights``)
MASK_WEIGHTS = {"perlin": 0.4, "blob": 0.3, "rectangle": 0.15, "line": 0.15, "crack": 0.0, "smooth": 0.0}
#: fill name -> weight in the default recipe (``corruption.fill_weights``)
FILL_WEIGHTS = {"patch": 0.3, "texture": 0.25, "noise": 0.15, "elastic": 0.15, "color": 0.15}


def paper_corruption(*, image_size: int | Sequence[int], channels: int = 3, texture_bank: torch.Tensor | None = None,
                     clean_fraction: float = 0.1, opacity: tuple[float, float] = (0.5, 1.0),
                     mask_weights: Mapping[str, float] | None = None, fill_weights: Mapping[str, float] | None = None,
                     patch_bank: torch.Tensor | None = None, noise_sigma: float = 0.0, shade_weight: float = 0.0,
                     seed: int = 0) -> MaskedCorruption | RandomChoice:
    """The default training corruption (T6): a random mask × a random fill, blended with a random opacity.

    Masks (``mask_weights``, default :data:`MASK_WEIGHTS`): perlin 0.4, blob 0.3, rectangle 0.15, line 0.15,
    crack 0, smooth 0. Fills (``fill_weights``, default :data:`FILL_WEIGHTS`): patch of another image 0.3, texture 0.25,
    noise 0.15, elastic 0.15, color shift 0.15. Weights are relative and given by name, e.g.
    ``mask_weights={"crack": 0.25}``; a name left out keeps its default weight, a zero weight removes the option.
    ``clean_fraction`` of the samples stay uncorrupted (mask 0). The texture bank (given, or 64 textures made
    with ``seed``) is prepared at ``image_size`` × ``channels``. ``patch_bank`` (N, C, H, W): the normal images the
    patch fill copies from (training passes some of its training images, so a sample's patch comes from another
    normal image whatever batch it is in); None copies from the batch (a batch of one: from the image itself).
    ``noise_sigma`` > 0 adds Gaussian noise of that standard deviation to every input after the blend (the
    Filtering Autoencoder's occlusion plus noise, :class:`~manifold_ae.corruptions.base.MaskedCorruption`).
    ``shade_weight`` > 0: that fraction of the samples get a shading corruption instead (a :class:`SmoothMask` of
    peak 0.5-1 × :class:`ShadeFill`, same opacity, clean fraction and noise), and the result is a
    :class:`RandomChoice` of the two; 0 returns the recipe's :class:`MaskedCorruption` with the random draws of
    earlier versions.
    """
    h, w = as_hw(image_size, "image_size")
    if channels not in (1, 3):
        raise ValueError(f"channels must be one of [1, 3], got {channels!r}")
    mask_weights = recipe_weights(mask_weights, MASK_WEIGHTS, "mask_weights")
    fill_weights = recipe_weights(fill_weights, FILL_WEIGHTS, "fill_weights")
    textures = TextureFill(texture_bank, seed=seed)
    textures.source(channels, h, w)  # build the bank now, not inside the first training step
    masks = {"perlin": PerlinMask(), "blob": BlobMask(), "rectangle": RectangleMask(), "line": LineMask(),
             "crack": CrackMask(), "smooth": SmoothMask()}
    fills = {"patch": PatchFill(bank=patch_bank), "texture": textures, "noise": NoiseFill(), "elastic": ElasticFill(),
             "color": ColorShiftFill()}
    mask = RandomChoice([masks[k] for k, v in mask_weights.items() if v > 0],
                        weights=[v for v in mask_weights.values() if v > 0])
    fill = RandomChoice([fills[k] for k, v in fill_weights.items() if v > 0],
                        weights=[v for v in fill_weights.values() if v > 0])
    recipe = MaskedCorruption(mask, fill, opacity=opacity, clean_fraction=clean_fraction, noise_sigma=noise_sigma)
    shade_weight = check_fraction(shade_weight, "shade_weight")
    if shade_weight == 0:
        return recipe
    shade = MaskedCorruption(SmoothMask(amplitude=(0.5, 1.0)), ShadeFill(), opacity=opacity,
                             clean_fraction=clean_fraction, noise_sigma=noise_sigma)
    return RandomChoice([recipe, shade], weights=[1 - shade_weight, shade_weight])


def recipe_weights(weights: Mapping[str, float] | None, default: Mapping[str, float], name: str) -> dict[str, float]:
    """``weights`` by option name, completed with ``default`` (None: the default weights), in ``default``'s order.

    Raises ValueError naming ``name`` for a non-mapping, an unknown option name (with the closest known one), a
    negative or non-finite weight, or weights that sum to zero.
    """
    if weights is None:
        return dict(default)
    if not isinstance(weights, Mapping):
        raise ValueError(f"{name} must be a mapping {{option name: weight}} over {list(default)} (a name left out "
                         f"keeps its default weight), got {weights!r}")
    unknown = [k for k in weights if k not in default]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), list(default), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{name}: unknown option name(s) {unknown}; expected some of {list(default)}{hint}")
    out = {k: weights.get(k, v) for k, v in default.items()}
    for k, v in out.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{name}[{k!r}] must be a finite weight >= 0, got {v!r}")
    if sum(out.values()) <= 0:
        raise ValueError(f"{name} must have a positive sum, got {out!r}")
    return {k: float(v) for k, v in out.items()}
