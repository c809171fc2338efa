"""Reading images and masks, resizing them, and the item contract shared by every image dataset.

Every dataset of ``manifold_ae.images.data`` yields dicts::

    {"image": (C, H, W) float32 in [0, 1], "mask": (1, H, W) float32 in {0, 1},
     "label": int (0 normal, 1 anomalous), "defect": str ("good" for normal), "path": str}

Resizing (``resize_mode``)
--------------------------
``"stretch"``  resize to (H, W) ignoring the aspect ratio (antialiased bilinear for images, nearest for masks).
``"pad"``      letterbox: scale by ``min(H/h, W/w)`` keeping the aspect ratio, centre the result and pad the
               border with 0 (black image, normal mask).

Masks (:func:`binarise_mask`)
----------------------------
A mask is read in its own encoding (bool "1", 8-bit "L", palette "P", 16-bit "I;16", 32-bit "I", float "F",
RGB/RGBA; the value of a colour pixel is its largest colour channel, alpha is ignored) and binarised at file
resolution, before resizing: a mask with two values {0, v} marks defect where it is nonzero (0/1, 0/255,
0/65535, bool, black and red, ...); a mask with more values (soft or lossy edges) marks defect above half of
its full scale, the smallest of 1, 255, 65535, 2**32 - 1 that holds its largest value (so an 8-bit mask
keeps the rule ``value >= 128``). Resizing a mask uses nearest-neighbour so it stays in {0, 1}.

An anomalous image whose mask marks no pixel raises :class:`EmptyMaskError` when it is read, naming the mask
and the option ``empty_masks="exclude"`` (``--data.empty_masks=exclude``) that leaves such images out, counted
(:meth:`ImageDataset.drop_empty_masks`).

Every failure raises ``ValueError`` naming the file or folder and what was expected; nothing is skipped. The
indexers raise :func:`missing_mask` for a defect image without its mask; inside :func:`collect_problems` they
record it and go on, so a dataset check can list every problem at once.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from manifold_ae.checks import as_hw, check_choice

__all__ = ["IMAGE_EXTENSIONS", "RESIZE_MODES", "Sample", "ImageDataset", "EmptyMaskError", "load_image",
           "load_mask", "load_pair", "binarise_mask", "list_images", "require_dir", "collect_problems",
           "report_problem", "missing_mask", "item_problems", "MASK_RULES", "category_dir"]

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
RESIZE_MODES: tuple[str, ...] = ("stretch", "pad")
#: full scales a mask's values are read against: bool / 8-bit / 16-bit / 32-bit
MASK_FULL_SCALES: tuple[int, ...] = (1, 255, 65535, 2**32 - 1)
#: how mask values become defect pixels: "auto" (:func:`binarise_mask`) or "nonzero" (every nonzero value, VisA)
MASK_RULES: tuple[str, ...] = ("auto", "nonzero")
PathLike = str | os.PathLike

_PROBLEMS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("manifold_ae_data_problems",
                                                                              default=None)


class EmptyMaskError(ValueError):
    """An anomalous image whose mask marks no defect pixel."""


@contextlib.contextmanager
def collect_problems() -> Iterator[list[str]]:
    """Within this block, :func:`report_problem` records its message in the yielded list instead of raising.

    The indexers (MVTec, folder datasets) report a defect image without its mask this way and leave the image
    out, so a dataset check can list every such problem in one run; outside the block they raise at the first.
    """
    problems: list[str] = []
    token = _PROBLEMS.set(problems)
    try:
        yield problems
    finally:
        _PROBLEMS.reset(token)


def report_problem(message: str) -> None:
    """Raise ``ValueError(message)``, or record it when called inside :func:`collect_problems`."""
    problems = _PROBLEMS.get()
    if problems is None:
        raise ValueError(message)
    problems.append(message)


def missing_mask(image: PathLike, expected: PathLike, *, hint: str = "") -> None:
    """Report (:func:`report_problem`) that the defect image ``image`` has no mask at ``expected``.

    The caller leaves the image out when this returns (inside :func:`collect_problems`).
    """
    report_problem(f"defect image {image} has no mask; expected {expected}{f' ({hint})' if hint else ''}")


def require_dir(path: PathLike, what: str) -> Path:
    """Return ``Path(path)`` if it is a folder, else raise ValueError saying what the folder should hold."""
    p = Path(path)
    if not p.is_dir():
        state = "is not a folder" if p.exists() else "does not exist"
        raise ValueError(f"{p} {state}; expected {what}")
    return p


def category_dir(root: Path, category: str, *, layout: str) -> Path:
    """``root / category`` as a folder; else ValueError naming it, ``layout`` and the category folders found."""
    if not isinstance(category, str) or not category or "/" in category or "\\" in category:
        raise ValueError(f"category must be a folder name, got {category!r}")
    folder = root / category
    if not folder.is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        raise ValueError(f"category folder {folder} does not exist; expected {layout} (category folders found "
                         f"under {root}: {found})")
    return folder


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


def _decode(path: PathLike, what: str, values: Callable[[Image.Image], np.ndarray]) -> np.ndarray:
    """Open the file, decode it whole and return ``values(image)``; every failure is a ValueError naming it."""
    p = Path(path)
    if not p.is_file():
        state = "is a folder" if p.is_dir() else "does not exist"
        raise ValueError(f"{what} {p} {state}; expected an image file ({', '.join(IMAGE_EXTENSIONS)})")
    try:
        with Image.open(p) as im:
            im.load()  # full decode: truncated or corrupt files fail here, not later in a DataLoader worker
            return values(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot read {what} {p}: {err}; expected a complete, readable image file "
                         f"({', '.join(IMAGE_EXTENSIONS)})") from err


def _image_values(im: Image.Image) -> np.ndarray:
    """A decoded image as a float32 array (h, w, c) in [0, 1] with c = 1 (gray) or 3 (colour)."""
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        scale = 1.0 if mode == "F" else 65535.0
        arr = np.asarray(im, dtype=np.float32)[..., None] / scale
    elif mode in ("1", "L", "LA", "La"):
        arr = np.asarray(im.convert("L"), dtype=np.float32)[..., None] / 255.0
    else:  # RGB, RGBA, P, CMYK, YCbCr, ...: alpha dropped
        arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return np.clip(arr, 0.0, 1.0)


def _mask_values(im: Image.Image) -> np.ndarray:
    """A decoded mask's own values as a float64 array (h, w): colour pixels by their largest channel."""
    mode = im.mode
    if mode == "1":
        return np.asarray(im, dtype=bool).astype(np.float64)
    if mode.startswith("I;16") or mode in ("L", "I", "F"):
        return np.asarray(im).astype(np.float64)
    if mode in ("LA", "La"):
        return np.asarray(im.getchannel(0)).astype(np.float64)
    return np.asarray(im.convert("RGB")).max(axis=-1).astype(np.float64)  # P, RGB, RGBA, ...: alpha ignored


