"""``manifold-ae evaluate``: checkpoint(s) + dataset -> metrics JSON, markdown table, overlays (T8).

    manifold-ae evaluate runs/quick --out runs/quick/eval
    manifold-ae evaluate runs/mvtec-bottle runs/mvtec-cable ... --out reports/mvtec   # one model per category

Protocol: images go through :class:`~manifold_ae.images.pipeline.Pipeline` (the same path ``predict`` uses);
thresholds are the ``score.threshold_quantile`` of the *held-out normal training images* (the split stored
in the checkpoint's config), never of the test set. Threshold-free metrics (AUROC, AUPRO, AP, F1-max) are
reported beside the thresholded ones, overall and per defect class (each defect class against all good
test images).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from manifold_ae.anomaly.metrics import image_metrics, pixel_metrics
from manifold_ae.images.config import CHECKPOINT_NAME, Config, apply_overrides, parse_overrides
from manifold_ae.files import write_json, write_text
from manifold_ae.images.pipeline import (Pipeline, ScoredSet, build_datasets, data_label, ensure_normal_stats,
                                         thresholds_from_normal)

__all__ = ["main", "evaluate", "score_splits", "metrics_for", "markdown_table", "percent_cell", "EVALUATE_KEYS",
           "TABLE_COLUMNS"]

#: config keys ``evaluate`` may override (the rest must match training, or the held-out split would move)
EVALUATE_KEYS = frozenset({"data.root", "data.num_workers", "score.sigma", "score.reduction", "score.topk",
                           "score.threshold_quantile", "score.batch_size", "score.scales", "score.level_norm",
                           "score.stats_images", "score.threshold_fpr", "score.threshold_confidence",
                           "score.flips"})

TABLE_COLUMNS = (("image_auroc", "image AUROC"), ("pixel_auroc", "pixel AUROC"), ("aupro", "AUPRO@0.3"),
                 ("pixel_ap", "pixel AP"), ("image_f1", "image F1 @thr"), ("pixel_f1_max", "pixel F1-max"))


def metrics_for(scored: ScoredSet, *, thresholds: dict[str, float] | None) -> dict[str, Any]:
    """Image- and pixel-level metrics of a scored test set: ``{"all": {...}, "<defect>": {...}, ...}``.

    Each defect class is scored against all good test images; ``n_good``/``n_defect`` count images and
    ``n_defect_pixels`` the defect pixels of the class's masks. A group without any defect pixel (image-level
    labels only) has no pixel metrics; ``pixel_metrics_absent`` says why.
    """
    if scored.labels is None or scored.masks is None or scored.defects is None:
        raise ValueError("metrics need a labelled test set (labels, masks, defects)")
    labels = scored.labels
    if int(labels.sum()) == 0 or int(labels.sum()) == labels.numel():
        raise ValueError(f"the test set needs normal and anomalous images, got {int((labels == 0).sum())} normal "
                         f"and {int(labels.sum())} anomalous")
    image_thr = thresholds.get("image") if thresholds else None
    pixel_thr = thresholds.get("pixel") if thresholds else None
    good = labels == 0
    groups = {"all": torch.ones_like(good)}
    for defect in sorted({d for d, y in zip(scored.defects, labels.tolist()) if y == 1}):
        groups[defect] = good | torch.tensor([d == defect for d in scored.defects])
    out: dict[str, Any] = {}
    for name, sel in groups.items():
        masks = scored.masks[sel]
        metrics = {"n_good": int((sel & good).sum()), "n_defect": int((sel & ~good).sum()),
                   "n_defect_pixels": int(masks.sum())}
        metrics |= image_metrics(labels[sel], scored.scores[sel], threshold=image_thr)
        if masks.sum() > 0:  # pixel metrics need at least one annotated defect pixel
            metrics |= pixel_metrics(masks, scored.heatmaps[sel], threshold=pixel_thr)
        else:
            metrics["pixel_metrics_absent"] = (f"none of the {metrics['n_defect']} anomalous images has a defect "
                                               "mask (image-level labels only): image metrics only")
        out[name] = metrics
    return out


def score_splits(pipe: Pipeline, splits: Any, config: Config, *, progress: bool = False
                 ) -> tuple[ScoredSet, dict[str, float] | None, dict[str, Any]]:
    """The evaluation protocol, shared by ``evaluate`` and ``compare``: thresholds from the held-out normal
    training images only (never the test set), then the test set scored and its metrics (T8).

    Returns ``(scored test set, thresholds or None, metrics)``.
    """
    thresholds = None
    ensure_normal_stats(pipe, splits.train)  # a score override of scales or level_norm: fitted on training images
    if splits.holdout is not None:
        thresholds = thresholds_from_normal(pipe.score_dataset(splits.holdout, progress=progress),
                                            quantile=config.score.threshold_quantile,
                                            fpr=config.score.threshold_fpr,
                                            confidence=config.score.threshold_confidence)
    scored = pipe.score_dataset(splits.test, progress=progress)
    return scored, thresholds, metrics_for(scored, thresholds=thresholds)


def score_description(sc: Any) -> str:
    """The image score of a ``ScoreConfig`` in words (for metrics.json's protocol and compare's)."""
    reduce = f"{sc.reduction}{f' (top {sc.topk})' if sc.reduction == 'topk' else ''}"
    flips = "" if sc.flips == "none" else f", the reconstruction averaged over the flips '{sc.flips}'"
    if tuple(sc.scales) == (1,) and sc.level_norm == "none":
        return f"{reduce} of the residual map smoothed with a Gaussian (sigma = {sc.sigma} px){flips}"
    return (f"{reduce} of the pixelwise maximum over residuals at scales {list(sc.scales)} (s x s local means), "
            f"each smoothed with a Gaussian (sigma = {sc.sigma} px) and normalised by '{sc.level_norm}' statistics of "
            f"{sc.stats_images} normal training images{flips}")


def threshold_description(sc: Any) -> str:
    """The image-threshold rule of a ``ScoreConfig`` in words."""
    if sc.threshold_fpr > 0:
        return (f"image: the lowest score with P(FPR <= {sc.threshold_fpr}) >= {sc.threshold_confidence} "
                f"(order statistic), pixel: quantile {sc.threshold_quantile}")
    return f"quantile {sc.threshold_quantile}"


def percent_cell(value: Any) -> str:
    """A metric in [0, 1] as a table cell in % (one decimal); missing or NaN as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.1f}"


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown table of ``{category: metrics_for(...)}``, one row per category and defect, plus the mean."""
    header = "| category | defect | good / defect images | " + " | ".join(t for _, t in TABLE_COLUMNS) + " |"
    lines = [header, "|" + " --- |" * (3 + len(TABLE_COLUMNS))]
    for category, groups in results.items():
        for defect, m in groups.items():
            cells = [percent_cell(m.get(key)) for key, _ in TABLE_COLUMNS]
            label = f"**{defect}**" if defect == "all" else defect
            lines.append(f"| {category} | {label} | {m['n_good']} / {m['n_defect']} | " + " | ".join(cells) + " |")
    if len(results) > 1:
        cells = []
        for key, _ in TABLE_COLUMNS:
            values = [g["all"][key] for g in results.values() if key in g["all"]]
            cells.append(percent_cell(sum(values) / len(values)) if values else "–")
        lines.append("| **mean** | all categories | | " + " | ".join(cells) + " |")
    notes = [f"{category}: no pixel metrics: {groups['all']['pixel_metrics_absent']}"
             for category, groups in results.items() if "pixel_metrics_absent" in groups.get("all", {})]
    return "\n".join(lines) + "\n" + "".join(f"\n{note}\n" for note in notes)


def _write_overlays(pipe: Pipeline, dataset: Any, scored: ScoredSet, *, thresholds: dict[str, float] | None,
                    out_dir: Path, per_class: int) -> list[str]:
    """One PNG grid per defect class (the first ``per_class`` images of each, in dataset order)."""
    from manifold_ae.viz.overlays import overlay_grid

    assert scored.defects is not None and scored.masks is not None
    written = []
    vmax = 2 * thresholds["pixel"] if thresholds else float(scored.heatmaps.max())
    for defect in sorted(set(scored.defects)):
        idx = [i for i, d in enumerate(scored.defects) if d == defect][:per_class]
        out = pipe(torch.stack([dataset[i]["image"] for i in idx]))
        pred = (out.heatmap >= thresholds["pixel"]).float() if thresholds else None
        path = overlay_grid(out.image, out.reconstruction, out.heatmap, scored.masks[idx], pred,
                            path=out_dir / f"overlays_{defect}.png", titles=[Path(scored.paths[i]).name for i in idx],
                            scores=out.score.tolist(), vmax=vmax)
        written.append(str(path))
    return written


def evaluate(checkpoint: str | Path, *, out_dir: str | Path, overrides: Sequence[str] = (),
             device: str = "auto", overlays_per_class: int = 4, progress: bool = True,
             synthetic: bool = False, validation_seed: int | None = None) -> dict[str, Any]:
    """Evaluate one checkpoint on its configured test set; writes into ``out_dir`` and returns the results.

    Files: ``metrics.json`` (metrics per defect class, thresholds, protocol), ``scores.json`` (one score per
    test image, the format of ``predict``), ``results.md``, ``overlays_<defect>.png`` and ``report.html`` (one
    self-contained page: table, curves, overlays, thresholds, config; :mod:`manifold_ae.viz.report`).

    ``synthetic=True`` evaluates on the validation set of :mod:`manifold_ae.images.validation` instead: the held-out
    normal training images with synthetic defects, for choosing options without the test set. No thresholds
    are set then (they would come from the same images). ``validation_seed`` draws other defects of the same
    kinds (default: the run's ``data.split_seed + 1``), to check that a ranking of options holds across draws.
    """
    pipe = Pipeline.from_checkpoint(checkpoint, device=device)
    assert pipe.config is not None
    for section, values in parse_overrides(overrides).items():
        bad = [f"{section}.{k}" for k in values if f"{section}.{k}" not in EVALUATE_KEYS]
        if bad:
            raise ValueError(f"evaluate cannot override {bad}: they must match the training run; allowed: "
                             f"{sorted(EVALUATE_KEYS)}")
    config = apply_overrides(pipe.config, overrides)
    pipe.score_config = config.score
    splits = build_datasets(config.data)
    if synthetic:
        from manifold_ae.images.validation import validation_set

        test_set = validation_set(splits.holdout, split_seed=config.data.split_seed, seed=validation_seed)
        ensure_normal_stats(pipe, splits.train)
        scored, thresholds = pipe.score_dataset(test_set, progress=progress), None
        metrics = metrics_for(scored, thresholds=None)
    elif splits.test is None:
        raise ValueError(f"data.dataset = {config.data.dataset!r} at {config.data.root!r} has no test set to "
                         "evaluate on")
    else:
        test_set = splits.test
        scored, thresholds, metrics = score_splits(pipe, splits, config, progress=progress)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    category = data_label(config.data)
    result = {"category": category, "checkpoint": str(checkpoint), "step": pipe.step,
              "metrics": metrics, "thresholds": thresholds,
              "protocol": {"image_size": config.data.image_size, "channels": config.data.channels,
                           "resize": f"{config.data.resize_mode} to image_size x image_size (antialiased bilinear); masks "
                                     "binarised in their own encoding at file resolution (docs/data.md), then "
                                     "nearest-neighbour",
                           "score": score_description(config.score),
                           "thresholds": f"{threshold_description(config.score)} of held-out normal "
                                         f"training images (holdout_fraction = {config.data.holdout_fraction}, "
                                         f"split_seed = {config.data.split_seed}); nothing chosen on the test set",
                           "test_set": "held-out normal images + synthetic defects (manifold_ae.images.validation)"
                                       if synthetic else "the dataset's test split",
                           "objective": config.objective.name},
              "config": config.to_dict()}
    write_json(out_dir / "metrics.json", result)
    write_json(out_dir / "scores.json", _scores_record(scored, thresholds, checkpoint))
    write_text(out_dir / "results.md", markdown_table({category: metrics}))
    if overlays_per_class > 0:
        result["overlays"] = _write_overlays(pipe, test_set, scored, thresholds=thresholds, out_dir=out_dir,
                                             per_class=overlays_per_class)
    from manifold_ae.viz.report import write_report

    result["report"] = str(write_report(out_dir / "report.html", result, scored, columns=TABLE_COLUMNS))
    return result


def _scores_record(scored: ScoredSet, thresholds: dict[str, float] | None, checkpoint: str | Path) -> dict[str, Any]:
    """Per-image scores in the format shared with ``predict``'s scores.json."""
    images = []
    for i, path in enumerate(scored.paths):
        record: dict[str, Any] = {"path": path, "score": float(scored.scores[i])}
        record["anomalous"] = bool(scored.scores[i] >= thresholds["image"]) if thresholds else None
        if scored.labels is not None and scored.defects is not None:
            record |= {"label": int(scored.labels[i]), "defect": scored.defects[i]}
        images.append(record)
    return {"checkpoint": str(checkpoint), "thresholds": thresholds, "images": images}


def main(argv: Sequence[str] | None = None) -> int:
    """``manifold-ae evaluate CHECKPOINT [CHECKPOINT ...] --out DIR [--data.root=...] [--score.sigma=...]``."""
    p = argparse.ArgumentParser(prog="manifold-ae evaluate", allow_abbrev=False,
                                description="Evaluate checkpoints (files or run directories) on their test sets. "
                                            f"Overridable: {', '.join(sorted(EVALUATE_KEYS))}.")
    p.add_argument("checkpoints", nargs="+", help=f"{CHECKPOINT_NAME} files or run directories")
    p.add_argument("--out", default=None, help="output directory (default: <run directory>/eval, or "
                                               "eval_synthetic with --synthetic)")
    p.add_argument("--synthetic", action="store_true",
                   help="score held-out normal images + synthetic defects instead of the test set (model "
                        "selection without the test set)")
    p.add_argument("--validation-seed", type=int, default=None,
                   help="with --synthetic: seed of the synthetic defects (default: the run's data.split_seed + 1)")
    p.add_argument("--device", default="auto")
    p.add_argument("--overlays", type=int, default=4, help="overlay rows per defect class (0: none)")
    p.add_argument("--no-progress", action="store_true")
    args, overrides = p.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    all_metrics: dict[str, dict[str, Any]] = {}
    try:
        for ckpt in args.checkpoints:
            run_dir = Path(ckpt) if Path(ckpt).is_dir() else Path(ckpt).parent
            out = Path(args.out) if args.out else run_dir / ("eval_synthetic" if args.synthetic else "eval")
            if args.out and len(args.checkpoints) > 1:
                out = out / run_dir.name
            result = evaluate(ckpt, out_dir=out, overrides=overrides, device=args.device,
                              overlays_per_class=args.overlays, progress=not args.no_progress,
                              synthetic=args.synthetic, validation_seed=args.validation_seed)
            key = result["category"] if result["category"] not in all_metrics else f"{result['category']} ({ckpt})"
            all_metrics[key] = result["metrics"]
            print(f"{ckpt}: results in {out}")
    except ValueError as err:
        print(f"manifold-ae evaluate: {err}", file=sys.stderr)
        return 2
    table = markdown_table(all_metrics)
    if args.out and len(args.checkpoints) > 1:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        write_text(Path(args.out) / "results.md", table)
        write_json(Path(args.out) / "metrics.json", all_metrics)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
