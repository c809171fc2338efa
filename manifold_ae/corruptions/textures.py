"""Procedural and bundled textures as torch tensors, seeded by an explicit ``torch.Generator``.

Shared by the built-in synthetic dataset (normal images, ``data/synthetic.py``) and the training corruptions
(``TextureFill``, ``PerlinMask``, ``ElasticFill`` in ``corruptions/image.py``). Everything returns float tensors
in [0, 1] (noise in [-1, 1]) of shape (B, C, H, W) or (B, H, W), computed on ``device``; random numbers are drawn
on the generator's device and moved, so a CPU generator gives the same textures on every device.

Textures
--------
``weave``  woven fabric (over-under threads)   ``wood``    growth rings around a far-away centre
``marble`` veined fractal noise                ``grid``    a regular mesh of dark wires on a metal ground
``brick``, ``grass``, ``gravel``  random crops of scikit-image's bundled CC0 photographs (``skimage.data``)
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from manifold_ae.checks import check_choice, check_int, check_positive
from manifold_ae.rng import rand, randperm

__all__ = ["TEXTURES", "SKIMAGE_TEXTURES", "perlin_noise", "fractal_noise", "colorize",
           "weave", "wood", "marble", "grid", "skimage_texture", "make_texture", "texture_bank"]

SKIMAGE_TEXTURES: tuple[str, ...] = ("brick", "grass", "gravel")

Device = torch.device | str | None


def _rand(shape: Sequence[int], generator: torch.Generator | None, device: Device) -> torch.Tensor:
    """Uniform [0, 1) numbers drawn on the generator's device, returned on ``device`` (float32)."""
    return rand(shape, generator=generator, device=device)


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return check_int(value, name, minimum=1), check_int(value, name, minimum=1)
    if isinstance(value, Sequence) and len(value) == 2:
        return check_int(value[0], f"{name}[0]", minimum=1), check_int(value[1], f"{name}[1]", minimum=1)
    raise ValueError(f"{name} must be a positive int or a pair (rows, cols) of positive ints, got {value!r}")


def perlin_noise(batch: int, height: int, width: int, *, cells: int | Sequence[int] = 4,
                 generator: torch.Generator | None = None, device: Device = None) -> torch.Tensor:
    """Classic gradient (Perlin) noise on a grid of ``cells`` = (rows, cols) lattice cells.

    Returns
    -------
    noise : (batch, height, width) float32 tensor in [-1, 1] (the 2-D Perlin range ±√2/2, rescaled by √2).
    """
    cy, cx = _pair(cells, "cells")
    angles = 2 * math.pi * _rand((batch, cy + 1, cx + 1), generator, device)  # (B, cy+1, cx+1)
    gy, gx = torch.sin(angles), torch.cos(angles)
    # pixel centres in lattice units: never all on lattice points, where the noise vanishes
    y = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) * (cy / height)  # (H,)
    x = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) * (cx / width)  # (W,)
    y0, x0 = y.floor().long(), x.floor().long()
    fy, fx = y - y0, x - x0  # (H,), (W,) position inside the cell

    def corner(dy: int, dx: int) -> torch.Tensor:
        iy, ix = y0 + dy, x0 + dx
        g_y = gy[:, iy][:, :, ix]  # (B, H, W)
        g_x = gx[:, iy][:, :, ix]
        return g_y * (fy - dy)[None, :, None] + g_x * (fx - dx)[None, None, :]

    def fade(t: torch.Tensor) -> torch.Tensor:
        return t * t * t * (t * (t * 6 - 15) + 10)

    u = fade(fx)[None, None, :]  # (1, 1, W)
    v = fade(fy)[None, :, None]  # (1, H, 1)
    n0 = torch.lerp(corner(0, 0), corner(0, 1), u)
    n1 = torch.lerp(corner(1, 0), corner(1, 1), u)
    return (torch.lerp(n0, n1, v) * math.sqrt(2.0)).clamp(-1.0, 1.0)  # (B, H, W)


