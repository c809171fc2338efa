"""Model selection without the test set: held-out normal images plus synthetic defects (T8).

Options such as the training corruption, the skip layout or the score smoothing must not be chosen on the
test set. :class:`SyntheticDefects` builds a labelled validation set from the *held-out normal training
images* alone: every image appears once as it is (good) and once per defect kind with a small, fixed,
seeded defect pasted in, with its exact mask. ``manifold-ae evaluate RUN --synthetic`` scores a run on it
with the same pipeline and metrics as the test set.

The defects are deliberately simple and were fixed before the models they choose between were compared on
them (docs/results.md). Small and thin defects, the kinds the first presets were chosen on:

``synthetic_blob``        one or two small blobs (radius 1.5-4 % of the side), darkened or brightened
                          (brightness ±0.08..0.25 with a contrast change) at opacity 0.6-1
``synthetic_line``        one thin straight line (width 0.8-1.5 %, length 10-40 % of the side), same shift
``synthetic_faint_line``  the same line, only darkened and faintly (brightness -0.12..-0.04, opacity 0.5-1):
                          the low-contrast case, like hairline cracks that resemble normal texture

Large, faint and edge defects, unlike any training corruption in shape or placement (:class:`EllipseShade`,
:class:`BorderChip` and :class:`FrayedBorder` are used nowhere else):

``synthetic_uneven``      one large soft ellipse (semi-axes 20-45 % of the side, a Gaussian falloff) whose
                          intensity gain (×0.75..0.92 or ×1.08..1.25) or local contrast (×0.5..0.75 or
                          ×1.3..1.6) changes, at opacity 0.5-1: a quarter of a tile shaded or textured differently
``synthetic_break``       a chip out of a corner or an edge (a rough disc of radius 8-20 % of the side centred on
                          the border), filled with dark background (level 0-0.12 plus noise), opacity 1
``synthetic_fray``        a band along one side (depth 2-7 % of the side, varying along it, over 30-100 % of its
                          length), darkened ×0.45..0.8 with noise, at opacity 0.6-1

A soft mask (``synthetic_uneven``) is labelled defective where it reaches half its peak.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.data import Dataset

from manifold_ae.corruptions.base import MaskedCorruption
from manifold_ae.corruptions.image import BlobMask, ColorShiftFill, LineMask, RandomChoice
from manifold_ae.corruptions.textures import perlin_noise
from manifold_ae.rng import rand, randn

__all__ = ["DEFECT_KINDS", "SMALL_KINDS", "LARGE_KINDS", "EllipseShade", "BorderChip", "FrayedBorder",
           "GainFill", "DarkFill", "validation_corruption", "SyntheticDefects", "validation_set"]


def _uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator | None,
             like: torch.Tensor) -> torch.Tensor:
    return low + (high - low) * rand(shape, generator=generator, device=like.device, dtype=like.dtype)


def _signed(shape: tuple[int, ...], interval: tuple[float, float], generator: torch.Generator | None,
            like: torch.Tensor) -> torch.Tensor:
    """Magnitudes uniform in ``interval`` with a random sign: (shape)."""
    magnitude = _uniform(shape, interval[0], interval[1], generator, like)
    sign = torch.where(rand(shape, generator=generator, device=like.device) < 0.5, -1.0, 1.0).to(like.dtype)
    return sign * magnitude


def _grid(h: int, w: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates in units of the image side: (H, 1) rows and (1, W) columns in (0, 1)."""
    yy = (torch.arange(h, device=like.device, dtype=like.dtype) + 0.5)[:, None] / h
    xx = (torch.arange(w, device=like.device, dtype=like.dtype) + 0.5)[None, :] / w
    return yy, xx


class EllipseShade:
    """One large soft ellipse per image: ``exp(−ρ² / 2)`` of its normalised radius ρ, scaled so that ρ = 1 (the
    semi-axes, ``axes`` × the side) is the half-peak level. Returns (B, 1, H, W) in (0, 1]."""

    def __init__(self, *, axes: tuple[float, float] = (0.2, 0.45)) -> None:
        self.axes = axes

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b, _, h, w = x.shape
        cy = _uniform((b, 1, 1), 0.25, 0.75, generator, x)
        cx = _uniform((b, 1, 1), 0.25, 0.75, generator, x)
        ay = _uniform((b, 1, 1), *self.axes, generator, x)
        ax = _uniform((b, 1, 1), *self.axes, generator, x)
        angle = _uniform((b, 1, 1), 0.0, torch.pi, generator, x)
        yy, xx = _grid(h, w, x)
        dy, dx = yy - cy, xx - cx  # (B, H, W)
        u = (dy * torch.cos(angle) + dx * torch.sin(angle)) / ay
        v = (-dy * torch.sin(angle) + dx * torch.cos(angle)) / ax
        return torch.exp(-(u ** 2 + v ** 2) * math.log(2.0))[:, None]  # 1/2 on the ellipse ρ = 1


