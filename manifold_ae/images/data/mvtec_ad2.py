"""MVTec AD 2 (Heckler-Kram et al., 2025): eight objects with a validation split and a public test set.

Layout (as we know it from the release; MVTec AD 2 is never downloaded or shipped: point ``root`` at your copy)::

    <root>/<object>/train/good/*.png
    <root>/<object>/validation/good/*.png
    <root>/<object>/test_public/good/*.png
    <root>/<object>/test_public/bad/*.png
    <root>/<object>/test_public/ground_truth/bad/<stem>_mask.png

The private test sets (``test_private``, ``test_private_mixed``) have no public labels and are not indexed; score
them with ``manifold-ae predict``. As for MVTec AD, the index is built and checked when the dataset is created:
a missing object, split or ground-truth folder, an empty folder, a stray file and a bad image without its mask
each raise ``ValueError`` naming the path and what was expected (inside ``data.io.collect_problems`` a missing
mask is recorded and the image left out instead).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from manifold_ae.checks import check_choice
from manifold_ae.images.data.io import ImageDataset, Sample, category_dir, list_images, missing_mask, require_dir

__all__ = ["CATEGORIES", "SPLITS", "LAYOUT", "MVTecAD2", "index_mvtec_ad2"]

CATEGORIES: tuple[str, ...] = ("can", "fabric", "fruit_jelly", "rice", "sheet_metal", "vial", "wallplugs",
                               "walnuts")
#: ``test`` is ``test_public``, the one test set with public labels
SPLITS: tuple[str, ...] = ("train", "validation", "test")
LAYOUT = ("<root>/<object>/ with train/good/, validation/good/, test_public/good/, test_public/bad/ and "
          "test_public/ground_truth/bad/<stem>_mask.png (MVTec AD 2 layout)")
PathLike = str | os.PathLike


def index_mvtec_ad2(root: PathLike, category: str, *, split: str = "train") -> list[Sample]:
    """List the samples of one object's ``split`` in MVTec AD 2 layout, checking every file is accounted for.

    ``train`` = train/good and ``validation`` = validation/good (label 0); ``test`` = test_public/good (label 0)
    then test_public/bad (label 1, defect ``"bad"``), each sorted by name.
    """
    check_choice(split, "split", SPLITS)
    root = require_dir(root, f"a dataset root in MVTec AD 2 layout: {LAYOUT}")
    cat_dir = category_dir(root, category, layout=LAYOUT)
    if split in ("train", "validation"):
        good = require_dir(cat_dir / split / "good", f"the normal {split} images (<object>/{split}/good/*.png)")
        return [Sample(p, None, 0, "good") for p in list_images(good, what=f"normal {split} images")]

    test_dir = require_dir(cat_dir / "test_public", "the public test set (<object>/test_public/good, "
                                                    "test_public/bad and test_public/ground_truth/bad)")
    expected = ("bad", "good", "ground_truth")
    for entry in sorted(test_dir.iterdir()):
        if not entry.name.startswith(".") and (entry.name not in expected or not entry.is_dir()):
            raise ValueError(f"unexpected {'folder' if entry.is_dir() else 'file'} {entry} in {test_dir}; expected "
                             f"only the folders {list(expected)}")
    samples = [Sample(p, None, 0, "good") for p in list_images(test_dir / "good", what="normal test images")]
    bad = list_images(test_dir / "bad", what="anomalous test images (test_public/bad/*.png)")
    gt_dir = require_dir(test_dir / "ground_truth" / "bad",
                         "the masks of the bad test images (<object>/test_public/ground_truth/bad/<stem>_mask.png)")
    for image in bad:
        mask = gt_dir / f"{image.stem}_mask.png"
        if not mask.is_file():
            missing_mask(image, mask, hint="MVTec AD 2 layout: test_public/ground_truth/bad/<stem>_mask.png")
            continue
        samples.append(Sample(image, mask, 1, "bad"))
    return samples


class MVTecAD2(ImageDataset):
    """One object of MVTec AD 2 (or any tree in its layout with ``any_category=True``).

    Parameters
    ----------
    root : str or PathLike
        Folder holding the object folders.
    category : str
        One of :data:`CATEGORIES` (any folder name with ``any_category=True``).
    split : {"train", "validation", "test"}
        See :func:`index_mvtec_ad2`; ``test`` is ``test_public``.
    image_size : int or (H, W), default 256
    channels : {1, 3}, default 3
    resize_mode : {"stretch", "pad"}, default "stretch"
    any_category : bool, default False
    cache : bool, default False

    Items are dicts ``{"image": (C, H, W), "mask": (1, H, W), "label", "defect", "path"}``.
    """

    def __init__(self, root: PathLike, category: str, *, split: str = "train",
                 image_size: int | Sequence[int] = 256, channels: int = 3, resize_mode: str = "stretch",
                 any_category: bool = False, cache: bool = False) -> None:
        if not any_category and category not in CATEGORIES:
            raise ValueError(f"category must be one of the MVTec AD 2 objects {list(CATEGORIES)}, got {category!r} "
                             "(pass any_category=True for other trees in this layout)")
        samples = index_mvtec_ad2(root, category, split=split)
        super().__init__(samples, image_size=image_size, channels=channels, resize_mode=resize_mode, cache=cache)
        self.root = Path(root)
        self.category = category
        self.split = split
