# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 8. Results browser
#
# **Claim (docs/theory.md, T8).** The residual of a self-supervised AE is an anomaly score: a trained run ranks
# defective test images above good ones and its heat maps find the defective pixels. This notebook opens a
# training run directory (`checkpoint.pt`, `config.toml`, `log.jsonl`) and the outputs of `manifold-ae evaluate`
# (`metrics.json`, `scores.json`, `results.md`, overlays) and lets you page through heat maps, scores and
# metrics. It also checks that what you browse is what was measured: the browser recomputes every score through
# the checkpoint's pipeline and must agree with `scores.json`, whose AUROC must be the one in `metrics.json`.
#
# Set `MANIFOLD_AE_RUN` (or `RUN_DIR` below) to a run directory, e.g. one made by
# `manifold-ae train --preset quick` (then `runs/quick`). Left empty, the notebook trains a small run itself
# with the `quick` preset (shortened in fast mode).

# %% tags=["parameters"]
import os

FAST = os.environ.get("MANIFOLD_AE_FAST", "0") == "1"
RUN_DIR = os.environ.get("MANIFOLD_AE_RUN", "")   # existing run directory to browse; empty: train one
# overrides of the quick preset for the run trained here (fast: 32 px, 150 steps; full: the preset, 64 px, 600 steps)
OVERRIDES = ["--data.image_size=32", "--train.steps=150", "--score.sigma=1.0"] if FAST else []
SEED = 0

# %%
# %matplotlib inline
import json
import tempfile
from pathlib import Path

from IPython.display import Image, Markdown, display

from manifold_ae.anomaly.metrics import auroc
from manifold_ae.images.config import load_config
from manifold_ae.images.data.synthetic import make_synthetic
from manifold_ae.commands.evaluate import evaluate
from manifold_ae.commands.train import train
from manifold_ae.viz.explorers import run_browser
from manifold_ae.viz.figures import rate_plot

# %% [markdown]
# ## The run
# Training writes the resolved config, a JSON-lines log and an atomic checkpoint (with image and pixel
# thresholds taken from held-out *normal training* images). `evaluate` scores the test set through the same
# pipeline as `predict`.

# %%
if RUN_DIR:
    run_dir = Path(RUN_DIR)
else:
    scratch = tempfile.TemporaryDirectory(prefix="manifold_ae_run_")   # removed when the kernel shuts down
    work = Path(scratch.name)
    make_synthetic(work / "data", categories=["weave"], n_train=40 if FAST else 80, n_test_good=10 if FAST else 20,
                   n_test_defect=12 if FAST else 30, image_size=64 if FAST else 128, seed=SEED)
    config = load_config("quick", [f"--data.root={work / 'data'}", f"--train.out_dir={work / 'run'}",
                                   f"--train.seed={SEED}", *OVERRIDES])
    summary = train(config, progress=False)
    print(f"trained {summary['steps']} steps in {summary['seconds']:.1f} s ({summary['images_per_s']:.0f} images/s)")
    run_dir = Path(summary["out_dir"])
eval_dir = run_dir / "eval"
if not (eval_dir / "metrics.json").is_file():
    evaluate(run_dir, out_dir=eval_dir, progress=False)
print(sorted(p.name for p in run_dir.iterdir()), sorted(p.name for p in eval_dir.iterdir()))

# %%
log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
steps = [r["step"] for r in log if "loss" in r]
rate_plot(steps, {"training loss": [r["loss"] for r in log if "loss" in r]}, fit=False, xlabel="step",
          ylabel="loss (squared error to the clean image)", title=f"training log of {run_dir}")

# %% [markdown]
# ## Metrics
# Image AUROC, pixel AUROC, AUPRO up to a false-positive rate of 0.3, pixel AP, the image F1 at the held-out
# threshold and the pixel F1-max, overall and per defect class (each class against all good test images).

# %%
display(Markdown((eval_dir / "results.md").read_text()))
metrics = json.loads((eval_dir / "metrics.json").read_text())
print(json.dumps(metrics["protocol"], indent=1))

# %%
overlays = sorted(eval_dir.glob("overlays_*.png"))
display(Image(filename=str(next((p for p in overlays if "good" not in p.name), overlays[0]))))

# %% [markdown]
# ## Browse
# Choose a class and page through its images: input, reconstruction, heat map, ground truth; the score as
# recomputed now and as `evaluate` stored it, the held-out threshold and the verdict, and the class's metrics.

# %%
browser = run_browser(run_dir, eval_dir=eval_dir)
display(browser)

# %% [markdown]
# ## Check the claim
# 1. Every score the browser recomputes equals the stored one (one pipeline for evaluate, predict and browsing).
# 2. The image AUROC recomputed from `scores.json` is the one in `metrics.json`.
# 3. The run detects anomalies: image AUROC ≥ 0.7 and pixel AUROC ≥ 0.8 (a model that copied its input would sit
#    at 0.5).

# %%
records = json.loads((eval_dir / "scores.json").read_text())["images"]
check = run_browser(run_dir, eval_dir=eval_dir)   # a second browser: the one above stays where you left it
worst = 0.0
for i in range(len(records)):
    check.controls["index"].value = i
    worst = max(worst, abs(check.numbers["score"] - check.numbers["stored_score"])
                / max(abs(check.numbers["stored_score"]), 1e-12))
print(f"largest relative difference between browsed and stored scores: {worst:.1e}")
assert worst <= 1e-5, worst
overall = metrics["metrics"]["all"]
recomputed = auroc([r["label"] for r in records], [r["score"] for r in records])
assert abs(recomputed - overall["image_auroc"]) <= 1e-12, (recomputed, overall["image_auroc"])
print(f"image AUROC {overall['image_auroc']:.3f}, pixel AUROC {overall['pixel_auroc']:.3f}, "
      f"AUPRO {overall['aupro']:.3f}")
assert overall["image_auroc"] >= 0.7 and overall["pixel_auroc"] >= 0.8, overall
check.controls["defect"].value = "good"
assert check.numbers["label"] == 0.0
