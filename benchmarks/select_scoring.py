"""Choose the score of trained image runs on the synthetic validation set, by the rule of docs/results.md.

For every run and every score option of the grid, the held-out normal images with synthetic defects are scored
through :class:`~manifold_ae.images.pipeline.Pipeline` (the path ``evaluate --synthetic`` takes), for several
draws of the defects. Per defect kind k: m_k = mean(image AUROC, pixel AUROC, AUPRO@0.3); the validation score is
the mean of m_k over the kinds, averaged over the draws. The network runs once per image: a cache returns its
stored reconstruction for the same input, so every option sees the same reconstructions.

    python benchmarks/select_scoring.py runs/mt_v1 [runs/mt_v2 ...] --out benchmarks/results/mt_scoring.json
        [--single-scale]   # only scales [1] with top 50 / top 200: comparing training runs, not scores
        [--topk 200] [--flips none,h,hv]   # restrict the grid's top-k; score.flips as one more axis
        [--single-scale --topk 200,400,800 --sigmas 1,1.5,2]   # with --single-scale any top-k; score.sigma

Reads no test set. Writes one JSON (atomically) with every option's score per draw and kind, the ranking per
draw, Kendall's tau between the draws' rankings, and the winner.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import sys
import time
from pathlib import Path
from typing import Any

import torch
from scipy.stats import kendalltau
from torch import nn

from manifold_ae.commands.evaluate import metrics_for
from manifold_ae.files import write_json
from manifold_ae.images.pipeline import Pipeline, build_datasets, ensure_normal_stats
from manifold_ae.images.validation import validation_set
from manifold_ae.models.flips import FLIPS

#: the grid of docs/results.md ("the selection rule"): (scales, level_norm, topk)
GRID = [((1,), "none", 50), ((1,), "none", 200)] + [
    (scales, norm, topk) for scales, norm, topk in itertools.product(((1, 2, 4, 8), (1, 4, 16)), ("level", "pixel"),
                                                                      (50, 200))]
METRICS = ("image_auroc", "pixel_auroc", "aupro")


class Cached(nn.Module):
    """The model, run once per distinct input image: later calls with the same image return the stored output."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.store = model, {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keys = [hashlib.sha1(xi.detach().cpu().numpy().tobytes()).hexdigest() for xi in x]
        todo = [i for i, k in enumerate(keys) if k not in self.store]
        if todo:
            out = self.model(x[todo])
            for i, y in zip(todo, out):
                self.store[keys[i]] = y.detach()
        return torch.stack([self.store[k] for k in keys])


def validation_score(metrics: dict[str, Any]) -> tuple[float, dict[str, float]]:
    """The rule's score of one ``metrics_for`` result: mean over defect kinds of the mean of METRICS."""
    per_kind = {k: sum(float(m[name]) for name in METRICS) / len(METRICS) for k, m in metrics.items() if k != "all"}
    return sum(per_kind.values()) / len(per_kind), per_kind


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--seeds", default="1,2,3", help="validation defect draws")
    p.add_argument("--out", required=True)
    p.add_argument("--single-scale", action="store_true",
                   help="only the grid's single-scale options (scales [1], no level norm; to compare training runs)")
    p.add_argument("--topk", default="", help="only these top-k values of the grid, comma separated (default all); "
                   "with --single-scale any pixel counts")
    p.add_argument("--sigmas", default="", help="score.sigma values, comma separated (default: each run's own)")
    p.add_argument("--flips", default="none", help="score.flips values, comma separated (models.flips.FLIPS)")
    args = p.parse_args(argv)
    grid = [g for g in GRID if g[0] == (1,)] if args.single_scale else GRID
    try:
        keep = [int(k) for k in args.topk.split(",")] if args.topk else []
        sigmas: list[float | None] = [float(s) for s in args.sigmas.split(",")] if args.sigmas else [None]
    except ValueError:
        p.error(f"--topk takes comma-separated ints and --sigmas comma-separated numbers, got --topk "
                f"{args.topk!r} --sigmas {args.sigmas!r}")
    if keep:
        grid = ([((1,), "none", k) for k in keep] if args.single_scale  # any top-k for the plain residual
                else [g for g in grid if g[2] in keep])
    if any(s is not None and s < 0 for s in sigmas):
        p.error(f"--sigmas must be >= 0, got {args.sigmas}")
    flips = [f.strip() for f in args.flips.split(",")]
    bad = [f for f in flips if f not in FLIPS]
    if bad or not grid:
        p.error(f"--flips must be among {FLIPS}, got {bad}" if bad else f"--topk {args.topk} leaves no option")
    grid = [(*g, f, s) for g in grid for f in flips for s in sigmas]
    seeds = [int(s) for s in args.seeds.split(",")]
    record: dict[str, Any] = {"rule": "docs/results.md, 'the selection rule'", "seeds": seeds, "metrics": METRICS,
                              "grid": [[list(g[0]), *g[1:]] for g in grid], "options": {}}
    for run in args.runs:
        pipe = Pipeline.from_checkpoint(run, device="cpu")
        config = pipe.config
        splits = build_datasets(config.data)
        pipe.model = Cached(pipe.model).eval()
        base_score = pipe.score_config
        sets = {seed: validation_set(splits.holdout, split_seed=config.data.split_seed, seed=seed) for seed in seeds}
        for scales, norm, topk, flip, sigma in grid:
            name = f"{Path(run).name} scales={list(scales)} norm={norm} topk={topk}"
            name += "" if flip == "none" else f" flips={flip}"
            name += "" if sigma is None else f" sigma={sigma:g}"
            start = time.perf_counter()
            pipe.score_config = dataclasses.replace(base_score, scales=scales, level_norm=norm, topk=topk,
                                                    reduction="topk", flips=flip,
                                                    sigma=base_score.sigma if sigma is None else sigma)
            ensure_normal_stats(pipe, splits.train)
            entry: dict[str, Any] = {"run": run, "scales": list(scales), "level_norm": norm, "topk": topk,
                                     "flips": flip, "sigma": pipe.score_config.sigma, "per_seed": {}}
            for seed, val in sets.items():
                metrics = metrics_for(pipe.score_dataset(val), thresholds=None)
                score, per_kind = validation_score(metrics)
                entry["per_seed"][seed] = {"score": score, "per_kind": per_kind,
                                           "all": {m: metrics["all"][m] for m in (*METRICS, "pixel_ap")}}
            entry["score"] = sum(e["score"] for e in entry["per_seed"].values()) / len(seeds)
            record["options"][name] = entry
            draws = ", ".join(f"{100 * e['score']:.2f}" for e in entry["per_seed"].values())
            print(f"{name}: {100 * entry['score']:.2f} ({draws}) [{time.perf_counter() - start:.0f} s]", flush=True)
    names = list(record["options"])
    ranks = {seed: sorted(names, key=lambda n: -record["options"][n]["per_seed"][seed]["score"]) for seed in seeds}
    record["ranking"] = {seed: r for seed, r in ranks.items()}
    record["kendall_tau"] = {f"{a}-{b}": float(kendalltau([ranks[a].index(n) for n in names],
                                                          [ranks[b].index(n) for n in names]).statistic)
                             for a, b in itertools.combinations(seeds, 2)} if len(names) > 1 else None  # one option
    record["winner"] = max(names, key=lambda n: record["options"][n]["score"])
    write_json(Path(args.out), record)
    print(f"winner: {record['winner']}; Kendall tau between draws: {record['kendall_tau']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
