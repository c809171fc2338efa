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
# # 4. Contraction and the tangent space
#
# **Claim (docs/theory.md, T5).** If a map f reconstructs every point of M exactly, f(p) = p, then
# differentiating along M gives J_f(p) P_T = P_T, hence
# ‖J_f(p)‖²_F = d + ‖J_f(p) P_N‖²_F ≥ d, with equality iff J_f(p) = P_T(p) = Dπ(p).
# Among perfect reconstructors the contractive penalty ‖J_f‖²_F therefore singles out the orthogonal
# projection's Jacobian. A reconstruction-contractive AE (Alain & Bengio 2014) trades a little reconstruction
# for contraction and approaches P_T as λ → 0. Two caveats: an encoder-only penalty with an untied decoder can
# be gamed by rescaling the code, and the loss says nothing about f far from M.

# %% tags=["parameters"]
import os

FAST = os.environ.get("MANIFOLD_AE_FAST", "0") == "1"
LAMS = (1.0, 0.1, 0.01) if FAST else (1.0, 0.3, 0.1, 0.03, 0.01, 0.003)
STEPS = 600 if FAST else 1500          # training steps of each contractive AE (circle in R^4)
NUM_POINTS = 100 if FAST else 400      # evaluation points on M
SEED = 0

# %%
# %matplotlib inline
import torch
from IPython.display import display

from manifold_ae.loop import fit
from manifold_ae.manifolds import make_manifold
from manifold_ae.models import MLPAutoencoder
from manifold_ae.objectives import Contractive, Denoising, ReconstructionContractive
from manifold_ae.toys.contractive import jacobian_stats, off_manifold_profile, reconstructor_stats, rescale_code
from manifold_ae.toys.retractions import skewed_retraction
from manifold_ae.viz.explorers import contraction_explorer, trained_contractive
from manifold_ae.viz.figures import jacobian_spectra, lambda_sweep, rate_plot

# %% [markdown]
# ## Perfect reconstructors: the identity and the inequality
# The circle, the sphere S² and a flat torus, each embedded in R^6. Three maps fix M exactly: π itself and two
# *skewed retractions* x ↦ π(x + s A (x − π(x))), which push the residual sideways before projecting. On M all
# three satisfy J_f P_T = P_T; only π has J_f = P_T.

# %%
gen = torch.Generator().manual_seed(SEED)
table = {}
for name, params in (("circle", {}), ("sphere", {"k": 2}), ("flat_torus", {"a": 1.0, "b": 0.5})):
    M = make_manifold(name, ambient_dim=6, seed=SEED, **params)
    p, _ = M.sample(NUM_POINTS, generator=gen)
    A = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    A = A / torch.linalg.matrix_norm(A, ord=2)
    for label, f in {"π": M.project, "skew s=0.5": skewed_retraction(M, A=A, strength=0.5),
                     "skew s=1": skewed_retraction(M, A=A, strength=1.0)}.items():
        table[f"{name}: {label}"] = reconstructor_stats(f, M, p)
print(f"{'map':24s} {'max ‖f(p)−p‖':>13s} {'identity err':>13s} {'mean ‖J‖²−d':>12s} {'max ‖J−P_T‖':>12s}")
for key, s in table.items():
    print(f"{key:24s} {s['fixes_M']:13.1e} {s['max_identity_error']:13.1e} {s['mean_excess']:12.4f} "
          f"{s['max_gap_to_PT']:12.2e}")

# %% [markdown]
# ## The λ sweep
# Reconstruction-contractive AEs (tanh MLP, penalty λ‖J_f‖²_F estimated with one Hutchinson probe) on the unit
# circle in R^4. Large λ contracts everything (f shrinks towards a point, ‖J_f‖² < d: f no longer fixes M);
# as λ decreases ‖J_f‖² → d = 1 and J_f → P_T. Models are cached, so the explorer below reuses them.

# %%
circle = make_manifold("circle", ambient_dim=4, seed=SEED)
p_eval, _ = circle.sample(NUM_POINTS, generator=torch.Generator().manual_seed(SEED + 1))
models = {lam: trained_contractive(circle, lam, steps=STEPS, seed=SEED) for lam in LAMS}
stats = {lam: jacobian_stats(models[lam], circle, p_eval) for lam in LAMS}
for lam in LAMS:
    print(f"λ = {lam:<6g} ‖J − P_T‖ = {stats[lam]['gap']:.4f}   ‖J‖² = {stats[lam]['frobenius_sq']:.4f}   "
          f"‖f(p) − p‖ = {stats[lam]['reconstruction']:.4f}")
lambda_sweep(LAMS, [stats[lam]["gap"] for lam in LAMS], [stats[lam]["frobenius_sq"] for lam in LAMS],
             intrinsic_dim=1, gap_target=0.1,
             extra={"normal part ‖J P_N‖": [stats[lam]["gap_normal"] for lam in LAMS]},
             title="T5: reconstruction-contractive AE on the circle in R⁴")

# %%
jacobian_spectra({f"λ = {lam:g}": stats[lam]["singular_values"] for lam in LAMS}, intrinsic_dim=1,
                 title="singular values of J_f(p) on M against P_T")

