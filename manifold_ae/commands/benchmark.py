"""``manifold-ae benchmark``: every category x seed of a dataset trained and evaluated, one table of mean ± std.

    manifold-ae benchmark --preset mvtec --data.root /path/to/mvtec_ad --seeds 0,1,2 --out runs/bench
    manifold-ae benchmark --preset mvtec --data.root R --categories bottle,cable --train.steps=2000

Each (category, seed) is one run directory ``<out>/<category>/seed_<seed>`` trained by ``manifold-ae train``
(its :func:`~manifold_ae.commands.train.main`, with ``--data.category``, ``--train.seed`` and ``--out`` set per
run) and evaluated once by :func:`~manifold_ae.commands.evaluate.evaluate` into ``<run>/eval/metrics.json``.
The seed is the training seed (weights, corruptions, crops); the train / held-out / test split
(``data.split_seed``) is the same for every seed. Resumable: a run whose metrics are written is kept, a run with
a checkpoint but no metrics (killed during training or before its evaluation) continues with ``--resume``, any
other run trains from the start. ``<out>/benchmark.json`` and ``<out>/benchmark.md`` hold the table.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from manifold_ae.files import write_json, write_text
from manifold_ae.images.config import CHECKPOINT_NAME, Config, load_config, parse_overrides

__all__ = ["main", "benchmark", "dataset_categories", "select_categories", "benchmark_table", "markdown",
           "METRICS", "PROTOCOL", "SET_PER_RUN"]

#: the table's columns: key in ``metrics.json["metrics"]["all"]`` and heading
METRICS = (("image_auroc", "image AUROC"), ("pixel_auroc", "pixel AUROC"), ("aupro", "AUPRO@0.3"),
           ("pixel_ap", "pixel AP"))

PROTOCOL = ("no run or option was selected on the test set: every run trains for the preset's fixed steps and is "
            "evaluated once")

#: config keys the benchmark sets for each run (from --categories, --seeds and --out)
SET_PER_RUN = {"data.category": "--categories", "train.seed": "--seeds", "train.out_dir": "--out"}


def dataset_categories(dataset: str) -> tuple[str, ...]:
    """The categories of ``dataset`` (``data.dataset``), from the dataset module's own ``CATEGORIES``."""
    if dataset == "mvtec":
        from manifold_ae.images.data.mvtec import CATEGORIES
    elif dataset == "visa":
        from manifold_ae.images.data.visa import CATEGORIES
    elif dataset == "mvtec_ad2":
        from manifold_ae.images.data.mvtec_ad2 import CATEGORIES
    elif dataset == "mvtec_loco":
        from manifold_ae.images.data.mvtec_loco import CATEGORIES
    elif dataset == "synthetic":
        from manifold_ae.images.data.synthetic import SYNTHETIC_CATEGORIES as CATEGORIES
    else:
        raise ValueError(f"data.dataset = {dataset!r} has no fixed list of categories; a benchmark needs one of "
                         "'mvtec', 'visa', 'mvtec_ad2', 'mvtec_loco', 'synthetic'")
    return tuple(CATEGORIES)


def select_categories(spec: str, known: Sequence[str]) -> list[str]:
    """``"all"`` -> every category in ``known``; ``"a,b"`` -> those, each checked against ``known``."""
    if spec.strip() == "all":
        return list(known)
    chosen = [c.strip() for c in spec.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in known]
    if unknown or not chosen:
        raise ValueError(f"--categories {spec!r}: unknown categories {unknown}; expected 'all' or a comma-separated "
                         f"subset of {list(known)}")
    return list(dict.fromkeys(chosen))


def _seeds(spec: str) -> list[int]:
    try:
        seeds = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0:
        raise ValueError(f"--seeds {spec!r} must be a comma-separated list of integers >= 0, e.g. 0,1,2")
    return list(dict.fromkeys(seeds))


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _summary(values: Sequence[float | None]) -> dict[str, Any]:
    """``{"mean", "std", "n"}`` of one metric over seeds: the sample std (ddof 1), None for one value; a missing
    or non-finite value makes mean and std None (it is never dropped silently)."""
    present = [v for v in values if v is not None]
    if not values or len(present) < len(values):
        return {"mean": None, "std": None, "n": len(values), "values": list(values)}
    return {"mean": statistics.fmean(present), "std": statistics.stdev(present) if len(present) > 1 else None,
            "n": len(present), "values": present}


