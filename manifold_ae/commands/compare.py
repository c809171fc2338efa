"""``manifold-ae compare``: the self-supervised model against baselines on one dataset, in one run (T6, T8).

    manifold-ae compare --preset magnetic_tile --out runs/compare
    manifold-ae compare --preset magnetic_tile --out runs/compare --methods ae,dae     # train a subset ...
    manifold-ae compare --preset magnetic_tile --out runs/compare                     # ... then all (reused)

Methods, all on the preset's data, split, resolution and score settings:

========================  ==========================================================================
``selfsupervised``        the preset's gated U-Net trained with the paper's corruption objective (T6)
``ae``                    the same network without skips (a plain convolutional AE), reconstruction loss
``dae``                   the same network without skips, Gaussian denoising loss (``objective.sigma``, T4)
``pca``                   projection onto the top-k principal subspace of the training images (T2)
========================  ==========================================================================

The networks get the same global batch and number of steps (``train.steps``); PCA is fitted on the same
training images. Every method is scored by the same :class:`~manifold_ae.images.pipeline.Pipeline` (residual map,
Gaussian smoothing, image score) and the same metrics; thresholds come from the held-out normal training
images only. A method whose run directory already holds a finished checkpoint of the same config is not
trained again, so subsets of methods can be trained in parallel processes and collected afterwards. A run
directory holding anything else (a run of another config, an unfinished run, other files) is never deleted
silently: compare stops and names the folder and the differing keys, and ``--overwrite`` replaces it.

Output in ``--out``: one run directory per method, ``compare.json`` (metrics overall and per defect class,
training times, thresholds, protocol) and ``results.md`` (one markdown table).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from manifold_ae.images.config import CHECKPOINT_NAME, Config, load_config
from manifold_ae.commands.evaluate import (TABLE_COLUMNS, metrics_for, percent_cell, score_description, score_splits,
                                          threshold_description)
from manifold_ae.images.pipeline import Pipeline, build_datasets, load_checkpoint
from manifold_ae.files import write_json, write_text

__all__ = ["main", "compare", "method_config", "METHODS", "results_table"]

#: method name -> (objective.name, model.skips, description)
METHODS: dict[str, tuple[str | None, bool | None, str]] = {
    "selfsupervised": ("selfsupervised", None, "gated U-Net, self-supervised corruption objective (T6)"),
    "ae": ("reconstruction", False, "plain conv AE (same network, no skips), reconstruction loss"),
    "dae": ("denoising", False, "Gaussian DAE (same network, no skips), denoising loss (T4)"),
    "pca": (None, None, "PCA reconstruction, scikit-learn PCA on the training images (T2)"),
}

TABLE = TABLE_COLUMNS[:5]  # the columns of evaluate's tables, without pixel F1-max


def method_config(config: Config, method: str, *, out_dir: str | Path) -> Config:
    """The config of one network method: ``config`` with its objective/skips and ``out_dir/method``."""
    if method not in METHODS or METHODS[method][0] is None:
        raise ValueError(f"method {method!r} is not a trained network; expected one of "
                         f"{[m for m, spec in METHODS.items() if spec[0] is not None]}")
    objective, skips, _ = METHODS[method]
    model = config.model if skips is None else dataclasses.replace(config.model, skips=skips)
    return config.replace(objective=dataclasses.replace(config.objective, name=objective), model=model,
                          train=dataclasses.replace(config.train, out_dir=str(Path(out_dir) / method)))


def _differing_keys(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """``section.key: stored -> wanted`` for every key where two ``Config.to_dict`` records differ."""
    out = []
    for section in sorted(set(stored) | set(wanted)):
        old, new = stored.get(section), wanted.get(section)
        if isinstance(old, dict) and isinstance(new, dict):
            out += [f"{section}.{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
                    if old.get(k) != new.get(k)]
        elif old != new:
            out.append(f"{section}: {old!r} -> {new!r}")
    return out


def _scoring_only(difference: str, config: Config) -> bool:
    """Whether a differing key leaves the trained network as it is: ``score.*`` (post-processing, applied and
    its statistics and thresholds refitted when the methods are scored), and ``corruption.*`` for networks
    whose objective uses no corruption."""
    return difference.startswith("score.") or (difference.startswith("corruption.")
                                               and config.objective.name != "selfsupervised")


def _existing_run(config: Config) -> tuple[dict[str, Any] | None, str]:
    """What ``config``'s out_dir holds: (the summary of a finished run of exactly ``config``, "") to reuse, or
    (None, why it cannot be reused) with ``why`` empty when the folder is absent or empty. Keys that do not
    change the trained network (:func:`_scoring_only`) may differ."""
    run = Path(config.train.out_dir)
    if not run.exists() or not any(run.iterdir()):
        return None, ""
    summary_path, ckpt = run / "train_summary.json", run / CHECKPOINT_NAME
    if not ckpt.is_file():
        return None, f"it holds no {CHECKPOINT_NAME} (files: {sorted(p.name for p in run.iterdir())[:5]})"
    state = load_checkpoint(ckpt)
    stored = Config.from_dict(state["config"], source=f"{ckpt} (stored config)", stored=True).to_dict()
    differing = [d for d in _differing_keys(stored, config.to_dict()) if not _scoring_only(d, config)]
    if differing:
        return None, f"its checkpoint was trained with a different config ({'; '.join(differing)})"
    if int(state["step"]) != config.train.steps or not summary_path.is_file():
        return None, f"it holds an unfinished run (step {int(state['step'])} of {config.train.steps})"
    return json.loads(summary_path.read_text(encoding="utf-8")), ""


def _train_network(config: Config, *, progress: bool, overwrite: bool = False) -> dict[str, Any]:
    """Train (or reuse) one network; returns its training summary.

    A run folder that holds anything but a finished run of ``config`` is replaced only with ``overwrite``;
    otherwise a ValueError names the folder and why it cannot be reused.
    """
    from manifold_ae.commands.train import train

    done, why = _existing_run(config)
    if done is not None:
        return done | {"reused": True}
    run = Path(config.train.out_dir)
    if why and not overwrite:
        raise ValueError(f"{run} exists and cannot be reused: {why}. Nothing was deleted; pass --overwrite to "
                         "replace it, or choose another --out")
    if why:
        print(f"manifold-ae compare: --overwrite: replacing {run} ({why})", flush=True)
        shutil.rmtree(run)
    summary = train(config, progress=progress)
    summary |= {"threads": torch.get_num_threads(), "started_by": "manifold-ae compare"}
    write_json(run / "train_summary.json", summary)
    return summary


def _pca(config: Config, splits: Any, *, out_dir: Path, n_components: int) -> tuple[Any, dict[str, Any]]:
    """Fit the PCA baseline on the training images (saved to ``out_dir/pca/pca.pt``)."""
    from manifold_ae.images.baselines import fit_pca, pca_state

    start = time.perf_counter()
    module = fit_pca(splits.train, n_components=n_components)
    seconds = time.perf_counter() - start
    run = out_dir / "pca"
    run.mkdir(parents=True, exist_ok=True)
    torch.save(pca_state(module), run / "pca.pt")
    explained = float(module.explained_variance_.sum())
    return module, {"seconds": seconds, "n_components": n_components, "train_images": len(splits.train),
                    "explained_variance": explained}


def compare(config: Config, *, out_dir: str | Path, methods: Sequence[str] = tuple(METHODS),
            n_components: int = 64, device: str = "cpu", progress: bool = True,
            overwrite: bool = False) -> dict[str, Any]:
    """Train (or reuse) and score ``methods`` on ``config``'s dataset; write compare.json and results.md.

    Parameters
    ----------
    config : Config
        The self-supervised model's config (a preset plus overrides); baselines derive from it.
    out_dir : str or Path
        One run directory per method below it.
    methods : names from :data:`METHODS`
    n_components : int
        k of the PCA baseline.
    device : str
        Where scoring runs (training follows ``config.train.device``).
    progress : bool
        Progress bars while training.
    overwrite : bool
        Replace a method's run folder that holds something other than a finished run of its config (without
        it, such a folder stops the comparison with a ValueError naming the folder and the differing keys).

    Returns
    -------
    The record written to ``compare.json``.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods {list(methods)} must be a non-empty subset of {list(METHODS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = build_datasets(config.data)
    if splits.test is None:
        raise ValueError(f"data.dataset = {config.data.dataset!r} at {config.data.root!r} has no test set")
    dc = config.data
    record: dict[str, Any] = {"dataset": dc.dataset, "root": dc.root, "preset": config.preset, "methods": {},
                              "split": {"train": len(splits.train),
                                        "holdout": len(splits.holdout) if splits.holdout is not None else 0,
                                        "test": len(splits.test)},
                              "machine": {"platform": platform.platform(), "torch": torch.__version__,
                                          "threads": torch.get_num_threads(),
                                          "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available()
                                          else None},
                              "protocol": _protocol(config, n_components)}
    validation = None
    if splits.holdout is not None:  # options are chosen on this set, never on the test set
        from manifold_ae.images.validation import validation_set

        validation = validation_set(splits.holdout, split_seed=dc.split_seed)
    for method in methods:
        if METHODS[method][0] is None:
            module, training = _pca(config, splits, out_dir=out_dir, n_components=n_components)
            mconfig = config
        else:
            mconfig = method_config(config, method, out_dir=out_dir)
            training = _train_network(mconfig, progress=progress, overwrite=overwrite)
            module = None
        start = time.perf_counter()
        if module is None:
            pipe = Pipeline.from_checkpoint(mconfig.train.out_dir, device=device)
            pipe.score_config = config.score
        else:
            pipe = Pipeline(module, image_size=dc.image_size, channels=dc.channels, score=config.score,
                            resize_mode=dc.resize_mode, device=device, normalize=dc.normalize,
                            normalize_target=dc.normalize_target)
        _, thresholds, metrics = score_splits(pipe, splits, config)
        scoring = time.perf_counter() - start
        record["methods"][method] = {"description": METHODS[method][2], "training": training,
                                     "scoring_seconds": scoring, "thresholds": thresholds,
                                     "metrics": metrics, "config": mconfig.to_dict() if module is None else None}
        if validation is not None:
            record["methods"][method]["validation"] = metrics_for(pipe.score_dataset(validation), thresholds=None)
        pixel = metrics["all"].get("pixel_auroc")
        pixel_text = (f"{pixel:.3f}" if isinstance(pixel, float) and math.isfinite(pixel)
                      else f"absent ({metrics['all'].get('pixel_metrics_absent', 'no defect pixels')})")
        print(f"{method}: image AUROC {metrics['all']['image_auroc']:.3f}, pixel AUROC {pixel_text}", flush=True)
    name = "compare.json" if list(methods) == list(METHODS) else f"compare_{'_'.join(methods)}.json"
    write_json(out_dir / name, record)
    if list(methods) == list(METHODS):
        text = "## Test set\n\n" + results_table(record)
        if validation is not None:
            text += ("\n## Synthetic validation set (held-out normal images + synthetic defects, "
                     "manifold_ae.images.validation; the only set options are chosen on)\n\n"
                     + results_table(record, key="validation"))
        write_text(out_dir / "results.md", text)
    return record


def _protocol(config: Config, n_components: int) -> dict[str, Any]:
    dc, sc = config.data, config.score
    return {"image_size": dc.image_size, "channels": dc.channels, "resize_mode": dc.resize_mode,
            "split": f"split_seed {dc.split_seed}, test_normal_fraction {dc.test_normal_fraction}, "
                     f"holdout_fraction {dc.holdout_fraction}",
            "score": f"{score_description(sc)}, identical for every method",
            "thresholds": f"{threshold_description(sc)} of the held-out normal training images; "
                          "nothing chosen on the test set",
            "budget": f"networks: batch {config.train.batch_size} x {config.train.steps} steps each; "
                      f"PCA: k = {n_components}"}


def results_table(record: dict[str, Any], *, key: str = "metrics") -> str:
    """Markdown table: one row per method and defect class (``all`` first), plus training time.

    ``key="validation"`` tabulates the synthetic validation set instead of the test set.
    """
    head = "| method | defect | good / defect | " + " | ".join(t for _, t in TABLE) + " | training |"
    lines = [head, "|" + " --- |" * (4 + len(TABLE))]
    for method, entry in record["methods"].items():
        seconds = entry["training"].get("seconds")
        time_cell = "–" if seconds is None else f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"
        for defect, m in entry.get(key, {}).items():
            label = f"**{defect}**" if defect == "all" else defect
            cells = " | ".join(percent_cell(m.get(k)) for k, _ in TABLE)
            lines.append(f"| {method} | {label} | {m['n_good']} / {m['n_defect']} | {cells} | "
                         f"{time_cell if defect == 'all' else ''} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``manifold-ae compare --preset NAME --out DIR [--methods a,b] [--pca-components K] [--key=value ...]``."""
    p = argparse.ArgumentParser(prog="manifold-ae compare", allow_abbrev=False,
                                description="Train and score the self-supervised model and the baselines "
                                            f"({', '.join(METHODS)}) on one dataset config. Config overrides "
                                            "(--section.key=value) apply to every method.")
    p.add_argument("--preset", default="magnetic_tile", help="preset name or .toml/.json config")
    p.add_argument("--out", default="runs/compare", help="output directory (one run directory per method)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {list(METHODS)}")
    p.add_argument("--pca-components", type=int, default=64, help="k of the PCA baseline")
    p.add_argument("--device", default="cpu", help="device for scoring")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a method's run folder that holds a different or unfinished run (never silently)")
    args, overrides = p.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    try:
        config = load_config(args.preset, overrides)
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        record = compare(config, out_dir=args.out, methods=methods, n_components=args.pca_components,
                         device=args.device, progress=not args.no_progress, overwrite=args.overwrite)
    except ValueError as err:
        print(f"manifold-ae compare: {err}", file=sys.stderr)
        return 2
    print(results_table(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
