"""``manifold-ae export``: a checkpoint -> one ONNX graph of its scoring path + JSON metadata (docs/deploy.md).

    manifold-ae export runs/quick --format onnx
    manifold-ae export runs/quick/checkpoint.pt --format onnx --out deploy/quick

Writes ``model.onnx`` (images (B, C, H, W) in [0, 1] -> reconstruction, heat map, image score; dynamic batch) and
``model.json`` (preprocessing, score settings, thresholds, the measured parity) into ``--out`` (default
``<run directory>/export``), only after the graph has reproduced the Pipeline's heat maps on a probe batch.
``manifold-ae predict RUN IMAGES --backend onnxruntime`` then scores with it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from manifold_ae.images.config import CHECKPOINT_NAME

__all__ = ["main"]

FORMATS = ("onnx",)


def main(argv: Sequence[str] | None = None) -> int:
    """``manifold-ae export CHECKPOINT --format onnx [--out DIR]``."""
    p = argparse.ArgumentParser(prog="manifold-ae export", allow_abbrev=False,
                                description="Export a checkpoint's scoring path (model, residual, smoothing, score) "
                                            "as one ONNX graph with its metadata, after checking parity.")
    p.add_argument("checkpoint", help=f"{CHECKPOINT_NAME} or its run directory")
    p.add_argument("--format", choices=FORMATS, default="onnx")
    p.add_argument("--out", default=None, help="output directory (default: <run directory>/export)")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        from manifold_ae.images.export import default_export_dir, export_onnx
        from manifold_ae.images.pipeline import Pipeline

        out = Path(args.out) if args.out else default_export_dir(args.checkpoint)
        meta = export_onnx(Pipeline.from_checkpoint(args.checkpoint, device="cpu"), out,
                           checkpoint=str(args.checkpoint))
    except ValueError as err:
        print(f"manifold-ae export: {err}", file=sys.stderr)
        return 2
    gap = meta["parity"]["max_abs_gap"]["heatmap"]
    print(f"exported {args.checkpoint} to {out} (model.onnx, model.json); heat-map parity {gap:.1e} "
          f"<= {meta['parity']['atol']:.0e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
