"""Speed of the paper's image model (GatedUNet) at 256^2: eager fp32 against the optimised path, same run.

Measures, for each variant,
  * inference latency (ms/image) at a fixed batch (32 on CUDA) under ``torch.inference_mode``;
  * training throughput (images/s): one AdamW step on the squared reconstruction loss per batch
    (the corruption is data-side and not part of the model's cost).
Variants: ``eager_fp32`` (the baseline), ``bf16`` (bf16 autocast, eager), ``channels_last_bf16``
(channels_last + bf16 autocast, eager) and ``optimised`` (channels_last + bf16 autocast + ``torch.compile``; a
compile failure is caught and reported, and the row then records the error instead of numbers; skipped by default
with ``--quick`` on CPU, where inductor spends minutes compiling on 2 cores).

    python benchmarks/bench_image.py --quick --threads 1     # CPU smoke run (under a minute)
    python benchmarks/bench_image.py --device cuda           # GPU: batch 32 inference and training
    python benchmarks/bench_image.py --render-only           # rebuild the doc from the recorded JSON only
    python benchmarks/bench_image.py --preset magnetic_tile --threads 1 --variants eager_fp32,bf16
                                            # a preset's own model, resolution and batch (CPU presets: bf16)
    python benchmarks/bench_image.py --data-path --threads 1
                                            # the data path per loader worker at 256^2 (decode, resize, cache)

``--data-path`` measures what decides whether a GPU is starved: images/s of ONE DataLoader worker (one core)
at 256^2 RGB, for decoding PNGs at 256^2 through ``load_image`` (the package's checked path) against plain
Pillow decoding of the same files (the baseline, same run), decoding 512^2 PNGs resized to 256^2 (antialiased),
and the second epoch of a cached ``ImageDataset`` through ``DataLoader(num_workers=1, persistent_workers=True)``
(cache hits plus collation and the transfer from the worker). Goal: >= 400 images/s from the cache, so that four
workers feed the 1500 images/s training goal. Writes ``benchmarks/results/data_path_cpu.json``.

Writes ``benchmarks/results/image_<device>[_<tag>].json`` (tag: ``--tag``, else the preset) and regenerates
``docs/benchmarks-image.md`` from every ``image_*.json`` present. GPU goals (H200-class, 256^2): inference
<= 1 ms/image at batch 32, training >= 1500 img/s.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from manifold_ae.models.unet import GatedUNet

ROOT = Path(__file__).resolve().parents[1]
GOALS = {"inference_ms_per_image": 1.0, "train_images_per_s": 1500.0}  # H200-class card, batch 32, 256^2
# variant -> (channels_last, bf16 autocast, torch.compile)
VARIANTS = {"eager_fp32": (False, False, False), "bf16": (False, True, False),
            "channels_last_bf16": (True, True, False), "optimised": (True, True, True)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], *, device: torch.device, warmup: int, repeats: int) -> tuple[float, float]:
    """(seconds of the first warm-up call, median seconds per call over ``repeats`` timed calls)."""
    t0 = time.perf_counter()
    fn()
    _sync(device)
    first = time.perf_counter() - t0
    for _ in range(warmup - 1):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    times.sort()
    return first, times[len(times) // 2]


def _gflops(model: torch.nn.Module, size: int, channels: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.rand(1, channels, size, size))
    return counter.get_total_flops() / 1e9


def bench_variant(name: str, *, device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    """Inference and training numbers for one variant; a fresh model per variant, same seed."""
    channels_last, autocast, compiled = VARIANTS[name]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    model = _model(args).to(device).to(memory_format=fmt)
    ctx = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if autocast else contextlib.nullcontext
    row: dict[str, Any] = {"channels_last": channels_last, "bf16_autocast": autocast,
                           "compile": compiled and args.compile}

    forward: Callable[[torch.Tensor], torch.Tensor] = model
    if compiled and not args.compile:
        row["compile_skipped"] = ("--compile=off (auto: off for --quick on CPU, where inductor needs minutes to "
                                  "compile forward and backward)")
        return row
    if compiled:
        try:
            forward = torch.compile(model, mode=args.compile_mode)
        except Exception as err:  # noqa: BLE001  (report, do not crash the benchmark)
            row["compile_error"] = f"{type(err).__name__}: {err}"[:500]
            return row

    x_inf = torch.rand(args.batch, args.channels, args.size, args.size, device=device).to(memory_format=fmt)
    x_train = torch.rand(args.train_batch, args.channels, args.size, args.size, device=device).to(memory_format=fmt)

    def infer() -> None:
        with torch.inference_mode(), ctx():
            forward(x_inf)

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train() -> None:
        opt.zero_grad(set_to_none=True)
        with ctx():
            loss = (forward(x_train).float() - x_train).square().mean()
        loss.backward()
        opt.step()

    try:
        model.eval()
        first, per_batch = _timed(infer, device=device, warmup=args.warmup, repeats=args.repeats)
        row |= {"inference_batch": args.batch, "inference_ms_per_image": 1e3 * per_batch / args.batch,
                "inference_first_call_s": first}
        model.train()
        first, per_step = _timed(train, device=device, warmup=args.warmup, repeats=args.steps)
        row |= {"train_batch": args.train_batch, "train_images_per_s": args.train_batch / per_step,
                "train_first_step_s": first}
    except Exception as err:  # noqa: BLE001  (compile errors surface at the first call)
        if not compiled:
            raise
        row["compile_error"] = f"{type(err).__name__}: {err}"[:500]
    if device.type == "cuda":
        row["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
        torch.cuda.reset_peak_memory_stats(device)
    return row


def _model(args: argparse.Namespace) -> torch.nn.Module:
    """The preset's network when ``--preset`` is given, else GatedUNet(channels, width, depth)."""
    if args.preset is None:
        return GatedUNet(args.channels, width=args.width, depth=args.depth)
    from manifold_ae.images.pipeline import build_model
    return build_model(args.config.model, channels=args.channels)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "cpu"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def render_markdown(results_dir: Path) -> str:
    """The benchmark page, rebuilt from every ``image_<device>*.json`` (and ``data_path_cpu.json``) in ``results_dir``."""
    lines = ["# Image model speed (GatedUNet)", "",
             "Generated by `benchmarks/bench_image.py` from `benchmarks/results/image_*.json`; do not edit by "
             "hand. Inference: median latency per batch under `torch.inference_mode`, divided by the batch. "
             "Training: median time of one AdamW step on the squared reconstruction loss (forward, backward, "
             "update). Variants: `eager_fp32` (baseline), `bf16` (bf16 autocast), `channels_last_bf16` "
             "(channels_last + bf16 autocast), "
             "`optimised` (channels_last + bf16 autocast + `torch.compile`).", "",
             f"GPU goals (H200-class): inference ≤ {GOALS['inference_ms_per_image']:g} ms/image at batch 32 and "
             f"256², training ≥ {GOALS['train_images_per_s']:g} images/s.", "",
             "On a CPU shared with other jobs pass `--threads 1`: OpenMP threads spinning on busy cores made "
             "the same run 5–10× slower here. `--quick` skips `torch.compile` on CPU (inductor needs several "
             "minutes on 2 cores); `--compile on` forces it.", ""]
    files = sorted([*results_dir.glob("image_cpu*.json"), *results_dir.glob("image_cuda*.json")])
    for path in files:
        r = json.loads(path.read_text())
        m = r["model"]
        model = f"`{r['preset']}` model" if r.get("preset") else "GatedUNet"
        lines += [f"## {r['device']}: {r['device_name']}, {model}, {r['size']}²", "",
                  f"{r['date']}, torch {r['torch']}, {r['threads']} CPU thread(s), quick={r['quick']}; model "
                  f"width {m['width']}, depth {m['depth']}, {m['parameters'] / 1e6:.2f} M parameters, "
                  f"{m['gflops_per_image']:.1f} GFLOP per image forward. Command: `{r['command']}`", "",
                  "| variant | inference batch | ms / image | train batch | train images / s | note |",
                  "| --- | ---: | ---: | ---: | ---: | --- |"]
        for name, row in r["variants"].items():
            note = row.get("compile_error", row.get("compile_skipped", ""))
            if "speedup_inference" in row:
                note = (f"×{row['speedup_inference']:.2f} inference, ×{row['speedup_train']:.2f} training vs "
                        f"eager_fp32; first call {row['inference_first_call_s']:.1f} s (compile)"
                        if name == "optimised" else
                        f"×{row['speedup_inference']:.2f} inference, ×{row['speedup_train']:.2f} training vs "
                        "eager_fp32")
            lines.append(f"| {name} | {row.get('inference_batch', '–')} | "
                         f"{_fmt(row.get('inference_ms_per_image'), '.2f')} | {row.get('train_batch', '–')} | "
                         f"{_fmt(row.get('train_images_per_s'), '.2f')} | {note.replace('|', '/')} |")
        if "goals" in r:
            g = r["goals"]
            lines += ["", f"Goals on this device: inference {g['best_inference_ms_per_image']:.3f} ms/image "
                      f"({'met' if g['inference_met'] else 'not met'}), training "
                      f"{g['best_train_images_per_s']:.0f} images/s ({'met' if g['train_met'] else 'not met'})."]
        lines.append("")
    if not any(json.loads(p.read_text())["device"] == "cuda" for p in files):
        lines += ["No CUDA run recorded yet: run `python benchmarks/bench_image.py --device cuda` on a GPU machine "
                  "(`benchmarks/gpu_checks.sh` runs it together with the Magnetic Tile GPU comparison; "
                  "docs/results.md).", ""]
    data = results_dir / "data_path_cpu.json"
    if data.is_file():
        d = json.loads(data.read_text())
        rates = d["images_per_s"]
        labels = {"pil_decode_baseline": "plain Pillow decode of 256² PNGs (baseline)",
                  "load_image_decode": "`load_image` decode of the same files (checked path)",
                  "load_image_decode_resize_512_to_256": "`load_image` of 512² PNGs resized to 256²",
                  "cache_hit_one_worker": "cached `ImageDataset`, second epoch, `DataLoader(num_workers=1)`"}
        lines += ["## The data path of one loader worker (CPU, 256² RGB)", "",
                  f"{d['date']}, torch {d['torch']}, {d['threads']} thread(s), {d['images']} images. Command: "
                  f"`{d['command']}`. One worker is one core: this is the figure that decides whether a GPU is "
                  "starved.", "", "| stage | images / s |", "| --- | ---: |"]
        lines += [f"| {labels[k]} | {rates[k]:.0f} |" for k in labels]
        lines += ["", f"`load_image` runs at ×{rates['load_image_vs_pil']:.2f} of plain Pillow (its full-decode check "
                  f"and conversion). Goal from the cache: ≥ {d['goal_cache_images_per_s']:.0f} images/s per worker "
                  f"(four workers feed the 1500 images/s training goal): "
                  f"{'met' if d['goal_met'] else 'not met'}. Stages below the goal without the cache: "
                  + (", ".join(labels[k] for k in labels if k != "cache_hit_one_worker"
                               and rates[k] < d["goal_cache_images_per_s"]) or "none")
                  + " (large source images pay their resize on every uncached read: keep `data.cache = true` and "
                  "persistent workers on a GPU).", ""]
    return "\n".join(lines)


