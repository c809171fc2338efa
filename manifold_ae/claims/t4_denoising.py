"""T4 (docs/theory.md): the Bayes-optimal DAE tends to the orthogonal projection at rate σ².

The minimiser of ``E‖f(x + σε) − x‖²`` is the posterior mean ``r*(x̃) = E[X | X̃ = x̃]`` (Tweedie:
``x̃ + σ² ∇ log p_σ(x̃)``), exact at every σ. For uniform data on a circle, on S² and on a flat torus it has a
closed form (von Mises / von Mises–Fisher means, ``manifold_ae.theory.bayes``), and inside the reach
``‖r*(x̃) − π(x̃)‖ = R (1 − A(κ)) ≈ k σ² / (2‖u‖)``: rate σ².

What is measured, each manifold embedded in R^10 by a random isometry:

1. the oracle rate: RMS ``‖r* − π‖`` over noisy inputs ``x + σε`` (common random numbers across σ), slope in σ;
2. trained MLP DAEs (``Denoising`` + ``loop.fit``) against r*, in units of σ;
3. that at a large σ the trained DAE follows r*, not π (the shrinkage towards the centre is learned);
4. on the circle, RMS ``‖f − π‖`` as σ shrinks: it falls with r* − π until the fitting error of the network takes
   over. That fitting floor (smallest RMS ``‖f − π‖`` over the sweep) is measured and stated.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from manifold_ae.claims.base import Check, ClaimResult
from manifold_ae.toys.measures import rms
from manifold_ae.loop import fit
from manifold_ae.manifolds import Manifold, make_manifold
from manifold_ae.models import MLPAutoencoder
from manifold_ae.objectives import Denoising
from manifold_ae.theory import CLOSED_FORM_MANIFOLDS, loglog_slope, posterior_mean

__all__ = ["MANIFOLD_SPECS", "ORACLE_SIGMAS", "SLOPE_RANGE", "make_toy", "bayes_denoiser", "noisy_points",
           "train_dae", "rms", "run"]

#: name -> parameters of make_manifold (radius 1 circle and sphere, flat torus S¹(1) × S¹(0.5))
MANIFOLD_SPECS: dict[str, dict[str, float]] = {"circle": {"radius": 1.0}, "sphere": {"k": 2, "radius": 1.0},
                                               "flat_torus": {"a": 1.0, "b": 0.5}}
ORACLE_SIGMAS = (0.025, 0.05, 0.1, 0.2)
#: log-log slope of RMS ‖r* − π‖ against σ (issue 3)
SLOPE_RANGE = (1.8, 2.2)
AMBIENT_DIM = 10

Map = Callable[[torch.Tensor], torch.Tensor]


def make_toy(name: str, *, seed: int) -> Manifold:
    """One of the T4 manifolds (``MANIFOLD_SPECS``) embedded in R^10."""
    if name not in MANIFOLD_SPECS:
        raise ValueError(f"name must be one of {list(MANIFOLD_SPECS)}, got {name!r}")
    return make_manifold(name, ambient_dim=AMBIENT_DIM, seed=seed, **MANIFOLD_SPECS[name])


def bayes_denoiser(manifold: Manifold, *, sigma: float) -> Map:
    """The closed-form posterior mean r* (..., n) -> (..., n) for uniform data on ``manifold`` (T4)."""
    if getattr(manifold, "name", None) not in CLOSED_FORM_MANIFOLDS:
        raise ValueError(f"no closed-form Bayes denoiser for {manifold!r}; expected one of "
                         f"{list(CLOSED_FORM_MANIFOLDS)}")
    return lambda x: posterior_mean(manifold, x, sigma=sigma)


def noisy_points(manifold: Manifold, num: int, *, sigma: float, seed: int) -> torch.Tensor:
    """``x + σ ε`` with x uniform on M and ε ~ N(0, I), float64 (num, n); the same draws for every σ."""
    g = torch.Generator().manual_seed(seed)
    x, _ = manifold.sample(num, generator=g)
    return x + sigma * torch.randn(x.shape, generator=g, dtype=x.dtype)


def train_dae(manifold: Manifold, *, sigma: float, steps: int, seed: int, num_train: int = 20000,
              width: int = 64) -> MLPAutoencoder:
    """An MLP DAE (tanh, two hidden layers) trained on uniform samples of ``manifold`` with noise σ."""
    g = torch.Generator().manual_seed(seed)
    x, _ = manifold.sample(num_train, generator=g)
    torch.manual_seed(seed)
    model = MLPAutoencoder(manifold.ambient_dim, hidden=(width, width), activation="tanh")
    fit(Denoising(model, sigma=sigma), x.float(), steps=steps, batch_size=256, lr=1e-2, seed=seed)
    return model


def _as_map(model: torch.nn.Module) -> Map:
    def f(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(x.float()).double()
    return f


def _slice_map(f: Map, manifold: Manifold) -> Callable[[np.ndarray], np.ndarray]:
    """Restrict a map on R^n to the plane of the circle: (G, 2) base coordinates -> (G, 2)."""
    q2 = manifold.Q[:, :2]  # (n, 2)

    def g(uv: np.ndarray) -> np.ndarray:
        x = manifold.centre + torch.as_tensor(uv, dtype=torch.float64) @ q2.T  # (G, n)
        return ((f(x) - manifold.centre) @ q2).numpy()  # (G, 2)
    return g


def run(*, fast: bool, out_dir: Path, seed: int = 0) -> ClaimResult:
    """Oracle rate r* → π, trained DAEs against r*, and the fitting floor of ‖f − π‖ (T4)."""
    from manifold_ae.viz.figures import rate_plot, save_figure, vector_field

    start = time.perf_counter()
    num_eval = 2000 if fast else 4000
    steps = 600 if fast else 2500
    sweep_steps = 600 if fast else 2000
    fit_target = 0.5 if fast else 0.2
    sweep = (0.4, 0.1) if fast else (0.4, 0.2, 0.1, 0.05, 0.025)
    floor_target = 0.03 if fast else 0.02
    toys = {name: make_toy(name, seed=seed) for name in MANIFOLD_SPECS}
    checks: list[Check] = []
    numbers: dict[str, object] = {"ambient_dim": AMBIENT_DIM, "oracle_sigmas": list(ORACLE_SIGMAS),
                                  "steps": steps, "sweep_steps": sweep_steps, "sweep_sigmas": list(sweep)}

    # 1. the oracle rate ‖r* − π‖ = O(σ²) at fixed points inside the reach: x = p + tν, t <= τ/2, so π(x) = p
    oracle_gaps: dict[str, list[float]] = {}
    noisy_gaps: dict[str, list[float]] = {}
    for name, m in toys.items():
        ray = m.sample_normal_ray(num_eval, fraction=0.5, generator=torch.Generator().manual_seed(seed + 1))
        oracle_gaps[name] = [rms(bayes_denoiser(m, sigma=s)(ray.x) - ray.p)  # ‖r* − π‖ = O(σ²)  (T4)
                             for s in ORACLE_SIGMAS]
        noisy = [noisy_points(m, num_eval, sigma=s, seed=seed + 1) for s in ORACLE_SIGMAS]
        noisy_gaps[name] = [rms(bayes_denoiser(m, sigma=s)(xt) - m.project(xt))
                            for s, xt in zip(ORACLE_SIGMAS, noisy)]
        slope = loglog_slope(ORACLE_SIGMAS, oracle_gaps[name])
        checks.append(Check(f"{name}: log-log slope of RMS ‖r* − π‖ against σ", slope, "in", SLOPE_RANGE,
                            note=f"sigma in {list(ORACLE_SIGMAS)}; fixed points p + tν, t <= reach/2, "
                                 f"in R^{AMBIENT_DIM}"))
    numbers["oracle_rms_rstar_minus_pi"] = oracle_gaps
    numbers["oracle_rms_rstar_minus_pi_noisy_inputs"] = noisy_gaps
    numbers["oracle_slope_noisy_inputs"] = {k: loglog_slope(ORACLE_SIGMAS, v) for k, v in noisy_gaps.items()}

    # 2. trained DAEs against r* at σ = 0.1 (the circle's model is part of the sweep below)
    sigma_fit = 0.1
    circle = toys["circle"]
    circle_models = {s: train_dae(circle, sigma=s, steps=sweep_steps, seed=seed + 100 + i)
                     for i, s in enumerate(sweep)}
    fit_errors: dict[str, float] = {}
    for name, m in toys.items():
        model = circle_models[sigma_fit] if name == "circle" else train_dae(m, sigma=sigma_fit, steps=steps,
                                                                           seed=seed + 200)
        xt = noisy_points(m, num_eval, sigma=sigma_fit, seed=seed + 2)
        fit_errors[name] = rms(_as_map(model)(xt) - bayes_denoiser(m, sigma=sigma_fit)(xt)) / sigma_fit
        checks.append(Check(f"{name}: trained DAE vs r*, RMS ‖f − r*‖ / σ at σ = {sigma_fit}", fit_errors[name],
                            "<=", fit_target, note=("fast: 600 steps, looser target; " if fast else "")
                            + "the noise itself has RMS norm ≈ 3σ in R^10"))
    numbers["fit_error_over_sigma"] = fit_errors

    # 3 + 4. the circle sweep: f follows r* (not π) at large σ, and approaches π until the fitting floor
    f_pi, f_rstar, rstar_pi = [], [], []
    for s in sweep:
        xt = noisy_points(circle, num_eval, sigma=s, seed=seed + 3)
        f_x, r_x, p_x = _as_map(circle_models[s])(xt), bayes_denoiser(circle, sigma=s)(xt), circle.project(xt)
        f_pi.append(rms(f_x - p_x))
        f_rstar.append(rms(f_x - r_x))
        rstar_pi.append(rms(r_x - p_x))
    floor = min(f_pi)
    numbers["circle_sweep"] = {"sigma": list(sweep), "rms_f_minus_pi": f_pi, "rms_f_minus_rstar": f_rstar,
                               "rms_rstar_minus_pi": rstar_pi, "fitting_floor": floor,
                               "sigma_at_floor": sweep[f_pi.index(floor)]}
    checks += [
        Check(f"circle σ = {sweep[0]}: RMS ‖f − r*‖ / RMS ‖r* − π‖ (learns r*, not π)", f_rstar[0] / rstar_pi[0],
              "<=", 0.5),
        Check("circle: RMS ‖f − π‖ at the largest σ / fitting floor (approaches π as σ shrinks)",
              f_pi[0] / floor, ">=", 5.0, note=f"sigma in {list(sweep)}"),
        Check("circle: fitting floor min_σ RMS ‖f − π‖ (absolute, radius 1)", floor, "<=", floor_target,
              note=f"reached at sigma = {sweep[f_pi.index(floor)]}"),
    ]

    figures = [
        save_figure(rate_plot(ORACLE_SIGMAS, oracle_gaps, reference_slope=2.0, ylabel="RMS ||r* - pi||",
                              title="T4: Bayes DAE r* -> projection (R^10)"),
                    out_dir, "t4_oracle_rate"),
        save_figure(rate_plot(sweep, {"||f - pi|| (trained)": f_pi, "||r* - pi|| (oracle)": rstar_pi,
                                      "||f - r*|| (fit error)": f_rstar}, fit=["||r* - pi|| (oracle)"],
                              ylabel="RMS distance", hlines={f"fitting floor {floor:.3g}": floor},
                              title="T4: trained DAE on the circle vs pi and r*"),
                    out_dir, "t4_fitting_floor"),
    ]
    s_big = sweep[0]
    theta = np.linspace(0, 2 * np.pi, 200)
    fields = {f"r* (sigma={s_big:g})": _slice_map(bayes_denoiser(circle, sigma=s_big), circle),
              f"trained DAE (sigma={s_big:g})": _slice_map(_as_map(circle_models[s_big]), circle),
              "projection pi": _slice_map(circle.project, circle)}
    figures.append(save_figure(vector_field(fields, extent=(-1.8, 1.8, -1.8, 1.8), grid=15,
                                            manifold=np.stack([np.cos(theta), np.sin(theta)], 1), arrow_scale=0.3,
                                            title="T4: r(x) - x in the plane of the circle (arrows x 0.3)"),
                               out_dir, "t4_vector_field"))
    return ClaimResult("T4", "the Bayes-optimal DAE tends to the orthogonal projection at rate sigma^2", checks,
                       numbers, figures, time.perf_counter() - start)
