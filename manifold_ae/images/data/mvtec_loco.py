"""MVTec LOCO AD (Bergmann et al., IJCV 2022): logical and structural anomalies of five objects.

Layout (MVTec LOCO AD is never downloaded or shipped: point ``root`` at your copy)::

    <root>/<object>/train/good/*.png
    <root>/<object>/validation/good/*.png
    <root>/<object>/test/good/*.png
    <root>/<object>/test/logical_anomalies/*.png
    <root>/<object>/test/structural_anomalies/*.png
    <root>/<object>/ground_truth/<kind>/<image stem>/000.png, 001.png, ...

Each anomalous image has a folder of mask files, one per defect region; an item's mask is their union (merged
at file resolution, ``data.io.load_pair`` with several files). As for MVTec AD, the index is built and checked
when the dataset is created: a missing object, split or ground-truth folder, an empty folder and a stray file
each raise ``ValueError`` naming the path and what was expected; an anomalous image without a mask folder, or
with an empty one, is a missing mask (recorded and left out inside ``data.io.collect_problems``).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from manifold_ae.checks import check_choice
from manifold_ae.images.data.io import (IMAGE_EXTENSIONS, ImageDataset, Sample, category_dir, list_images,
                                        missing_mask, require_dir)

__all__ = ["CATEGORIES", "SPLITS", "ANOMALY_KINDS", "LAYOUT", "MVTecLOCO", "index_mvtec_loco"]

CATEGORIES: tuple[str, ...] = ("breakfast_box", "juice_bottle", "pushpins", "screw_bag", "splicing_connectors")
SPLITS: tuple[str, ...] = ("train", "validation", "test")
#: the test folders of anomalous images, and the defect names of their items
ANOMALY_KINDS: tuple[str, ...] = ("logical_anomalies", "structural_anomalies")
LAYOUT = ("<root>/<object>/ with train/good/, validation/good/, test/good/, test/logical_anomalies/, "
          "test/structural_anomalies/ and ground_truth/<kind>/<image stem>/000.png, 001.png, ... "
          "(MVTec LOCO AD layout)")
PathLike = str | os.PathLike


def _region_masks(folder: Path) -> tuple[Path, ...]:
    """The mask files of one anomalous image (sorted); empty when the folder is missing or holds none."""
    if not folder.is_dir():
        return ()
    files = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir() or entry.suffix.lower() not in IMAGE_EXTENSIONS:
            raise ValueError(f"unexpected {'folder' if entry.is_dir() else 'file'} {entry} in {folder}; expected "
                             f"only mask files 000.png, 001.png, ... (one per defect region)")
        files.append(entry)
    return tuple(files)


def index_mvtec_loco(root: PathLike, category: str, *, split: str = "train") -> list[Sample]:
    """List the samples of one object's ``split`` in MVTec LOCO AD layout, checking every file is accounted for.

    ``train`` = train/good and ``validation`` = validation/good (label 0); ``test`` = test/good (label 0), then
    test/logical_anomalies and test/structural_anomalies (label 1, defect = the folder name), each sorted. An
    anomalous sample's ``mask`` is the tuple of its mask files, merged when read.
    """
    check_choice(split, "split", SPLITS)
    root = require_dir(root, f"a dataset root in MVTec LOCO AD layout: {LAYOUT}")
    cat_dir = category_dir(root, category, layout=LAYOUT)
    if split in ("train", "validation"):
        good = require_dir(cat_dir / split / "good", f"the normal {split} images (<object>/{split}/good/*.png)")
        return [Sample(p, None, 0, "good") for p in list_images(good, what=f"normal {split} images")]

    test_dir = require_dir(cat_dir / "test", "the test set (<object>/test/good, test/logical_anomalies and "
                                             "test/structural_anomalies)")
    expected = ("good",) + ANOMALY_KINDS
    for entry in sorted(test_dir.iterdir()):
        if not entry.name.startswith(".") and (entry.name not in expected or not entry.is_dir()):
            raise ValueError(f"unexpected {'folder' if entry.is_dir() else 'file'} {entry} in {test_dir}; expected "
                             f"only the folders {list(expected)}")
    samples = [Sample(p, None, 0, "good") for p in list_images(test_dir / "good", what="normal test images")]
    for kind in ANOMALY_KINDS:
        images = list_images(test_dir / kind, what=f"test images of {kind} (test/{kind}/*.png)")
        gt_dir = require_dir(cat_dir / "ground_truth" / kind,
                             f"the masks of {kind} (<object>/ground_truth/{kind}/<image stem>/000.png, ...)")
        for image in images:
            masks = _region_masks(gt_dir / image.stem)
            if not masks:
                missing_mask(image, gt_dir / image.stem / "000.png",
                             hint=f"MVTec LOCO AD layout: ground_truth/{kind}/<image stem>/000.png, 001.png, ... "
                                  f"merged into one mask")
                continue
            samples.append(Sample(image, masks, 1, kind))
    return samples


class MVTecLOCO(ImageDataset):
    """One object of MVTec LOCO AD (or any tree in its layout with ``any_category=True``).

    Parameters
    ----------
    root : str or PathLike
        Folder holding the object folders.
    category : str
        One of :data:`CATEGORIES` (any folder name with ``any_category=True``).
    split : {"train", "validation", "test"}
        See :func:`index_mvtec_loco`.
    image_size : int or (H, W), default 256
    channels : {1, 3}, default 3
    resize_mode : {"stretch", "pad"}, default "stretch"
    any_category : bool, default False
    cache : bool, default False

    Items are dicts ``{"image": (C, H, W), "mask": (1, H, W), "label", "defect", "path"}``; ``mask`` is the
    union of the image's mask files, ``defect`` is ``"good"``, ``"logical_anomalies"`` or
    ``"structural_anomalies"``.
    """

    def __init__(self, root: PathLike, category: str, *, split: str = "train",
                 image_size: int | Sequence[int] = 256, channels: int = 3, resize_mode: str = "stretch",
                 any_category: bool = False, cache: bool = False) -> None:
        if not any_category and category not in CATEGORIES:
            raise ValueError(f"category must be one of the MVTec LOCO AD objects {list(CATEGORIES)}, got "
                             f"{category!r} (pass any_category=True for other trees in this layout)")
        samples = index_mvtec_loco(root, category, split=split)
        super().__init__(samples, image_size=image_size, channels=channels, resize_mode=resize_mode, cache=cache)
        self.root = Path(root)
        self.category = category
        self.split = split