def _read(path: PathLike, what: str) -> np.ndarray:
    """Decode the whole file into a float32 array (h, w, c) in [0, 1] with c = 1 (gray) or 3 (colour)."""
    return _decode(path, what, _image_values)


def binarise_mask(values: np.ndarray, *, rule: str = "auto") -> np.ndarray:
    """A mask's values (h, w) in its own encoding → (h, w) bool, True = defect.

    ``rule="nonzero"``: defect wherever the value is nonzero, however many values there are (datasets whose
    masks store defect ids, e.g. VisA). ``rule="auto"`` (default):

    Two values {0, v} (or a constant mask): defect where nonzero, whatever ``v`` is (0/1, 0/255, 0/65535,
    bool). Otherwise (more values, e.g. soft or JPEG edges): defect where the value exceeds half of the mask's
    full scale, the smallest of :data:`MASK_FULL_SCALES` (1, 255, 65535, 2**32 - 1) that holds its largest
    value, or that value itself above them (float masks): an 8-bit soft mask is defect at ``value >= 128``.
    """
    check_choice(rule, "rule", MASK_RULES)
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return np.zeros(v.shape, dtype=bool)
    if rule == "nonzero":
        return v != 0.0
    low, high = float(v.min()), float(v.max())
    if low == high or (low == 0.0 and np.all((v == 0.0) | (v == high))):  # constant, or two values {0, v}
        return v != 0.0
    scale = next((s for s in MASK_FULL_SCALES if high <= s), high)
    return v > scale / 2.0


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