# %% [markdown]
# ## Explore
# Move λ and watch the singular values of J_f(p) approach those of P_T (one 1, then zeros); switch the map to π
# (exactly P_T) or to a skewed retraction (a perfect reconstructor with ‖J‖² > d). The label also reports
# ‖f(p + tν) − p‖ half a reach away from M.

# %%
explorer = contraction_explorer(lams=LAMS, lam=LAMS[1], steps=STEPS, num_eval=NUM_POINTS, seed=SEED)
display(explorer)

# %% [markdown]
# ## The rescaling loophole
# Rifai's contractive AE penalises only the *encoder's* Jacobian. With an untied decoder, multiply the code by
# α and divide the decoder's first layer by α: f is unchanged, the penalty drops by α². The penalty on the
# whole reconstruction ‖J_f‖² (used above) cannot be gamed this way.

# %%
x_train, _ = circle.sample(4000, generator=gen)
torch.manual_seed(SEED)
cae = MLPAutoencoder(4, hidden=(32,), bottleneck=2, activation="tanh", dtype=torch.float64)
fit(Contractive(cae, lam=0.1), x_train, steps=200, batch_size=256, lr=1e-2, seed=SEED)
loophole = {}
with torch.no_grad():
    for alpha in (1.0, 0.1, 0.01):
        scaled = rescale_code(cae, alpha)
        loophole[alpha] = (float(Contractive(scaled, lam=1.0).penalty(x_train[:512]).mean()),
                           float(ReconstructionContractive(scaled, lam=1.0).penalty(x_train[:512]).mean()),
                           float((scaled(x_train[:512]) - cae(x_train[:512])).abs().max()))
        print(f"α = {alpha:<5g} encoder penalty {loophole[alpha][0]:.3e}   full penalty {loophole[alpha][1]:.4f}   "
              f"max |f_α − f| = {loophole[alpha][2]:.1e}")

# %% [markdown]
# ## Off the manifold
# The contractive loss only sees points of M. How far from p does f send p + tν? Next to a DAE (σ = 0.1),
# which is trained on points *off* M and so learns to bring them back.

# %%
torch.manual_seed(SEED)
dae = MLPAutoencoder(4, hidden=(64, 64), activation="tanh")
fit(Denoising(dae, sigma=0.1), x_train.float(), steps=STEPS, batch_size=256, lr=1e-2, seed=SEED)
ts = (0.05, 0.1, 0.2, 0.4, 0.8)
best = min(LAMS, key=lambda lam: stats[lam]["gap"])
profiles = {f"CAE λ = {best:g}": off_manifold_profile(lambda v: models[best](v.float()).double(), circle, ts,
                                                       num=300, seed=SEED),
            "DAE σ = 0.1": off_manifold_profile(lambda v: dae(v.float()).double(), circle, ts, num=300, seed=SEED),
            "identity (no projection)": list(ts)}
rate_plot(ts, profiles, fit=False, xlabel="distance t from M along a normal", ylabel="mean ‖f(p + tν) − p‖",
          title="off the manifold: CAE vs DAE")

# %% [markdown]
# ## Check the claim
# 1. Perfect reconstructors: the identity ‖J‖² = d + ‖J P_N‖² to 1e-9, the inequality ‖J‖² ≥ d, equality for π,
#    strict excess for the skewed retractions.
# 2. The sweep: the best λ brings ‖J_f − P_T‖_F below 0.1 and ‖J_f‖² within 10 % of d; the gap falls by at least
#    2× from λ = 1.
# 3. The loophole: the encoder penalty scales exactly like α², the reconstruction and the full penalty do not move.
# 4. The explorer's π has the Jacobian P_T exactly.

# %%
assert max(s["fixes_M"] for s in table.values()) < 1e-10
assert max(s["max_identity_error"] for s in table.values()) < 1e-9
assert min(s["min_excess"] for s in table.values()) > -1e-9
assert max(s["max_gap_to_PT"] for k, s in table.items() if k.endswith("π")) < 1e-9
assert min(s["mean_excess"] for k, s in table.items() if "skew" in k) > 1e-3
gaps = [stats[lam]["gap"] for lam in LAMS]
assert min(gaps) <= 0.1, gaps
assert gaps[0] / min(gaps) >= 2.0, gaps
assert abs(stats[best]["frobenius_sq"] - 1.0) <= 0.1, stats[best]["frobenius_sq"]
for alpha, (enc, full, change) in loophole.items():
    assert abs(enc / loophole[1.0][0] - alpha ** 2) <= 1e-9 * alpha ** 2 + 1e-15, (alpha, enc)
    assert abs(full - loophole[1.0][1]) <= 1e-9 * loophole[1.0][1] and change <= 1e-9
check = contraction_explorer(lams=LAMS, lam=LAMS[1], steps=STEPS, num_eval=NUM_POINTS, seed=SEED)   # not the one above
check.controls["map"].value = "orthogonal projection π"
assert check.numbers["gap"] < 1e-9 and abs(check.numbers["frobenius_sq"] - 1.0) < 1e-9, check.numbers
