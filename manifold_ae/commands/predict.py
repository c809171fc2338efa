"""``manifold-ae predict``: checkpoint + images -> heat-map PNGs and ``scores.json`` (T8).

    manifold-ae predict runs/quick path/to/images --out runs/quick/predict
    manifold-ae predict runs/mt ../shared/data/magnetic-tile/MT_Crack/Imgs --glob '*.jpg'

Images go through :class:`~manifold_ae.images.pipeline.Pipeline`, the same path ``evaluate`` uses, so a file gets
the same score from both. ``anomalous`` uses the image threshold stored in the checkpoint at the end of
training (a quantile of held-out normal training images); it is ``null`` for checkpoints without one, and
``no_decision`` (in scores.json and on stderr) says why. Unreadable files are skipped and listed (``failures``);
the exit status is 1 when some files failed, 2 when all did or on usage errors.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from manifold_ae.images.config import CHECKPOINT_NAME
from manifold_ae.images.pipeline import Pipeline
from manifold_ae.files import atomic_write, write_json

__all__ = ["main", "predict", "find_images", "heatmap_png"]


def find_images(inputs: Sequence[str | Path], *, glob: str = "*") -> list[Path]:
    """Image files named in ``inputs``: files as given, folders searched (not recursively) with ``glob``."""
    from manifold_ae.images.data.io import IMAGE_EXTENSIONS

    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.glob(glob) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                raise ValueError(f"folder {path} holds no image files matching {glob!r}; expected "
                                 f"{', '.join(IMAGE_EXTENSIONS)} files")
            found += files
        elif path.is_file():
            found.append(path)
        else:
            raise ValueError(f"{path} does not exist; expected an image file or a folder of images")
    if not found:
        raise ValueError("no images given; expected image files or folders")
    return found


def heatmap_png(source: str | Path, heatmap: torch.Tensor, path: str | Path, *, score: float,
                threshold: float | None, vmax: float, range_note: str, channels: int, resize_mode: str = "stretch",
                no_threshold: str = "the checkpoint stores none", size: int | Sequence[int] | None = None,
                alpha: float = 0.5, cmap: str = "inferno") -> Path:
    """Write ``input | heat map over input`` at the image file's resolution, with score, decision and colour bar.

    Parameters
    ----------
    source : path of the image file, read again at its own resolution (H0, W0)
    heatmap : (S, S), the model-grid heat map of that file; mapped back onto the file's pixels (the letterbox of
        ``resize_mode="pad"`` cropped first, as :func:`manifold_ae.images.data.io.load_image` placed it), then
        resized bilinearly to (H0, W0), or to ``size`` when given (the image too)
    score, threshold : the image score and the image threshold (None: "no threshold: ``no_threshold``")
    vmax, range_note : top of the colour scale (bottom 0) and where it comes from
    channels, resize_mode : as the checkpoint's ``data.channels`` and ``data.resize_mode``
    """
    import torch.nn.functional as F
    from PIL.PngImagePlugin import PngInfo

    from manifold_ae.checks import as_hw
    from manifold_ae.images.data.io import load_image
    from manifold_ae.viz.overlays import heatmap_picture

    image = load_image(source, channels=channels)  # (C, H0, W0) at file resolution
    h0, w0 = image.shape[-2:]
    heat = heatmap.detach().float().cpu()  # (S, S)
    if resize_mode == "pad":  # keep the letterbox's inner box only
        big_h, big_w = heat.shape
        s = min(big_h / h0, big_w / w0)
        inner = (min(big_h, max(1, round(h0 * s))), min(big_w, max(1, round(w0 * s))))
        top, left = (big_h - inner[0]) // 2, (big_w - inner[1]) // 2
        heat = heat[top:top + inner[0], left:left + inner[1]]
    out_hw = (h0, w0) if size is None else as_hw(size, "size")
    heat = F.interpolate(heat[None, None], size=out_hw, mode="bilinear", align_corners=False)[0, 0]  # (H, W)
    if out_hw != (h0, w0):
        image = F.interpolate(image[None], size=out_hw, mode="bilinear", align_corners=False,
                              antialias=True)[0].clamp(0, 1)
    picture = heatmap_picture(image, heat, score=score, threshold=threshold, vmax=vmax, range_note=range_note,
                              no_threshold=no_threshold, alpha=alpha, cmap=cmap)
    info = PngInfo()
    for key, value in picture.info.items():
        info.add_text(key, value)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda handle: picture.save(handle, format="PNG", pnginfo=info), binary=True)
    return path


def no_decision_reason(pipe: Pipeline) -> str | None:
    """Why ``pipe`` cannot flag images as anomalous (no stored image threshold), or None when it can."""
    if pipe.thresholds.get("image") is not None:
        return None
    config = getattr(pipe, "config", None)
    data = config.data if config is not None else None
    if data is not None and data.holdout_fraction <= 0 and data.dataset not in ("mvtec_ad2", "mvtec_loco"):
        return ("the checkpoint has no image threshold: it was trained with data.holdout_fraction = "
                f"{data.holdout_fraction}, so no held-out normal images were scored; retrain with "
                "--data.holdout_fraction > 0 to get decisions")
    return ("the checkpoint has no image threshold (thresholds are stored at the end of training, from held-out "
            "normal images); finish the training run to get decisions")


def predict(checkpoint: str | Path, inputs: Sequence[str | Path], *, out_dir: str | Path, glob: str = "*",
            device: str = "auto", heatmaps: bool = True, backend: str = "torch") -> dict[str, Any]:
    """Score images with a checkpoint; writes ``scores.json`` (and ``heatmaps/*.png``) into ``out_dir``.

    A file that cannot be read is listed under ``failures`` (path and reason) and the rest are scored; with
    no stored threshold ``anomalous`` is null and ``no_decision`` says why; a threshold from fewer held-out
    images than its quantile needs is stated in ``threshold_warning`` (``pipeline.threshold_support``), and so is
    a threshold set by one held-out image whose score stands apart from the rest (``outlier_warning``).
    """
    from manifold_ae.images.pipeline import fpr_bound_warning, threshold_support

    pipe = Pipeline.from_checkpoint(checkpoint, device=device)
    if backend not in ("torch", "onnxruntime"):
        raise ValueError(f"backend must be one of ['torch', 'onnxruntime'], got {backend!r}")
    if backend == "onnxruntime":  # the graph of manifold-ae export scores; loading and output code stay the same
        from manifold_ae.images.export import OnnxPipeline, default_export_dir

        pipe = OnnxPipeline(pipe, default_export_dir(checkpoint))
    paths = find_images(inputs, glob=glob)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    thresholds = pipe.thresholds or None
    readable, failures = [], []
    for path in paths:
        try:
            pipe.load([path])
        except (ValueError, OSError) as err:
            failures.append({"path": str(path), "error": str(err)})
        else:
            readable.append(path)
    images: list[dict[str, Any]] = []
    reason = no_decision_reason(pipe)
    warning = None
    if thresholds and thresholds.get("rule") == "fpr_bound":
        warning = fpr_bound_warning(int(thresholds["num_images"]), fpr=float(thresholds["fpr"]),
                                    confidence=float(thresholds["requested_confidence"]),
                                    achieved=float(thresholds["confidence"]), needed=int(thresholds["images_needed"]))
    elif thresholds and thresholds.get("num_images") and thresholds.get("quantile") is not None:
        warning = threshold_support(int(thresholds["num_images"]), quantile=float(thresholds["quantile"]))["warning"]
    if thresholds and thresholds.get("outlier_warning"):  # one held-out image sets the threshold (pipeline._set_by)
        warning = "; ".join(w for w in (warning, thresholds["outlier_warning"]) if w)
    if readable:
        scored = pipe.score_paths(readable)
        vmax = 2 * thresholds["pixel"] if thresholds else float(scored.heatmaps.max())
        range_note = ("2 x the pixel threshold of held-out normals" if thresholds else
                      f"largest heat value of these {len(readable)} images; the checkpoint stores no threshold")
        used: set[str] = set()
        for i, path in enumerate(readable):
            record: dict[str, Any] = {"path": str(path), "score": float(scored.scores[i]),
                                      "anomalous": None if reason else bool(scored.scores[i] >= thresholds["image"])}
            if heatmaps:
                name = path.stem if path.stem not in used else f"{path.stem}_{i}"
                used.add(name)
                written = heatmap_png(path, scored.heatmaps[i], out_dir / "heatmaps" / f"{name}.png",
                                      score=float(scored.scores[i]), threshold=None if reason else thresholds["image"],
                                      vmax=vmax, range_note=range_note, channels=pipe.channels,
                                      resize_mode=pipe.resize_mode)
                record["heatmap"] = str(written.relative_to(out_dir))
            images.append(record)
    result = {"checkpoint": str(checkpoint), "thresholds": thresholds, "no_decision": reason,
              "threshold_warning": warning, "images": images, "failures": failures}
    write_json(out_dir / "scores.json", result)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """``manifold-ae predict CHECKPOINT IMAGES... --out DIR [--glob PATTERN]``."""
    p = argparse.ArgumentParser(prog="manifold-ae predict", allow_abbrev=False,
                                description="Score images with a trained checkpoint; write heat maps and scores.json.")
    p.add_argument("checkpoint", help=f"{CHECKPOINT_NAME} or its run directory")
    p.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    p.add_argument("--out", default=None, help="output directory (default: <run directory>/predict)")
    p.add_argument("--glob", default="*", help="file pattern inside folders, e.g. '*.jpg' (default: all images)")
    p.add_argument("--device", default="auto")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                   help="onnxruntime: score with the graph of manifold-ae export (<run directory>/export)")
    p.add_argument("--no-heatmaps", action="store_true", help="write scores.json only")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    ckpt = Path(args.checkpoint)
    out = Path(args.out) if args.out else (ckpt if ckpt.is_dir() else ckpt.parent) / "predict"
    try:
        result = predict(args.checkpoint, args.inputs, out_dir=out, glob=args.glob, device=args.device,
                         heatmaps=not args.no_heatmaps, backend=args.backend)
    except ValueError as err:
        print(f"manifold-ae predict: {err}", file=sys.stderr)
        return 2
    for failure in result["failures"]:
        print(f"manifold-ae predict: skipped {failure['path']}: {failure['error']}", file=sys.stderr)
    if result["no_decision"]:
        print(f"manifold-ae predict: no anomalous/normal decision: {result['no_decision']}", file=sys.stderr)
    if result["threshold_warning"]:
        print(f"manifold-ae predict: warning: {result['threshold_warning']}", file=sys.stderr)
    flagged = sum(1 for r in result["images"] if r["anomalous"])
    thr = "" if result["no_decision"] else f", {flagged} flagged anomalous"
    failed = f", {len(result['failures'])} unreadable (listed in scores.json)" if result["failures"] else ""
    print(f"scored {len(result['images'])} images{thr}{failed}; results in {out}")
    if not result["failures"]:
        return 0
    return 2 if not result["images"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
