"""``manifold-ae verify``: run the claim checks T1-T10 and write a report directory.

Each claim lives in its own module exposing ``run(*, fast, out_dir, seed) -> ClaimResult`` with its
criteria fixed in advance (see docs/theory.md). The runner writes ``report.md``, ``results.json`` and the
figures the claims saved, and exits non-zero when any claim fails or errors.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from pathlib import Path

from manifold_ae.claims.base import Check, ClaimResult
from manifold_ae.files import write_text

__all__ = ["CLAIMS", "run_claims", "write_report", "main"]

#: claim id -> (module, one-line statement)
CLAIMS: dict[str, tuple[str, str]] = {
    "T1": ("manifold_ae.claims.t1_projection", "exact orthogonal projections onto toy manifolds (the oracle)"),
    "T2": ("manifold_ae.claims.t2_linear_ae", "a linear AE trained with squared error spans PCA's subspace"),
    "T3": ("manifold_ae.claims.t3_linear_dae", "linear DAE = linear reconstruction-contractive AE = shrunk projector"),
    "T4": ("manifold_ae.claims.t4_denoising", "the Bayes-optimal DAE tends to the orthogonal projection at rate sigma^2"),
    "T5": ("manifold_ae.claims.t5_contractive", "the contractive penalty singles out the projection's Jacobian"),
    "T6": ("manifold_ae.claims.t6_selfsupervised", "partial-corruption training learns the masked projection"),
    "T7": ("manifold_ae.claims.t7_conservation", "the orthogonal projection changes an input least (conservation)"),
    "T8": ("manifold_ae.claims.t8_anomaly", "the projection residual is the oracle anomaly score"),
    "T9": ("manifold_ae.claims.t9_images", "the claims hold on exact image manifolds (T1, T4, T6-T8 with U-Nets)"),
    "T10": ("manifold_ae.claims.t10_diagnostics", "projection diagnostics of trained image models (J, gates)"),
}


def _run_one(claim: str, *, fast: bool, out_dir: Path, seed: int) -> ClaimResult:
    module_name, statement = CLAIMS[claim]
    start = time.perf_counter()
    try:
        module = importlib.import_module(module_name)
        result = module.run(fast=fast, out_dir=out_dir, seed=seed)
    except Exception as err:  # a claim that crashes is a failed claim, reported with its traceback
        result = ClaimResult(claim=claim, title=statement,
                             checks=[Check(name=f"ran without error ({type(err).__name__}: {err})",
                                           measured=0.0, op=">=", target=1.0)],
                             numbers={"traceback": traceback.format_exc()})
    result.seconds = time.perf_counter() - start
    return result


def run_claims(claims: list[str] | None = None, *, fast: bool = False, out_dir: Path | str = "reports/verify",
               seed: int = 0, progress: bool = True) -> list[ClaimResult]:
    """Run the selected claims (default: all, in order) and return their results."""
    selected = list(CLAIMS) if not claims else claims
    unknown = [c for c in selected if c not in CLAIMS]
    if unknown:
        raise ValueError(f"unknown claim id(s) {unknown}; expected some of {list(CLAIMS)}")
    out_dir = Path(out_dir)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    results: list[ClaimResult] = []
    from tqdm.auto import tqdm
    bar = tqdm(selected, desc="verify", unit="claim", disable=not progress)
    for claim in bar:
        bar.set_postfix_str(claim)
        results.append(_run_one(claim, fast=fast, out_dir=out_dir, seed=seed))
    return results


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _cell(text: object) -> str:
    """Text for one markdown table cell: a '|' would end the cell, so it is escaped."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(results: list[ClaimResult], *, fast: bool, seed: int) -> str:
    """The human-readable report: a summary table, then each claim's checks and figures."""
    n_pass = sum(r.passed for r in results)
    lines = [f"# manifold-ae verify ({'fast' if fast else 'full'} run, seed {seed})", "",
             f"{n_pass} of {len(results)} claims passed.", "",
             "| claim | statement | verdict | seconds |", "| --- | --- | --- | --- |"]
    lines += [f"| {r.claim} | {_cell(r.title)} | {'PASS' if r.passed else 'FAIL'} | {r.seconds:.1f} |" for r in results]
    for r in results:
        lines += ["", f"## {r.claim}: {r.title}", "", "| check | measured | criterion | verdict | note |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| {_cell(c.name)} | {_fmt(c.measured)} | {c.op} {_fmt(c.target)} | {'pass' if c.passed else 'FAIL'} "
                  f"| {_cell(c.note)} |" for c in r.checks]
        if "traceback" in r.numbers:
            lines += ["", "```", str(r.numbers["traceback"]).rstrip(), "```"]
        lines += [f"\n![{r.claim}]({fig})" for fig in r.figures]
    return "\n".join(lines) + "\n"


def write_report(results: list[ClaimResult], out_dir: Path | str, *, fast: bool, seed: int) -> Path:
    """Write ``results.json`` and ``report.md`` atomically into ``out_dir``; return the report path."""
    out_dir = Path(out_dir)
    payload = {"fast": fast, "seed": seed, "passed": all(r.passed for r in results),
               "claims": [r.to_dict() for r in results]}
    write_text(out_dir / "results.json", json.dumps(payload, indent=2))
    report = out_dir / "report.md"
    write_text(report, render_markdown(results, fast=fast, seed=seed))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="manifold-ae verify", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="small sizes for CI (under a minute on 2 cores)")
    parser.add_argument("--out", default="reports/verify", help="report directory (default: reports/verify)")
    parser.add_argument("--only", default="", help="comma-separated claim ids, e.g. T3,T4 (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: the toy models are tiny, and extra threads only add "
                             "synchronisation overhead, badly so on a busy machine)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    import torch
    torch.set_num_threads(args.threads)
    claims = [c.strip().upper() for c in args.only.split(",") if c.strip()]
    try:
        results = run_claims(claims, fast=args.fast, out_dir=args.out, seed=args.seed,
                             progress=not args.no_progress)
    except ValueError as err:
        parser.error(str(err))
    report = write_report(results, args.out, fast=args.fast, seed=args.seed)
    width = max(len(r.title) for r in results)
    for r in results:
        print(f"{r.claim}  {'PASS' if r.passed else 'FAIL'}  {r.title:<{width}}  {r.seconds:6.1f} s")
        for c in r.checks:
            if not c.passed:
                print(f"      failed: {c.name}: measured {_fmt(c.measured)}, expected {c.op} {_fmt(c.target)}")
    print(f"report: {report}")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
