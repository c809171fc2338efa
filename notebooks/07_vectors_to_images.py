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
# # 7. From vectors to images
#
# **Claims (docs/theory.md, T6–T8, at image scale).** Nothing in the self-supervised objective is specific to
# vectors: corrupt part of a normal image, regress the clean image. The same `SelfSupervised` objective and the
# same `fit` loop that trained the circle model of notebooks 5–6 train a convolutional model (the gated U-Net
# of the paper) on images; only the model and the data change. If the model resembles a projection onto the
# normal images (T6), it should (a) **remove** a defect, reconstructing something close to the defect-free image,
# (b) **conserve** the rest of the image (T7), so that (c) the residual heat map localises the defect and its
# maximum is an anomaly score (T8).
#
# The built-in synthetic data lets us check this against ground truth: for every defective test image we know
# the clean image it was made from, so ‖x − clean‖² is the residual of an (almost) exact projection.

# %% tags=["parameters"]
import os

FAST = os.environ.get("MANIFOLD_AE_FAST", "0") == "1"
IMAGE_SIZE = 32 if FAST else 64       # pixels (divisible by 2**depth = 8)
NUM_TRAIN = 48 if FAST else 80        # normal training images
STEPS = 150 if FAST else 400          # training steps, batch 8
SMOOTHING = 1.0 if FAST else 1.5      # Gaussian width of the heat map, in pixels
CATEGORY = "weave"
SEED = 0

# %%
# %matplotlib inline
import tempfile
from pathlib import Path

import torch
from IPython.display import Image, display

from manifold_ae.anomaly.metrics import auroc, threshold_from_normal
from manifold_ae.anomaly.scoring import residual_map, smooth
from manifold_ae.images.config import ScoreConfig, load_config
from manifold_ae.corruptions.image import paper_corruption
from manifold_ae.images.data.synthetic import SYNTHETIC_CATEGORIES, synthetic_sample
from manifold_ae.loop import fit
from manifold_ae.objectives import SelfSupervised
from manifold_ae.images.pipeline import Pipeline, build_model
from manifold_ae.viz.explorers import image_explorer
from manifold_ae.viz.overlays import overlay_grid

# %% [markdown]
# ## Data
# Normal images of the woven texture (a fresh crop, phase and colour jitter each), and test images: good ones and
# each defect type, each with the clean image it was made from and its exact mask.

# %%
x_train = torch.stack([synthetic_sample(CATEGORY, group="train", index=i, image_size=IMAGE_SIZE, seed=SEED)[1]
                       for i in range(NUM_TRAIN)])                                    # (N, 3, H, W)
groups = ["good"] * 12 + [g for g in SYNTHETIC_CATEGORIES[CATEGORY] for _ in range(6)]
counts: dict[str, int] = {}
test = []
for g in groups:
    clean, image, mask = synthetic_sample(CATEGORY, group=g, index=counts.setdefault(g, 0), image_size=IMAGE_SIZE,
                                          seed=SEED)
    counts[g] += 1
    test.append((f"{g} {counts[g]}", clean, image, mask))
titles = [t[0] for t in test]
clean = torch.stack([t[1] for t in test])                                              # (T, 3, H, W)
images = torch.stack([t[2] for t in test])                                             # (T, 3, H, W)
masks = torch.stack([t[3] for t in test])[:, 0]                                        # (T, H, W)
labels = torch.tensor([g != "good" for g in groups], dtype=torch.float64)
print(f"{len(x_train)} training images, {len(test)} test images ({int(labels.sum())} defective), "
      f"{IMAGE_SIZE} x {IMAGE_SIZE} px")

# %% [markdown]
# ## The same objective, the same loop
# The corruption is the paper's: a random mask (Perlin blobs, blobs, rectangles, lines) filled with patches of
# other normal images, textures, noise, an elastic deformation or a colour shift, blended with a random opacity.
# The model sees the corrupted image and is trained to output the clean one.

# %%
torch.manual_seed(SEED)
model = build_model(load_config("quick").model, channels=3)                             # gated U-Net, width 16
corruption = paper_corruption(image_size=IMAGE_SIZE, channels=3, clean_fraction=0.1, opacity=(0.5, 1.0), seed=SEED)
history = fit(SelfSupervised(model, corruption=corruption), x_train, steps=STEPS, batch_size=8, lr=2e-3, warmup=20,
              seed=SEED)
