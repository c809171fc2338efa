"""Generic folder datasets and the Magnetic Tile splits.

A :class:`FolderDataset` reads normal images from one folder and, optionally, anomalous images from one or more
folders, with masks either

* in a mask folder: ``<mask_dir>/<stem><mask_suffix><mask_ext>`` (e.g. ``mask_suffix="_mask"``), or
* beside each image: ``<stem><mask_suffix><mask_ext>`` in the image's own folder, as in the Magnetic Tile
  layout ``MT_Blowhole/Imgs/x.jpg`` + ``MT_Blowhole/Imgs/x.png``.

Files that are masks of an image in the same folder are recognised as masks, never read as images (masks beside
normal images are not used: normal masks are all zeros). Every anomalous image needs its mask; a missing mask,
folder or file of ``files`` raises ``ValueError`` naming the path and what was expected. The one exception is a
dataset with image-level labels only: with masks looked for beside the images (no ``mask_dir``) and *no*
anomalous image having a mask, every anomalous image is kept without one (``pixel_labels`` is False; its item's
mask is all zeros and evaluation reports pixel metrics as absent).
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from manifold_ae.checks import check_fraction, check_int
from manifold_ae.images.data.io import ImageDataset, Sample, list_images, report_problem, require_dir
from manifold_ae.images.data.split import seeded_split

__all__ = ["FolderDataset", "FolderSplits", "magnetic_tile_splits", "split_beside"]

PathLike = str | os.PathLike


def split_beside(files: Sequence[Path], *, mask_suffix: str = "", mask_ext: str = ".png",
                 ) -> tuple[list[Path], dict[Path, Path]]:
    """Separate images from the masks lying beside them.

    A file ``f`` has a mask if ``<f.stem><mask_suffix><mask_ext>`` is another file of ``files``.

    Returns
    -------
    images : the files that are not a mask of another file, in input order
    masks : image → its mask, for the images that have one
    """
    by_name = {f.name: f for f in files}
    masks: dict[Path, Path] = {}
    for f in files:
        name = f"{f.stem}{mask_suffix}{mask_ext}"
        if name != f.name and name in by_name:
            masks[f] = by_name[name]
    mask_files = set(masks.values())
    return [f for f in files if f not in mask_files], masks


def _as_mapping(value: PathLike | Mapping[str, PathLike] | None, name: str) -> dict[str, Path]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        if not value:
            raise ValueError(f"{name} must map defect names to folders, got an empty mapping")
        return {str(k): Path(v) for k, v in value.items()}
    p = Path(value)
    return {p.name: p}


class FolderDataset(ImageDataset):
    """Normal images from a folder and, optionally, anomalous images with pixel masks.

    Parameters
    ----------
    normal_dir : str or PathLike
        Folder of normal images (label 0, defect "good", mask of zeros).
    abnormal_dir : str, PathLike or mapping {defect name: folder}, optional
        Folder(s) of anomalous images (label 1). A single folder's defect name is the folder's name.
    mask_dir : str, PathLike or mapping {defect name: folder}, optional
        Where masks are (``<stem><mask_suffix><mask_ext>``); None = beside each anomalous image.
    mask_suffix : str, default ""
        E.g. "_mask" for masks named ``x_mask.png``.
    mask_ext : str, default ".png"
    image_size : int or (H, W), default 256
    channels : {1, 3}, default 3
    resize_mode : {"stretch", "pad"}, default "stretch"
        "pad" letterboxes to ``image_size`` keeping the aspect ratio (masks padded with 0); see ``data.io``.
    files : sequence of names or paths, optional
        Use only these normal images (file names in ``normal_dir``); each must exist. Used for splits.
    cache : bool, default False

    Attributes
    ----------
    pixel_labels : bool
        False when the anomalous images carry image-level labels only (no anomalous image has a mask beside it).
    """

    def __init__(self, normal_dir: PathLike, *, abnormal_dir: PathLike | Mapping[str, PathLike] | None = None,
                 mask_dir: PathLike | Mapping[str, PathLike] | None = None, mask_suffix: str = "",
                 mask_ext: str = ".png", image_size: int | Sequence[int] = 256, channels: int = 3,
                 resize_mode: str = "stretch", files: Sequence[PathLike] | None = None,
                 cache: bool = False) -> None:
        if not mask_ext.startswith("."):
            raise ValueError(f"mask_ext must start with a dot, e.g. '.png', got {mask_ext!r}")
        normal = Path(normal_dir)
        images, _ = split_beside(list_images(normal, what="normal images"), mask_suffix=mask_suffix,
                                 mask_ext=mask_ext)
        if files is not None:
            by_name = {p.name: p for p in images}
            chosen = []
            for f in files:
                name = Path(f).name
                if name not in by_name:
                    raise ValueError(f"file {f!r} of files is not a normal image in {normal}; expected names of "
                                     f"images in that folder")
                chosen.append(by_name[name])
            if not chosen:
                raise ValueError(f"files must name at least one normal image in {normal}, got an empty sequence")
            images = chosen
        samples = [Sample(p, None, 0, "good") for p in images]

        abnormal = _as_mapping(abnormal_dir, "abnormal_dir")
        masks = _as_mapping(mask_dir, "mask_dir")
        if mask_dir is not None and isinstance(mask_dir, Mapping) and set(masks) != set(abnormal):
            raise ValueError(f"mask_dir must have the same defect names as abnormal_dir {sorted(abnormal)}, "
                             f"got {sorted(masks)}")
        found_by_defect = {}
        for defect, folder in abnormal.items():
            if defect == "good":
                raise ValueError(f"defect name 'good' is reserved for normal images; rename the abnormal folder "
                                 f"{folder} or pass a mapping {{name: folder}}")
            found_by_defect[defect] = list_images(folder, what=f"anomalous images ({defect})")
        besides = {d: split_beside(f, mask_suffix=mask_suffix, mask_ext=mask_ext) for d, f in found_by_defect.items()}
        self.pixel_labels = not (mask_dir is None and abnormal and not any(b for _, b in besides.values()))
        for defect, folder in abnormal.items():
            found = found_by_defect[defect]
            if not self.pixel_labels:
                samples += [Sample(image, None, 1, defect) for image in besides[defect][0]]
            elif mask_dir is None:
                bad, beside = besides[defect]
                for image in bad:
                    if image not in beside:
                        report_problem(f"anomalous image {image} has no mask; expected "
                                       f"{image.with_name(f'{image.stem}{mask_suffix}{mask_ext}')} beside it "
                                       "(or pass mask_dir)")
                        continue
                    samples.append(Sample(image, beside[image], 1, defect))
            else:
                mdir = require_dir(masks[defect] if isinstance(mask_dir, Mapping) else Path(mask_dir),
                                   f"the masks of the anomalous images in {folder}")
                for image in found:
                    mask = mdir / f"{image.stem}{mask_suffix}{mask_ext}"
                    if not mask.is_file():
                        report_problem(f"anomalous image {image} has no mask; expected {mask}")
                        continue
                    samples.append(Sample(image, mask, 1, defect))
        super().__init__(samples, image_size=image_size, channels=channels, resize_mode=resize_mode, cache=cache)
        self.normal_dir = normal


class FolderSplits(NamedTuple):
    """Train / validation / test datasets; ``val`` (held-out normal images for thresholds) may be None."""

    train: FolderDataset
    val: FolderDataset | None
    test: FolderDataset


def magnetic_tile_splits(root: PathLike, *, train_fraction: float = 0.7, val_fraction: float = 0.1, seed: int = 0,
                         defects: Sequence[str] | None = None, image_size: int | Sequence[int] = 256,
                         channels: int = 1, resize_mode: str = "pad", cache: bool = False) -> FolderSplits:
    """Magnetic Tile Defects (Huang et al. 2020) split into train, val and test.

    A seeded permutation of the sorted ``MT_Free/Imgs`` images (``data.split.seeded_split``) gives
    ``train_fraction`` of them to train, ``val_fraction`` to val (normal only, for thresholds), and the rest to
    test together with every image of the defect classes (``MT_<Class>/Imgs/*.jpg`` with its mask ``*.png``
    beside it; defect name = the class in lower case, e.g. "blowhole").

    Parameters
    ----------
    root : folder holding ``MT_Free/`` and ``MT_<Class>/`` folders.
    train_fraction, val_fraction : float
        Fractions of MT_Free; the test split gets the remainder (at least one image).
    seed : int
    defects : class names, optional
        Default: every ``MT_<Class>`` folder except ``MT_Free``.
    image_size, channels, resize_mode, cache : as for :class:`FolderDataset` (default "pad": tiles vary in
        aspect ratio, letterboxing keeps defect shapes undistorted).
    """
    root = require_dir(root, "the Magnetic Tile root holding MT_Free/Imgs and MT_<Class>/Imgs folders")
    train_fraction = check_fraction(train_fraction, "train_fraction", low_inclusive=False, high_inclusive=False)
    val_fraction = check_fraction(val_fraction, "val_fraction", high_inclusive=False)
    if train_fraction + val_fraction >= 1:
        raise ValueError(f"train_fraction + val_fraction must be < 1 to leave normal test images, got "
                         f"{train_fraction} + {val_fraction}")
    check_int(seed, "seed", minimum=0)
    free = require_dir(root / "MT_Free" / "Imgs", "the defect-free images (MT_Free/Imgs/*.jpg)")
    if defects is None:
        defects = sorted(p.name[3:] for p in root.iterdir()
                         if p.is_dir() and p.name.startswith("MT_") and p.name != "MT_Free")
        if not defects:
            raise ValueError(f"{root} holds no MT_<Class> defect folders; expected e.g. MT_Blowhole/Imgs")
    abnormal = {}
    for name in defects:
        abnormal[name.lower()] = require_dir(root / f"MT_{name}" / "Imgs",
                                             f"the images and masks of class {name} (MT_{name}/Imgs/*.jpg + *.png)")
    names, _ = split_beside(list_images(free, what="defect-free tile images"), mask_ext=".png")
    names = [p.name for p in names]
    n_train = max(1, round(train_fraction * len(names)))
    n_val = round(val_fraction * len(names))
    if n_train + n_val >= len(names):
        raise ValueError(f"train_fraction={train_fraction} and val_fraction={val_fraction} leave no normal test "
                         f"image out of {len(names)} in {free}")
    parts = [[names[i] for i in part] for part in seeded_split(len(names), sizes=(n_train, n_val), seed=seed)]
    common = dict(image_size=image_size, channels=channels, resize_mode=resize_mode, mask_ext=".png", cache=cache)
    train = FolderDataset(free, files=parts[0], **common)
    val = FolderDataset(free, files=parts[1], **common) if parts[1] else None
    test = FolderDataset(free, files=parts[2], abnormal_dir=abnormal, **common)
    return FolderSplits(train, val, test)
