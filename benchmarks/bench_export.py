"""Speed of the exported ONNX graph in onnxruntime against the Pipeline in torch eager, same run, on the CPU.

Both sides compute the whole scoring path of :class:`~manifold_ae.images.pipeline.Pipeline` (model, channel-mean
squared residual, Gaussian smoothing, image score) for one batch of images already loaded; the graph is the one
``manifold-ae export`` writes (``manifold_ae.images.export.export_onnx``, which checks parity before writing), and
every row records its own heat-map gap to the Pipeline, so a speed-up is only reported at parity. Batches 1 and 8, at
128^2 and 256^2, the paper's GatedUNet (``ModelConfig()`` defaults; ``--quick``: width 8, fewer repeats). Both
backends get the same number of threads (``--threads``, default 1: the machine is shared).

    python benchmarks/bench_export.py --quick          # smoke run, about a minute on one core
    python benchmarks/bench_export.py                  # the recorded run (docs/deploy.md)

Writes ``benchmarks/results/export_cpu[_quick].json``. Goal: onnxruntime >= 1.5x faster than eager, at parity.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from manifold_ae.images.config import ModelConfig, ScoreConfig
from manifold_ae.images.export import OnnxScorer, export_onnx
from manifold_ae.images.pipeline import Pipeline, build_model

ROOT = Path(__file__).resolve().parents[1]
GOAL_SPEEDUP = 1.5


def _median_seconds(fn: Callable[[], Any], *, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_size(size: int, *, model: ModelConfig, batches: tuple[int, ...], threads: int, warmup: int,
               repeats: int) -> list[dict[str, Any]]:
    """Rows ``{size, batch, torch_ms, onnxruntime_ms, speedup, heatmap_gap}`` for one image size."""
    torch.manual_seed(0)
    pipe = Pipeline(build_model(model, channels=3), image_size=size, channels=3, score=ScoreConfig())
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(pipe, tmp)
        scorer = OnnxScorer(Path(tmp) / "model.onnx", threads=threads)
    rows = []
    for batch in batches:
        x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))  # (B, 3, S, S)
        gap = float((scorer(x)[1] - pipe(x).heatmap).abs().max())
        eager = _median_seconds(lambda: pipe(x), warmup=warmup, repeats=repeats)
        ort = _median_seconds(lambda: scorer(x), warmup=warmup, repeats=repeats)
        rows.append({"size": size, "batch": batch, "torch_ms": 1e3 * eager, "onnxruntime_ms": 1e3 * ort,
                     "speedup": eager / ort, "heatmap_gap": gap})
        print(f"{size}^2 batch {batch}: torch {1e3 * eager:.1f} ms, onnxruntime {1e3 * ort:.1f} ms, "
              f"x{eager / ort:.2f}, heat-map gap {gap:.1e}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="width-8 model, 1 warm-up, 3 repeats")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of both backends")
    p.add_argument("--sizes", default="128,256")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = ModelConfig(width=8) if args.quick else ModelConfig()
    warmup, repeats = (1, 3) if args.quick else (2, 7)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        rows += bench_size(size, model=model, batches=tuple(int(b) for b in args.batches.split(",")),
                           threads=args.threads, warmup=warmup, repeats=repeats)
    import onnxruntime

    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__,
              "onnxruntime": onnxruntime.__version__, "machine": platform.processor() or platform.machine(),
              "threads": args.threads, "quick": args.quick, "model": vars(model) | {"dilations": list(model.dilations)},
              "score": {"sigma": ScoreConfig().sigma, "reduction": ScoreConfig().reduction},
              "goal_speedup": GOAL_SPEEDUP, "rows": rows,
              "min_speedup": min(r["speedup"] for r in rows), "max_heatmap_gap": max(r["heatmap_gap"] for r in rows)}
    out = args.results_dir / f"export_cpu{'_quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"min speed-up x{result['min_speedup']:.2f} (goal x{GOAL_SPEEDUP}), max heat-map gap "
          f"{result['max_heatmap_gap']:.1e}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