def fractal_noise(batch: int, height: int, width: int, *, cells: int | Sequence[int] = 4, octaves: int = 4,
                  persistence: float = 0.5, generator: torch.Generator | None = None,
                  device: Device = None) -> torch.Tensor:
    """Sum of ``octaves`` Perlin layers with doubling frequency and amplitude ``persistence**k``.

    Returns
    -------
    noise : (batch, height, width) float32 tensor in [-1, 1].
    """
    cy, cx = _pair(cells, "cells")
    check_int(octaves, "octaves", minimum=1)
    check_positive(persistence, "persistence")
    total = torch.zeros(batch, height, width, device=device)
    norm = 0.0
    for k in range(octaves):
        amp = persistence ** k
        total = total + amp * perlin_noise(batch, height, width, cells=(cy * 2 ** k, cx * 2 ** k),
                                           generator=generator, device=device)
        norm += amp
    return total / norm


def colorize(gray: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Map gray values (B, H, W) in [0, 1] linearly between colours ``low`` and ``high`` (B, 3) → (B, 3, H, W)."""
    return (low[:, :, None, None] + gray[:, None] * (high - low)[:, :, None, None]).clamp(0.0, 1.0)


def _coords(batch: int, height: int, width: int, generator: torch.Generator | None,
            device: Device) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates (B, H, W) with a random per-sample translation (so every sample is a new crop)."""
    shift = 1000 * _rand((batch, 2), generator, device)  # (B, 2)
    yy = torch.arange(height, device=device, dtype=torch.float32)[None, :, None] + shift[:, 0, None, None]
    xx = torch.arange(width, device=device, dtype=torch.float32)[None, None, :] + shift[:, 1, None, None]
    return yy.expand(batch, height, width), xx.expand(batch, height, width)


def _palette(batch: int, base: Sequence[float], spread: float, generator: torch.Generator | None,
             device: Device) -> torch.Tensor:
    """Colours (B, 3) near ``base`` with uniform jitter ±``spread`` (small brightness/tint variation)."""
    b = torch.tensor(base, device=device, dtype=torch.float32)[None]
    return (b + spread * (2 * _rand((batch, 3), generator, device) - 1)).clamp(0.0, 1.0)


def weave(batch: int, height: int, width: int, *, period: float = 8.0, generator: torch.Generator | None = None,
          device: Device = None) -> torch.Tensor:
    """Woven fabric: warp and weft threads of width ``period`` px passing over and under each other.

    Returns (batch, 3, height, width) in [0, 1].
    """
    yy, xx = _coords(batch, height, width, generator, device)
    u, v = xx / period, yy / period  # thread coordinates
    over = ((u.floor() + v.floor()) % 2 == 0)  # (B, H, W): weft on top in half of the cells
    across_weft = torch.sin(math.pi * (v - v.floor())).clamp_min(0) ** 0.6  # bright thread centre
    across_warp = torch.sin(math.pi * (u - u.floor())).clamp_min(0) ** 0.6
    along = 0.75 + 0.25 * torch.sin(math.pi * torch.where(over, u - u.floor(), v - v.floor()))
    gray = torch.where(over, across_weft, across_warp) * along
    fibre = fractal_noise(batch, height, width, cells=(max(1, height // 16), max(1, width // 16)), octaves=2,
                          generator=generator, device=device)
    gray = (0.15 + 0.75 * gray + 0.06 * fibre).clamp(0.0, 1.0)
    low = _palette(batch, (0.10, 0.12, 0.22), 0.03, generator, device)
    high = _palette(batch, (0.55, 0.62, 0.85), 0.04, generator, device)
    return colorize(gray, low, high)


def wood(batch: int, height: int, width: int, *, rings: float = 12.0, generator: torch.Generator | None = None,
         device: Device = None) -> torch.Tensor:
    """Wood grain: growth rings around a centre far outside the image, bent by smooth noise.

    ``rings`` is the number of rings across the shorter side. Returns (batch, 3, height, width) in [0, 1].
    """
    size = float(min(height, width))
    angle = 2 * math.pi * _rand((batch,), generator, device)
    dist = size * (1.5 + 1.5 * _rand((batch,), generator, device))  # centre 1.5–3 image sizes away
    cy = height / 2 + dist * torch.sin(angle)
    cx = width / 2 + dist * torch.cos(angle)
    yy = torch.arange(height, device=device, dtype=torch.float32)[None, :, None] - cy[:, None, None]
    xx = torch.arange(width, device=device, dtype=torch.float32)[None, None, :] - cx[:, None, None]
    radius = torch.sqrt(yy ** 2 + xx ** 2) / size * rings  # (B, H, W) in rings
    bend = fractal_noise(batch, height, width, cells=2, octaves=3, generator=generator, device=device)
    phase = radius + 0.8 * bend
    ring = (phase - phase.floor()) ** 3  # sharp late-wood edge, slow early-wood ramp
    grain = fractal_noise(batch, height, width, cells=(max(1, height // 4), 2), octaves=2, generator=generator,
                          device=device)
    gray = (0.25 + 0.55 * ring + 0.08 * grain).clamp(0.0, 1.0)
    low = _palette(batch, (0.45, 0.27, 0.12), 0.04, generator, device)
    high = _palette(batch, (0.85, 0.65, 0.42), 0.04, generator, device)
    return colorize(gray, low, high)


def marble(batch: int, height: int, width: int, *, veins: float = 3.0, generator: torch.Generator | None = None,
           device: Device = None) -> torch.Tensor:
    """Marble: sinusoidal veins distorted by fractal noise. Returns (batch, 3, height, width) in [0, 1]."""
    _, xx = _coords(batch, height, width, generator, device)
    turb = fractal_noise(batch, height, width, cells=3, octaves=5, generator=generator, device=device)
    s = torch.sin(2 * math.pi * (veins * xx / width + 1.5 * turb))
    gray = (0.35 + 0.6 * (1 - s.abs()) ** 0.5).clamp(0.0, 1.0)
    low = _palette(batch, (0.35, 0.35, 0.38), 0.03, generator, device)
    high = _palette(batch, (0.92, 0.90, 0.86), 0.03, generator, device)
    return colorize(gray, low, high)


def grid(batch: int, height: int, width: int, *, period: float = 12.0, generator: torch.Generator | None = None,
         device: Device = None) -> torch.Tensor:
    """A mesh of dark wires (period ``period`` px) over brushed metal. Returns (batch, 3, height, width) in [0, 1]."""
    yy, xx = _coords(batch, height, width, generator, device)
    dy = ((yy / period) - (yy / period).round()).abs() * period  # px from the nearest wire
    dx = ((xx / period) - (xx / period).round()).abs() * period
    wire = torch.exp(-0.5 * (torch.minimum(dy, dx) / 1.2) ** 2)
    brushed = fractal_noise(batch, height, width, cells=(max(1, height // 2), 2), octaves=2, generator=generator,
                            device=device)
    gray = (0.7 + 0.08 * brushed - 0.55 * wire).clamp(0.0, 1.0)
    low = _palette(batch, (0.05, 0.05, 0.06), 0.02, generator, device)
    high = _palette(batch, (0.85, 0.85, 0.82), 0.03, generator, device)
    return colorize(gray, low, high)


@lru_cache(maxsize=None)
def _skimage_gray(name: str) -> torch.Tensor:
    """The bundled scikit-image photograph ``name`` as (H, W) float32 in [0, 1] (loaded once per process)."""
    from skimage import data as skdata  # local import: scikit-image is only needed when textures are made

    img = np.asarray(getattr(skdata, name)(), dtype=np.float32)
    if img.ndim == 3:
        img = img[..., :3].mean(axis=-1)
    return torch.from_numpy(img / 255.0)


_SKIMAGE_PALETTES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "brick": ((0.20, 0.08, 0.05), (0.95, 0.62, 0.48)),
    "grass": ((0.03, 0.12, 0.02), (0.62, 0.90, 0.35)),
    "gravel": ((0.10, 0.09, 0.08), (0.92, 0.88, 0.80)),
}


def skimage_texture(name: str, batch: int, height: int, width: int, *, crop_fraction: float = 0.5,
                    generator: torch.Generator | None = None, device: Device = None) -> torch.Tensor:
    """Random crops of a bundled scikit-image texture (``brick``, ``grass``, ``gravel``; CC0).

    Each sample takes a crop of ``crop_fraction`` of the source side (512 px) at a random position, a random
    horizontal/vertical flip, a small brightness/contrast jitter and the texture's colour palette, resized to
    (height, width) with antialiased bilinear interpolation. Returns (batch, 3, height, width) in [0, 1].
    """
    check_choice(name, "name", SKIMAGE_TEXTURES)
    src = _skimage_gray(name).to(device)  # (S, S)
    side = max(8, int(round(crop_fraction * min(src.shape))))
    ch = min(src.shape[0], max(8, int(round(side * height / max(height, width)))))
    cw = min(src.shape[1], max(8, int(round(side * width / max(height, width)))))
    top = (_rand((batch,), generator, device) * (src.shape[0] - ch + 1)).long().clamp_max(src.shape[0] - ch)
    left = (_rand((batch,), generator, device) * (src.shape[1] - cw + 1)).long().clamp_max(src.shape[1] - cw)
    rows = top[:, None] + torch.arange(ch, device=device)[None]  # (B, ch)
    cols = left[:, None] + torch.arange(cw, device=device)[None]  # (B, cw)
    crops = src[rows[:, :, None], cols[:, None, :]]  # (B, ch, cw)
    flips = _rand((batch, 2), generator, device) < 0.5
    crops = torch.where(flips[:, 0, None, None], crops.flip(1), crops)
    crops = torch.where(flips[:, 1, None, None], crops.flip(2), crops)
    crops = F.interpolate(crops[:, None], size=(height, width), mode="bilinear", align_corners=False,
                          antialias=True)[:, 0]  # (B, H, W)
    gain = 1 + 0.08 * (2 * _rand((batch, 1, 1), generator, device) - 1)
    offset = 0.04 * (2 * _rand((batch, 1, 1), generator, device) - 1)
    gray = ((crops - 0.5) * gain + 0.5 + offset).clamp(0.0, 1.0)
    low, high = _SKIMAGE_PALETTES[name]
    return colorize(gray, _palette(batch, low, 0.02, generator, device), _palette(batch, high, 0.02, generator, device))


_PROCEDURAL: dict[str, Callable[..., torch.Tensor]] = {"weave": weave, "wood": wood, "marble": marble, "grid": grid}
TEXTURES: tuple[str, ...] = tuple(_PROCEDURAL) + SKIMAGE_TEXTURES


def make_texture(name: str, batch: int, height: int, width: int, *, generator: torch.Generator | None = None,
                 device: Device = None) -> torch.Tensor:
    """Any texture of :data:`TEXTURES` by name. Returns (batch, 3, height, width) float32 in [0, 1]."""
    check_choice(name, "name", TEXTURES)
    check_int(batch, "batch", minimum=1)
    check_int(height, "height", minimum=2)
    check_int(width, "width", minimum=2)
    if name in _PROCEDURAL:
        return _PROCEDURAL[name](batch, height, width, generator=generator, device=device)
    return skimage_texture(name, batch, height, width, generator=generator, device=device)


def texture_bank(count: int, height: int, width: int, *, names: Sequence[str] | None = None, channels: int = 3,
                 generator: torch.Generator | None = None, device: Device = None) -> torch.Tensor:
    """``count`` textures cycling through ``names`` (default: all of :data:`TEXTURES`), random hue per sample.

    Used as the default source of ``TextureFill``; the random channel permutation and gain make the bank's
    colours unlike any one category's palette. Returns (count, channels, height, width) float32 in [0, 1].
    """
    check_int(count, "count", minimum=1)
    check_choice(channels, "channels", (1, 3))
    names = tuple(TEXTURES if names is None else names)
    if not names:
        raise ValueError("names must list at least one texture of TEXTURES, got an empty sequence")
    parts = []
    for i, name in enumerate(names):
        n = len(range(i, count, len(names)))
        if n:
            parts.append(make_texture(name, n, height, width, generator=generator, device=device))
    bank = torch.cat(parts)  # (count, 3, H, W), grouped by texture
    perm = torch.stack([randperm(3, generator=generator, device=bank.device) for _ in range(count)])  # (count, 3)
    bank = torch.gather(bank, 1, perm[:, :, None, None].expand_as(bank))
    if channels == 1:
        bank = (0.299 * bank[:, 0] + 0.587 * bank[:, 1] + 0.114 * bank[:, 2])[:, None]
    return bank.contiguous()