def _read_mask(path: PathLike, rule: str = "auto") -> torch.Tensor:
    """Decode a mask file into a float32 tensor (1, h, w) in {0, 1} at file resolution (:func:`binarise_mask`)."""
    defect = binarise_mask(_decode(path, "mask file", _mask_values), rule=rule)  # (h, w)
    return torch.from_numpy(defect.astype(np.float32))[None]


def _empty_mask(mask_path: PathLike, image_path: PathLike) -> EmptyMaskError:
    return EmptyMaskError(f"mask file {mask_path} of the anomalous image {image_path} marks no defect pixel "
                          f"(every value is background); expected at least one defect pixel: fix the mask, or "
                          f"leave such images out of the test set, counted, with empty_masks='exclude' "
                          f"(--data.empty_masks=exclude)")


def load_mask(path: PathLike, *, size: int | Sequence[int] | None = None,
              expected_size: Sequence[int] | None = None, resize_mode: str = "stretch") -> torch.Tensor:
    """Read a ground-truth mask in any encoding as a float32 tensor (1, H, W) in {0, 1} (:func:`binarise_mask`).

    ``expected_size`` = (h, w) of the mask's image at file resolution: a mask of any other size is an error.
    """
    check_choice(resize_mode, "resize_mode", RESIZE_MODES)
    m = _read_mask(path)
    if expected_size is not None and tuple(m.shape[-2:]) != tuple(expected_size):
        h, w = m.shape[-2:]
        raise ValueError(f"mask file {path} is {h}x{w} (height x width); expected "
                         f"{expected_size[0]}x{expected_size[1]}, the size of its image")
    return _fit(m, _size_arg(size), resize_mode, nearest=True)


def _mask_files(mask_path: PathLike | Sequence[PathLike]) -> list[PathLike]:
    """One mask file, or several to be merged (union), as a non-empty list."""
    paths = [mask_path] if isinstance(mask_path, (str, os.PathLike)) else list(mask_path)
    if not paths:
        raise ValueError("mask_path is an empty sequence; expected a mask file, several to merge, or None")
    return paths


