"""MVTec AD (Bergmann et al., CVPR 2019) and any dataset in its layout, e.g. the built-in synthetic one.

Layout, exactly as published (MVTec AD is never downloaded or shipped: point ``root`` at your copy)::

    <root>/<category>/train/good/*.png
    <root>/<category>/test/good/*.png
    <root>/<category>/test/<defect>/*.png
    <root>/<category>/ground_truth/<defect>/<stem>_mask.png

The whole index is built and checked when the dataset is created: a missing category, split or ground-truth
folder, an empty folder, a stray file and a defect image without its mask each raise ``ValueError`` naming
the path and what was expected. Nothing is skipped (inside ``data.io.collect_problems`` a defect image without
its mask is recorded and left out instead, so that a dataset check lists every such image).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from manifold_ae.checks import check_choice
from manifold_ae.images.data.io import ImageDataset, Sample, category_dir, list_images, missing_mask, require_dir

__all__ = ["CATEGORIES", "SPLITS", "MVTecAD", "mvtec_like", "index_mvtec"]

CATEGORIES: tuple[str, ...] = ("bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather",
                               "metal_nut", "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper")
SPLITS: tuple[str, ...] = ("train", "test")
PathLike = str | os.PathLike


def index_mvtec(root: PathLike, category: str, *, split: str = "train") -> list[Sample]:
    """List the samples of ``<root>/<category>/<split>`` in MVTec layout, checking every file is accounted for.

    Returns normal images first (sorted by name), then each defect folder in name order.
    """
    check_choice(split, "split", SPLITS)
    root = require_dir(root, "a dataset root in MVTec AD layout holding <category>/train/good, "
                             "<category>/test/<defect> and <category>/ground_truth/<defect>")
    cat_dir = category_dir(root, category, layout=f"<root>/{category}/ with train/ and test/")
    if split == "train":
        good = require_dir(cat_dir / "train" / "good", "the normal training images (<category>/train/good/*.png)")
        return [Sample(p, None, 0, "good") for p in list_images(good, what="normal training images")]

    test_dir = require_dir(cat_dir / "test", "the test split (<category>/test/good and <category>/test/<defect>)")
    defects = []
    for entry in sorted(test_dir.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            raise ValueError(f"unexpected file {entry} in {test_dir}; expected only folders good/ and <defect>/")
        defects.append(entry.name)
    if "good" not in defects:
        raise ValueError(f"{test_dir / 'good'} does not exist; expected the normal test images "
                         f"(<category>/test/good/*.png)")
    samples = [Sample(p, None, 0, "good") for p in list_images(test_dir / "good", what="normal test images")]
    for defect in defects:
        if defect == "good":
            continue
        images = list_images(test_dir / defect, what=f"test images of defect {defect!r}")
        gt_dir = require_dir(cat_dir / "ground_truth" / defect,
                             f"the masks of defect {defect!r} (<category>/ground_truth/{defect}/<stem>_mask.png)")
        for image in images:
            mask = gt_dir / f"{image.stem}_mask.png"
            if not mask.is_file():
                missing_mask(image, mask, hint="MVTec layout: ground_truth/<defect>/<stem>_mask.png")
                continue
            samples.append(Sample(image, mask, 1, defect))
    return samples


class MVTecAD(ImageDataset):
    """One category of MVTec AD (or of any dataset in its layout with ``any_category=True``).

    Parameters
    ----------
    root : str or PathLike
        Folder holding the category folders.
    category : str
        One of :data:`CATEGORIES` (any folder name with ``any_category=True``).
    split : {"train", "test"}
        ``train`` = train/good (label 0); ``test`` = test/good (label 0) and every test/<defect> (label 1).
    image_size : int or (H, W), default 256
    channels : {1, 3}, default 3
        Gray categories (grid, screw, zipper) are repeated to RGB when ``channels=3``.
    resize_mode : {"stretch", "pad"}, default "stretch"
    any_category : bool, default False
        Accept category names outside :data:`CATEGORIES` (MVTec-like trees).
    cache : bool, default False
        Keep decoded items in memory.

    Items are dicts ``{"image": (C, H, W), "mask": (1, H, W), "label", "defect", "path"}``.
    """

    def __init__(self, root: PathLike, category: str, *, split: str = "train",
                 image_size: int | Sequence[int] = 256, channels: int = 3, resize_mode: str = "stretch",
                 any_category: bool = False, cache: bool = False) -> None:
        if not any_category and category not in CATEGORIES:
            raise ValueError(f"category must be one of the MVTec AD categories {list(CATEGORIES)}, got {category!r} "
                             "(pass any_category=True, or use mvtec_like, for other trees in this layout)")
        samples = index_mvtec(root, category, split=split)
        super().__init__(samples, image_size=image_size, channels=channels, resize_mode=resize_mode, cache=cache)
        self.root = Path(root)
        self.category = category
        self.split = split


def mvtec_like(root: PathLike, category: str, *, split: str = "train", image_size: int | Sequence[int] = 256,
               channels: int = 3, resize_mode: str = "stretch", cache: bool = False) -> MVTecAD:
    """:class:`MVTecAD` for any tree in MVTec layout (category names unrestricted), e.g. the synthetic dataset."""
    return MVTecAD(root, category, split=split, image_size=image_size, channels=channels, resize_mode=resize_mode,
                   any_category=True, cache=cache)
