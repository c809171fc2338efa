"""``manifold-ae check-data``: read every image and mask of a run's datasets and list every problem at once.

    manifold-ae check-data --preset magnetic_tile
    manifold-ae check-data --data.dataset=folder --data.root=my_images --data.normal_dir=good \\
        --data.abnormal_dirs=dent,scratch --data.mask_dir=masks --data.mask_suffix=_mask

The training, held-out and test sets are built from the resolved config exactly as ``train`` and ``evaluate``
build them (``pipeline.build_datasets``), and every item is read as they read it: the whole file decoded, the
mask found, of its image's size, and marking at least one pixel for an anomalous image (``data.io``). A defect
image without its mask is recorded and the index goes on (``data.io.collect_problems``), so one run lists every
missing mask, unreadable or truncated file, wrong-size mask and empty mask. Exit status 2 when there is any
problem (listed on stderr, one per line), else 0 with the size of each set. ``train`` runs the same check
before its first step (:func:`checked_datasets`).
"""
from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset, Subset

from manifold_ae.images.config import DataConfig, load_config
from manifold_ae.images.data.io import Sample, collect_problems, item_problems
from manifold_ae.images.pipeline import Splits, build_datasets

__all__ = ["DataReport", "DataProblems", "check_data", "checked_datasets", "main"]


@dataclass(frozen=True)
class DataReport:
    """What :func:`check_data` found: the datasets (None when they could not be built) and every problem."""

    config: DataConfig
    splits: Splits | None
    problems: tuple[str, ...]
    excluded: tuple[Sample, ...]  # anomalous test images left out for an empty mask (data.empty_masks)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line per set: its size and labels; then the images left out, if any."""
        c = self.config
        lines = [f"dataset {c.dataset!r} at {c.root}" + (f", category {c.category!r}" if c.dataset in ("mvtec", "synthetic") else "")
                 + f" (image_size {c.image_size}, channels {c.channels}, resize_mode {c.resize_mode!r})"]
        if self.splits is not None:
            for name in ("train", "holdout", "test"):
                ds = getattr(self.splits, name)
                if ds is None:
                    lines.append(f"  {name:<8} none")
                    continue
                labels = _labels(ds)
                lines.append(f"  {name:<8} {len(labels)} image{'s' if len(labels) != 1 else ''} "
                             f"({labels.count(0)} normal, {labels.count(1)} anomalous)")
        if self.excluded:
            lines.append(f"  left out {len(self.excluded)} anomalous test image(s) whose masks mark no pixel "
                         f"(data.empty_masks = 'exclude'): " + ", ".join(str(s.mask) for s in self.excluded))
        return "\n".join(lines)


class DataProblems(ValueError):
    """The datasets of a config have problems; the message lists every one, one per line."""

    def __init__(self, report: DataReport, *, note: str = "") -> None:
        self.report = report
        n = len(report.problems)
        super().__init__(f"{n} problem{'s' if n != 1 else ''} in the data of dataset {report.config.dataset!r} at "
                         f"{report.config.root}{f' ({note})' if note else ''}:\n"
                         + "\n".join(f"  {i}. {p}" for i, p in enumerate(report.problems, 1)))


def _labels(ds: Dataset) -> list[int]:
    """Labels of a dataset of ``data.io`` without reading images, through Subset and wrapper datasets."""
    if isinstance(ds, Subset):
        inner = _labels(ds.dataset)
        return [inner[i] for i in ds.indices]
    if hasattr(ds, "labels"):
        return list(ds.labels)
    return _labels(ds.dataset)  # e.g. pipeline.Normalized


def _mask_hint(cfg: DataConfig) -> str:
    """The settings that decide where a mask is looked for, for a message about a missing one."""
    if cfg.dataset == "folder":
        return (f"masks are looked for by --data.mask_dir (now {cfg.mask_dir!r}: '' = beside each anomalous "
                f"image) and --data.mask_suffix (now {cfg.mask_suffix!r}), as <stem><mask_suffix>.png")
    if cfg.dataset == "magnetic_tile":
        return "Magnetic Tile keeps each mask beside its image as <stem>.png; check --data.root"
    return (f"the {cfg.dataset} layout fixes where masks are (docs/data.md); check --data.root and "
            "--data.category")


def _excluded(splits: Splits) -> tuple[Sample, ...]:
    ds = splits.test
    while ds is not None and not hasattr(ds, "excluded"):
        ds = getattr(ds, "dataset", None)
    return tuple(ds.excluded) if ds is not None else ()


def check_data(cfg: DataConfig) -> DataReport:
    """Build the datasets of ``cfg`` as ``train`` does and read every item; collect every problem."""
    if cfg.dataset == "synthetic" and not (Path(cfg.root) / (cfg.category or "weave")).is_dir():
        problem = (f"the built-in synthetic category {cfg.category!r} is not written yet under {cfg.root}; "
                   f"`manifold-ae make-synthetic --out {cfg.root} --categories {cfg.category or 'weave'}` writes "
                   f"it (train writes it on first use)")
        return DataReport(cfg, None, (problem,), ())
    with collect_problems() as found:
        try:
            splits = build_datasets(cfg)
        except ValueError as err:  # a folder-level problem: nothing to index the files from
            return DataReport(cfg, None, tuple(found) + (str(err),), ())
    hint = _mask_hint(cfg)
    problems = [f"test set: {p}; {hint}" if "has no mask" in p else p for p in found]
    for name in ("train", "holdout", "test"):
        ds = getattr(splits, name)
        if ds is not None:
            problems += item_problems(ds, what=f"{name} set")
    return DataReport(cfg, splits, tuple(problems), _excluded(splits))


def checked_datasets(cfg: DataConfig) -> Splits:
    """:func:`pipeline.build_datasets` after :func:`check_data`: the datasets, or DataProblems listing all."""
    report = check_data(cfg)
    if not report.ok:
        raise DataProblems(report, note="nothing was trained; `manifold-ae check-data` with the same options "
                                        "repeats this check")
    assert report.splits is not None
    return report.splits


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="manifold-ae check-data", allow_abbrev=False,
        description="Read every training, held-out and test image and mask of a config's datasets, as train and "
                    "evaluate would, and list every problem (exit status 2) or the size of each set (0). Any "
                    "config field can be set with --section.key=value, e.g. --data.root=DIR --data.mask_suffix=_mask.")
    p.add_argument("--preset", default=None, help="bundled preset name or a .toml/.json config file")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``manifold-ae check-data [--preset P] [--data.key=value ...]``."""
    args, overrides = _parser().parse_known_args(list(sys.argv[1:] if argv is None else argv))
    try:
        cfg = load_config(args.preset, overrides).data
    except ValueError as err:
        print(f"manifold-ae check-data: {err}", file=sys.stderr)
        return 2
    with warnings.catch_warnings():  # the images left out are listed in the summary instead
        warnings.filterwarnings("ignore", message="left out ", category=UserWarning)
        report = check_data(cfg)
    print(report.summary())
    if not report.ok:
        print(f"manifold-ae check-data: {DataProblems(report)}", file=sys.stderr)
        return 2
    print("no problems: every image and mask reads as training and evaluation will read it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
