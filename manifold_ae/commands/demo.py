"""``manifold-ae demo`` (what ``make demo`` runs): verify the claims, then a small image run end to end.

1. ``manifold-ae verify --fast`` (``--full``: the full suite) -> ``<out>/verify/report.md``
2. ``manifold-ae make-synthetic`` -> ``<out>/data`` (MVTec layout, built-in textures with defects)
3. ``manifold-ae train --preset quick`` on it -> ``<out>/<category>`` (``--full``: three categories, longer)
4. ``manifold-ae evaluate`` -> ``<out>/eval`` (metrics, markdown table, overlays)

Extra ``--section.key=value`` arguments are passed to the training runs (e.g. ``--train.steps=50``).
A few minutes on a laptop CPU; the exit status is non-zero when a claim fails.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from manifold_ae.images.config import CHECKPOINT_NAME

__all__ = ["main"]


def _verify(out: Path, *, full: bool) -> int:
    from manifold_ae.claims import runner

    argv = ["--out", str(out)] + ([] if full else ["--fast"])
    print(f"[demo] 1/4 manifold-ae verify {' '.join(argv)}")
    return int(runner.main(argv) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """``manifold-ae demo [--full] [--skip-verify] [--out DIR] [--section.key=value ...]``."""
    p = argparse.ArgumentParser(prog="manifold-ae demo", allow_abbrev=False,
                                description="The main job: verify the claims (T1-T10), then train and evaluate the "
                                            "paper's model on the built-in synthetic data.")
    p.add_argument("--full", action="store_true", help="full verify suite and a longer image run (3 categories)")
    p.add_argument("--skip-verify", action="store_true", help="only the image half")
    p.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    args, overrides = p.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    out = Path(args.out)
    start = time.perf_counter()

    verify_status = None
    if not args.skip_verify:
        verify_status = _verify(out / "verify", full=args.full)

    from manifold_ae.images.data.synthetic import main as synthetic_main
    from manifold_ae.commands.evaluate import main as evaluate_main
    from manifold_ae.commands.train import main as train_main

    categories = ["weave", "wood", "brick"] if args.full else ["weave"]
    data = out / "data"
    print(f"[demo] 2/4 manifold-ae make-synthetic --out {data} --categories {' '.join(categories)}")
    synthetic_main(["--out", str(data), "--categories", *categories, "--quiet"])

    runs = []
    for category in categories:
        run = out / category
        extra = ["--train.steps=1500"] if args.full else []
        train_args = ["--preset", "quick", "--out", str(run), f"--data.root={data}", f"--data.category={category}",
                      *extra, *overrides]
        print(f"[demo] 3/4 manifold-ae train {' '.join(train_args)}")
        status = train_main(train_args)
        if status:
            return status
        runs.append(str(run))

    eval_dir = out / "eval" if len(runs) > 1 else Path(runs[0]) / "eval"
    print(f"[demo] 4/4 manifold-ae evaluate {' '.join(runs)} --out {eval_dir}")
    status = evaluate_main([*runs, "--out", str(eval_dir), "--no-progress"])
    if status:
        return status

    minutes = (time.perf_counter() - start) / 60
    print("\n[demo] where everything went")
    if verify_status is not None:
        state = "all claims passed" if verify_status == 0 else "SOME CLAIMS FAILED"
        print(f"  claims report   {out / 'verify' / 'report.md'}  ({state})")
    print(f"  synthetic data  {data}")
    for run in runs:
        print(f"  training run    {run}  (config.toml, log.jsonl, {CHECKPOINT_NAME})")
    print(f"  evaluation      {eval_dir}  (results.md, metrics.json, scores.json, overlays_*.png)")
    print(f"  total time      {minutes:.1f} min")
    return 1 if verify_status else 0


if __name__ == "__main__":
    raise SystemExit(main())
