"""``manifold-ae diagnose RUN``: how projection-like is a trained image model? (T1, T6, T7; docs/diagnose.md)

    manifold-ae diagnose runs/quick                          # -> runs/quick/diagnose/
    manifold-ae diagnose runs/mt/ss --compare runs/mt       # also the baselines compare trained beside it

On the run's held-out normal images (the split stored in its checkpoint, as ``evaluate`` builds it) and on the
same images with seeded synthetic defects of exact masks (:mod:`manifold_ae.images.validation`), at opacities
0.05 .. 1: idempotence, the conservation curve (removed inside the mask, changed outside it), the skip gates
against the mask, the pixel AUROC of the residual at each block scale, and Jacobian probes by JVPs
(:mod:`manifold_ae.images.diagnose`), all of the map ``evaluate`` scores (averaged over ``score.flips``). Writes
``diagnose.json``, ``diagnose.md`` and ``figures/conservation.png``, ``figures/gates.png``,
``figures/localisation.png`` into ``RUN/diagnose`` (or ``--out``).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from manifold_ae.files import write_json, write_text
from manifold_ae.images.config import CHECKPOINT_NAME
from manifold_ae.images.diagnose import FAR_MARGIN, OPACITIES, diagnose_model
from manifold_ae.images.pipeline import Pipeline, build_datasets
from manifold_ae.images.validation import DEFECT_KINDS

__all__ = ["main", "diagnose", "baseline_pipelines", "markdown_report", "PCA_STATE"]

#: where ``compare`` saves its PCA baseline, relative to its output folder
PCA_STATE = Path("pca") / "pca.pt"


def _run_dir(run: str | Path) -> Path:
    path = Path(run)
    if not path.exists():
        raise ValueError(f"run {path} does not exist; expected a run directory holding {CHECKPOINT_NAME} (written "
                         "by manifold-ae train) or the checkpoint file itself")
    return path if path.is_dir() else path.parent


def baseline_pipelines(compare_dir: str | Path, like: Pipeline, *, exclude: Path | None = None
                       ) -> tuple[dict[str, Pipeline], dict[str, str]]:
    """The baselines ``compare`` left in ``compare_dir``, as pipelines with ``like``'s image size and scoring.

    The PCA baseline (``pca/pca.pt``) and every sub-folder holding a checkpoint (but ``exclude``, the diagnosed
    run itself). Returns ``(name -> Pipeline, name -> why it was skipped)``; a baseline of another image shape
    is skipped, not an error.
    """
    from manifold_ae.images.baselines import PCAReconstruction

    folder = Path(compare_dir)
    if not folder.is_dir():
        raise ValueError(f"--compare {folder} is not a directory; expected the --out folder of manifold-ae compare")
    shape = (like.channels, like.image_size, like.image_size)
    found: dict[str, Pipeline] = {}
    skipped: dict[str, str] = {}
    if (folder / PCA_STATE).is_file():
        state = torch.load(folder / PCA_STATE, map_location="cpu", weights_only=True)
        if tuple(state["shape"]) != shape:
            skipped["pca"] = f"image shape {tuple(state['shape'])}, the run has {shape}"
        else:
            module = PCAReconstruction(state["mean"], state["components"], shape=shape)
            found["pca"] = Pipeline(module, image_size=like.image_size, channels=like.channels,
                                    score=like.score_config, resize_mode=like.resize_mode, device=like.device)
    for sub in sorted(p for p in folder.iterdir() if (p / CHECKPOINT_NAME).is_file()):
        if exclude is not None and sub.resolve() == exclude.resolve():
            continue
        pipe = Pipeline.from_checkpoint(sub, device=like.device)
        if (pipe.channels, pipe.image_size, pipe.image_size) != shape:
            skipped[sub.name] = f"image shape {(pipe.channels, pipe.image_size, pipe.image_size)}, the run has {shape}"
            continue
        pipe.score_config = like.score_config
        found[sub.name] = pipe
    return found, skipped


def _json_ready(obj: Any) -> Any:
    """NaN and ±inf become strings ("nan", "inf", "-inf"), so diagnose.json is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    return obj


