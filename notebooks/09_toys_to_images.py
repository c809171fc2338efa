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
# # 9. From toys to images: exact projections of images, and the Filtering Autoencoder
#
# **Claims (docs/theory.md, T9 and section 5, "Filtering AE: occlusion plus noise").** The circle of notebooks
# 5–6 has an image counterpart whose nearest point is exact: all continuous shifts T_τ g of a band-limited
# template g on a periodic N × N grid, a flat 2-torus in R^(N²). Its projection π(x) is the best shift of g (an FFT
# correlation refined by Newton), and its masked projection π_S(x̃) ignores the occluded pixels (T6). On M the
# Jacobian of π is the tangent projector, so ‖Dπ‖²_F = d = 2, while a map that copies its input has n = N².
# The Filtering Autoencoder (Bauer & Müller) adds Gaussian noise σ on top of the occlusions; the noise penalises
# σ²‖J_f‖²_F, so on clean inputs ‖J_f‖²_F should fall from the copy's n towards d as σ grows, and below d
# (shrinkage) for large σ.

# %% tags=["parameters"]
import os

FAST = os.environ.get("MANIFOLD_AE_FAST", "0") == "1"
WIDTH = 4 if FAST else 8              # GatedUNet width (depth 2, 16 × 16 images)
STEPS = 150 if FAST else 1500         # training steps, batch 32
SIGMAS = (0.0, 1.0) if FAST else (0.0, 0.1, 0.3, 1.0)   # filtering noise of the trained U-Nets
NUM_TRAIN = 512 if FAST else 2048     # training images of M
PROBES = 32                           # Hutchinson probes per image for ‖J‖²_F
SEED = 0

# %%
# %matplotlib inline
import torch
from IPython.display import display

from manifold_ae.images.diagnose import DefectBatch, conservation_curve, gate_aurocs, hutchinson_frobenius
from manifold_ae.toys.filtering import (best_linear_map, clean_frobenius, descent_map, filtering_toy, frobenius_sq,
                                        occlusion, train_filtering_unet)
from manifold_ae.toys.image_tasks import image_manifolds
from manifold_ae.viz.images_explorer import frobenius_curve_figure, image_row, projection_gap_explorer

torch.set_num_threads(1)

# %% [markdown]
# ## The translation manifold and its exact projection
# The template (N = 16, bandwidth K = 3), a point of M, that point plus noise, and π of the noisy image: the
# projection finds the shift again. Below: ‖Dπ‖²_F at points of M by Hutchinson's estimator (Rademacher probes,
# Jacobian-vector products only), against d = 2.

# %%
M = image_manifolds()["translation"]
N = M.size
gen = torch.Generator().manual_seed(SEED)
p, tau = M.sample(4, generator=gen)                                                    # (4, n), (4, 2)
noisy = p + 0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype)
projected = M.project_with_info(noisy)
print(f"n = {M.ambient_dim} pixels, d = {M.intrinsic_dim}, reach τ = {M.reach:.2f}; shift {tau[0].tolist()} "
      f"recovered as {projected.params[0].tolist()} (certified: {bool(projected.within_reach[0])})")
display(image_row([M.template, M.as_images(p[0]), M.as_images(noisy[0]), M.as_images(projected.point[0])],
                  ["template g", "T_τ g", "T_τ g + noise", "π(noisy)"]))
project_images = lambda im: M.project(im.reshape(im.shape[0], -1)).reshape(im.shape)  # noqa: E731
dpi, dpi_se = hutchinson_frobenius(project_images, M.as_images(p)[:, None], probes=PROBES,
                                   generator=torch.Generator().manual_seed(SEED + 1))
dpi_mean, dpi_mean_se = float(dpi.mean()), float(dpi_se.pow(2).sum().sqrt() / len(dpi_se))
print(f"Hutchinson ‖Dπ(p)‖²_F = {dpi_mean:.2f} ± {dpi_mean_se:.2f} (exact: d = 2); the identity has {N * N}")

# %% [markdown]
# ## A GatedUNet trained on occlusions, against π and π_S
# The package's `GatedUNet` with `SelfSupervised` training: one rectangle (sides 8–11 px) per image, filled with a
# patch of another image of M, no noise. Move **mask side**: the square grows; π_S(x̃) stays on the clean image
# (the kept pixels fix the shift), π(x̃) is pulled towards the pasted patch, and the label says which of the two
# the trained model is nearer. In fast mode the model is tiny and barely trained: watch the oracles.

# %%
models = {SIGMAS[0]: train_filtering_unet(M, noise_sigma=SIGMAS[0], width=WIDTH, steps=STEPS, batch_size=32,
                                          num_train=NUM_TRAIN, seed=SEED)}
explorer = projection_gap_explorer(M, models[SIGMAS[0]], side=4, seed=SEED)
display(explorer)

# %% [markdown]
# ## Opacity sweep and gates
# The same square (8 × 8 px) blended in at opacity a from 0.05 to 1 (`images.diagnose.conservation_curve`): the
# share of the defect removed inside the mask, and the relative change outside it (0 for π_S). Then the skip
# gates of the U-Net against the mask (`gate_aurocs`: AUROC 1 when the gate closes exactly on the occlusion).

