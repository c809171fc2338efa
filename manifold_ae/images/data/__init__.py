"""Image datasets: MVTec AD, generic folders (Magnetic Tile), and the built-in synthetic dataset.

Every dataset yields dicts ``{"image": (C, H, W) float32 in [0, 1], "mask": (1, H, W) float32 in {0, 1},
"label": int, "defect": str, "path": str}``; see ``data/io.py`` for resizing and ``docs/data.md`` for layouts.
"""
from manifold_ae.images.data.folder import FolderDataset, FolderSplits, magnetic_tile_splits
from manifold_ae.images.data.io import IMAGE_EXTENSIONS, RESIZE_MODES, ImageDataset, Sample, load_image, load_mask, load_pair
from manifold_ae.images.data.mvtec import CATEGORIES, MVTecAD, mvtec_like
from manifold_ae.images.data.synthetic import DEFAULT_CATEGORIES, SYNTHETIC_CATEGORIES, make_synthetic

__all__ = ["CATEGORIES", "DEFAULT_CATEGORIES", "FolderDataset", "FolderSplits", "IMAGE_EXTENSIONS", "ImageDataset",
           "MVTecAD", "RESIZE_MODES", "SYNTHETIC_CATEGORIES", "Sample", "load_image", "load_mask", "load_pair",
           "magnetic_tile_splits", "make_synthetic", "mvtec_like"]