def benchmark_table(per_run: dict[str, dict[int, dict[str, float | None]]]) -> dict[str, dict[str, Any]]:
    """Mean ± std over seeds for every category, and the ``mean`` row: mean ± std over seeds of the mean over
    categories (per seed).

    Parameters
    ----------
    per_run : ``{category: {seed: {metric: value or None}}}``, the same seeds in every category.
    """
    table = {cat: {key: _summary([runs[s].get(key) for s in runs]) for key, _ in METRICS}
             for cat, runs in per_run.items()}
    seeds = list(next(iter(per_run.values())))
    mean_row = {}
    for key, _ in METRICS:
        per_seed = []
        for s in seeds:
            values = [per_run[cat][s].get(key) for cat in per_run]
            per_seed.append(None if any(v is None for v in values) else statistics.fmean(values))
        mean_row[key] = _summary(per_seed)
    return table | {"mean": mean_row}


def _cell(entry: dict[str, Any]) -> str:
    if entry["mean"] is None:
        return "–"
    return f"{100 * entry['mean']:.1f}" + ("" if entry["std"] is None else f" ± {100 * entry['std']:.1f}")


def markdown(record: dict[str, Any]) -> str:
    """``benchmark.md``: the table (in %, mean ± std over seeds), the protocol and the time."""
    lines = [f"# Benchmark: {record['dataset']} ({record['preset']}), seeds {record['seeds']}", "",
             "| category | " + " | ".join(t for _, t in METRICS) + " |", "|" + " --- |" * (1 + len(METRICS))]
    for cat, row in record["table"].items():
        label = "**mean**" if cat == "mean" else cat
        lines.append(f"| {label} | " + " | ".join(_cell(row[k]) for k, _ in METRICS) + " |")
    seconds = record["seconds"]
    lines += ["", f"Values in %, mean ± sample std over {len(record['seeds'])} seed(s); the mean row is the mean "
              "over categories, per seed, then mean ± std over seeds.", "",
              f"Protocol: {record['protocol']}.", "",
              f"Time: {seconds['runs_total'] / 60:.1f} min of training and evaluation over all runs "
              f"({seconds['this_invocation'] / 60:.1f} min in the last invocation)."]
    return "\n".join(lines) + "\n"


def _logged_rate(log_path: Path) -> float | None:
    """The training images/s of the last log entry of a run's ``log.jsonl`` (None without one)."""
    if not log_path.is_file():
        return None
    rates = [json.loads(line).get("images_per_s") for line in log_path.read_text(encoding="utf-8").splitlines()
             if line.strip()]
    rates = [r for r in rates if r is not None]
    return rates[-1] if rates else None


