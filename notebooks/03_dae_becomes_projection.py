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
# # 3. The denoising autoencoder becomes the orthogonal projection
#
# **Claim (docs/theory.md, T4).** The Bayes-optimal denoiser is the posterior mean
# r*(x̃) = E[X | X̃ = x̃] = x̃ + σ²∇log p_σ(x̃) (Tweedie). Inside the reach it converges to the orthogonal
# projection π as the noise vanishes, with error O(σ²); noise orthogonal to the plane of the data is removed
# entirely, in any ambient dimension. A trained DAE approximates r*.
#
# This is the classic picture of Alain & Bengio (2014): the reconstruction field r(x) − x on a spiral points
# straight at the curve, and here it comes with its exact oracle.

# %% tags=["parameters"]
import os

FAST = os.environ.get("MANIFOLD_AE_FAST", "0") == "1"
SIGMAS = [0.01, 0.02, 0.04, 0.08] if FAST else [0.01, 0.014, 0.02, 0.028, 0.04, 0.057, 0.08]
STEPS = 1000 if FAST else 3000          # training steps of the small DAE on the circle
SEED = 0

# %%
# %matplotlib inline
import numpy as np
import torch
from IPython.display import display

from manifold_ae.theory import loglog_fit
from manifold_ae.viz.figures import rate_plot, vector_field
from manifold_ae.viz.widgets import dae_field_explorer, plane_curve, trained_dae

# %% [markdown]
# ## The spiral picture
# Left: the Bayes-optimal denoiser's field r*(x) − x for σ = 0.05 on the spiral (arc-length-uniform data).
# Right: the projection's field π(x) − x. Near the curve they agree; far from it r* averages over several
# turns and points between them.

# %%
spiral = plane_curve("spiral")
vector_field({"r*(x) − x, σ = 0.05": lambda g: spiral.posterior_mean(g, sigma=0.05).numpy(),
              "π(x) − x": lambda g: spiral.project_plane(g).numpy()},
             extent=(-1.6, 1.6, -1.6, 1.6), grid=19, manifold=spiral.nodes.numpy())

# %% [markdown]
# ## Explore
# Move σ and watch the field tighten onto the curve and the measured gap ‖r*(x) − π(x)‖ fall like σ².
# Switch to the circle, raise the ambient dimension n (the noise then has n − 2 more directions; the optimum
# still lands on the curve), or tick *train a DAE* to fit a small MLP DAE (cached per setting).

# %%
explorer = dae_field_explorer(sigma=0.1, seed=SEED)
display(explorer)

# %% [markdown]
# ## The rate
# Mean ‖r*(x) − π(x)‖ over points within the reach, for the spiral and the circle in R^10.

# %%
circle10 = plane_curve("circle", ambient_dim=10)
gaps = {"spiral (R²)": [spiral.oracle_gap(s, seed=SEED) for s in SIGMAS],
        "circle (R¹⁰)": [circle10.oracle_gap(s, seed=SEED) for s in SIGMAS]}
rate_plot(SIGMAS, gaps, reference_slope=2.0, title="Bayes-optimal DAE vs projection (T4)")

# %% [markdown]
# ## A trained DAE
# A small MLP trained with the denoising objective at σ = 0.2 on the unit circle: its outputs are compared
# with the oracle r* and with π on points within the reach.

# %%
circle = plane_curve("circle")
model = trained_dae(circle, 0.2, steps=STEPS, seed=SEED)
x, p = circle.test_points(400, seed=SEED)
with torch.no_grad():
    fx = model(x.float()).double()
dae_to_oracle = float(torch.linalg.vector_norm(fx - circle.posterior_mean(x, sigma=0.2), dim=1).mean())
noise = float(torch.linalg.vector_norm(x - p, dim=1).mean())
print(f"mean ‖f − r*‖ = {dae_to_oracle:.4f}; mean ‖x − π(x)‖ = {noise:.4f}")

# %% [markdown]
# ## Check the claim
# The gap ‖r* − π‖ falls with slope 2 (± 0.2) in log-log for both curves, orthogonal noise is removed
# (the circle's oracle output lies in its plane and on the right ray), and the trained DAE removes most
# of the noise: its distance to r* is below a third of the input's distance to M.

# %%
for label, ys in gaps.items():
    fit_ = loglog_fit(SIGMAS, ys)
    print(f"{label}: slope {fit_.slope:.3f} (R² {fit_.r_squared:.4f})")
    assert abs(fit_.slope - 2.0) < 0.2, (label, fit_)
xs, ps = circle10.test_points(200, seed=SEED + 1)
r = circle10.posterior_mean(xs, sigma=0.01)
out_of_plane = r - (r @ circle10.Q) @ circle10.Q.T
assert float(out_of_plane.abs().max()) < 1e-12
assert float(torch.linalg.vector_norm(r - ps, dim=1).max()) < 1e-3
assert dae_to_oracle < noise / 3, (dae_to_oracle, noise)
assert explorer.numbers["oracle_gap"] < explorer.numbers["noise_gap"]
