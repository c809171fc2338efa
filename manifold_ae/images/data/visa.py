"""VisA (Zou et al., ECCV 2022, "SPot-the-Difference"): twelve objects, split by the published CSV.

Layout (VisA is never downloaded or shipped: point ``root`` at your copy, the folder holding ``split_csv/``)::

    <root>/split_csv/1cls.csv                         columns object,split,label,image,mask
    <root>/<object>/Data/Images/Normal/*.JPG
    <root>/<object>/Data/Images/Anomaly/*.JPG
    <root>/<object>/Data/Masks/Anomaly/*.png

The CSV decides everything: its ``image`` and ``mask`` columns are paths relative to ``root``, ``split`` is
``train`` or ``test`` and ``label`` is ``normal`` (mask empty) or ``anomaly`` (mask required). A mask marks
defect wherever it is nonzero (``mask_rule="nonzero"``: VisA's masks may store several values). Every row is
checked when the dataset is created: an unreadable CSV, a missing column, an unknown split or label, an anomaly
in the training split and a missing image raise ``ValueError`` naming the CSV line and what was expected; an
anomaly row whose mask is missing is a missing mask (recorded and left out inside ``data.io.collect_problems``).
The CSV labels anomalies only as ``anomaly``, so that is the defect name of every anomalous item.
"""
from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from manifold_ae.checks import check_choice
from manifold_ae.images.data.io import ImageDataset, Sample, missing_mask, report_problem, require_dir

__all__ = ["CATEGORIES", "SPLITS", "COLUMNS", "LAYOUT", "VisA", "index_visa"]

CATEGORIES: tuple[str, ...] = ("candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2",
                               "pcb1", "pcb2", "pcb3", "pcb4", "pipe_fryum")
SPLITS: tuple[str, ...] = ("train", "test")
#: the columns of the split CSV
COLUMNS: tuple[str, ...] = ("object", "split", "label", "image", "mask")
LABELS: dict[str, int] = {"normal": 0, "anomaly": 1}
LAYOUT = ("<root>/split_csv/1cls.csv (columns object,split,label,image,mask; paths relative to <root>) with images "
          "under <root>/<object>/Data/Images/{Normal,Anomaly}/ and masks under <root>/<object>/Data/Masks/Anomaly/ "
          "(VisA layout)")
PathLike = str | os.PathLike


def _read_rows(csv_path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of every data row of the split CSV, after checking its header."""
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise ValueError(f"split file {csv_path} lacks the column(s) {missing} (header: {header}); expected "
                                 f"the columns {','.join(COLUMNS)}")
            return [(reader.line_num, {k: (v or "").strip() for k, v in row.items() if k in COLUMNS})
                    for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"cannot read split file {csv_path}: {err}; expected a UTF-8 CSV with the columns "
                         f"{','.join(COLUMNS)}") from err


def index_visa(root: PathLike, category: str, *, split: str = "train", split_file: str = "1cls.csv") -> list[Sample]:
    """List the samples of one object's ``split`` from ``<root>/split_csv/<split_file>``, in CSV order.

    ``train`` rows must all be ``normal``; ``test`` rows are ``normal`` (label 0, defect ``"good"``) or
    ``anomaly`` (label 1, defect ``"anomaly"``, with its mask).
    """
    check_choice(split, "split", SPLITS)
    root = require_dir(root, f"a dataset root in VisA layout: {LAYOUT}")
    csv_path = root / "split_csv" / split_file
    if not csv_path.is_file():
        raise ValueError(f"split file {csv_path} does not exist; expected {LAYOUT}")
    rows = _read_rows(csv_path)
    objects = sorted({row["object"] for _, row in rows})
    if category not in objects:
        raise ValueError(f"object {category!r} has no row in {csv_path}; objects listed there: {objects}")
    samples, listed = [], 0
    for line, row in rows:
        if row["object"] != category:
            continue
        where = f"{csv_path} line {line}"
        if row["split"] not in SPLITS:
            raise ValueError(f"{where}: split {row['split']!r}; expected one of {list(SPLITS)}")
        if row["label"] not in LABELS:
            raise ValueError(f"{where}: label {row['label']!r}; expected one of {list(LABELS)}")
        if row["split"] != split:
            continue
        listed += 1
        label = LABELS[row["label"]]
        if split == "train" and label == 1:
            raise ValueError(f"{where}: an anomaly in the training split; expected only normal training images")
        if label == 0 and row["mask"]:
            raise ValueError(f"{where}: a normal image with the mask {row['mask']!r}; expected an empty mask column "
                             f"for normal images")
        image = root / row["image"]
        if not row["image"] or not image.is_file():
            report_problem(f"{where}: image {image} does not exist; expected the file the column 'image' names, "
                           f"relative to {root} (<object>/Data/Images/{{Normal,Anomaly}}/...)")
            continue
        if label == 0:
            samples.append(Sample(image, None, 0, "good"))
            continue
        mask = root / row["mask"]
        if not row["mask"] or not mask.is_file():
            expected = mask if row["mask"] else f"a mask path in the column 'mask' of {where}"
            missing_mask(image, expected, hint=f"VisA layout: the column 'mask' of {csv_path.name}, relative to "
                                               f"{root} (<object>/Data/Masks/Anomaly/*.png)")
            continue
        samples.append(Sample(image, mask, 1, "anomaly"))
    if not listed:
        raise ValueError(f"{csv_path} lists no {split} image of object {category!r}; expected at least one row "
                         f"with object={category},split={split}")
    return samples


class VisA(ImageDataset):
    """One object of VisA (or any dataset with a split CSV in its layout, with ``any_category=True``).

    Parameters
    ----------
    root : str or PathLike
        Folder holding ``split_csv/`` and the object folders.
    category : str
        One of :data:`CATEGORIES` (any object of the CSV with ``any_category=True``).
    split : {"train", "test"}
        The CSV's ``split`` column.
    split_file : str, default "1cls.csv"
        The CSV under ``<root>/split_csv/``.
    image_size : int or (H, W), default 256
    channels : {1, 3}, default 3
    resize_mode : {"stretch", "pad"}, default "stretch"
    any_category : bool, default False
    cache : bool, default False

    Items are dicts ``{"image": (C, H, W), "mask": (1, H, W), "label", "defect", "path"}``; masks are defect
    wherever nonzero.
    """

    def __init__(self, root: PathLike, category: str, *, split: str = "train", split_file: str = "1cls.csv",
                 image_size: int | Sequence[int] = 256, channels: int = 3, resize_mode: str = "stretch",
                 any_category: bool = False, cache: bool = False) -> None:
        if not any_category and category not in CATEGORIES:
            raise ValueError(f"category must be one of the VisA objects {list(CATEGORIES)}, got {category!r} "
                             "(pass any_category=True for other datasets in this layout)")
        samples = index_visa(root, category, split=split, split_file=split_file)
        super().__init__(samples, image_size=image_size, channels=channels, resize_mode=resize_mode, cache=cache,
                         mask_rule="nonzero")
        self.root = Path(root)
        self.category = category
        self.split = split
