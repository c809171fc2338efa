"""Reading images and masks, resizing them, and the item contract shared by every image dataset.

Every dataset of ``manifold_ae.images.data`` yields dicts::

    {"image": (C, H, W) float32 in [0, 1], "mask": (1, H, W) float32 in {0, 1},
     "label": int (0 normal, 1 anomalous), "defect": str ("good" for normal), "path": str}

Resizing (``resize_mode``)
--------------------------
``"stretch"``  resize to (H, W) ignoring the aspect ratio (antialiased bilinear for images, nearest for masks).
``"pad"``      letterbox: scale by ``min(H/h, W/w)`` keeping the aspect ratio, centre the result and pad the
               border with 0 (black image, normal mask).

Masks are binarised at 128 of 255 (``value >= 128`` is defect), before resizing, so soft mask edges map to the
nearer class; resizing a mask uses nearest-neighbour so it stays in {0, 1}.

Every failure raises ``ValueError`` naming the file or folder and what was expected; nothing is skipped.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from manifold_ae.checks import as_hw, check_choice, check_int

__all__ = ["IMAGE_EXTENSIONS", "RESIZE_MODES", "Sample", "ImageDataset", "load_image", "load_mask",
           "load_pair", "list_images", "require_dir"]

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
RESIZE_MODES: tuple[str, ...] = ("stretch", "pad")
PathLike = str | os.PathLike


def require_dir(path: PathLike, what: str) -> Path:
    """Return ``Path(path)`` if it is a folder, else raise ValueError saying what the folder should hold."""
    p = Path(path)
    if not p.is_dir():
        state = "is not a folder" if p.exists() else "does not exist"
        raise ValueError(f"{p} {state}; expected {what}")
    return p


def list_images(folder: PathLike, *, what: str = "images") -> list[Path]:
    """Sorted image files of ``folder`` (extensions :data:`IMAGE_EXTENSIONS`, any case; hidden files ignored).

    Raises ValueError if the folder is missing, holds a sub-folder or a non-image file, or holds no image.
    """
    d = require_dir(folder, f"a folder of {what}")
    files = []
    for entry in sorted(d.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            raise ValueError(f"unexpected sub-folder {entry} in {d}; expected only {what} "
                             f"(files {', '.join(IMAGE_EXTENSIONS)}), folders are not searched recursively")
        if entry.suffix.lower() not in IMAGE_EXTENSIONS:
            raise ValueError(f"unexpected file {entry} in {d}; expected only {what} "
                             f"(files {', '.join(IMAGE_EXTENSIONS)})")
        files.append(entry)
    if not files:
        raise ValueError(f"folder {d} holds no images; expected at least one of {what} "
                         f"(files {', '.join(IMAGE_EXTENSIONS)})")
    return files


def _read(path: PathLike, what: str) -> np.ndarray:
    """Decode the whole file into a float32 array (h, w, c) in [0, 1] with c = 1 (gray) or 3 (colour)."""
    p = Path(path)
    if not p.is_file():
        state = "is a folder" if p.is_dir() else "does not exist"
        raise ValueError(f"{what} {p} {state}; expected an image file ({', '.join(IMAGE_EXTENSIONS)})")
    try:
        with Image.open(p) as im:
            im.load()  # full decode: truncated or corrupt files fail here, not later in a DataLoader worker
            mode = im.mode
            if mode.startswith("I;16") or mode in ("I", "F"):
                scale = 1.0 if mode == "F" else 65535.0
                arr = np.asarray(im, dtype=np.float32) / scale
                arr = arr[..., None]
            elif mode in ("1", "L", "LA", "La"):
                arr = np.asarray(im.convert("L"), dtype=np.float32)[..., None] / 255.0
            else:  # RGB, RGBA, P, CMYK, YCbCr, ...: alpha dropped
                arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot read {what} {p}: {err}; expected a complete, readable image file "
                         f"({', '.join(IMAGE_EXTENSIONS)})") from err
    return np.clip(arr, 0.0, 1.0)


def _to_channels(arr: np.ndarray, channels: int) -> torch.Tensor:
    """(h, w, c) array → (channels, h, w) tensor: gray is repeated to RGB, RGB → gray by ITU-R 601 luma."""
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)  # (c, h, w)
    if t.shape[0] == channels:
        return t.contiguous()
    if channels == 3:
        return t.expand(3, -1, -1).contiguous()
    luma = torch.tensor([0.299, 0.587, 0.114], dtype=t.dtype)
    return (t * luma[:, None, None]).sum(0, keepdim=True)


def _fit(t: torch.Tensor, size: tuple[int, int] | None, resize_mode: str, *, nearest: bool) -> torch.Tensor:
    """Resize (c, h, w) to (c, H, W) by stretching or by letterboxing (aspect kept, zero padding)."""
    if size is None or tuple(t.shape[-2:]) == size:
        return t
    h, w = t.shape[-2:]
    big_h, big_w = size
    if resize_mode == "pad":
        s = min(big_h / h, big_w / w)
        inner = (min(big_h, max(1, round(h * s))), min(big_w, max(1, round(w * s))))
    else:
        inner = (big_h, big_w)
    if nearest:
        out = F.interpolate(t[None], size=inner, mode="nearest-exact")[0]
    else:
        out = F.interpolate(t[None], size=inner, mode="bilinear", align_corners=False, antialias=True)[0]
        out = out.clamp(0.0, 1.0)
    if inner != (big_h, big_w):
        top, left = (big_h - inner[0]) // 2, (big_w - inner[1]) // 2
        out = F.pad(out, (left, big_w - inner[1] - left, top, big_h - inner[0] - top), value=0.0)
    return out.contiguous()


def _size_arg(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    return None if size is None else as_hw(size, "size")


def load_image(path: PathLike, *, channels: int = 3, size: int | Sequence[int] | None = None,
               resize_mode: str = "stretch") -> torch.Tensor:
    """Read an image file as a float32 tensor (channels, H, W) in [0, 1].

    Parameters
    ----------
    path : str or PathLike
    channels : {1, 3}
        Gray images are repeated to RGB; RGB images are converted to gray (ITU-R 601 luma).
    size : int or (H, W), optional
        Output size; None keeps the file's size.
    resize_mode : {"stretch", "pad"}
        See the module docstring.
    """
    check_choice(channels, "channels", (1, 3))
    check_choice(resize_mode, "resize_mode", RESIZE_MODES)
    t = _to_channels(_read(path, "image file"), channels)  # (C, h, w)
    return _fit(t, _size_arg(size), resize_mode, nearest=False)


def _binarise(arr: np.ndarray) -> torch.Tensor:
    """(h, w, c) array in [0, 1] → (1, h, w) float mask, defect where the gray value is >= 128/255."""
    gray = _to_channels(arr, 1)  # (1, h, w)
    return (gray * 255.0 >= 127.5).to(torch.float32)


def load_mask(path: PathLike, *, size: int | Sequence[int] | None = None,
              expected_size: Sequence[int] | None = None, resize_mode: str = "stretch") -> torch.Tensor:
    """Read a ground-truth mask as a float32 tensor (1, H, W) in {0, 1} (defect where value >= 128).

    ``expected_size`` = (h, w) of the mask's image at file resolution: a mask of any other size is an error.
    """
    check_choice(resize_mode, "resize_mode", RESIZE_MODES)
    m = _binarise(_read(path, "mask file"))
    if expected_size is not None and tuple(m.shape[-2:]) != tuple(expected_size):
        h, w = m.shape[-2:]
        raise ValueError(f"mask file {path} is {h}x{w} (height x width); expected "
                         f"{expected_size[0]}x{expected_size[1]}, the size of its image")
    return _fit(m, _size_arg(size), resize_mode, nearest=True)


def load_pair(image_path: PathLike, mask_path: PathLike | None, *, channels: int = 3,
              size: int | Sequence[int] | None = None,
              resize_mode: str = "stretch") -> tuple[torch.Tensor, torch.Tensor]:
    """Read an image and its mask (None = normal: all zeros), checking both have the same file size.

    Returns
    -------
    image : (channels, H, W) float32 in [0, 1]
    mask : (1, H, W) float32 in {0, 1}, resized exactly like the image.
    """
    check_choice(channels, "channels", (1, 3))
    check_choice(resize_mode, "resize_mode", RESIZE_MODES)
    target = _size_arg(size)
    image = _to_channels(_read(image_path, "image file"), channels)  # (C, h, w)
    if mask_path is None:
        mask = torch.zeros((1,) + tuple(image.shape[-2:]), dtype=torch.float32)
    else:
        mask = _binarise(_read(mask_path, "mask file"))
        if mask.shape[-2:] != image.shape[-2:]:
            raise ValueError(f"mask file {mask_path} is {mask.shape[-2]}x{mask.shape[-1]} (height x width); "
                             f"expected {image.shape[-2]}x{image.shape[-1]}, the size of its image {image_path}")
    return _fit(image, target, resize_mode, nearest=False), _fit(mask, target, resize_mode, nearest=True)


class Sample(NamedTuple):
    """One indexed file: where the image and its mask are, and its label."""

    image: Path
    mask: Path | None  # None for normal images (mask of zeros)
    label: int  # 0 normal, 1 anomalous
    defect: str  # "good" for normal images


class ImageDataset(torch.utils.data.Dataset):
    """A list of :class:`Sample` read lazily into the item dict of the module docstring.

    Parameters
    ----------
    samples : sequence of Sample
    image_size : int or (H, W)
    channels : {1, 3}
    resize_mode : {"stretch", "pad"}
    cache : bool, default False
        Keep decoded items in memory after the first read (per process; each DataLoader worker has its own).
    """

    def __init__(self, samples: Sequence[Sample], *, image_size: int | Sequence[int] = 256, channels: int = 3,
                 resize_mode: str = "stretch", cache: bool = False) -> None:
        self.samples: tuple[Sample, ...] = tuple(samples)
        self.image_size = as_hw(image_size, "image_size")
        self.channels = check_choice(channels, "channels", (1, 3))
        self.resize_mode = check_choice(resize_mode, "resize_mode", RESIZE_MODES)
        self.cache = bool(cache)
        self._cache: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        """Labels of all samples, in order, without reading any image."""
        return [s.label for s in self.samples]

    @property
    def defects(self) -> list[str]:
        """Defect names of all samples, in order ("good" for normal)."""
        return [s.defect for s in self.samples]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} images")
        index = index % len(self)
        if index in self._cache:
            return dict(self._cache[index])
        s = self.samples[index]
        image, mask = load_pair(s.image, s.mask, channels=self.channels, size=self.image_size,
                                resize_mode=self.resize_mode)
        item = {"image": image, "mask": mask, "label": s.label, "defect": s.defect, "path": str(s.image)}
        if self.cache:
            self._cache[index] = item
        return dict(item)

    def __repr__(self) -> str:
        n_bad = sum(self.labels)
        return (f"{type(self).__name__}({len(self)} images: {len(self) - n_bad} normal, {n_bad} anomalous; "
                f"image_size={self.image_size}, channels={self.channels}, resize_mode={self.resize_mode!r})")
