"""Heat-map pictures: overlay grids for ``evaluate`` and one annotated picture per image for ``predict``.

* :func:`overlay_grid`: input | reconstruction | residual | ground truth | prediction, one row per image, drawn
  with matplotlib's object API on an Agg canvas (no pyplot, no global backend switch).
* :func:`heatmap_picture`: input | heat map over the input at the size it is given (pixel for pixel), a caption
  with the image score and the threshold decision, and a colour bar whose range is written beside it.

Files are written atomically: the PNG goes to a temporary file in the target folder, then is renamed over ``path``.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from manifold_ae.files import atomic_write

__all__ = ["overlay_grid", "heatmap_picture", "COLUMNS"]

COLUMNS = ("input", "reconstruction", "residual", "ground truth", "prediction")


def _array(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        x = x.float() if x.is_floating_point() else x
        x = x.numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric array or tensor, got {type(x).__name__}") from err


def _images(x: Any, name: str) -> np.ndarray:
    """(N, C, H, W) with C in {1, 3} -> (N, H, W, 3) in [0, 1]."""
    a = _array(x, name)
    if a.ndim != 4 or a.shape[1] not in (1, 3):
        raise ValueError(f"{name} must have shape (N, C, H, W) with C = 1 or 3, got {a.shape}")
    a = np.clip(np.moveaxis(a, 1, -1), 0.0, 1.0)
    return np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a


def _maps(x: Any, name: str, n: int, hw: tuple[int, int]) -> np.ndarray:
    """(N, H, W) or (N, 1, H, W) -> (N, H, W), checked against the images."""
    a = _array(x, name)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.shape != (n, *hw):
        raise ValueError(f"{name} must have shape ({n}, {hw[0]}, {hw[1]}) (or with a channel axis of 1) to "
                         f"match images, got {a.shape}")
    return a


def _tint(image: np.ndarray, mask: np.ndarray, colour: tuple[float, float, float], alpha: float) -> np.ndarray:
    """Blend ``colour`` into ``image`` (H, W, 3) where ``mask`` (H, W) is set."""
    out = image.copy()
    sel = mask > 0.5
    out[sel] = (1 - alpha) * out[sel] + alpha * np.asarray(colour)
    return out


def overlay_grid(images: Any, reconstructions: Any, residuals: Any, masks: Any | None, predictions: Any | None,
                 *, path: str | os.PathLike, titles: Sequence[str] | None = None,
                 scores: Sequence[float] | None = None, vmax: float | None = None, cmap: str = "inferno",
                 alpha: float = 0.5, cell_inches: float = 1.8, dpi: int = 100) -> Path:
    """Write a PNG grid with one row per image and the columns of ``COLUMNS``.

    Parameters
    ----------
    images, reconstructions : (N, C, H, W), C in {1, 3}, values in [0, 1]
    residuals : (N, H, W)
        Heat maps (e.g. smoothed residual maps), drawn with one colour scale for all rows.
    masks : (N, H, W) or (N, 1, H, W) or None
        Ground truth, drawn as a red tint on the input (None: the column says "no mask").
    predictions : (N, H, W) or (N, 1, H, W) or None
        Binary predictions (``heat map >= threshold``), drawn as a cyan tint on the input.
    path : path-like
        Output PNG; parent folders are created; written atomically (temporary file, then rename).
    titles, scores : length-N sequences, optional
        Row labels (e.g. file names) and image scores shown beside each row.
    vmax : float, optional
        Top of the heat-map colour scale (default: the largest residual), bottom is 0.
    cmap, alpha, cell_inches, dpi
        Heat-map colour map, tint opacity, size of one cell, resolution.

    Returns
    -------
    Path of the written PNG.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = _images(images, "images")
    n, h, w = x.shape[:3]
    if n == 0:
        raise ValueError("images is empty; expected at least one image")
    x_hat = _images(reconstructions, "reconstructions")
    if x_hat.shape != x.shape:
        raise ValueError(f"reconstructions must have the shape of images {x.shape[:3]}, got {x_hat.shape[:3]}")
    r = _maps(residuals, "residuals", n, (h, w))
    gt = None if masks is None else _maps(masks, "masks", n, (h, w))
    pred = None if predictions is None else _maps(predictions, "predictions", n, (h, w))
    for name, seq in (("titles", titles), ("scores", scores)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{name} must have one entry per image ({n}), got {len(seq)}")
    top = float(r.max()) if vmax is None else float(vmax)
    top = top if top > 0 else 1.0

    fig = Figure(figsize=(cell_inches * len(COLUMNS), cell_inches * n), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, len(COLUMNS), squeeze=False)
    for i in range(n):
        cells = [x[i], x_hat[i], None,
                 None if gt is None else _tint(x[i], gt[i], (1.0, 0.1, 0.1), alpha),
                 None if pred is None else _tint(x[i], pred[i], (0.1, 0.9, 0.9), alpha)]
        for j, ax in enumerate(axes[i]):
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 2:
                ax.imshow(r[i], cmap=cmap, vmin=0.0, vmax=top, interpolation="nearest")
            elif cells[j] is not None:
                ax.imshow(cells[j], interpolation="nearest")
            else:
                ax.text(0.5, 0.5, "no mask" if j == 3 else "no prediction", ha="center", va="center",
                        transform=ax.transAxes, fontsize=8)
            if i == 0:
                ax.set_title(COLUMNS[j], fontsize=9)
        label = [] if titles is None else [str(titles[i])]
        label += [] if scores is None else [f"score {float(scores[i]):.4g}"]
        if label:
            axes[i][0].set_ylabel("\n".join(label), fontsize=7)
    fig.tight_layout()

    return atomic_write(path, lambda handle: fig.savefig(handle, format="png"), binary=True)


def heatmap_picture(image: Any, heatmap: Any, *, score: float, threshold: float | None, vmax: float,
                    range_note: str, no_threshold: str = "the checkpoint stores none", cmap: str = "inferno",
                    alpha: float = 0.5, bar_height: int = 10, font_size: int = 11) -> Any:
    """An annotated heat-map picture: ``input | heat map over input`` above a caption and a colour bar.

    The two panels are the image's own pixels (no resampling): ``panels[:, :W]`` is the input, ``panels[:, W:]``
    the blend ``(1 - alpha) * input + alpha * cmap(heatmap / vmax)``. Below them: the score and the decision
    (``score >= threshold``: anomalous; or "no threshold" and why), a horizontal colour bar from 0 (left) to
    ``vmax`` (right), and the range with ``range_note`` saying where ``vmax`` comes from. The caption lines are
    also stored as PNG text chunks (``score``, ``decision``, ``colour_range``) for programs.

    Parameters
    ----------
    image : (C, H, W), C in {1, 3}, values in [0, 1]
    heatmap : (H, W)
    score : float
        The image score.
    threshold : float or None
        The image threshold; None writes "no threshold: ``no_threshold``".
    vmax : float > 0
        Top of the colour scale (fixed by the caller, so pictures of one run are comparable).
    range_note : str
        Where ``vmax`` comes from, e.g. "2 x pixel threshold of held-out normals".

    Returns
    -------
    PIL.Image.Image (RGB) of width ``max(2 W, caption width)``, with ``.info`` holding the caption lines.
    """
    from matplotlib import colormaps
    from PIL import Image, ImageDraw, ImageFont

    x = _images(_array(image, "image")[None], "image")[0]  # (H, W, 3)
    h, w = x.shape[:2]
    heat = _array(heatmap, "heatmap")
    if heat.shape != (h, w):
        raise ValueError(f"heatmap must have shape ({h}, {w}) to match image, got {heat.shape}")
    if not (math.isfinite(vmax) and vmax > 0):
        raise ValueError(f"vmax must be a finite number > 0, got {vmax}")
    colour = colormaps[cmap](np.clip(heat / vmax, 0.0, 1.0))[..., :3]  # (H, W, 3)
    panels = np.concatenate([x, (1 - alpha) * x + alpha * colour], axis=1)  # (H, 2W, 3)

    if threshold is None:
        decision = f"no threshold: {no_threshold}"
    else:
        verdict = "anomalous" if score >= threshold else "normal"
        decision = f"{verdict}: score {'>=' if score >= threshold else '<'} threshold {threshold:.4g}"
    lines = [f"score {score:.4g}", decision, f"colour 0 to {vmax:.4g} ({range_note})"]
    font = ImageFont.load_default(size=font_size)
    line_h = font_size + 3
    text_w = max(int(font.getlength(t)) for t in lines) + 4
    width = max(2 * w, text_w)
    canvas = Image.new("RGB", (width, h + 3 * line_h + bar_height + 4), "white")
    canvas.paste(Image.fromarray((panels * 255 + 0.5).astype(np.uint8)), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for k, text in enumerate(lines[:2]):
        draw.text((2, h + 1 + k * line_h), text, fill="black", font=font)
    bar_top = h + 2 * line_h + 2
    bar = colormaps[cmap](np.linspace(0.0, 1.0, width))[None, :, :3].repeat(bar_height, axis=0)  # (bar, width, 3)
    canvas.paste(Image.fromarray((bar * 255 + 0.5).astype(np.uint8)), (0, bar_top))
    draw.text((2, bar_top + bar_height + 1), lines[2], fill="black", font=font)
    canvas.info.update({"score": f"{score!r}", "decision": decision, "colour_range": lines[2]})
    return canvas
