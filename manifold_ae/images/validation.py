"""Model selection without the test set: held-out normal images plus synthetic defects (T8).

Options such as the training corruption, the skip layout or the score smoothing must not be chosen on the
test set. :class:`SyntheticDefects` builds a labelled validation set from the *held-out normal training
images* alone: every image appears once as it is (good) and once per defect kind with a small, fixed,
seeded defect pasted in, with its exact mask. ``manifold-ae evaluate RUN --synthetic`` scores a run on it
with the same pipeline and metrics as the test set.

The defects are deliberately simple and were fixed before the models they choose between were compared on
them (docs/results.md):

``synthetic_blob``        one or two small blobs (radius 1.5-4 % of the side), darkened or brightened
                          (brightness ±0.08..0.25 with a contrast change) at opacity 0.6-1
``synthetic_line``        one thin straight line (width 0.8-1.5 %, length 10-40 % of the side), same shift
``synthetic_faint_line``  the same line, only darkened and faintly (brightness -0.12..-0.04, opacity 0.5-1):
                          the low-contrast case, like hairline cracks that resemble normal texture
"""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from manifold_ae.corruptions.base import MaskedCorruption
from manifold_ae.corruptions.image import BlobMask, ColorShiftFill, LineMask, RandomChoice

__all__ = ["DEFECT_KINDS", "validation_corruption", "SyntheticDefects", "validation_set"]

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
}


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
            images.append(corrupted)
            masks.append(mask)
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


def validation_set(holdout: Dataset | None, *, split_seed: int) -> SyntheticDefects:
    """The validation set of a run: its held-out normal images (``Splits.holdout``) with synthetic defects,
    seeded by the run's ``data.split_seed`` (the same set for ``evaluate --synthetic`` and ``compare``)."""
    if holdout is None or len(holdout) == 0:  # type: ignore[arg-type]
        raise ValueError("the synthetic validation set needs held-out normal images; set data.holdout_fraction "
                         "> 0")
    return SyntheticDefects(holdout, seed=split_seed + 1)