DATA_PATH_GOAL = 400.0  # images/s of one loader worker from the cache (4 workers >= 1500 images/s)


def _write_pngs(folder: Path, num: int, side: int, seed: int) -> list[Path]:
    """``num`` RGB PNGs of ``side``² smooth random texture (compresses like a photo, not like noise)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(num):
        coarse = rng.random((side // 8, side // 8, 3))
        img = np.kron(coarse, np.ones((8, 8, 1))) * 0.8 + 0.2 * rng.random((side, side, 3))
        path = folder / f"{i:04d}.png"
        Image.fromarray((img * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def _rate(fn: Callable[[], int], repeats: int) -> float:
    """Images/s of ``fn`` (which returns how many images it handled): the best of ``repeats`` runs."""
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = fn()
        best = max(best, n / (time.perf_counter() - t0))
    return best


def bench_data_path(args: argparse.Namespace) -> dict[str, Any]:
    """Images/s of one loader worker at 256² (decode, decode + resize, cache hit); see the module docstring."""
    import numpy as np
    from PIL import Image
    from torch.utils.data import DataLoader

    from manifold_ae.images.data.io import ImageDataset, Sample, load_image

    num = 32 if args.quick else 128
    repeats = 2 if args.quick else 3
    with tempfile.TemporaryDirectory() as tmp:
        native = _write_pngs(Path(tmp) / "256", num, 256, seed=0)
        large = _write_pngs(Path(tmp) / "512", num, 512, seed=1)

        def pil_only() -> int:
            for path in native:
                with Image.open(path) as im:
                    torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
            return len(native)

        def decode() -> int:
            for path in native:
                load_image(path, channels=3, size=256)
            return len(native)

        def decode_resize() -> int:
            for path in large:
                load_image(path, channels=3, size=256)
            return len(large)

        dataset = ImageDataset([Sample(path, None, 0, "good") for path in native], image_size=256, channels=3,
                               cache=True)
        loader = DataLoader(dataset, batch_size=32, shuffle=False, num_workers=1, persistent_workers=True)
        for _ in loader:  # epoch 1 fills the worker's cache
            pass

        def cached() -> int:
            n = 0
            for batch in loader:
                n += batch["image"].shape[0]
            return n

        rows = {"pil_decode_baseline": _rate(pil_only, repeats), "load_image_decode": _rate(decode, repeats),
                "load_image_decode_resize_512_to_256": _rate(decode_resize, repeats),
                "cache_hit_one_worker": _rate(cached, repeats)}
    rows["load_image_vs_pil"] = rows["load_image_decode"] / rows["pil_decode_baseline"]
    return {"images": num, "size": 256, "channels": 3, "images_per_s": rows, "goal_cache_images_per_s":
            DATA_PATH_GOAL, "goal_met": rows["cache_hit_one_worker"] >= DATA_PATH_GOAL}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small batches and few repeats (CPU smoke run)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    p.add_argument("--preset", default=None,
                   help="measure a preset's model, at its resolution, channels and training batch (the flags "
                        "below override them)")
    p.add_argument("--tag", default=None,
                   help="results file image_<device>_<tag>.json (default: the preset's name, or none)")
    p.add_argument("--size", type=int, default=None, help="image side (default 256, or the preset's)")
    p.add_argument("--channels", type=int, default=None, help="image channels (default 3, or the preset's)")
    p.add_argument("--width", type=int, default=32, help="GatedUNet width (without --preset)")
    p.add_argument("--depth", type=int, default=4, help="GatedUNet depth (without --preset)")
    p.add_argument("--batch", type=int, default=None, help="inference batch (default: 32 on CUDA, 4 on CPU)")
    p.add_argument("--train-batch", type=int, default=None, help="training batch (default: 32 CUDA, 4 CPU)")
    p.add_argument("--repeats", type=int, default=None, help="timed inference calls")
    p.add_argument("--steps", type=int, default=None, help="timed training steps")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls first (the first one compiles)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; use 1 on a machine shared with other jobs)")
    p.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                   help="torch.compile the optimised variant (auto: on, except --quick on CPU)")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode (default, reduce-overhead, ...)")
    p.add_argument("--variants", default="eager_fp32,bf16,channels_last_bf16,optimised",
                   help=f"comma-separated, some of {', '.join(VARIANTS)}")
    p.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks-image.md")
    p.add_argument("--data-path", action="store_true",
                   help="measure the data path of one loader worker at 256^2 instead of the model")
    p.add_argument("--render-only", action="store_true",
                   help="measure nothing: rebuild --doc from the image_*.json in --results-dir (e.g. after adding "
                        "a CUDA result measured elsewhere)")
    args = p.parse_args(argv)
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        p.error(f"--variants: unknown variant(s) {', '.join(map(repr, unknown))}; expected some of "
                f"{', '.join(VARIANTS)}")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    args.device = device
    gpu = device.type == "cuda"
    args.compile = args.compile == "on" or (args.compile == "auto" and (gpu or not args.quick))
    small = args.quick and not gpu
    args.config = None
    if args.preset is not None:
        from manifold_ae.images.config import load_config
        args.config = load_config(args.preset)
        args.size = args.size or args.config.data.image_size
        args.channels = args.channels or args.config.data.channels
        args.train_batch = args.train_batch or args.config.train.batch_size
        args.width, args.depth = args.config.model.width, args.config.model.depth  # recorded, not overridable
    args.size = args.size or 256
    args.channels = args.channels or 3
    args.batch = args.batch or (32 if gpu else 2 if small else 4)
    args.train_batch = args.train_batch or (32 if gpu else 2 if small else 4)
    args.repeats = args.repeats or (3 if args.quick else 20 if gpu else 5)
    args.steps = args.steps or (3 if args.quick else 20 if gpu else 5)
    args.warmup = args.warmup or (2 if args.quick else 5 if gpu else 2)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render_only:
        _write_atomic(args.doc, render_markdown(args.results_dir))
        print(f"wrote {args.doc}")
        return 0
    device = args.device
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.data_path:
        result = {"device": "cpu", "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "quick": args.quick, "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                  "command": "python benchmarks/bench_image.py " + " ".join(sys.argv[1:] if argv is None else argv),
                  **bench_data_path(args)}
        out = args.results_dir / f"data_path_cpu{'_quick' if args.quick else ''}.json"
        _write_atomic(out, json.dumps(result, indent=2) + "\n")
        if not args.quick:
            _write_atomic(args.doc, render_markdown(args.results_dir))
        for k, v in result["images_per_s"].items():
            print(f"{k:>40}: {v:.4g}")
        print(f"wrote {out}")
        return 0
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    probe = _model(args)
    result: dict[str, Any] = {
        "device": device.type, "device_name": _device_name(device), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "size": args.size, "quick": args.quick, "preset": args.preset,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python benchmarks/bench_image.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": {"width": args.width, "depth": args.depth, "channels": args.channels,
                  "parameters": sum(p.numel() for p in probe.parameters()),
                  "gflops_per_image": _gflops(probe, args.size, args.channels)},
        "variants": {},
    }
    del probe
    for name in args.variants.split(","):
        t0 = time.perf_counter()
        row = bench_variant(name, device=device, args=args)
        row["wall_s"] = time.perf_counter() - t0
        result["variants"][name] = row
        print(f"{name:>20}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in row.items()), flush=True)
    base = result["variants"].get("eager_fp32", {})
    for name, row in result["variants"].items():
        if name != "eager_fp32" and "inference_ms_per_image" in row and "inference_ms_per_image" in base:
            row["speedup_inference"] = base["inference_ms_per_image"] / row["inference_ms_per_image"]
            row["speedup_train"] = row["train_images_per_s"] / base["train_images_per_s"]
    measured = [r for r in result["variants"].values() if "inference_ms_per_image" in r]
    if device.type == "cuda" and measured and args.size == 256:
        best_inf = min(r["inference_ms_per_image"] for r in measured)
        best_train = max(r["train_images_per_s"] for r in measured)
        result["goals"] = {**GOALS, "best_inference_ms_per_image": best_inf, "best_train_images_per_s": best_train,
                           "inference_met": best_inf <= GOALS["inference_ms_per_image"],
                           "train_met": best_train >= GOALS["train_images_per_s"]}
    tag = args.tag if args.tag is not None else (args.preset or "")
    out = args.results_dir / f"image_{device.type}{'_' + tag if tag else ''}.json"
    _write_atomic(out, json.dumps(result, indent=2) + "\n")
    _write_atomic(args.doc, render_markdown(args.results_dir))
    print(f"wrote {out} and {args.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
