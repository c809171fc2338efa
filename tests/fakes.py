"""Tiny fake datasets on disk for everyone's tests (written with Pillow, deterministic, lossless formats).

Normal images are a smooth ramp ``ramp(y, x) = 0.1 + 0.5 * (y + x) / (H + W)`` (plus ``0.01 * index``) with channel
gains (1, 0.8, 0.6) for RGB; defective images add a white (1.0) box at :func:`fake_defect_box`, and their mask is
255 exactly on that box. Values are stored as uint8, so a loaded image equals ``round(255 * value) / 255``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["fake_image", "fake_defect_box", "make_fake_mvtec", "make_fake_folder"]

GAINS = (1.0, 0.8, 0.6)


def fake_defect_box(index: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the white box painted on defect image ``index`` of an (H, W) image."""
    h, w = size
    bh, bw = max(2, h // 4), max(2, w // 4)
    top = (h // 8 + 3 * index) % (h - bh)
    left = (w // 4 + 5 * index) % (w - bw)
    return top, left, bh, bw


def fake_image(index: int, size: tuple[int, int], *, channels: int = 3, defect: bool = False) -> np.ndarray:
    """The uint8 array (H, W) or (H, W, 3) that the fakes write for image ``index``."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = 0.1 + 0.5 * (yy + xx) / (h + w) + 0.01 * index  # (H, W), < 0.75
    img = ramp[..., None] * np.array(GAINS[:channels] if channels == 3 else (1.0,))  # (H, W, C)
    if defect:
        top, left, bh, bw = fake_defect_box(index, size)
        img[top:top + bh, left:left + bw] = 1.0
    arr = np.round(255 * img).astype(np.uint8)
    return arr[..., 0] if channels == 1 else arr


def _mask(index: int, size: tuple[int, int]) -> np.ndarray:
    m = np.zeros(size, dtype=np.uint8)
    top, left, bh, bw = fake_defect_box(index, size)
    m[top:top + bh, left:left + bw] = 255
    return m


def _save(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def make_fake_mvtec(root: str | Path, *, category: str = "widget", n_train: int = 4, n_test_good: int = 2,
                    defects: tuple[str, ...] = ("scratch",), n_defect: int = 2, size: int = 32,
                    channels: int = 3) -> Path:
    """Write ``<root>/<category>/`` in MVTec AD layout and return ``root``.

    train/good/000.png.., test/good/000.png.., test/<defect>/000.png.. with masks
    ground_truth/<defect>/000_mask.png. Defect image ``i`` of every defect type has its box at
    ``fake_defect_box(i, (size, size))``.
    """
    root = Path(root)
    cat = root / category
    hw = (size, size)
    for i in range(n_train):
        _save(fake_image(i, hw, channels=channels), cat / "train" / "good" / f"{i:03d}.png")
    for i in range(n_test_good):
        _save(fake_image(i, hw, channels=channels), cat / "test" / "good" / f"{i:03d}.png")
    for defect in defects:
        for i in range(n_defect):
            _save(fake_image(i, hw, channels=channels, defect=True), cat / "test" / defect / f"{i:03d}.png")
            _save(_mask(i, hw), cat / "ground_truth" / defect / f"{i:03d}_mask.png")
    return root


def make_fake_folder(root: str | Path, *, n_normal: int = 4, n_abnormal: int = 2, size: tuple[int, int] = (32, 48),
                     channels: int = 1, masks: str = "beside", mask_suffix: str = "",
                     image_ext: str = ".bmp") -> dict[str, Path]:
    """Write a folder dataset and return its folders ``{"normal", "abnormal", "masks"}``.

    ``masks="beside"`` puts ``<stem><mask_suffix>.png`` next to each image (the Magnetic Tile layout, with the
    default ``image_ext=".bmp"`` so image and mask share the stem); ``masks="dir"`` writes them to ``masks/``.
    Normal images are ``n_<i>``, abnormal ones ``a_<i>`` with the box of ``fake_defect_box(i, size)``.
    """
    root = Path(root)
    normal, abnormal = root / "normal", root / "abnormal"
    mask_dir = abnormal if masks == "beside" else root / "masks"
    for i in range(n_normal):
        _save(fake_image(i, size, channels=channels), normal / f"n_{i:03d}{image_ext}")
    for i in range(n_abnormal):
        _save(fake_image(i, size, channels=channels, defect=True), abnormal / f"a_{i:03d}{image_ext}")
        _save(_mask(i, size), mask_dir / f"a_{i:03d}{mask_suffix}.png")
    return {"normal": normal, "abnormal": abnormal, "masks": mask_dir}
