"""A small mutation check of the test suite: plant known bugs, one at a time, and see whether the tests notice.

Each :class:`Mutation` names a file, an exact piece of text in it, its replacement, the test files (or node ids)
that should catch the bug and, optionally, claims whose ``manifold-ae verify --fast`` run should fail (a failing
claim is a catch too). The text must occur exactly once in the file, else the mutation is reported as a
``pattern-error``: when the code changes, the list has to be brought up to date instead of silently mutating
something else.

Every mutant lives in a SCRATCH COPY (``manifold_ae/``, ``tests/`` and ``pyproject.toml`` copied to a temporary
directory, imported first through ``PYTHONPATH``); the source tree is only read. Mutants run one after another
with ``OMP_NUM_THREADS=1``. Before them, one baseline run of every selected test and claim on the unmutated copy
finds tests that already fail: those are deselected, so that a catch is a catch of the planted bug.

Usage (from the repository root)::

    .venv/bin/python tests/tools/mutate.py --list
    .venv/bin/python tests/tools/mutate.py                       # all mutations, markdown table on stdout
    .venv/bin/python tests/tools/mutate.py --only aupro-normalisation,sphere-radius --json mutants.json

Exit status: 0 when every mutant is caught, 1 when any survives, 2 when none survives but some mutation could
not be run (pattern-error, error). docs/testing.md describes the check and keeps its latest output.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Sequence

__all__ = ["Mutation", "Outcome", "PatternError", "MUTATIONS", "apply_mutation", "make_scratch", "run_mutation",
           "run_baseline", "export_ref", "markdown_table", "exit_status", "main"]

REPO = Path(__file__).resolve().parents[2]
COPIED = ("manifold_ae", "tests", "pyproject.toml")
STATUSES = ("caught", "SURVIVED", "pattern-error", "error")


@dataclasses.dataclass(frozen=True)
class Mutation:
    """One planted bug: replace ``old`` (which must occur exactly once in ``file``) by ``new``.

    ``tests`` are pytest arguments (files or node ids, relative to the repository root); ``claims`` are claim ids
    for ``manifold-ae verify --fast --only``, run only when the tests let the mutant through.
    """

    id: str
    kind: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    claims: tuple[str, ...] = ()


@dataclasses.dataclass
class Outcome:
    """What happened to one mutant. ``caught_by`` is the first failing test (node id) or ``verify Tn``."""

    id: str
    kind: str
    file: str
    status: str
    caught_by: str = ""
    seconds: float = 0.0
    detail: str = ""


class PatternError(ValueError):
    """The mutation's text does not occur exactly once, or the mutant is not valid Python."""