# %%
clean = M.as_images(M.sample(16, generator=gen)[0])[:, None].float()                 # (16, 1, N, N)
square = occlusion(M, side=(0.5, 0.5), noise_sigma=0.0, seed=SEED + 3)
defects = DefectBatch(clean, square.mask(clean, gen), square.fill(clean, gen), "square")
sweep = conservation_curve(models[SIGMAS[0]], defects)
for row in sweep:
    print(f"a = {row['opacity']:.2f}: removed inside {row['removed_inside']:+.3f}, "
          f"changed outside {row['changed_outside']:.3f}")
gates = gate_aurocs(models[SIGMAS[0]], defects)
for row in gates:
    print(f"gate level {row['level_size']}×{row['level_size']}: AUROC(closed on the mask) {row['auroc_closed']:.3f}")
maps = [g.float().mean(1)[0] for g in models[SIGMAS[0]].gate_maps(defects.at(1.0))]
display(image_row([defects.at(1.0)[0, 0], defects.mask[0, 0], *maps],
                  ["occluded", "mask", *[f"gate {m.shape[-1]}×{m.shape[-1]}" for m in maps]]))

# %% [markdown]
# ## The Filtering AE: ‖J_f‖²_F against the noise σ
# Linear-Gaussian toy (a 2-plane in R^16, blocks of 2 or 4 occluded coordinates), closed forms: the best linear
# map A C(σ)⁻¹ (occlusions already act on a mask-blind linear map like noise, so it starts near d), and gradient
# descent from the identity for the pixels a restorer trusts (no occlusion): n at σ = 0, towards d, below d.
# Then the trained U-Nets on the translation manifold, exact ‖J_f‖²_F on clean images.

# %%
toy = filtering_toy(ambient_dim=16, mask_sizes=(2, 4), seed=SEED)
trusted = toy._replace(masks=toy.masks[:1] * 0, probs=toy.probs[:1] / toy.probs[:1])   # the empty mask only
curve_sigmas = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0]
linear = {"best linear map (occlusion + noise)": [frobenius_sq(best_linear_map(toy, sigma=s)) for s in curve_sigmas],
          "descent from I, 1000 steps (trusted pixels)": [frobenius_sq(descent_map(trusted, sigma=s, steps=1000,
                                                                                    lr=0.05)) for s in curve_sigmas]}
display(frobenius_curve_figure(curve_sigmas, linear, ambient_dim=16, intrinsic_dim=2,
                               title="linear-Gaussian toy (closed forms)"))
for s in SIGMAS[1:]:
    models[s] = train_filtering_unet(M, noise_sigma=s, width=WIDTH, steps=STEPS, batch_size=32,
                                     num_train=NUM_TRAIN, seed=SEED)
unet = {s: float(clean_frobenius(m, M, num=8, seed=SEED + 7).mean()) for s, m in models.items()}
print("trained GatedUNet, exact ‖J_f‖²_F on clean images: " + ", ".join(f"σ = {s}: {v:.1f}" for s, v in unet.items()))
display(frobenius_curve_figure(list(unet), {"GatedUNet (occlusion + noise)": list(unet.values())},
                               ambient_dim=N * N, intrinsic_dim=2, title="translation manifold, N = 16"))

# %% [markdown]
# ## Check the claims
# 1. The exact projection's ‖Dπ‖²_F is d = 2 within three standard errors of Hutchinson's estimate.
# 2. π_S recovers the clean image exactly for every square up to 12 × 12 px, and the gap ‖π_S − π‖ grows with it.
# 3. Linear toy: ‖W‖²_F of the trusted-pixel restorer is n at σ = 0 and falls below d for σ = 1; the best linear
#    map falls monotonically with σ.
# 4. Full mode only (the fast models are too small): the trained U-Net's ‖J_f‖²_F falls with σ, and without noise
#    it is nearer π_S than π at the training mask size.

# %%
assert abs(dpi_mean - 2) <= 3 * dpi_mean_se, (dpi_mean, dpi_mean_se)
check = projection_gap_explorer(M, models[SIGMAS[0]], side=4, seed=SEED)   # a second instance: yours stays put
gaps = []
for k in (2, 4, 8, 12):
    check.controls["side"].value = k
    assert check.numbers["masked_to_clean"] < 1e-9, check.numbers
    gaps.append(check.numbers["gap"])
assert all(b > a for a, b in zip(gaps, gaps[1:])), gaps
trusted_curve, best_curve = linear["descent from I, 1000 steps (trusted pixels)"], linear[
    "best linear map (occlusion + noise)"]
assert abs(trusted_curve[0] - 16) < 1e-9 and trusted_curve[curve_sigmas.index(1.0)] < 2, trusted_curve
assert all(b < a for a, b in zip(best_curve, best_curve[1:])), best_curve
if not FAST:
    values = list(unet.values())
    assert all(b < a for a, b in zip(values, values[1:])), unet
    check.controls["side"].value = 10
    assert check.numbers["model_to_masked"] < check.numbers["model_to_full"], check.numbers
print(f"‖Dπ‖²_F = {dpi_mean:.2f} ± {dpi_mean_se:.2f}; gaps ‖π_S − π‖ = {[round(g, 2) for g in gaps]}; "
      f"trained ‖J_f‖²_F by σ: {unet}")