print(f"{sum(p.numel() for p in model.parameters())} parameters; loss {history[0]:.4f} → "
      f"{sum(history[-10:]) / 10:.5f} (mean of the last 10 steps)")

# %% [markdown]
# ## Heat maps
# The pipeline is the one `manifold-ae evaluate` and `predict` use: residual = channel-mean squared difference,
# smoothed by a Gaussian; image score = its maximum. Next to it, the "oracle" heat map from the known clean image.

# %%
pipe = Pipeline(model, image_size=IMAGE_SIZE, channels=3, score=ScoreConfig(sigma=SMOOTHING))
out = pipe(images)
oracle_heat = smooth(residual_map(images, clean), sigma=SMOOTHING)                      # (T, H, W)
defective = labels > 0
on = masks[defective] > 0.5
results = {
    "image AUROC": (auroc(labels, out.score), auroc(labels, oracle_heat.amax((-1, -2)))),
    "pixel AUROC": (auroc(masks.flatten() > 0.5, out.heatmap.flatten()),
                    auroc(masks.flatten() > 0.5, oracle_heat.flatten())),
}
for name, (m, o) in results.items():
    print(f"{name}: model {m:.3f}, oracle (clean image) {o:.3f}")

# %% [markdown]
# The prediction column thresholds the heat map at the 99 % quantile of the heat-map pixels of eight *held-out
# normal* images (never the test set).

# %%
holdout = torch.stack([synthetic_sample(CATEGORY, group="train", index=NUM_TRAIN + i, image_size=IMAGE_SIZE,
                                        seed=SEED)[1] for i in range(8)])
pixel_threshold = threshold_from_normal(pipe(holdout).heatmap.flatten(), quantile=0.99)
rows = [i for i, g in enumerate(groups) if g != "good"][::6] + [0]
scratch = tempfile.TemporaryDirectory(prefix="manifold_ae_overlays_")   # removed when the kernel shuts down
grid = overlay_grid(out.image[rows], out.reconstruction[rows], out.heatmap[rows], masks[rows],
                    out.heatmap[rows] >= pixel_threshold,
                    path=Path(scratch.name) / "overlays.png", titles=[titles[i] for i in rows],
                    scores=out.score[rows].tolist())
display(Image(filename=str(grid)))

# %% [markdown]
# ## Projection and conservation
# On the defect pixels, how much closer to the clean image is the reconstruction than the input?
# Off the defect, how much does the model change the image compared with on it?

# %%
before = (images[defective] - clean[defective]).square().sum(1)[on].sum()
after = (out.reconstruction[defective] - clean[defective]).square().sum(1)[on].sum()
removed = float(1 - after / before)
residual = out.residual[defective]
conservation = float(residual[on].mean() / residual[~on].mean())
print(f"the model removes {removed:.1%} of the defects (‖f(x) − clean‖² vs ‖x − clean‖² on the masks); "
      f"its residual is {conservation:.1f}× larger on the defects than off them")

# %% [markdown]
# ## Explore
# Page through the test images: input, reconstruction, heat map and the ground-truth mask, with the image score,
# the pixel AUROC of this image and the share of the defect the model removed.

# %%
explorer = image_explorer(pipe, images, masks=masks, clean=clean, titles=titles)
display(explorer)

# %% [markdown]
# ## Check the claims
# (a) the model removes at least 40 % of the defects; (b) its residual is at least 3× larger on the defects than
# off them; (c) its heat map localises the defects (pixel AUROC ≥ 0.85; the clean-image oracle is near 1) and its
# maximum ranks defective images above good ones (image AUROC ≥ 0.7). Every number would fall to chance for a model
# that copies its input. The explorer shows the same scores as the pipeline.

# %%
assert removed >= 0.4, removed
assert conservation >= 3.0, conservation
assert results["pixel AUROC"][0] >= 0.85 and results["pixel AUROC"][1] >= 0.95, results
assert results["image AUROC"][0] >= 0.7, results
first_defect = groups.index(SYNTHETIC_CATEGORIES[CATEGORY][0])
check = image_explorer(pipe, images, masks=masks, clean=clean, titles=titles)   # not the one above: it stays put
check.controls["index"].value = first_defect
assert abs(check.numbers["score"] - float(out.score[first_defect])) <= 1e-6 * float(out.score[first_defect])
assert check.numbers["defect_removed"] > 0, check.numbers
