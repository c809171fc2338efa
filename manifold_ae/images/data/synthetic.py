"""The built-in synthetic dataset: textured surfaces with realistic defects, written in MVTec AD layout.

``make_synthetic(root)`` (or ``manifold-ae make-synthetic --out DIR``) writes, per category,
``train/good``, ``test/good``, ``test/<defect>`` and ``ground_truth/<defect>/<stem>_mask.png``, readable with
``mvtec_like(root, category)``. Normal images are textures (``data/textures.py``: procedural weave, wood, marble,
grid, and crops of scikit-image's bundled brick, grass and gravel photographs) with a fresh random crop, phase,
flip and small colour jitter per image. Defective test images are normal images with one defect blended in::

    image = (1 - alpha) * clean + alpha * content,    mask = (alpha > 0) and (8-bit image != 8-bit clean)

so the mask is exactly the set of pixels the defect changed in the written PNG (alpha is cut to 0 below a
floor, which keeps masks crisp while the visible edges stay soft). Defect colours are tones the surface itself
has (channel quantiles of the clean image), so no defect is found by its colour range alone; what is anomalous
is the shape. Defect types (:data:`DEFECTS`):

``scratch``  thin curved line (quadratic Bézier, 1–2.5 px) in the surface's darkest or brightest tone
``spot``     one to three small discs (radius 1.5–3.5 px) in a dark or bright surface tone
``hole``     irregular blob in the darkest tone with a rim in the brightest tone
``stain``    soft-edged, partly transparent blob of a dark, slightly tinted surface tone
``color``    smooth region whose colour is shifted channel-wise by 0.05–0.12

Everything is a function of ``seed``: every image has its own generator derived from (seed, category, split,
index), so any subset of categories or counts reproduces the same files.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from manifold_ae.checks import check_choice, check_int
from manifold_ae.corruptions.textures import make_texture, perlin_noise

__all__ = ["SYNTHETIC_CATEGORIES", "DEFAULT_CATEGORIES", "DEFECTS", "synthetic_sample", "make_synthetic", "main"]

DEFECTS: tuple[str, ...] = ("scratch", "spot", "hole", "stain", "color")
#: category (= texture name) → its defect types, each a ``test/<defect>`` folder
SYNTHETIC_CATEGORIES: dict[str, tuple[str, ...]] = {
    "weave": ("hole", "scratch", "stain", "color"),
    "wood": ("scratch", "hole", "color"),
    "brick": ("hole", "spot", "stain"),
    "marble": ("scratch", "spot", "stain"),
    "grid": ("hole", "scratch", "color"),
    "grass": ("spot", "stain", "color"),
    "gravel": ("hole", "stain", "color"),
}
DEFAULT_CATEGORIES: tuple[str, ...] = ("weave", "wood", "brick")
_MARKER = ".synthetic.json"
_FORMAT_VERSION = 1
PathLike = str | os.PathLike


def _generator(seed: int, category: str, group: str, index: int) -> torch.Generator:
    """An independent generator per image, stable across runs, machines and subsets of the dataset."""
    entropy = [seed, zlib.crc32(category.encode()), zlib.crc32(group.encode()), index]
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))


def _u(gen: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * float(torch.rand((), generator=gen))


def _offsets(h: int, w: int, gen: torch.Generator, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Offsets dy (H, 1), dx (1, W) of every pixel from a random centre at least ``margin`` px inside."""
    cy, cx = _u(gen, margin, h - margin), _u(gen, margin, w - margin)
    return torch.arange(h, dtype=torch.float32)[:, None] - cy, torch.arange(w, dtype=torch.float32)[None, :] - cx


