"""T5 (docs/theory.md): the contractive penalty singles out the projection's Jacobian.

If f fixes M pointwise, differentiating f(γ(s)) = γ(s) along curves in M gives ``J_f(p) P_T = P_T``, hence
``‖J_f(p)‖_F² = ‖J_f P_T‖_F² + ‖J_f P_N‖_F² = d + ‖J_f(p) P_N‖_F² ≥ d``, with equality iff ``J_f(p) = P_T(p)
= Dπ(p)``. Five measurements:

(a) constructed perfect reconstructors: π, skewed retractions ``x ↦ π(x + s A (x − π(x)))`` (Jacobian
    ``P_T + s P_T A P_N`` on M, excess exactly ``s² ‖P_T A P_N‖_F²``) and radial retractions of a circle/sphere
    from a shifted centre obey the identity, the inequality, and equality only for π;
(b) trained reconstruction-contractive AEs (penalty λ‖J_f‖_F², Alain & Bengio), swept over λ: ``‖J_f − P_T‖_F``
    on M falls with λ and ``‖J_f‖_F² → d``; at very small λ the normal part ``J_f P_N``, which only the penalty
    removes, decays too slowly for a finite training budget, so the limit λ → 0 has to follow the training limit;
(c) the rescaling loophole of Rifai's encoder-only penalty with an untied decoder: scaling the linear code by α
    and the decoder's first layer by 1/α leaves f unchanged while the penalty scales by α²;
(d) off M the contractive loss says nothing; ``‖f(p + tν) − p‖`` of the CAE next to a DAE's;
(e) Hutchinson's estimate ``E‖Jᵀu‖²`` (Rademacher u) of ``‖J‖_F²`` against the exact value, by number of probes.

Training uses the Hutchinson penalty (1 probe): unbiased, so the expected loss and its minimiser are those of
the exact penalty, at a fraction of the cost; every Jacobian that is *measured* is exact (torch.func).
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Callable

import torch

from manifold_ae.claims.base import Check, ClaimResult
from manifold_ae.loop import fit
from manifold_ae.manifolds import Manifold, make_manifold
from manifold_ae.models import MLPAutoencoder
from manifold_ae.objectives import Contractive, Denoising, ReconstructionContractive, jacobian_frobenius_sq
from manifold_ae.theory import jacobian, loglog_slope

__all__ = ["GAP_TARGET", "HUTCHINSON_PROBES", "skewed_retraction", "radial_retraction", "reconstructor_stats",
           "train_contractive", "jacobian_stats", "rescale_code", "off_manifold_profile", "hutchinson_errors", "run"]

#: largest mean ‖J_f(p) − P_T(p)‖_F on M allowed at the best λ of the sweep (issue 3)
GAP_TARGET = 0.1
#: number of Hutchinson probes at which the batch-mean estimate must be within 2 % of the exact norm
HUTCHINSON_PROBES = 64

Map = Callable[[torch.Tensor], torch.Tensor]


# ------------------------------------------------------------------------------ (a) perfect reconstructors


def skewed_retraction(manifold: Manifold, *, A: torch.Tensor, strength: float) -> Map:
    """``x ↦ π(x + s A (x − π(x)))``: fixes M, idempotent, Jacobian ``P_T + s P_T A P_N`` on M (T5a).

    Parameters
    ----------
    manifold : Manifold
    A : (n, n) tensor
        Direction of the skew.
    strength : float
        s; 0 gives π itself.
    """
    if A.shape != (manifold.ambient_dim, manifold.ambient_dim):
        raise ValueError(f"A must have shape ({manifold.ambient_dim}, {manifold.ambient_dim}), got {tuple(A.shape)}")

    def f(x: torch.Tensor) -> torch.Tensor:
        residual = x - manifold.project(x)  # (..., n), normal to M
        return manifold.project(x + strength * residual @ A.T)
    return f


def radial_retraction(manifold: Manifold, *, shift: torch.Tensor) -> Map:
    """Retraction of a circle/sphere along rays from a shifted centre ``c + Q shift`` (T5a, T7).

    x is first projected orthogonally onto the sphere's affine hull ``c + span(Q)``, then moved along the ray from
    the shifted centre to where it meets the sphere. Fixes M; on M its kernel is the ray direction, not the
    normal, so ``‖J‖_F² > d`` unless ``shift = 0`` (then it is π).

    Parameters
    ----------
    manifold : Manifold
        A circle or sphere (``manifold.radius``).
    shift : (k+1,) tensor
        Shifted centre in base coordinates, ``‖shift‖ < radius``.
    """
    if manifold.name not in ("circle", "sphere"):
        raise ValueError(f"radial_retraction needs a circle or sphere, got {manifold.name!r}")
    radius = float(manifold.radius)
    if shift.shape != (manifold.base_dim,) or float(shift.norm()) >= radius:
        raise ValueError(f"shift must have shape ({manifold.base_dim},) and norm < radius {radius}, "
                         f"got shape {tuple(shift.shape)} and norm {float(shift.norm()):.3g}")
    c, q = manifold.centre, manifold.Q

    def f(x: torch.Tensor) -> torch.Tensor:
        w = (x - c) @ q - shift  # (..., m) ray direction from the shifted centre
        ww = (w * w).sum(-1)
        cw = (w * shift).sum(-1)
        # ‖shift + t w‖ = R  ->  t = (−c·w + sqrt((c·w)² + ‖w‖² (R² − ‖c‖²))) / ‖w‖²
        t = (-cw + torch.sqrt(cw * cw + ww * (radius ** 2 - float(shift @ shift)))) / ww
        return c + (shift + t.unsqueeze(-1) * w) @ q.T
    return f


def reconstructor_stats(f: Map, manifold: Manifold, p: torch.Tensor) -> dict[str, float]:
    """Exact Jacobians of f at points p (P, n) of M against the identity ``‖J‖² = d + ‖J P_N‖²`` (T5a)."""
    jac = jacobian(f, p)  # (P, n, n)
    p_t = manifold.tangent_projector(p)  # (P, n, n)
    p_n = torch.eye(manifold.ambient_dim, dtype=p.dtype) - p_t
    d = manifold.intrinsic_dim
    frob = (jac ** 2).sum((-1, -2))  # (P,)
    normal_part = ((jac @ p_n) ** 2).sum((-1, -2))  # (P,)  ‖J‖² = d + ‖J P_N‖² when J P_T = P_T  (T5)
    return {"fixes_M": float((f(p) - p).norm(dim=-1).max()),
            "max_JPT_minus_PT": float((jac @ p_t - p_t).abs().max()),
            "max_identity_error": float((frob - d - normal_part).abs().max()),
            "min_excess": float((frob - d).min()), "mean_excess": float((frob - d).mean()),
            "max_gap_to_PT": float(torch.linalg.matrix_norm(jac - p_t).max())}


# ------------------------------------------------------------------------------ (b) trained contractive AEs


def _mlp(n: int, *, width: int = 64) -> MLPAutoencoder:
    return MLPAutoencoder(n, hidden=(width, width), activation="tanh")


def train_contractive(x: torch.Tensor, *, lam: float, steps: int, seed: int) -> MLPAutoencoder:
    """MLP AE trained with ``ReconstructionContractive(lam)`` (Hutchinson, 1 probe) on points x of M."""
    torch.manual_seed(seed)
    model = _mlp(x.shape[1])
    objective = ReconstructionContractive(model, lam=lam, estimator="hutchinson", probes=1)
    fit(objective, x.float(), steps=steps, batch_size=256, lr=1e-2, seed=seed)
    return model


def _float_map(model: torch.nn.Module) -> Map:
    return lambda x: model(x.float()).double()


def jacobian_stats(model: torch.nn.Module, manifold: Manifold, p: torch.Tensor) -> dict[str, float]:
    """Mean over points p (P, n) on M of ``‖J_f − P_T‖_F``, its tangential and normal parts, ``‖J_f‖_F²``, and
    the reconstruction error ``‖f(p) − p‖``."""
    jac = jacobian(lambda v: model(v), p.float()).detach().double()  # (P, n, n)
    p_t = manifold.tangent_projector(p)
    p_n = torch.eye(manifold.ambient_dim, dtype=p.dtype) - p_t
    with torch.no_grad():
        rec = (model(p.float()).double() - p).norm(dim=-1)
    return {"gap": float(torch.linalg.matrix_norm(jac - p_t).mean()),
            "gap_tangential": float(torch.linalg.matrix_norm((jac - p_t) @ p_t).mean()),
            "gap_normal": float(torch.linalg.matrix_norm(jac @ p_n).mean()),
            "frobenius_sq": float((jac ** 2).sum((-1, -2)).mean()), "reconstruction": float(rec.mean()),
            "singular_values": torch.linalg.svdvals(jac)}


# ------------------------------------------------------------------------------ (c) rescaling loophole


def rescale_code(model: MLPAutoencoder, alpha: float) -> MLPAutoencoder:
    """Copy of an untied model with a linear bottleneck: code × α, decoder's first layer × 1/α (T5c).

    ``decode(encode(x))`` is unchanged exactly, while ``‖J_encode‖_F²`` is multiplied by α².
    """
    if model.tied or model.bottleneck is None:
        raise ValueError("rescale_code needs an untied MLPAutoencoder with a linear bottleneck "
                         f"(tied={model.tied}, bottleneck={model.bottleneck})")
    scaled = copy.deepcopy(model)
    with torch.no_grad():
        scaled.encoder[-1].weight.mul_(alpha)
        scaled.encoder[-1].bias.mul_(alpha)
        scaled.decoder[0].weight.div_(alpha)  # f unchanged, ‖J_encode‖² × α²  (T5c)
    return scaled


# ------------------------------------------------------------------------------ (d) off M, (e) Hutchinson


def off_manifold_profile(f: Map, manifold: Manifold, ts: tuple[float, ...], *, num: int,
                         seed: int) -> list[float]:
    """Mean ``‖f(p + tν) − p‖`` over ``num`` foot points p and random unit normals ν, for each t (T5d)."""
    g = torch.Generator().manual_seed(seed)
    p, _ = manifold.sample(num, generator=g)
    nu = (manifold.normal_basis(p) @ torch.randn(num, manifold.ambient_dim - manifold.intrinsic_dim, 1,
                                                 generator=g, dtype=p.dtype)).squeeze(-1)  # (num, n)
    nu = nu / nu.norm(dim=-1, keepdim=True)
    with torch.no_grad():
        return [float((f(p + t * nu) - p).norm(dim=-1).mean()) for t in ts]


def hutchinson_errors(model: torch.nn.Module, x: torch.Tensor, probes: tuple[int, ...], *, repeats: int,
                      seed: int) -> tuple[float, list[float]]:
    """Exact batch-mean ``‖J_f‖_F²`` and the RMS relative error of the Hutchinson estimate per probe count (T5e)."""
    with torch.no_grad():
        exact = float(jacobian_frobenius_sq(model, x, estimator="exact").mean())
        errors = []
        for k in probes:
            g = torch.Generator().manual_seed(seed + k)
            est = torch.tensor([float(jacobian_frobenius_sq(model, x, estimator="hutchinson", probes=k,
                                                            generator=g).mean()) for _ in range(repeats)])
            errors.append(float(((est - exact) / exact).pow(2).mean().sqrt()))
    return exact, errors


def run(*, fast: bool, out_dir: Path, seed: int = 0) -> ClaimResult:
    """Perfect reconstructors, the λ sweep, the rescaling loophole, CAE vs DAE off M, Hutchinson (T5)."""
    from manifold_ae.viz.figures import jacobian_spectra, lambda_sweep, rate_plot, save_figure

    start = time.perf_counter()
    checks: list[Check] = []
    numbers: dict[str, object] = {}
    gen = torch.Generator().manual_seed(seed)

    # (a) constructed perfect reconstructors on three manifolds in R^6
    strengths = (0.25, 0.5, 1.0)
    table: dict[str, dict[str, float]] = {}
    for name, params in (("circle", {}), ("sphere", {"k": 2}), ("flat_torus", {"a": 1.0, "b": 0.5})):
        m = make_manifold(name, ambient_dim=6, seed=seed, **params)
        p, _ = m.sample(100 if fast else 400, generator=gen)
        a = torch.randn(6, 6, generator=gen, dtype=torch.float64)
        a = a / torch.linalg.matrix_norm(a, ord=2)
        maps: dict[str, Map] = {"projection": m.project}
        maps.update({f"skew s={s:g}": skewed_retraction(m, A=a, strength=s) for s in strengths})
        if name != "flat_torus":
            shift = 0.5 * float(m.radius) * torch.ones(m.base_dim, dtype=torch.float64) / m.base_dim ** 0.5
            maps["radial, shifted centre"] = radial_retraction(m, shift=shift)
        for label, f in maps.items():
            table[f"{name}: {label}"] = reconstructor_stats(f, m, p)
        excess = [table[f"{name}: skew s={s:g}"]["mean_excess"] for s in strengths]
        table[f"{name}: skew excess slope in s"] = {"slope": loglog_slope(strengths, excess)}
    numbers["perfect_reconstructors"] = table
    rows = [v for k, v in table.items() if "slope" not in k]
    others = [v for k, v in table.items() if "slope" not in k and "projection" not in k]
    projections = [v for k, v in table.items() if "projection" in k]
    checks += [
        Check("(a) every constructed map fixes M: max ‖f(p) − p‖", max(r["fixes_M"] for r in rows), "<=", 1e-10),
        Check("(a) J_f P_T = P_T on M: max entry error", max(r["max_JPT_minus_PT"] for r in rows), "<=", 1e-9),
        Check("(a) identity ‖J‖² = d + ‖J P_N‖²: max error", max(r["max_identity_error"] for r in rows), "<=", 1e-9),
        Check("(a) inequality: min over maps and points of ‖J‖² − d", min(r["min_excess"] for r in rows), ">=",
              -1e-9),
        Check("(a) equality for π: max ‖J_π − P_T‖_F", max(r["max_gap_to_PT"] for r in projections), "<=", 1e-9),
        Check("(a) strict excess for the other retractions: min mean (‖J‖² − d)",
              min(r["mean_excess"] for r in others), ">=", 1e-3, note="skews s in {0.25, 0.5, 1}, radial shift R/2"),
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
    best = lams[gaps.index(min(gaps))]
    d = m.intrinsic_dim
    numbers["sweep"] = {"manifold": f"{name} in R^{n}", "steps": steps, "lam": list(lams),
                        **{key: [stats[lam][key] for lam in lams] for key in
                           ("gap", "gap_tangential", "gap_normal", "frobenius_sq", "reconstruction")},
                        "best_lam": best}
    checks += [
        Check(f"(b) min over λ of mean ‖J_f − P_T‖_F on M ({name}, d = {d})", min(gaps), "<=", GAP_TARGET,
              note=f"at λ = {best:g}; lambdas {list(lams)}, {steps} steps"),
        Check("(b) the gap falls with λ: gap(λ_max) / min gap", gaps[0] / min(gaps), ">=", 2.0),
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
        Check("(c) reconstruction unchanged: max |f_α(x) − f(x)|", max(loophole["max_output_change"]), "<=", 1e-9),
        Check("(c) full-Jacobian penalty unchanged (relative spread)", (max(full) - min(full)) / full[0], "<=", 1e-9),
    ]

    # (d) CAE (best λ) vs DAE off the manifold
    torch.manual_seed(seed + 9)
    dae = _mlp(n)
    fit(Denoising(dae, sigma=0.1), x_train.float(), steps=steps, batch_size=256, lr=1e-2, seed=seed + 9)
    ts = tuple(t * m.reach for t in (0.05, 0.1, 0.2, 0.4, 0.8))
    profile = {f"CAE (lambda={best:g})": off_manifold_profile(_float_map(models[best]), m, ts, num=300,
                                                              seed=seed + 10),
               "DAE (sigma=0.1)": off_manifold_profile(_float_map(dae), m, ts, num=300, seed=seed + 10)}
    numbers["off_manifold"] = {"t": list(ts), **profile,
                               "on_manifold_jacobian_gap_dae": jacobian_stats(dae, m, p_eval)["gap"]}

    # (e) Hutchinson vs exact on the best CAE, noisy points around M
    probes = (1, 4, 16, 64)
    x_probe = p_eval[:256] + 0.1 * torch.randn(256, n, generator=gen, dtype=torch.float64)
    exact, errors = hutchinson_errors(models[best], x_probe.float(), probes, repeats=20 if fast else 30,
                                      seed=seed + 11)
    numbers["hutchinson"] = {"probes": list(probes), "rms_relative_error": errors, "exact_mean": exact,
                             "batch": 256, "distribution": "rademacher", "mode": "vjp"}
    checks += [
        Check(f"(e) Hutchinson vs exact, batch mean of 256 points, {HUTCHINSON_PROBES} probes: RMS relative error",
              errors[probes.index(HUTCHINSON_PROBES)], "<=", 0.02, note="Rademacher probes, vector-Jacobian mode"),
        Check("(e) log-log slope of that error against the number of probes", loglog_slope(probes, errors), "in",
              (-0.7, -0.3), note="Monte Carlo rate -1/2"),
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