def _cell(value: float, digits: int = 3) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def markdown_report(record: dict[str, Any]) -> str:
    """diagnose.md: one table of the global numbers per model, then the conservation and gate tables."""
    lines = [f"# diagnose {record['run']}", "",
             f"{record['num_images']} held-out normal images, {record['values_per_image']} values each "
             f"(the identity's ‖J‖_F²), defects {', '.join(record['kinds'])} (seed {record['seed']}), "
             f"{record['probes']} Rademacher probes per image; each map averaged over flips "
             f"{record['flips']!r} (score.flips, as evaluate scores).", "",
             "| model | idempotence clean (median / mean) | ‖J‖_F² (mean ± s.e.) | ‖J‖_F² / values | "
             "‖(J−I)v‖²/‖v‖² clean | same outside defects |", "|" + " --- |" * 6]
    for name, m in record["models"].items():
        jac = m["jacobian"]
        outside = [v["mean"] for v in jac["excess_outside_defect"].values()]
        lines.append(f"| {name} | {_cell(m['idempotence']['clean']['q50'])} / "
                     f"{_cell(m['idempotence']['clean']['mean'])} | {_cell(jac['frobenius_sq']['mean'], 4)} ± "
                     f"{_cell(jac['frobenius_sq_mean_standard_error'], 2)} | "
                     f"{_cell(jac['frobenius_sq_per_value']['mean'])} | {_cell(jac['excess_clean']['mean'])} | "
                     f"{_cell(sum(outside) / len(outside)) if outside else '–'} |")
    scales = [r["scale"] for r in next(iter(record["models"].values()))["defects"][record["kinds"][0]]
              ["localisation"]]
    lines += ["", "## Localisation by scale: pixel AUROC of the residual compared at s × s local means alone "
                  "(opacity 1)", "",
              "Near 1/2 at every scale: the residual does not hold the defect (the map passes it through, T7), and "
              "no `score.scales` can localise it.", "",
              f"The last column is the residual far from the defect (more than {FAR_MARGIN} px from any pixel of "
              "blend weight ≥ 0.05) over the clean image's residual there: 1 for a map that answers the defect "
              "locally, as π_S does (T7 b); above 1 when the answer spreads over the image.", "",
              "| model | defect | " + " | ".join(f"s = {s}" for s in scales) + " | far residual × |",
              "|" + " --- |" * (3 + len(scales))]
    for name, m in record["models"].items():
        for kind in record["kinds"]:
            cells = [_cell(r["pixel_auroc"]) for r in m["defects"][kind]["localisation"]]
            cells.append(_cell(m["defects"][kind]["far_residual_ratio"]))
            lines.append(f"| {name} | {kind} | " + " | ".join(cells) + " |")
    for kind in record["kinds"]:
        lines += ["", f"## {kind}: conservation (removed inside / passed inside / changed outside / detection "
                      "AUROC)", "",
                  "| model | " + " | ".join(f"a = {a:g}" for a in record["opacities"]) + " |",
                  "|" + " --- |" * (1 + len(record["opacities"]))]
        for name, m in record["models"].items():
            cells = [f"{_cell(r['removed_inside'], 2)} / {_cell(r['passed_inside'], 2)} / "
                     f"{_cell(r['changed_outside'], 2)} / "
                     f"{_cell(r['detection_auroc'], 2)}" for r in m["defects"][kind]["conservation"]]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        gates = record["models"]["model"]["defects"][kind]["gates"]
        if gates:
            lines += ["", f"Skip gates of the model on {kind} (opacity 1), coarsest level first: AUROC of 1 − a "
                          "against the mask; mean gate a inside / outside the defect", "",
                      "| level (side px) | AUROC | a inside | a outside |", "| --- | --- | --- | --- |"]
            lines += [f"| {g['level_size']} | {_cell(g['auroc_closed'])} | {_cell(g['mean_gate_inside'])} | "
                      f"{_cell(g['mean_gate_outside'])} |" for g in gates]
    if record.get("skipped"):
        lines += ["", "Baselines left out: " + "; ".join(f"{k} ({v})" for k, v in record["skipped"].items())]
    return "\n".join(lines) + "\n"