def load_pair(image_path: PathLike, mask_path: PathLike | Sequence[PathLike] | None, *, channels: int = 3,
              size: int | Sequence[int] | None = None, resize_mode: str = "stretch",
              anomalous: bool = False, mask_rule: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Read an image and its mask (None = normal: all zeros), checking both have the same file size.

    A sequence of mask files is merged: defect where any of them marks defect (MVTec LOCO's one file per
    defect region). ``mask_rule``: :data:`MASK_RULES` (:func:`binarise_mask`).

    With ``anomalous=True`` the mask must mark at least one pixel at file resolution, else
    :class:`EmptyMaskError`.

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
        paths = _mask_files(mask_path)
        mask = torch.zeros((1,) + tuple(image.shape[-2:]), dtype=torch.float32)  # (1, h, w)
        for path in paths:
            part = _read_mask(path, mask_rule)
            if part.shape[-2:] != image.shape[-2:]:
                raise ValueError(f"mask file {path} is {part.shape[-2]}x{part.shape[-1]} (height x width); "
                                 f"expected {image.shape[-2]}x{image.shape[-1]}, the size of its image {image_path}")
            mask = torch.maximum(mask, part)
        if anomalous and not bool(mask.any()):
            raise _empty_mask(", ".join(map(str, paths)), image_path)
    return _fit(image, target, resize_mode, nearest=False), _fit(mask, target, resize_mode, nearest=True)


def _is_empty_mask(path: PathLike | Sequence[PathLike], rule: str = "auto") -> bool:
    """Whether the mask file(s) mark no pixel; False when one cannot be read (reading its item reports that)."""
    try:
        return not any(bool(_read_mask(p, rule).any()) for p in _mask_files(path))
    except ValueError:
        return False


def item_problems(dataset: torch.utils.data.Dataset, *, what: str) -> list[str]:
    """Read every item of ``dataset`` exactly as training and evaluation do; one message per failing item.

    Each message is ``"<what>: <the item's ValueError>"`` (the error names the file and what was expected).
    """
    problems = []
    for index in range(len(dataset)):  # type: ignore[arg-type]
        try:
            dataset[index]
        except ValueError as err:
            problems.append(f"{what}: {err}")
    return problems


class Sample(NamedTuple):
    """One indexed file: where the image and its mask are, and its label."""

    image: Path
    mask: Path | tuple[Path, ...] | None  # None for normal images (mask of zeros); several files are merged
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
    mask_rule : {"auto", "nonzero"}, default "auto"
        How mask values become defect pixels (:func:`binarise_mask`).
    """

    def __init__(self, samples: Sequence[Sample], *, image_size: int | Sequence[int] = 256, channels: int = 3,
                 resize_mode: str = "stretch", cache: bool = False, mask_rule: str = "auto") -> None:
        self.samples: tuple[Sample, ...] = tuple(samples)
        self.image_size = as_hw(image_size, "image_size")
        self.channels = check_choice(channels, "channels", (1, 3))
        self.resize_mode = check_choice(resize_mode, "resize_mode", RESIZE_MODES)
        self.cache = bool(cache)
        self.mask_rule = check_choice(mask_rule, "mask_rule", MASK_RULES)
        self._cache: dict[int, dict[str, Any]] = {}
        self.excluded: tuple[Sample, ...] = ()  # left out by drop_empty_masks

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
                                resize_mode=self.resize_mode, anomalous=s.label == 1, mask_rule=self.mask_rule)
        item = {"image": image, "mask": mask, "label": s.label, "defect": s.defect, "path": str(s.image)}
        if self.cache:
            self._cache[index] = item
        return dict(item)

    def drop_empty_masks(self) -> tuple[Sample, ...]:
        """Leave out the anomalous samples whose mask marks no pixel (``empty_masks="exclude"``); return them.

        They are added to ``excluded`` and counted in a warning. A mask that cannot be read stays in, so
        reading its item reports it. Leaving out every anomalous sample is an error (:func:`report_problem`).
        """
        kept, dropped = [], []
        for s in self.samples:
            empty = s.label == 1 and s.mask is not None and _is_empty_mask(s.mask, self.mask_rule)
            (dropped if empty else kept).append(s)
        if not dropped:
            return ()
        if not any(s.label == 1 for s in kept) and any(s.label == 1 for s in self.samples):
            report_problem(f"every one of the {len(dropped)} anomalous images has an empty mask (first: "
                           f"{dropped[0].mask}); expected masks marking the defects (nothing left to evaluate "
                           f"with empty_masks='exclude')")
        self.samples = tuple(kept)
        self._cache.clear()
        self.excluded = self.excluded + tuple(dropped)
        names = ", ".join(str(s.mask) for s in dropped[:3]) + (", ..." if len(dropped) > 3 else "")
        warnings.warn(f"left out {len(dropped)} of {len(kept) + len(dropped)} images: anomalous images whose "
                      f"masks mark no pixel (empty_masks='exclude'): {names}", stacklevel=2)
        return tuple(dropped)

    def __repr__(self) -> str:
        n_bad = sum(self.labels)
        return (f"{type(self).__name__}({len(self)} images: {len(self) - n_bad} normal, {n_bad} anomalous; "
                f"image_size={self.image_size}, channels={self.channels}, resize_mode={self.resize_mode!r})")