def _run_once(config_args: list[str], run_dir: Path, *, device: str) -> dict[str, Any]:
    """Train (or resume) and evaluate one run; returns its status and seconds. Raises RuntimeError when
    training fails (its message is on stderr)."""
    from manifold_ae.commands.evaluate import evaluate
    from manifold_ae.commands.train import main as train_main

    resume = (run_dir / CHECKPOINT_NAME).is_file()
    cuda = torch.cuda.is_available() and device != "cpu"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    rc = train_main([*config_args, "--out", str(run_dir), "--no-progress", *(["--resume"] if resume else [])])
    if rc != 0:
        raise RuntimeError(f"training {run_dir} failed (manifold-ae train exited with {rc}; its message is above)")
    trained = time.perf_counter()
    evaluate(run_dir, out_dir=run_dir / "eval", device=device, overlays_per_class=0, progress=False)
    timing = {"status": "resumed" if resume else "trained", "train_seconds": trained - start,
              "evaluate_seconds": time.perf_counter() - trained,
              "train_images_per_s": _logged_rate(run_dir / "log.jsonl"),
              "peak_gpu_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None}
    write_json(run_dir / "benchmark_run.json", timing)
    return timing


def benchmark(preset: str, overrides: Sequence[str] = (), *, out_dir: str | Path, categories: str = "all",
              seeds: str = "0", device: str = "auto", progress: bool = True) -> dict[str, Any]:
    """Train and evaluate every selected category x seed (resuming what exists); write the table.

    Parameters
    ----------
    preset : str
        Preset name or config file, as for ``manifold-ae train``.
    overrides : ``--section.key=value`` strings
        Applied to every run; ``data.category``, ``train.seed`` and ``train.out_dir`` are set per run.
    out_dir : str or Path
        One run directory ``<category>/seed_<seed>`` per run below it, and benchmark.json / benchmark.md.
    categories : str
        ``"all"`` (the dataset's ``CATEGORIES``) or a comma-separated subset.
    seeds : str
        Comma-separated training seeds.
    device : str
        Where evaluation runs (training follows ``train.device``).
    progress : bool
        A progress bar over runs.

    Returns
    -------
    The record written to ``benchmark.json``.
    """
    overrides = list(overrides)
    parsed = parse_overrides(overrides)
    fixed = [f"--{k} (use {flag})" for k, flag in SET_PER_RUN.items()
             if k.split(".")[1] in parsed.get(k.split(".")[0], {})]
    if fixed:
        raise ValueError(f"the benchmark sets {', '.join(fixed)} for each run; do not pass them as overrides")
    config: Config = load_config(preset, overrides)
    chosen = select_categories(categories, dataset_categories(config.data.dataset))
    seed_list = _seeds(seeds)
    out_dir = Path(out_dir)
    start = time.perf_counter()
    from tqdm.auto import tqdm

    runs = [(cat, seed) for cat in chosen for seed in seed_list]
    per_run: dict[str, dict[int, dict[str, float | None]]] = {cat: {} for cat in chosen}
    record_runs: dict[str, dict[str, Any]] = {cat: {} for cat in chosen}
    total = 0.0
    with tqdm(total=len(runs), desc="benchmark", unit="run", disable=not progress, dynamic_ncols=True) as bar:
        for cat, seed in runs:
            bar.set_postfix(category=cat, seed=seed)
            run_dir = out_dir / cat / f"seed_{seed}"
            metrics_path = run_dir / "eval" / "metrics.json"
            if metrics_path.is_file():
                status = "kept"
            else:
                args = ["--preset", preset, *overrides, f"--data.category={cat}", f"--train.seed={seed}"]
                status = _run_once(args, run_dir, device=device)["status"]
            timing_path = run_dir / "benchmark_run.json"
            timing = json.loads(timing_path.read_text(encoding="utf-8")) if timing_path.is_file() else {}
            total += timing.get("train_seconds", 0.0) + timing.get("evaluate_seconds", 0.0)
            result = json.loads(metrics_path.read_text(encoding="utf-8"))["metrics"]["all"]
            per_run[cat][seed] = {key: _finite(result.get(key)) for key, _ in METRICS}
            record_runs[cat][str(seed)] = {"run_dir": str(run_dir), "status": status, "metrics": per_run[cat][seed],
                                           "train_seconds": timing.get("train_seconds"),
                                           "evaluate_seconds": timing.get("evaluate_seconds"),
                                           "train_images_per_s": timing.get("train_images_per_s"),
                                           "peak_gpu_memory_mb": timing.get("peak_gpu_memory_mb")}
            bar.update(1)
    record = {"dataset": config.data.dataset, "root": config.data.root, "preset": preset,
              "overrides": overrides, "categories": chosen, "seeds": seed_list, "protocol": PROTOCOL,
              "table": benchmark_table(per_run), "runs": record_runs,
              "seconds": {"this_invocation": time.perf_counter() - start, "runs_total": total}}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "benchmark.json", record)
    write_text(out_dir / "benchmark.md", markdown(record))
    return record


def main(argv: Sequence[str] | None = None) -> int:
    """``manifold-ae benchmark --preset mvtec --data.root R [--categories all|a,b] [--seeds 0,1,2] [--out DIR]``."""
    p = argparse.ArgumentParser(prog="manifold-ae benchmark", allow_abbrev=False,
                                description="Train and evaluate every category x seed of a dataset (resumable) "
                                            "and write a table of mean ± std over seeds. Config overrides "
                                            "(--section.key=value) apply to every run.")
    p.add_argument("--preset", default="mvtec", help="preset name or .toml/.json config")
    p.add_argument("--categories", default="all", help="'all' (the dataset's categories) or a comma-separated list")
    p.add_argument("--seeds", default="0", help="comma-separated training seeds, e.g. 0,1,2")
    p.add_argument("--out", default="runs/benchmark", help="output directory (one run per category and seed)")
    p.add_argument("--device", default="auto", help="device for evaluation")
    p.add_argument("--no-progress", action="store_true")
    args, overrides = p.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    try:
        record = benchmark(args.preset, overrides, out_dir=args.out, categories=args.categories,
                           seeds=args.seeds, device=args.device, progress=not args.no_progress)
    except (ValueError, RuntimeError) as err:
        print(f"manifold-ae benchmark: {err}", file=sys.stderr)
        return 2
    print(markdown(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