# ---------------------------------------------------------------------------------------------------- the list
MUTATIONS: tuple[Mutation, ...] = (
    Mutation("sphere-radius", "projection scale", "manifold_ae/manifolds/sphere.py",
             "return self.radius * u, self._angles(u.detach())",
             "return 1.01 * self.radius * u, self._angles(u.detach())",
             ("tests/test_manifolds.py",), ("T1",)),
    Mutation("ring-torus-tangent-sign", "tangent sign", "manifold_ae/manifolds/torus.py",
             "e_v = torch.stack([-torch.sin(v) * torch.cos(u), -torch.sin(v) * torch.sin(u), torch.cos(v)], dim=-1)",
             "e_v = torch.stack([-torch.sin(v) * torch.cos(u), -torch.sin(v) * torch.sin(u), -torch.cos(v)], dim=-1)",
             ("tests/test_manifolds.py",), ("T1",)),
    Mutation("vmf-bessel-order", "Bessel order", "manifold_ae/theory/bayes.py",
             "g, _ = _ratio_and_derivative(p / 2.0, kappa_sq)",
             "g, _ = _ratio_and_derivative((p + 1) / 2.0, kappa_sq)",
             ("tests/test_theory_bayes.py", "tests/test_claims_denoising.py"), ("T4",)),
    Mutation("aupro-normalisation", "AUPRO normalisation", "manifold_ae/anomaly/metrics.py",
             "return float(_area_to(fpr, pro, limit) / limit)",
             "return float(_area_to(fpr, pro, limit))",
             ("tests/test_anomaly_metrics.py",)),
    Mutation("aupro-connectivity", "AUPRO connectivity", "manifold_ae/anomaly/metrics.py",
             "lab, k = ndimage.label(m[i], structure=_STRUCTURES[connectivity])",
             "lab, k = ndimage.label(m[i], structure=_STRUCTURES[12 - connectivity])",
             ("tests/test_anomaly_metrics.py",)),
    Mutation("aupro-interpolation", "AUPRO interpolation", "manifold_ae/anomaly/metrics.py",
             "y_lim = y[j - 1] + (y[j] - y[j - 1]) * (limit - x[j - 1]) / (x[j] - x[j - 1])",
             "y_lim = y[j - 1]",
             ("tests/test_anomaly_metrics.py",)),
    Mutation("denoising-noise-sigma-squared", "sigma vs sigma^2", "manifold_ae/corruptions/vector.py",
             "return x + sigma * eps, torch.ones_like(x)",
             "return x + sigma ** 2 * eps, torch.ones_like(x)",
             ("tests/test_corruptions_vector.py", "tests/test_objectives.py"), ("T3",)),
    Mutation("vmf-kappa-sigma", "sigma vs sigma^2", "manifold_ae/theory/bayes.py",
             "kappa_sq = (radius / sigma ** 2) ** 2 * (u * u).sum(-1)  # (...,)  κ² = R²‖u‖²/σ⁴",
             "kappa_sq = (radius / sigma) ** 2 * (u * u).sum(-1)  # (...,)  κ² = R²‖u‖²/σ⁴",
             ("tests/test_theory_bayes.py", "tests/test_claims_denoising.py"), ("T4",)),
    Mutation("loss-mask-ignored", "mask ignored in the loss", "manifold_ae/objectives.py",
             "weight = 1 + (self.weight_corrupted - 1) * mask",
             "weight = 1 + (self.weight_corrupted - 1) * torch.ones_like(mask)",
             ("tests/test_objectives.py",)),
    Mutation("fill-everywhere", "mask ignored in the corruption", "manifold_ae/corruptions/base.py",
             "am = a * m.to(x.dtype)",
             "am = a * torch.ones_like(x)",
             ("tests/test_corruptions_vector.py", "tests/test_corruptions_image.py")),
    Mutation("image-score-mean", "max vs mean image score", "manifold_ae/anomaly/scoring.py",
             "return flat.amax(dim=1)",
             "return flat.mean(dim=1)",
             ("tests/test_anomaly_scoring.py",)),
    Mutation("thresholds-from-test", "thresholds from the test set", "manifold_ae/commands/evaluate.py",
             "thresholds = thresholds_from_normal(pipe.score_dataset(splits.holdout, progress=progress),",
             "thresholds = thresholds_from_normal(pipe.score_dataset(splits.test, progress=progress),",
             ("tests/test_evaluate_predict.py",)),
    Mutation("ring-torus-reach", "reach constant", "manifold_ae/manifolds/torus.py",
             "reach=min(self.r, self.R - self.r)",
             "reach=self.r",
             ("tests/test_reach.py", "tests/test_manifolds.py"), ("T1",)),
    Mutation("within-reach-radius", "within_reach radius", "manifold_ae/manifolds/base.py",
             "self.reach).reshape(lead))",
             "1.5 * self.reach).reshape(lead))",
             ("tests/test_projection.py", "tests/test_manifolds.py"), ("T1",)),
    Mutation("fallback-candidates", "fallback candidates", "manifold_ae/manifolds/projection.py",
             "candidates: int = 4,",
             "candidates: int = 1,",
             ("tests/test_projection.py", "tests/test_manifolds.py"), ("T1",)),
    Mutation("partial-noise-before-mask", "noise order in partial corruption", "manifold_ae/corruptions/vector.py",
             "        x_hat, mask = self._masked(x, generator)  # (B, n), (B, n)\n"
             "        if self.noise_std > 0:\n"
             "            x_hat = x_hat + self.noise_std * _randn(tuple(x.shape), x, generator)\n",
             "        if self.noise_std > 0:\n"
             "            x = x + self.noise_std * _randn(tuple(x.shape), x, generator)\n"
             "        x_hat, mask = self._masked(x, generator)  # (B, n), (B, n)\n",
             ("tests/test_claims_selfsupervised.py", "tests/test_corruptions_vector.py"), ("T6",)),
    Mutation("posterior-covariance-sign", "posterior covariance sign", "manifold_ae/theory/bayes.py",
             "cov = g[..., None, None] * eye + radial[..., None, None] * u.unsqueeze(-1) * u.unsqueeze(-2)",
             "cov = g[..., None, None] * eye - radial[..., None, None] * u.unsqueeze(-1) * u.unsqueeze(-2)",
             ("tests/test_theory_bayes.py", "tests/test_claims_denoising.py"), ("T4",)),
    Mutation("objective-denoising-is-reconstruction", "build_objective mapping", "manifold_ae/images/pipeline.py",
             "return objectives.Denoising(model, sigma=config.objective.sigma)",
             "return objectives.Reconstruction(model)",
             ("tests/test_train.py", "tests/test_config.py")),
)


