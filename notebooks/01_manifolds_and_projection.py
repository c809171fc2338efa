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
# # 1. Manifolds, reach and the orthogonal projection
#
# **Claim (docs/theory.md, T1).** Every point closer to a manifold M than its *reach* τ has exactly one
# nearest point π(x) on M, and a point pushed off M along a normal ray comes back to its foot:
# π(p + tν) = p for all 0 ≤ t < τ. Beyond the reach this fails: the normal rays of different foot points
# cross on the *medial axis*, where the projection jumps.
#
# Everything in this course is measured against π, so first we check that the toy manifolds' projections
# are right, using the normal rays as ground truth.

# %% tags=["parameters"]
import os

FAST = os.environ.get("MANIFOLD_AE_FAST", "0") == "1"   # fast mode: fewer points (CI)
NUM_RAYS = 200 if FAST else 2000
SEED = 0

# %%
# %matplotlib inline
import numpy as np
import torch
from IPython.display import display

from manifold_ae.manifolds import MANIFOLDS, estimate_reach, make_manifold
from manifold_ae.viz.figures import vector_field
from manifold_ae.viz.interactive import manifold_figure
from manifold_ae.viz.widgets import plane_curve, reach_explorer

# %% [markdown]
# ## The catalogue
# Eight toy manifolds with exact geometry. Each is defined in a small base space R^m and can be embedded
# isometrically in any R^n (x = c + Q y); its reach is known in closed form.

# %%
for name in MANIFOLDS:
    M = make_manifold(name)
    print(f"{name:11s} d = {M.intrinsic_dim}  base R^{M.base_dim}  reach = {M.reach:.4g}")

# %% [markdown]
# The Swiss roll in 3-D with normal rays. Blue parts have t < τ; the red parts go beyond the reach, where
# rays from neighbouring turns of the roll cross.

# %%
manifold_figure(make_manifold("swiss_roll"), rays=40, ray_length=1.6, seed=SEED).show()

# %% [markdown]
# ## The medial axis
# The field π(x) − x of the unit circle and of the spiral (a cross-section of the Swiss roll, scaled by 0.1).
# Arrows are normal to the curve; where arrows from two sides meet, the projection is discontinuous.
# For the circle that is the single centre point; for the spiral it is a curve between the turns.

# %%
circle = make_manifold("circle")
spiral = plane_curve("spiral")
theta = torch.linspace(0, 2 * np.pi, 200, dtype=torch.float64)[:, None]
vector_field({"circle: π(x) − x": lambda g: circle.project(g).numpy()}, extent=(-1.6, 1.6, -1.6, 1.6),
             grid=17, manifold=circle.from_params(theta).numpy())

# %%
vector_field({"spiral: π(x) − x": lambda g: spiral.project_plane(g).numpy()}, extent=(-1.6, 1.6, -1.6, 1.6),
             grid=21, manifold=spiral.nodes.numpy())

# %% [markdown]
# ## Explore: how long can a normal ray be?
# Choose a manifold and a ray length in units of its reach. Below 1 every ray end projects back to its foot;
# above 1 the fraction drops (for the circle: the inward rays pass the centre and land on the far side).

# %%
explorer = reach_explorer(seed=SEED)
display(explorer)

# %% [markdown]
# ## Check the claim
# 1. Normal-ray ground truth: for every manifold, embedded in R^(m+2) by a random isometry, the points
#    p + tν with t ≤ 0.9 τ project back onto p (p and ν come from the parametrisation, not from π).
# 2. Beyond the reach: the circle's inward ray at t = 1.5 R lands on the antipode −p.
# 3. Federer's formula on a dense sample reproduces the circle's and the sphere's analytic reach R.

# %%
gen = torch.Generator().manual_seed(SEED)
worst = {}
for name in MANIFOLDS:
    M = make_manifold(name, ambient_dim=make_manifold(name).base_dim + 2, seed=SEED)
    ray = M.sample_normal_ray(NUM_RAYS, fraction=0.9, generator=gen)
    worst[name] = float(torch.linalg.vector_norm(M.project(ray.x) - ray.p, dim=-1).max())
print({k: f"{v:.1e}" for k, v in worst.items()})
assert max(worst.values()) < 1e-8, worst

p, _ = circle.sample(NUM_RAYS, generator=gen)
inward = p - 1.5 * p                      # t = 1.5 R along ν = −p (unit circle)
assert float(torch.linalg.vector_norm(circle.project(inward) + p, dim=-1).max()) < 1e-12

for name in ("circle", "sphere"):
    M = make_manifold(name, radius=2.0)
    pts = M.reach_sample(400 if FAST else 1500, generator=gen)   # the circle: an angle grid (random pairs lose digits)
    tau = estimate_reach(pts, M.tangent_basis(pts))
    print(f"{name}: estimated reach {tau:.6f}, analytic {M.reach}")
    assert abs(tau - M.reach) < 1e-6 * M.reach
assert explorer.numbers["recovered"] == 1.0   # the widget's default ray length 0.9 τ is inside the reach
