"""T5 (docs/theory.md): the contractive penalty singles out the projection's Jacobian.

If f fixes M pointwise, differentiating f(γ(s)) = γ(s) along curves in M gives ``J_f(p) P_T = P_T``, hence
``‖J_f(p)‖_F² = ‖J_f P_T‖_F² + ‖J_f P_N‖_F² = d + ‖J_f(p) P_N‖_F² ≥ d``, with equality iff ``J_f(p) = P_T(p)
= Dπ(p)``. Five measurements, over the experiments of ``toys.contractive`` and ``toys.retractions``:

(a) constructed perfect reconstructors: π, skewed retractions ``x ↦ π(x + s A (x − π(x)))`` (excess
    ``‖J‖² − d = s² ‖P_T A P_N‖_F²``) and radial retractions of a circle/sphere from a shifted centre (excess
    ``tan² θ``, θ the angle between ray and normal): they fix M, satisfy J P_T = P_T, their autograd excess
    matches the closed form, and only π has J = P_T;
(b) trained reconstruction-contractive AEs (penalty λ‖J_f‖_F², Alain & Bengio), swept over λ: ``‖J_f − P_T‖_F``
    on M falls with λ and ``‖J_f‖_F² → d``; at very small λ the normal part ``J_f P_N``, which only the penalty
    removes, decays too slowly for a finite training budget, so the limit λ → 0 has to follow the training limit;
(c) the rescaling loophole of Rifai's encoder-only penalty with an untied decoder: scaling the linear code by α
    and the decoder's first layer by 1/α leaves f unchanged while the penalty scales by α²;
(d) off M the contractive loss says nothing; ``‖f(p + tν) − p‖`` of the CAE next to a DAE's (a measurement);
(e) Hutchinson's estimate ``E‖Jᵀu‖²`` (Rademacher u) of ``‖J‖_F²`` against the exact value, by number of probes.

Training uses the Hutchinson penalty (1 probe): unbiased, so the expected loss and its minimiser are those of
the exact penalty, at a fraction of the cost; every Jacobian that is *measured* is exact (torch.func).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from manifold_ae.claims.base import Check, ClaimResult, worst
from manifold_ae.loop import fit
from manifold_ae.manifolds import make_manifold
from manifold_ae.models import MLPAutoencoder
from manifold_ae.objectives import Contractive, Denoising, ReconstructionContractive
from manifold_ae.theory import loglog_fit
from manifold_ae.toys.contractive import (contractive_mlp, float_map, hutchinson_errors, jacobian_stats,
                                          off_manifold_profile, reconstructor_stats, rescale_code, train_contractive)
from manifold_ae.toys.retractions import Map, radial_excess, radial_retraction, skew_excess, skewed_retraction

__all__ = ["GAP_TARGET", "HUTCHINSON_PROBES", "HUTCHINSON_R2", "run"]

#: largest mean ‖J_f(p) − P_T(p)‖_F on M allowed at the best λ of the sweep
GAP_TARGET = 0.1
#: number of Hutchinson probes at which the batch-mean estimate must be within 2 % of the exact norm
HUTCHINSON_PROBES = 64
#: smallest r² of the log-log fit of the Hutchinson error against the probes (docs/theory.md, T5e)
HUTCHINSON_R2 = 0.9


def run(*, fast: bool, out_dir: Path, seed: int = 0) -> ClaimResult:
    """Perfect reconstructors, the λ sweep, the rescaling loophole, CAE vs DAE off M, Hutchinson (T5)."""
    from manifold_ae.viz.figures import jacobian_spectra, lambda_sweep, rate_plot, save_figure

    start = time.perf_counter()
    checks: list[Check] = []
    numbers: dict[str, object] = {}
    gen = torch.Generator().manual_seed(seed)

    # (a) constructed perfect reconstructors on three manifolds in R^6, each with its closed-form excess
    strengths = (0.25, 0.5, 1.0)
    table: dict[str, dict[str, float]] = {}
    skew_slopes: dict[str, float] = {}
    for name, params in (("circle", {}), ("sphere", {"k": 2}), ("flat_torus", {"a": 1.0, "b": 0.5})):
        m = make_manifold(name, ambient_dim=6, seed=seed, **params)
        p, _ = m.sample(100 if fast else 400, generator=gen)
        a = torch.randn(6, 6, generator=gen, dtype=torch.float64)
        a = a / torch.linalg.matrix_norm(a, ord=2)
        maps: dict[str, tuple[Map, torch.Tensor]] = {"projection": (m.project, torch.zeros(p.shape[0],
                                                                                           dtype=p.dtype))}
        maps.update({f"skew s={s:g}": (skewed_retraction(m, A=a, strength=s), skew_excess(m, p, A=a, strength=s))
                     for s in strengths})
        if name != "flat_torus":
            shift = 0.5 * float(m.radius) * torch.ones(m.base_dim, dtype=torch.float64) / m.base_dim ** 0.5
            maps["radial, shifted centre"] = (radial_retraction(m, shift=shift), radial_excess(m, p, shift=shift))
        for label, (f, excess) in maps.items():
            table[f"{name}: {label}"] = reconstructor_stats(f, m, p, expected_excess=excess)
        # implied by the closed form s² ‖P_T A P_N‖²: reported, not checked
        skew_slopes[name] = loglog_fit(strengths, [table[f"{name}: skew s={s:g}"]["mean_excess"]
                                                   for s in strengths]).slope
    numbers["perfect_reconstructors"] = table
    numbers["skew_excess_slope_in_s"] = skew_slopes
    rows = list(table.values())
    others = [v for k, v in table.items() if "projection" not in k]
    projections = [v for k, v in table.items() if "projection" in k]
    checks += [
        Check("(a) every constructed map fixes M: max ‖f(p) − p‖", worst([r["fixes_M"] for r in rows], op="<="),
              "<=", 1e-10),
        Check("(a) J_f P_T = P_T on M: max entry error", worst([r["max_JPT_minus_PT"] for r in rows], op="<="),
              "<=", 1e-9),
        Check("(a) excess ‖J‖² − d equals its closed form: max |error|",
              worst([r["max_excess_error"] for r in rows], op="<="), "<=", 1e-9,
              note="skew: s² ‖P_T A P_N‖_F²; radial: tan² θ (ray vs normal); π: 0"),
        Check("(a) equality for π: max ‖J_π − P_T‖_F", worst([r["max_gap_to_PT"] for r in projections], op="<="),
              "<=", 1e-9),
        Check("(a) strict excess for the other retractions: min mean (‖J‖² − d)",
              worst([r["mean_excess"] for r in others], op=">="), ">=", 1e-3,
              note="skews s in {0.25, 0.5, 1}, radial shift R/2"),
    ]

    # (b) λ sweep of the reconstruction-contractive AE
    name, n, params = ("circle", 4, {}) if fast else ("sphere", 5, {"k": 2})
    m = make_manifold(name, ambient_dim=n, seed=seed, **params)
    x_train, _ = m.sample(8000, generator=gen)
    p_eval, _ = m.sample(300, generator=gen)
    lams = (1.0, 0.1, 0.01) if fast else (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)
    steps = 600 if fast else 1500
    models = {lam: train_contractive(x_train, lam=lam, steps=steps, seed=seed + 7) for lam in lams}
    stats = {lam: jacobian_stats(models[lam], m, p_eval) for lam in lams}
    gaps = [stats[lam]["gap"] for lam in lams]
    best = min(lams, key=lambda lam: stats[lam]["gap"])
    best_gap = worst(gaps, op=">=")  # the smallest gap; a NaN at any λ is returned instead and fails
    d = m.intrinsic_dim
    numbers["sweep"] = {"manifold": f"{name} in R^{n}", "steps": steps, "lam": list(lams),
                        **{key: [stats[lam][key] for lam in lams] for key in
                           ("gap", "gap_tangential", "gap_normal", "frobenius_sq", "reconstruction")},
                        "best_lam": best}
    checks += [
        Check(f"(b) min over λ of mean ‖J_f − P_T‖_F on M ({name}, d = {d})", best_gap, "<=", GAP_TARGET,
              note=f"at λ = {best:g}; lambdas {list(lams)}, {steps} steps"),
        Check("(b) the gap falls with λ: gap(λ_max) / min gap", gaps[0] / best_gap, ">=", 2.0),
        Check("(b) ‖J_f‖_F² → d at the best λ: |‖J_f‖² − d| / d", abs(stats[best]["frobenius_sq"] - d) / d, "<=",
              0.1),
    ]

    # (c) rescaling loophole of the untied encoder-only penalty
    torch.manual_seed(seed + 8)
    cae = MLPAutoencoder(n, hidden=(32,), bottleneck=d + 1, activation="tanh", dtype=torch.float64)
    fit(Contractive(cae, lam=0.1), x_train, steps=200 if fast else 600, batch_size=256, lr=1e-2, seed=seed + 8)
    alphas = (1.0, 0.1, 0.01, 0.001)
    loophole = {"alpha": list(alphas), "encoder_penalty": [], "full_jacobian_penalty": [],
                "max_output_change": []}
    with torch.no_grad():
        base_out = cae(x_train[:512])
        for alpha in alphas:
            scaled = rescale_code(cae, alpha)
            loophole["encoder_penalty"].append(float(Contractive(scaled, lam=1.0).penalty(x_train[:512]).mean()))
            loophole["full_jacobian_penalty"].append(
                float(ReconstructionContractive(scaled, lam=1.0).penalty(x_train[:512]).mean()))
            loophole["max_output_change"].append(float((scaled(x_train[:512]) - base_out).abs().max()))
    numbers["rescaling_loophole"] = loophole
    pen = loophole["encoder_penalty"]
    full = loophole["full_jacobian_penalty"]
    checks += [
        Check("(c) untied encoder penalty after code × 0.001 (relative to α = 1)", pen[-1] / pen[0], "<=", 1e-5,
              note="exactly α² = 1e-6 in exact arithmetic"),
        Check("(c) reconstruction unchanged: max |f_α(x) − f(x)|", worst(loophole["max_output_change"], op="<="),
              "<=", 1e-9),
        Check("(c) full-Jacobian penalty unchanged (relative spread)",
              (worst(full, op="<=") - worst(full, op=">=")) / full[0], "<=", 1e-9),
    ]

    # (d) CAE (best λ) vs DAE off the manifold: a measurement, no criterion (the CAE loss says nothing off M)
    torch.manual_seed(seed + 9)
    dae = contractive_mlp(n)
    fit(Denoising(dae, sigma=0.1), x_train.float(), steps=steps, batch_size=256, lr=1e-2, seed=seed + 9)
    ts = tuple(t * m.reach for t in (0.05, 0.1, 0.2, 0.4, 0.8))
    profile = {f"CAE (lambda={best:g})": off_manifold_profile(float_map(models[best]), m, ts, num=300,
                                                              seed=seed + 10),
               "DAE (sigma=0.1)": off_manifold_profile(float_map(dae), m, ts, num=300, seed=seed + 10)}
    numbers["off_manifold"] = {"t": list(ts), **profile,
                               "on_manifold_jacobian_gap_dae": jacobian_stats(dae, m, p_eval)["gap"]}

    # (e) Hutchinson vs exact on the best CAE, noisy points around M
    probes = (1, 4, 16, 64)
    x_probe = p_eval[:256] + 0.1 * torch.randn(256, n, generator=gen, dtype=torch.float64)
    exact, errors = hutchinson_errors(models[best], x_probe.float(), probes, repeats=20 if fast else 30,
                                      seed=seed + 11)
    rate = loglog_fit(probes, errors)
    numbers["hutchinson"] = {"probes": list(probes), "rms_relative_error": errors, "exact_mean": exact,
                             "slope": rate.slope, "r_squared": rate.r_squared,
                             "batch": 256, "distribution": "rademacher", "mode": "vjp"}
    checks += [
        Check(f"(e) Hutchinson vs exact, batch mean of 256 points, {HUTCHINSON_PROBES} probes: RMS relative error",
              errors[probes.index(HUTCHINSON_PROBES)], "<=", 0.02, note="Rademacher probes, vector-Jacobian mode"),
        Check("(e) log-log slope of that error against the number of probes", rate.slope, "in", (-0.7, -0.3),
              note="Monte Carlo rate -1/2"),
        Check("(e) r² of that log-log fit", rate.r_squared, ">=", HUTCHINSON_R2,
              note=f"each RMS error from {20 if fast else 30} repeats"),
    ]

    figures = [
        save_figure(lambda_sweep(lams, gaps, [stats[lam]["frobenius_sq"] for lam in lams], intrinsic_dim=d,
                                 gap_target=GAP_TARGET,
                                 extra={"tangential part": [stats[lam]["gap_tangential"] for lam in lams],
                                        "normal part ||J P_N||": [stats[lam]["gap_normal"] for lam in lams]},
                                 title=f"T5: reconstruction-contractive AE on the {name} in R^{n}"),
                    out_dir, "t5_lambda_sweep"),
        save_figure(jacobian_spectra({f"lambda={lam:g}": stats[lam]["singular_values"] for lam in lams},
                                     intrinsic_dim=d, title="T5: singular values of J_f(p) on M"),
                    out_dir, "t5_spectra"),
        save_figure(rate_plot(ts, profile, fit=False, xlabel="distance t from M along a normal",
                              ylabel="mean ||f(p + t nu) - p||", title="T5: off the manifold, CAE vs DAE"),
                    out_dir, "t5_off_manifold"),
        save_figure(rate_plot(probes, {"RMS relative error": errors}, reference_slope=-0.5,
                              xlabel="Hutchinson probes", ylabel="relative error of batch-mean ||J||_F^2",
                              hlines={"2 %": 0.02}, title="T5: Hutchinson vs exact Jacobian norm"),
                    out_dir, "t5_hutchinson"),
    ]
    return ClaimResult("T5", "the contractive penalty singles out the projection's Jacobian", checks, numbers,
                       figures, time.perf_counter() - start)