class BorderChip:
    """A chip out of the border: a disc of radius ``radius`` × the side, centred on a corner (half the draws) or a
    random point of an edge, with an edge roughened by Perlin noise. Returns (B, 1, H, W) in {0, 1}, never empty."""

    def __init__(self, *, radius: tuple[float, float] = (0.08, 0.2), roughness: float = 0.25) -> None:
        self.radius, self.roughness = radius, roughness

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b, _, h, w = x.shape
        side = rand((b,), generator=generator, device=x.device).mul(4).floor().clamp_max(3)  # 0 top .. 3 left
        along = rand((b,), generator=generator, device=x.device)
        corner = rand((b,), generator=generator, device=x.device) < 0.5
        along = torch.where(corner, along.round(), along)  # a corner: the end of that edge
        cy = torch.where(side == 0, 0.0, torch.where(side == 2, 1.0, along))
        cx = torch.where(side == 3, 0.0, torch.where(side == 1, 1.0, along))
        r = _uniform((b,), *self.radius, generator, x)
        yy, xx = _grid(h, w, x)
        d = ((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2).sqrt()  # (B, H, W)
        edge = 1 + self.roughness * perlin_noise(b, h, w, cells=6, generator=generator, device=x.device)
        mask = d < r[:, None, None] * edge
        iy = (cy * (h - 1)).round().long()
        ix = (cx * (w - 1)).round().long()
        mask[torch.arange(b, device=x.device), iy, ix] = True
        return mask[:, None].to(x.dtype)


class FrayedBorder:
    """A band along one side whose depth (``depth`` × the side) varies along it with 1-D Perlin noise, over a
    stretch of ``extent`` × the side's length. Returns (B, 1, H, W) in {0, 1}, never empty."""

    def __init__(self, *, depth: tuple[float, float] = (0.02, 0.07), extent: tuple[float, float] = (0.3, 1.0)) -> None:
        self.depth, self.extent = depth, extent

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b, _, h, w = x.shape
        n = max(h, w)
        side = rand((b,), generator=generator, device=x.device).mul(4).floor().clamp_max(3).long()
        depth = _uniform((b, 1), *self.depth, generator, x)
        wiggle = perlin_noise(b, 1, n, cells=(1, 12), generator=generator, device=x.device)[:, 0]  # (B, n)
        profile = depth * (0.35 + 0.65 * wiggle.abs()) * 2 ** 0.5  # (B, n) local depth in side units
        length = _uniform((b, 1), *self.extent, generator, x)
        start = _uniform((b, 1), 0.0, 1.0, generator, x) * (1 - length)
        t = (torch.arange(n, device=x.device, dtype=x.dtype) + 0.5)[None] / n  # (1, n)
        profile = torch.where((t >= start) & (t <= start + length), profile, torch.zeros_like(profile))
        yy, xx = _grid(h, w, x)
        masks = []
        for i in range(b):
            k = int(side[i])
            distance = {0: yy, 2: 1 - yy, 3: xx, 1: 1 - xx}[k].expand(h, w)  # from that side, (H, W)
            position = (xx if k in (0, 2) else yy).expand(h, w)  # along it, in (0, 1)
            local = profile[i][(position * n).long().clamp(0, n - 1)]  # (H, W) depth at that position
            masks.append(distance < local)
        mask = torch.stack(masks)
        centre = (start + length / 2)[:, 0]
        for i in range(b):  # never empty: the border pixel at the middle of the stretch
            k, c = int(side[i]), float(centre[i])
            iy = {0: 0, 2: h - 1}.get(k, min(h - 1, int(c * h)))
            ix = {3: 0, 1: w - 1}.get(k, min(w - 1, int(c * w)))
            mask[i, iy, ix] = True
        return mask[:, None].to(x.dtype)


class GainFill:
    """The image itself with its intensity scaled by a gain ``1 ± gain`` per sample, clipped to [0, 1]."""

    def __init__(self, *, gain: tuple[float, float] = (0.08, 0.25)) -> None:
        self.gain = gain

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        g = 1 + _signed((x.shape[0], 1, 1, 1), self.gain, generator, x)
        return (x * g).clamp(0, 1)


class DarkFill:
    """Dark background: a level uniform in ``level`` plus Gaussian noise of ``noise``, clipped; or, with ``scale``,
    the image darkened by a factor uniform in ``scale`` plus that noise."""

    def __init__(self, *, level: tuple[float, float] | None = (0.0, 0.12), scale: tuple[float, float] | None = None,
                 noise: float = 0.02) -> None:
        self.level, self.scale, self.noise = level, scale, noise

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b = x.shape[0]
        if self.scale is not None:
            base = x * _uniform((b, 1, 1, 1), *self.scale, generator, x)
        else:
            base = _uniform((b, 1, 1, 1), *self.level, generator, x).expand_as(x)
        return (base + self.noise * randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)).clamp(0, 1)

def _line() -> LineMask:
    return LineMask(count=(1, 1), width=(0.008, 0.015), length=(0.1, 0.4))


def _shift() -> RandomChoice:
    darker = ColorShiftFill(brightness=(-0.25, -0.08), contrast=(0.5, 1.0), color=(0.0, 0.0))
    brighter = ColorShiftFill(brightness=(0.08, 0.25), contrast=(1.0, 1.5), color=(0.0, 0.0))
    return RandomChoice([darker, brighter])