def _figures(record: dict[str, Any], out_dir: Path) -> list[str]:
    """figures/conservation.png (one panel per defect kind) and figures/gates.png (the model's gate AUROCs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from manifold_ae.viz.figures import save_figure

    kinds = record["kinds"]
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.4), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for i, (name, m) in enumerate(record["models"].items()):
            rows = m["defects"][kind]["conservation"]
            a = [r["opacity"] for r in rows]
            ax.plot(a, [r["removed_inside"] for r in rows], "o-", color=f"C{i}", label=f"{name}: removed inside")
            ax.plot(a, [r["passed_inside"] for r in rows], "^:", color=f"C{i}", label=f"{name}: passed inside")
            ax.plot(a, [r["changed_outside"] for r in rows], "s--", color=f"C{i}", label=f"{name}: changed outside")
        ax.axhline(0, color="0.7", lw=0.8)
        ax.axhline(1, color="0.7", lw=0.8)
        ax.set(title=kind, xlabel="defect opacity a", ylabel="energy fraction", ylim=(-0.5, 1.5))
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    written = [save_figure(fig, out_dir, "conservation")]
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for i, kind in enumerate(kinds):
        gates = record["models"]["model"]["defects"][kind]["gates"]
        ax.plot([str(g["level_size"]) for g in gates], [g["auroc_closed"] for g in gates], "o-", color=f"C{i}",
                label=kind)
    ax.axhline(0.5, color="0.7", lw=0.8)
    ax.set(xlabel="gate level (side in px, coarsest first)", ylabel="AUROC of 1 − a vs mask", ylim=(0, 1))
    if any(record["models"]["model"]["defects"][k]["gates"] for k in kinds):
        ax.legend(fontsize=7)
    else:
        ax.set_title("the model has no skip gates")
    fig.tight_layout()
    written.append(save_figure(fig, out_dir, "gates"))
    plt.close(fig)
    names = list(record["models"])
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        for i, kind in enumerate(kinds):
            rows = record["models"][name]["defects"][kind]["localisation"]
            ax.plot([str(r["scale"]) for r in rows], [r["pixel_auroc"] for r in rows], "o-", color=f"C{i}",
                    label=kind)
        ax.axhline(0.5, color="0.7", lw=0.8)
        ax.set(title=name, xlabel="block scale s (px)", ylabel="pixel AUROC at that scale alone", ylim=(0.3, 1.02))
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    written.append(save_figure(fig, out_dir, "localisation"))
    plt.close(fig)
    return written


def diagnose(run: str | Path, *, out_dir: str | Path | None = None, compare_dir: str | Path | None = None,
             kinds: Sequence[str] = tuple(DEFECT_KINDS), opacities: Sequence[float] = OPACITIES,
             max_images: int = 16, probes: int = 4, seed: int = 0, device: str = "auto",
             progress: bool = True) -> dict[str, Any]:
    """Diagnose the run (and the ``compare`` baselines in ``compare_dir``); write the files, return the record."""
    run_dir = _run_dir(run)
    pipe = Pipeline.from_checkpoint(run, device=device)
    assert pipe.config is not None
    unknown = [k for k in kinds if k not in DEFECT_KINDS]
    if unknown or not kinds:
        raise ValueError(f"--kinds must name defect kinds from {sorted(DEFECT_KINDS)}, got {list(kinds)}")
    if max_images < 1:
        raise ValueError(f"--max-images must be at least 1, got {max_images}")
    holdout = build_datasets(pipe.config.data).holdout
    if holdout is None or len(holdout) == 0:  # type: ignore[arg-type]
        raise ValueError(f"run {run_dir} has no held-out normal images (data.holdout_fraction = "
                         f"{pipe.config.data.holdout_fraction}); diagnose measures on them")
    x = torch.stack([holdout[i]["image"] for i in range(min(max_images, len(holdout)))])  # (B, C, H, W)
    pipes = {"model": pipe}
    skipped: dict[str, str] = {}
    if compare_dir is not None:
        baselines, skipped = baseline_pipelines(compare_dir, pipe, exclude=run_dir)
        pipes |= baselines
    from tqdm.auto import tqdm

    bar = tqdm(total=len(pipes) * (2 + len(kinds)), desc="diagnose", disable=not progress, leave=False)
    models = {}
    for name, p in pipes.items():
        bar.set_postfix_str(name)
        models[name] = diagnose_model(p, x, kinds=kinds, opacities=opacities, probes=probes, seed=seed,
                                      step=lambda _: bar.update())
    bar.close()
    first = next(iter(models.values()))
    record = {"run": str(run), "step": pipe.step, "seed": seed, "probes": probes, "flips": pipe.score_config.flips,
              "kinds": list(kinds),
              "opacities": [float(a) for a in opacities], "num_images": first["num_images"],
              "values_per_image": first["values_per_image"], "models": models, "skipped": skipped,
              "held_out": f"the run's held-out normal images (holdout_fraction = "
                          f"{pipe.config.data.holdout_fraction}, split_seed = {pipe.config.data.split_seed}), "
                          f"the first {first['num_images']}"}
    out = Path(out_dir) if out_dir is not None else run_dir / "diagnose"
    record["figures"] = _figures(record, out)
    write_json(out / "diagnose.json", _json_ready(record))
    write_text(out / "diagnose.md", markdown_report(record))
    return record


def main(argv: Sequence[str] | None = None) -> int:
    """``manifold-ae diagnose RUN [--out DIR] [--compare DIR] [--kinds a,b] [--max-images N] [--probes P]``."""
    p = argparse.ArgumentParser(prog="manifold-ae diagnose", allow_abbrev=False,
                                description="How projection-like is a trained image model: idempotence, "
                                            "conservation of clean pixels, localisation by scale, skip gates, "
                                            "Jacobian probes.")
    p.add_argument("run", help=f"run directory or {CHECKPOINT_NAME} file")
    p.add_argument("--out", default=None, help="output directory (default: <run directory>/diagnose)")
    p.add_argument("--compare", default=None, help="the --out folder of manifold-ae compare: its PCA baseline "
                                                   "and trained baselines are diagnosed too")
    p.add_argument("--kinds", default=",".join(DEFECT_KINDS), help="defect kinds, comma separated")
    p.add_argument("--max-images", type=int, default=16, help="held-out normal images used (the first N)")
    p.add_argument("--probes", type=int, default=4, help="Rademacher probes per image for the Jacobian")
    p.add_argument("--seed", type=int, default=0, help="seeds the defects and the probes")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        record = diagnose(args.run, out_dir=args.out, compare_dir=args.compare,
                          kinds=tuple(k for k in args.kinds.split(",") if k), max_images=args.max_images,
                          probes=args.probes, seed=args.seed, device=args.device, progress=not args.no_progress)
    except ValueError as err:
        print(f"manifold-ae diagnose: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else _run_dir(args.run) / "diagnose"
    print(markdown_report(record))
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