def _polar(h: int, w: int, gen: torch.Generator, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance (H, W) and angle (H, W) of every pixel from a random centre at least ``margin`` px inside."""
    dy, dx = _offsets(h, w, gen, margin)
    return torch.sqrt(dy ** 2 + dx ** 2), torch.atan2(dy, dx.expand(h, w))


def _wobble(angle: torch.Tensor, gen: torch.Generator, amount: float) -> torch.Tensor:
    """1 + a smooth random function of the angle (3 harmonics) with amplitude about ``amount``."""
    out = torch.ones_like(angle)
    for k in (2, 3, 5):
        out = out + amount / k * math.sqrt(k) * torch.sin(k * angle + _u(gen, 0, 2 * math.pi))
    return out


def _floor(alpha: torch.Tensor, low: float) -> torch.Tensor:
    """Cut alpha to 0 below ``low`` so the mask (alpha > 0) has a crisp edge."""
    return torch.where(alpha >= low, alpha, torch.zeros_like(alpha))


def _scratch(clean: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    _, h, w = clean.shape
    s = min(h, w) / 128
    length = _u(gen, 0.3, 0.6) * min(h, w)
    theta = _u(gen, 0, math.pi)
    cy, cx = _u(gen, 0.3 * h, 0.7 * h), _u(gen, 0.3 * w, 0.7 * w)
    d = torch.tensor([math.sin(theta), math.cos(theta)]) * length / 2
    normal = torch.tensor([d[1], -d[0]])
    p0, p2 = torch.tensor([cy, cx]) - d, torch.tensor([cy, cx]) + d
    p1 = torch.tensor([cy, cx]) + normal * _u(gen, -0.6, 0.6)  # control point: bend of the curve
    t = torch.linspace(0, 1, int(2 * length) + 2)[:, None]  # points ≤ 0.5 px apart
    curve = (1 - t) ** 2 * p0 + 2 * t * (1 - t) * p1 + t ** 2 * p2  # (N, 2)
    yy = torch.arange(h, dtype=torch.float32)[:, None, None]
    xx = torch.arange(w, dtype=torch.float32)[None, :, None]
    dist = torch.full((h, w), float("inf"))  # (H, W) px to the curve, in chunks of 64 points to bound memory
    for chunk in curve.split(64):
        dist = torch.minimum(dist, torch.sqrt((yy - chunk[:, 0]) ** 2 + (xx - chunk[:, 1]) ** 2).amin(-1))
    width = _u(gen, 1.0, 2.5) * max(1.0, s)
    alpha = _floor((width / 2 + 0.5 - dist).clamp(0, 1), 0.3)
    tone = _tone(clean, 0.03) if _u(gen) < 0.5 else _tone(clean, 0.97)  # darkest or brightest surface colour
    return alpha, tone[:, None, None].expand_as(clean).clone()


def _spot(clean: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    _, h, w = clean.shape
    s = min(h, w) / 128
    dy0, dx0 = _offsets(h, w, gen, 14 * s)
    alpha = torch.zeros(h, w)
    for k in range(1 + int(_u(gen, 0, 3))):
        off, phi = (0.0 if k == 0 else _u(gen, 3, 8) * s), _u(gen, 0, 2 * math.pi)  # extras within ~8 px
        dist = torch.sqrt((dy0 - off * math.sin(phi)) ** 2 + (dx0 - off * math.cos(phi)) ** 2)  # (H, W)
        alpha = torch.maximum(alpha, (_u(gen, 1.5, 3.5) * s + 0.5 - dist).clamp(0, 1))
    tone = _tone(clean, _u(gen, 0.01, 0.1)) if _u(gen) < 0.5 else _tone(clean, _u(gen, 0.9, 0.99))
    return _floor(alpha, 0.3), tone[:, None, None].expand_as(clean).clone()


def _hole(clean: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    _, h, w = clean.shape
    s = min(h, w) / 128
    radius = _u(gen, 4, 8) * s
    dist, angle = _polar(h, w, gen, 2 * radius)
    rel = dist / (radius * _wobble(angle, gen, 0.15))  # 1 on the (irregular) hole's edge
    core = _tone(clean, 0.01)[:, None, None] * (0.9 + 0.1 * torch.rand(h, w, generator=gen))  # darkest tone
    rim = _tone(clean, 0.98)[:, None, None].expand_as(clean)  # brightest tone
    content = torch.where(rel < 1, core, rim)
    return (rel < 1.35).float(), content


def _tone(clean: torch.Tensor, q: float) -> torch.Tensor:
    """The ``q``-quantile of each channel of the clean surface (3,): a colour the normal images already have."""
    return torch.quantile(clean.flatten(1), q, dim=1)


def _stain(clean: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    _, h, w = clean.shape
    s = min(h, w) / 128
    radius = _u(gen, 7, 15) * s
    dist, angle = _polar(h, w, gen, radius)
    field = 1 - dist / (radius * _wobble(angle, gen, 0.2)) + 0.15 * perlin_noise(1, h, w, cells=4, generator=gen)[0]
    alpha = _u(gen, 0.45, 0.8) * (field / 0.4).clamp(0, 1) ** 0.7  # soft edge over 40 % of the radius
    tone = _tone(clean, _u(gen, 0.02, 0.2)) * (1 + 0.15 * (2 * torch.rand(3, generator=gen) - 1))  # dark, tinted
    return _floor(alpha, 0.2), tone.clamp(0, 1)[:, None, None].expand_as(clean).clone()


def _color(clean: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    _, h, w = clean.shape
    s = min(h, w) / 128
    radius = _u(gen, 9, 18) * s
    dist, angle = _polar(h, w, gen, radius)
    field = 1 - dist / (radius * _wobble(angle, gen, 0.25))
    alpha = _floor((field / 0.25).clamp(0, 1), 0.3)
    sign = torch.where(torch.rand(3, generator=gen) < 0.5, -1.0, 1.0)
    shift = sign * (0.05 + 0.07 * torch.rand(3, generator=gen))  # (3,) channel-wise shift
    return alpha, (clean + shift[:, None, None]).clamp(0, 1)


_DEFECT_FUNCS: dict[str, Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]] = {
    "scratch": _scratch, "spot": _spot, "hole": _hole, "stain": _stain, "color": _color}


def synthetic_sample(category: str, *, group: str, index: int, image_size: int = 128,
                     seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One image of the synthetic dataset, as written by :func:`make_synthetic` (before 8-bit rounding).

    Parameters
    ----------
    category : key of :data:`SYNTHETIC_CATEGORIES`
    group : "train", "good" (normal test image) or a defect type of the category
    index : int, position inside the group

    Returns
    -------
    clean : (3, H, W) the normal texture; image : (3, H, W) = clean with the defect blended in (= clean for
    "train"/"good"); mask : (1, H, W) float in {0, 1}, 1 where the defect changed the 8-bit image.
    """
    check_choice(category, "category", tuple(SYNTHETIC_CATEGORIES))
    check_choice(group, "group", ("train", "good") + SYNTHETIC_CATEGORIES[category])
    gen = _generator(seed, category, group, index)
    clean = make_texture(category, 1, image_size, image_size, generator=gen)[0]  # (3, H, W)
    if group in ("train", "good"):
        return clean, clean.clone(), torch.zeros(1, image_size, image_size)
    alpha, content = _DEFECT_FUNCS[group](clean, gen)  # (H, W), (3, H, W)
    image = ((1 - alpha) * clean + alpha * content).clamp(0, 1)
    changed = (_to_uint8(image) != _to_uint8(clean)).any(0)  # (H, W) as the PNG files will show it
    return clean, image, (changed & (alpha > 0)).float()[None]


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def _save(x: torch.Tensor, path: Path) -> None:
    arr = _to_uint8(x)  # (C, H, W)
    mode = "L" if arr.shape[0] == 1 else "RGB"
    Image.fromarray(arr[0].numpy() if mode == "L" else arr.permute(1, 2, 0).numpy(), mode=mode).save(path)


def _plan(category: str, n_train: int, n_test_good: int, n_test_defect: int) -> list[tuple[str, int]]:
    """(group, index) of every file of a category; defects take turns over the category's types."""
    types = SYNTHETIC_CATEGORIES[category]
    plan = [("train", i) for i in range(n_train)] + [("good", i) for i in range(n_test_good)]
    return plan + [(types[i % len(types)], i // len(types)) for i in range(n_test_defect)]


def _write_category(root: Path, category: str, params: dict, *, overwrite: bool, progress) -> None:
    final = root / category
    marker = final / _MARKER
    if final.exists() and any(final.iterdir()):
        old = json.loads(marker.read_text()) if marker.is_file() else None
        if old == params:
            progress.update(len(_plan(category, params["n_train"], params["n_test_good"], params["n_test_defect"])))
            return  # already generated with the same parameters
        if old is None:
            raise ValueError(f"{final} exists and is not a synthetic dataset folder (no {_MARKER}); expected an "
                             "empty or absent folder, refusing to write into it")
        if not overwrite:
            raise ValueError(f"{final} was generated with other parameters {old}; expected {params} "
                             "(pass overwrite=True / --overwrite to replace it)")
        shutil.rmtree(final)
    tmp = root / f".{category}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for group, index in _plan(category, params["n_train"], params["n_test_good"], params["n_test_defect"]):
        _, image, mask = synthetic_sample(category, group=group, index=index, image_size=params["image_size"],
                                          seed=params["seed"])
        folder = tmp / ("train/good" if group == "train" else f"test/{group}")
        folder.mkdir(parents=True, exist_ok=True)
        _save(image, folder / f"{index:03d}.png")
        if group not in ("train", "good"):
            gt = tmp / "ground_truth" / group
            gt.mkdir(parents=True, exist_ok=True)
            _save(mask, gt / f"{index:03d}_mask.png")
        progress.update(1)
    (tmp / _MARKER).write_text(json.dumps(params, indent=1))
    if final.exists():
        final.rmdir()  # empty folder
    tmp.rename(final)  # atomic: a killed run leaves no half-written category


def make_synthetic(root: PathLike, *, categories: Sequence[str] | None = None, n_train: int = 80,
                   n_test_good: int = 20, n_test_defect: int = 30, image_size: int = 128, seed: int = 0,
                   overwrite: bool = False, progress: bool = False) -> Path:
    """Write the synthetic dataset under ``root`` in MVTec layout and return ``root``.

    Parameters
    ----------
    root : folder to write into (created if absent).
    categories : keys of :data:`SYNTHETIC_CATEGORIES`, default :data:`DEFAULT_CATEGORIES`.
    n_train, n_test_good, n_test_defect : int
        Images per category; the defect images take turns over the category's defect types.
    image_size : int, default 128 (square images).
    seed : int, default 0
    overwrite : bool, default False
        Replace a category folder generated earlier with other parameters. A folder generated with the same
        parameters is kept as it is (generation is skipped), a folder not made by this function is never touched.
    progress : bool, default False
        Show a tqdm bar.
    """
    categories = tuple(DEFAULT_CATEGORIES if categories is None else categories)
    if not categories:
        raise ValueError(f"categories must name at least one of {list(SYNTHETIC_CATEGORIES)}, got none")
    for c in categories:
        check_choice(c, "categories", tuple(SYNTHETIC_CATEGORIES))
    check_int(n_train, "n_train", minimum=1)
    check_int(n_test_good, "n_test_good", minimum=1)
    check_int(n_test_defect, "n_test_defect", minimum=1)
    check_int(image_size, "image_size", minimum=32)
    check_int(seed, "seed", minimum=0)
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"root {root} is a file; expected a folder to write the dataset into")
    root.mkdir(parents=True, exist_ok=True)
    from tqdm.auto import tqdm  # local: only needed when writing

    total = sum(len(_plan(c, n_train, n_test_good, n_test_defect)) for c in categories)
    with tqdm(total=total, desc="make-synthetic", unit="img", disable=not progress) as bar:
        for category in categories:
            params = {"version": _FORMAT_VERSION, "category": category, "n_train": n_train,
                      "n_test_good": n_test_good, "n_test_defect": n_test_defect, "image_size": image_size,
                      "seed": seed, "defects": list(SYNTHETIC_CATEGORIES[category])}
            bar.set_postfix_str(category)
            _write_category(root, category, params, overwrite=overwrite, progress=bar)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """``manifold-ae make-synthetic --out DIR [--categories ...] [--image-size N] [--seed S] [--n-train N]``."""
    parser = argparse.ArgumentParser(prog="manifold-ae make-synthetic",
                                     description="Write the built-in synthetic image dataset in MVTec AD layout.")
    parser.add_argument("--out", required=True, type=Path, help="folder to write into")
    parser.add_argument("--categories", nargs="+", choices=list(SYNTHETIC_CATEGORIES),
                        default=list(DEFAULT_CATEGORIES), help="default: %(default)s")
    parser.add_argument("--image-size", type=int, default=128, help="square image side (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=80, help="normal training images per category")
    parser.add_argument("--n-test-good", type=int, default=20, help="normal test images per category")
    parser.add_argument("--n-test-defect", type=int, default=30, help="defective test images per category")
    parser.add_argument("--overwrite", action="store_true", help="replace categories made with other parameters")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        root = make_synthetic(args.out, categories=args.categories, n_train=args.n_train,
                              n_test_good=args.n_test_good, n_test_defect=args.n_test_defect,
                              image_size=args.image_size, seed=args.seed, overwrite=args.overwrite,
                              progress=not args.quiet)
    except ValueError as err:
        parser.error(str(err))  # exits with status 2 and the message
    for c in args.categories:
        print(f"{root / c}: train/good, test/good, test/{{{','.join(SYNTHETIC_CATEGORIES[c])}}}, ground_truth")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
