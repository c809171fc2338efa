"""Benchmark: exact nearest points on the translation manifold (T9 groundwork) against a brute force over shifts.

    python benchmarks/bench_image_manifolds.py [--quick]

For N×N templates with bandwidth K = N/8, points x = p + tν on normal rays (t <= 0.5 τ, so π(x) = p and the shift
τ(p) are known exactly) are projected in one call (FFT grid + Newton, ``TranslationManifold.project_with_info``);
throughput and the max shift error |τ̂ − τ|∞ are recorded at 32², 64², 128². The baseline, in the same run and on
the same points, is a brute force over a grid of shifts of step 1/8 px (a bank of shifted templates built once by
band-limited interpolation, one row of shifts at a time, one matrix product per row): its shift error is up to 1/16 px, far
above ours, so the speed-up is measured at an accuracy that favours the baseline. The upsampled template is built
outside the timing. Writes benchmarks/results/image_manifolds.json and docs/benchmarks-image-manifolds.md.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
from pathlib import Path

import numpy as np
import torch

from timing import best_time  # benchmarks/timing.py (this script's folder is on sys.path)

from manifold_ae.manifolds import make_image_manifold

ROOT = Path(__file__).resolve().parents[1]


def _upsampled(template: torch.Tensor, step: float) -> np.ndarray:
    """The template at every point of the (step Z / N Z)² grid by band-limited interpolation: (N/step, N/step)."""
    n = template.shape[0]
    U = round(1 / step)
    spec = np.fft.fftshift(np.fft.fft2(template.numpy()))
    return np.fft.ifft2(np.fft.ifftshift(np.pad(spec, (n * U - n) // 2))).real * U * U


def _brute_force(x: torch.Tensor, fine: np.ndarray, n: int) -> torch.Tensor:
    """argmin of ‖x − T_τ g‖² over τ on the fine grid, one row of shifts (N/step shifted images) at a time: (B, 2).

    T_τ g(x) = g(x − τ) is read off the upsampled template at fine index U x − U τ (mod N U).
    """
    nu = fine.shape[0]
    U = nu // n
    rows = torch.from_numpy((np.arange(n)[None, :] * U - np.arange(nu)[:, None]) % nu)   # (NU, N)
    fine_t = torch.from_numpy(fine)
    best = torch.full((x.shape[0],), math.inf, dtype=x.dtype)
    arg = torch.zeros(x.shape[0], 2, dtype=torch.long)
    for j1 in range(nu):
        bank = fine_t[rows[j1][None, :, None], rows[:, None, :]].reshape(nu, n * n)     # (NU, N²): τ = (j1, ·)/U
        val, idx = ((bank * bank).sum(-1)[None] - 2 * x @ bank.T).min(-1)             # ‖x‖² dropped
        better = val < best
        best = torch.where(better, val, best)
        arg = torch.where(better[:, None], torch.stack([torch.full_like(idx, j1), idx], -1), arg)
    return arg.to(x.dtype) / U


def _gap(a: torch.Tensor, b: torch.Tensor, n: int) -> float:
    return float((torch.remainder(a - b + n / 2, n) - n / 2).abs().max())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer images (a smoke run, ~1 min)")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "image_manifolds.json")
    ap.add_argument("--markdown", type=Path, default=ROOT / "docs" / "benchmarks-image-manifolds.md")
    ap.add_argument("--from-json", action="store_true", help="only rewrite the markdown from the JSON results")
    args = ap.parse_args(argv)
    if args.from_json:
        data = json.loads(args.json.read_text())
        args.markdown.write_text(_markdown(data["meta"], data["rows"]))
        return 0
    sizes = (32, 64, 128)
    num = {32: 256, 64: 128, 128: 32} if args.quick else {32: 2048, 64: 512, 128: 128}
    brute_num = {32: 32, 64: 8} if args.quick else {32: 128, 64: 32}
    step = 1 / 8
    #: a finer brute force at 32² only, to show what accuracy costs it (shifts × 16, shift error ÷ 4)
    fine_step, fine_num = 1 / 32, (8 if args.quick else 16)
    rows = []
    for n in sizes:
        M = make_image_manifold("translation", size=n, bandwidth=n // 8, seed=0)
        gen = torch.Generator().manual_seed(n)
        ray = M.sample_normal_ray(num[n], fraction=0.5, generator=gen)
        x = ray.x
        ours_s = best_time(lambda: M.project_with_info(x), 2)
        res = M.project_with_info(x)
        row = {"size": n, "bandwidth": M.bandwidth, "reach": M.reach, "grid_size": M.grid_size, "images": num[n],
               "ours_images_per_s": num[n] / ours_s, "ours_max_point_error": float((res.point - ray.p).norm(dim=-1)
                                                                                   .max()),
               "ours_max_shift_error_px": _gap(res.params, ray.params, n),
               "ours_certified_fraction": float(res.within_reach.double().mean())}
        if n in brute_num:
            fine = _upsampled(M.template, step)
            xb = x[:brute_num[n]]
            brute_s = best_time(lambda: _brute_force(xb, fine, n), 1)
            tb = _brute_force(xb, fine, n)
            row.update({"brute_step_px": step, "brute_shifts": fine.size, "brute_images": brute_num[n],
                        "brute_images_per_s": brute_num[n] / brute_s,
                        "brute_max_shift_error_px": _gap(tb, ray.params[:brute_num[n]], n),
                        "speedup": (num[n] / ours_s) / (brute_num[n] / brute_s)})
        if n == 32:
            finer = _upsampled(M.template, fine_step)
            xf = x[:fine_num]
            fine_s = best_time(lambda: _brute_force(xf, finer, n), 1)
            row["brute_fine"] = {"step_px": fine_step, "shifts": finer.size, "images": fine_num,
                                 "images_per_s": fine_num / fine_s,
                                 "max_shift_error_px": _gap(_brute_force(xf, finer, n), ray.params[:fine_num], n),
                                 "speedup": (num[n] / ours_s) / (fine_num / fine_s)}
        rows.append(row)
        print(json.dumps(row))
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or
            platform.machine(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "quick": args.quick,
            "timing": "best process_time of repeated calls (CPU seconds)"}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    args.markdown.write_text(_markdown(meta, rows))
    return 0


def _markdown(meta: dict, rows: list[dict]) -> str:
    lines = ["# Benchmark: exact projection onto the translation manifold", "",
             "Written by `benchmarks/bench_image_manifolds.py` (results in "
             "`benchmarks/results/image_manifolds.json`). Points on normal rays up to half the reach, so the true "
             "shift is known; ours = FFT grid + Newton (`TranslationManifold.project_with_info`), brute force = "
             "argmin over all shifted templates on a 1/8-px grid (upsampled template built outside the timing). "
             f"CPU time, torch {meta['torch']}, {meta['threads']} thread(s){', quick run' if meta['quick'] else ''}.",
             "", "| N² | K | reach | L | ours images/s | ours shift error (px) | certified | brute images/s | "
             "brute shift error (px) | speed-up |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        brute = (f"{r['brute_images_per_s']:.3g} | {r['brute_max_shift_error_px']:.3g} | {r['speedup']:.0f}×"
                 if "speedup" in r else "– | – | –")
        lines.append(f"| {r['size']}² | {r['bandwidth']} | {r['reach']:.4g} | {r['grid_size']} | "
                     f"{r['ours_images_per_s']:.4g} | {r['ours_max_shift_error_px']:.2g} | "
                     f"{r['ours_certified_fraction']:.0%} | {brute} |")
    for r in rows:
        if "brute_fine" in r:
            f = r["brute_fine"]
            lines += ["", f"A finer brute force at {r['size']}² (a {f['step_px']:.4g}-px grid, {f['shifts']} shifts, "
                      f"{f['images']} images): {f['images_per_s']:.3g} images/s, shift error "
                      f"{f['max_shift_error_px']:.3g} px, speed-up {f['speedup']:.0f}×: "
                      f"{r['brute_step_px'] / f['step_px']:.0f}× finer cut the baseline's error "
                      f"{r['brute_max_shift_error_px'] / f['max_shift_error_px']:.1f}× and its speed "
                      f"{r['brute_images_per_s'] / f['images_per_s']:.0f}×. Ours is exact to roundoff, so at equal "
                      "accuracy the speed-up only grows; the 1/8-px column is the baseline's best case."]
    coarse = {r["size"]: r["speedup"] for r in rows if "speedup" in r}
    fine = {r["size"]: r["brute_fine"]["speedup"] for r in rows if "brute_fine" in r}
    lines += ["", "Target (issue 12): >= 100× faster than a brute force over a fine grid of shifts at the same accuracy. "
              "Verdict: against the 1/8-px baseline, whose error is ~0.06 px where ours is ~1e-14 px, "
              + ", ".join(f"{v:.0f}× at {k}²" for k, v in coarse.items())
              + ("; against the finer brute force, still ~0.016 px off, "
                 + ", ".join(f"{v:.0f}× at {k}²" for k, v in fine.items()) if fine else "")
              + ". The target holds at 64², and at 32² only once the baseline is made more accurate: with a 1/8-px "
              "grid the brute force at 32² is cheap, because it has only 65536 shifts of 1024 pixels."]
    lines += ["", "The brute force is not run at 128²: it compares each image with (8·128)² = 1 M shifted 128² images; "
              "its cost grows as (8N)²·N² per image against ours ~ L² log L + Newton on (2K+1)² modes.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