#: defect name -> a function making its corruption (mask × fill × opacity)
DEFECT_KINDS = {
    "synthetic_blob": lambda: MaskedCorruption(BlobMask(count=(1, 2), radius=(0.015, 0.04)), _shift(),
                                               opacity=(0.6, 1.0)),
    "synthetic_line": lambda: MaskedCorruption(_line(), _shift(), opacity=(0.6, 1.0)),
    "synthetic_faint_line": lambda: MaskedCorruption(
        _line(), ColorShiftFill(brightness=(-0.12, -0.04), contrast=(0.7, 1.0), color=(0.0, 0.0)),
        opacity=(0.5, 1.0)),
    "synthetic_uneven": lambda: MaskedCorruption(
        EllipseShade(), RandomChoice([GainFill(), ColorShiftFill(brightness=(0.0, 0.0), contrast=(0.5, 0.75),
                                                                 color=(0.0, 0.0)),
                                      ColorShiftFill(brightness=(0.0, 0.0), contrast=(1.3, 1.6), color=(0.0, 0.0))],
                                     weights=[2, 1, 1]), opacity=(0.5, 1.0)),
    "synthetic_break": lambda: MaskedCorruption(BorderChip(), DarkFill(), opacity=(1.0, 1.0)),
    "synthetic_fray": lambda: MaskedCorruption(FrayedBorder(), DarkFill(level=None, scale=(0.45, 0.8), noise=0.05),
                                               opacity=(0.6, 1.0)),
}
#: the small and thin kinds the first presets were chosen on, and the large, faint and edge kinds
SMALL_KINDS = ("synthetic_blob", "synthetic_line", "synthetic_faint_line")
LARGE_KINDS = ("synthetic_uneven", "synthetic_break", "synthetic_fray")


def validation_corruption(kind: str) -> MaskedCorruption:
    """The corruption that pastes one synthetic defect of ``kind`` (a key of :data:`DEFECT_KINDS`)."""
    if kind not in DEFECT_KINDS:
        raise ValueError(f"unknown synthetic defect kind {kind!r}; expected one of {sorted(DEFECT_KINDS)}")
    return DEFECT_KINDS[kind]()


class SyntheticDefects(Dataset):
    """Normal images (label 0) followed by one defective copy per image and defect kind (label 1).

    Parameters
    ----------
    normal : Dataset
        Items ``{"image": (C, H, W) in [0, 1], "path": ...}``: the held-out normal images of a run.
    kinds : sequence of str
        Defect kinds (keys of :data:`DEFECT_KINDS`), default all.
    seed : int
        Seeds the defects; the same seed gives the same validation set.

    Items have the test-set format: ``{"image", "mask" (1, H, W), "label", "defect", "path"}``. The defects are
    made once, when the dataset is built (``len(normal) * (1 + len(kinds))`` items in memory).
    """

    def __init__(self, normal: Dataset, *, kinds: tuple[str, ...] = tuple(DEFECT_KINDS), seed: int = 1) -> None:
        n = len(normal)  # type: ignore[arg-type]
        if n == 0:
            raise ValueError("SyntheticDefects needs at least one normal image, got an empty dataset")
        items = [normal[i] for i in range(n)]
        x = torch.stack([it["image"] for it in items])  # (N, C, H, W)
        paths = [str(it["path"]) for it in items]
        generator = torch.Generator().manual_seed(seed)
        images, masks, defects = [x], [torch.zeros_like(x[:, :1])], ["good"] * n
        for kind in kinds:
            corrupted, mask = validation_corruption(kind)(x, generator)
            peak = mask.amax(dim=(1, 2, 3), keepdim=True)  # (N, 1, 1, 1): a soft mask counts from half its peak
            images.append(corrupted.clamp(0, 1))
            masks.append((mask >= 0.5 * peak).to(x.dtype))
            defects += [kind] * n
        self.images = torch.cat(images)  # (N (1 + K), C, H, W)
        self.masks = torch.cat(masks)  # (N (1 + K), 1, H, W)
        self.defects = defects
        self.paths = paths + [f"{p}#{kind}" for kind in kinds for p in paths]

    def __len__(self) -> int:
        return len(self.defects)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self.images[index], "mask": self.masks[index], "label": int(self.defects[index] != "good"),
                "defect": self.defects[index], "path": self.paths[index]}


def validation_set(holdout: Dataset | None, *, split_seed: int, seed: int | None = None) -> SyntheticDefects:
    """The validation set of a run: its held-out normal images (``Splits.holdout``) with synthetic defects,
    seeded by the run's ``data.split_seed`` (the same set for ``evaluate --synthetic`` and ``compare``), or by
    ``seed`` when given (other draws of the same defect kinds, to check that a ranking does not hang on one)."""
    if holdout is None or len(holdout) == 0:  # type: ignore[arg-type]
        raise ValueError("the synthetic validation set needs held-out normal images; set data.holdout_fraction "
                         "> 0")
    return SyntheticDefects(holdout, seed=split_seed + 1 if seed is None else seed)