# ---------------------------------------------------------------------------------------------------- machinery
def make_scratch(source: Path, dest: Path) -> Path:
    """Copy ``manifold_ae/``, ``tests/`` and ``pyproject.toml`` of ``source`` into ``dest`` (without caches).

    ``dest`` must lie outside ``source``, so the source tree is never written to.
    """
    source, dest = Path(source).resolve(), Path(dest).resolve()
    if dest == source or source in dest.parents:
        raise ValueError(f"scratch directory {dest} lies inside the source tree {source}; expected a directory "
                         "outside it (a temporary directory)")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")
    for name in COPIED:
        src = source / name
        if not src.exists():
            raise ValueError(f"{src} does not exist; expected a manifold_ae checkout with {', '.join(COPIED)}")
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)
    return dest


def export_ref(repo: Path, ref: str, dest: Path) -> str:
    """Extract the committed ``manifold_ae/``, ``tests/``, ``pyproject.toml`` of ``ref`` into ``dest`` (``git
    archive``: reads the repository, touches no working tree); returns the commit id."""
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=repo, capture_output=True,
                            text=True)
    if commit.returncode != 0:
        raise ValueError(f"--ref {ref!r} is not a commit of {repo}: {commit.stderr.strip()}")
    archive = subprocess.run(["git", "archive", "--format=tar", commit.stdout.strip(), "--", *COPIED], cwd=repo,
                             capture_output=True)
    if archive.returncode != 0:
        raise ValueError(f"git archive of {ref!r} failed: {archive.stderr.decode(errors='replace').strip()}")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.12 (and recent 3.10/3.11 patch releases)
            tar.extractall(dest, filter="data")
        else:
            tar.extractall(dest)
    return commit.stdout.strip()


def apply_mutation(root: Path, mutation: Mutation) -> None:
    """Write the mutant of ``mutation.file`` under ``root``; PatternError unless ``old`` occurs exactly once."""
    path = Path(root) / mutation.file
    if not path.is_file():
        raise PatternError(f"{mutation.file} does not exist")
    text = path.read_text(encoding="utf-8")
    count = text.count(mutation.old)
    if count != 1:
        raise PatternError(f"pattern occurs {count} times in {mutation.file}; expected exactly once: "
                           f"{mutation.old.strip()[:80]!r}")
    if mutation.new == mutation.old:
        raise PatternError(f"new text equals old text in {mutation.file}; a mutant must change something")
    mutant = text.replace(mutation.old, mutation.new)
    if path.suffix == ".py":
        try:
            compile(mutant, str(path), "exec")
        except SyntaxError as err:
            raise PatternError(f"the mutant of {mutation.file} is not valid Python: {err}") from err
    path.write_text(mutant, encoding="utf-8")


def _env(scratch: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1",
               PYTHONPATH=os.pathsep.join([str(scratch)] + [p for p in [env.get("PYTHONPATH")] if p]))
    return env


def _run(cmd: Sequence[str], cwd: Path, *, timeout: float) -> tuple[int | None, str]:
    """Run ``cmd`` in its own process group; returns (exit code or None on timeout, stdout + stderr)."""
    proc = subprocess.Popen(list(cmd), cwd=cwd, env=_env(cwd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return None, out


_FAILED = re.compile(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", re.MULTILINE)
_CLAIM_FAIL = re.compile(r"^(T\d+)\s+FAIL\b", re.MULTILINE)


def run_pytest(scratch: Path, tests: Sequence[str], *, timeout: float, deselect: Sequence[str] = (),
               first_failure: bool = True) -> tuple[int | None, list[str], str]:
    """pytest on ``tests`` inside ``scratch``: (exit code or None on timeout, failing node ids, output)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-r", "fE", *(["-x"] if first_failure else [])]
    for node in deselect:
        cmd += ["--deselect", node]
    rc, out = _run(cmd + list(tests), scratch, timeout=timeout)
    return rc, _FAILED.findall(out), out


def run_verify(scratch: Path, claims: Sequence[str], *, timeout: float) -> tuple[int | None, list[str], str]:
    """``manifold-ae verify --fast --only claims`` inside ``scratch``: (exit code, failing claim ids, output)."""
    cmd = [sys.executable, "-m", "manifold_ae.claims.runner", "--fast", "--no-progress", "--only", ",".join(claims),
           "--out", str(scratch / "verify-report")]
    rc, out = _run(cmd, scratch, timeout=timeout)
    return rc, _CLAIM_FAIL.findall(out), out


def _tail(text: str, lines: int = 6) -> str:
    return " / ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def run_mutation(mutation: Mutation, *, source: Path = REPO, timeout: float = 600.0, deselect: Sequence[str] = (),
                 skip_claims: Sequence[str] = ()) -> Outcome:
    """Plant ``mutation`` in a fresh scratch copy of ``source``, run its tests (then its claims), classify it."""
    start = time.perf_counter()
    outcome = Outcome(mutation.id, mutation.kind, mutation.file, "error")
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutation.id}-") as tmp:
        scratch = make_scratch(source, Path(tmp) / "tree")
        try:
            apply_mutation(scratch, mutation)
        except PatternError as err:
            outcome.status, outcome.detail = "pattern-error", str(err)
            outcome.seconds = time.perf_counter() - start
            return outcome
        rc, failed, out = run_pytest(scratch, mutation.tests, timeout=timeout, deselect=deselect)
        if rc is None:
            outcome.status, outcome.caught_by = "caught", f"timeout after {timeout:.0f} s (pytest)"
        elif rc in (1, 2) and failed:
            outcome.status, outcome.caught_by = "caught", failed[0]
        elif rc in (1, 2, 3):
            outcome.status, outcome.caught_by = "caught", f"pytest exit {rc}"
            outcome.detail = _tail(out)
        elif rc != 0:
            outcome.detail = f"pytest exit {rc} (usage error or nothing collected): {_tail(out)}"
        else:
            claims = [c for c in mutation.claims if c not in skip_claims]
            if not claims:
                outcome.status = "SURVIVED"
            else:
                rc, failed, out = run_verify(scratch, claims, timeout=timeout)
                if rc is None:
                    outcome.status, outcome.caught_by = "caught", f"timeout after {timeout:.0f} s (verify)"
                elif failed:
                    outcome.status, outcome.caught_by = "caught", "verify " + ",".join(failed)
                elif rc == 0:
                    outcome.status = "SURVIVED"
                else:
                    outcome.detail = f"verify exit {rc}: {_tail(out)}"
    outcome.seconds = time.perf_counter() - start
    return outcome


def run_baseline(mutations: Sequence[Mutation], *, source: Path = REPO, timeout: float = 1800.0
                 ) -> tuple[list[str], list[str], str]:
    """Run every selected test and claim once on an unmutated copy: (failing node ids, failing claims, note).

    A test that already fails cannot tell us anything about a mutant, so :func:`main` deselects it.
    """
    tests = sorted({t for m in mutations for t in m.tests})
    claims = sorted({c for m in mutations for c in m.claims}, key=lambda c: int(c[1:]))
    with tempfile.TemporaryDirectory(prefix="mutant-baseline-") as tmp:
        scratch = make_scratch(source, Path(tmp) / "tree")
        probe, out = _run([sys.executable, "-c", "import manifold_ae; print(manifold_ae.__file__)"], scratch,
                          timeout=120)
        if probe != 0 or not out.strip().startswith(str(scratch)):
            raise RuntimeError(f"the scratch copy does not shadow the installed package: manifold_ae imported "
                               f"from {out.strip()!r}, expected a file under {scratch}")
        note = []
        rc, failed, out = run_pytest(scratch, tests, timeout=timeout, first_failure=False)
        if rc not in (0, 1):
            note.append(f"baseline pytest exit {rc}: {_tail(out)}")
        bad_claims: list[str] = []
        if claims:
            rc, bad_claims, out = run_verify(scratch, claims, timeout=timeout)
            if rc not in (0, 1):
                note.append(f"baseline verify exit {rc}: {_tail(out)}")
    return failed, bad_claims, "; ".join(note)


def markdown_table(outcomes: Sequence[Outcome]) -> str:
    """The report: one row per mutant and a count per status."""
    counts = {s: sum(o.status == s for o in outcomes) for s in STATUSES}
    lines = ["| mutation | kind | file | status | caught by | seconds |", "| --- | --- | --- | --- | --- | --- |"]
    for o in outcomes:
        by = o.caught_by or (o.detail[:120] if o.status != "SURVIVED" else "")
        lines.append(f"| {o.id} | {o.kind} | {o.file} | {o.status} | {by.replace('|', '/')} | {o.seconds:.1f} |")
    lines += ["", ", ".join(f"{counts[s]} {s}" for s in STATUSES) + f" of {len(outcomes)} mutations."]
    return "\n".join(lines) + "\n"


def exit_status(outcomes: Sequence[Outcome]) -> int:
    """1 when any mutant survived, else 2 when any could not be run (pattern-error, error), else 0."""
    if any(o.status == "SURVIVED" for o in outcomes):
        return 1
    return 2 if any(o.status in ("pattern-error", "error") for o in outcomes) else 0


def _select(only: str) -> list[Mutation]:
    if not only:
        return list(MUTATIONS)
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    known = {m.id: m for m in MUTATIONS}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise ValueError(f"unknown mutation id(s) {unknown}; expected some of {sorted(known)} (see --list)")
    return [known[w] for w in wanted]


def _git(source: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=source, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mutate.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="print the mutations and exit")
    parser.add_argument("--only", default="", help="comma-separated mutation ids (default: all)")
    parser.add_argument("--json", type=Path, default=None, help="also write the outcomes as JSON to this path")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per pytest or verify run (default 600)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the baseline run of the unmutated copy (then already failing tests count as catches)")
    parser.add_argument("--source", type=Path, default=REPO, help="the checkout to copy (default: this repository)")
    parser.add_argument("--ref", default="",
                        help="mutate the committed tree of this git ref (e.g. HEAD) instead of the working tree, so "
                             "uncommitted edits in progress do not change the code under test between mutants")
    args = parser.parse_args(argv)
    try:
        selected = _select(args.only)
    except ValueError as err:
        parser.error(str(err))
    if args.timeout <= 0:
        parser.error(f"--timeout must be > 0 seconds, got {args.timeout}")
    if args.list:
        for m in selected:
            claims = f"  verify {','.join(m.claims)}" if m.claims else ""
            print(f"{m.id:<40} {m.kind:<34} {m.file}\n{'':<40} tests: {' '.join(m.tests)}{claims}")
        return 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mutate-ref-") as tmp:
        source, described = Path(args.source), f"working tree of {Path(args.source).resolve()}"
        commit = _git(source, "rev-parse", "HEAD")
        if args.ref:
            try:
                commit = export_ref(source, args.ref, Path(tmp) / "tree")
            except ValueError as err:
                parser.error(str(err))
            source, described = Path(tmp) / "tree", f"git archive {args.ref} ({commit})"
        outcomes, baseline = _run_all(selected, source=source, timeout=args.timeout, baseline=not args.no_baseline)
    table = markdown_table(outcomes)
    print(table, end="")
    if args.json is not None:
        dirty = _git(args.source, "status", "--porcelain", "--", *COPIED)
        payload = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   "source": described, "commit": commit,
                   "uncommitted_changes": bool(dirty) and not args.ref,
                   "seconds": round(time.perf_counter() - started, 1), "baseline": baseline,
                   "outcomes": [dataclasses.asdict(o) | {"seconds": round(o.seconds, 1)} for o in outcomes]}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return exit_status(outcomes)


def _run_all(selected: Sequence[Mutation], *, source: Path, timeout: float, baseline: bool
             ) -> tuple[list[Outcome], dict[str, object]]:
    """The baseline (unless switched off), then every mutant in turn, with progress on stderr."""
    deselect: list[str] = []
    skip_claims: list[str] = []
    note = ""
    if baseline:
        print(f"baseline: {len(selected)} mutations' tests and claims on the unmutated copy ...", file=sys.stderr,
              flush=True)
        deselect, skip_claims, note = run_baseline(selected, source=source, timeout=3 * timeout)
        if deselect or skip_claims or note:
            print(f"baseline failures (deselected): {deselect} claims {skip_claims} {note}", file=sys.stderr)
    outcomes = []
    for i, m in enumerate(selected, 1):
        print(f"[{i}/{len(selected)}] {m.id} ...", end=" ", file=sys.stderr, flush=True)
        o = run_mutation(m, source=source, timeout=timeout, deselect=deselect, skip_claims=skip_claims)
        print(f"{o.status} {o.caught_by} ({o.seconds:.1f} s)", file=sys.stderr, flush=True)
        outcomes.append(o)
    return outcomes, {"deselected": deselect, "skipped_claims": skip_claims, "note": note}


if __name__ == "__main__":
    sys.exit(main())
