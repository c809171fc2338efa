"""T1: the exact projection oracle is right (docs/theory.md T1).

For every toy manifold, embedded in R^n by a random isometry, measure: the normal-ray error
‖π(p + tν) − p‖/τ for t up to 0.9 τ; idempotence ‖π(π(x)) − π(x)‖/τ; the residual's tangential part
‖P_T(π(x))(x − π(x))‖/τ; ‖Dπ(p) − P_T(p)‖_F on M (Jacobian by ``theory.jacobian``); where a manifold knows
its off-manifold Jacobian in closed form (``projection_jacobian``: circle, sphere) the gap to it; Federer's
reach on the manifold's ``reach_sample`` against the analytic τ; and for numeric projections
(``numeric_projection``) the gap to the manifold's ``brute_force_distance``. Every manifold is reached
through these hooks, none by name. Thresholds are fixed below, before any run.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from manifold_ae.claims.base import Check, ClaimResult, worst_of
from manifold_ae.manifolds import MANIFOLDS, Manifold, estimate_reach, make_manifold
from manifold_ae.theory import idempotence_error, jacobian, jacobian_gap, projection_gap, residual_normal_angle

__all__ = ["run"]

THRESHOLDS = {"normal_ray": 1e-9, "idempotence": 1e-10, "residual_normal": 1e-9, "jacobian_on": 1e-8,
              "jacobian_off": 1e-9, "reach_rel": 1e-3, "numeric_vs_brute": 1e-12}


def _measure(M: Manifold, *, fast: bool, gen: torch.Generator) -> dict[str, float]:
    tau = M.reach if math.isfinite(M.reach) else 1.0
    num = 500 if fast else 5000
    out: dict[str, float] = {"reach": M.reach}
    ray = M.sample_normal_ray(num, fraction=0.9, generator=gen)
    out["normal_ray"] = float(projection_gap(M.project, ray.x, ray.p).absolute.max()) / tau
    x = M.from_params(M.interior_params(num, generator=gen))
    x = x + tau * torch.randn(num, M.ambient_dim, generator=gen, dtype=M.dtype)
    out["idempotence"] = float(idempotence_error(M.project, x).max()) / tau
    # residual normality where the foot point is interior: ‖P_T r‖ = ‖r‖ sin∠(r, N)
    ray_res = M.project_with_info(ray.x)
    angle = residual_normal_angle(ray.x, ray_res.point, M.tangent_basis(ray_res.point))
    out["residual_normal"] = float((ray_res.distance * torch.sin(angle)).max()) / tau
    q = M.from_params(M.interior_params(3 if fast else 10, generator=gen))             # (k, n) on M
    out["jacobian_on"] = float(jacobian_gap(jacobian(M.project, q), M.tangent_projector(q)).max())
    xo = M.sample_normal_ray(3 if fast else 10, generator=gen).x                        # (k, n) off M
    try:
        expected = M.projection_jacobian(xo)                                            # closed-form Dπ(x)
    except NotImplementedError:
        pass
    else:
        out["jacobian_off"] = float(jacobian_gap(jacobian(M.project, xo), expected).max())
    if math.isfinite(M.reach):
        pts = M.reach_sample(900 if fast else 3000, generator=gen)
        est = estimate_reach(pts, M.tangent_basis(pts))
        out["reach_estimate"] = est
        out["reach_rel"] = abs(est - M.reach) / M.reach
    if M.numeric_projection:
        y = M.from_params(M.interior_params(200, generator=gen))
        y = y + 2 * tau * torch.randn(200, M.ambient_dim, generator=gen, dtype=M.dtype)
        d_num = M.distance(y)
        d_brute = M.brute_force_distance(y, nodes=200_000 if fast else 1_000_000)
        out["numeric_vs_brute"] = float((d_num - d_brute).max())       # <= 0: never worse than brute force
        out["brute_minus_numeric"] = float((d_brute - d_num).max())    # grid error of the brute force
    return out


def _figure(out_dir: Path) -> str:
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

    from manifold_ae.viz.figures import save_figure

    fig = Figure(figsize=(9, 4.2))
    axes = fig.subplots(1, 2)
    gen = torch.Generator().manual_seed(0)
    for ax, name in zip(axes, ("swiss_roll", "s_curve")):
        M = make_manifold(name)
        prof = M.reach_sample(800)[:, [0, 2]]             # the profile (x, z) at height 0, equally spaced in t
        ax.plot(prof[:, 0], prof[:, 1], "k-", lw=1.5, label="M (profile)")
        lo, hi = prof.min(0).values - 1.5, prof.max(0).values + 1.5
        x = lo + (hi - lo) * torch.rand(60, 2, generator=gen, dtype=M.dtype)
        x3 = torch.stack([x[:, 0], torch.zeros_like(x[:, 0]), x[:, 1]], -1)   # in the profile's plane
        res = M.project_with_info(x3)
        for xi, pi, ok in zip(x3, res.point, res.within_reach):
            ax.plot([xi[0], pi[0]], [xi[2], pi[2]], "-", color="tab:blue" if ok else "tab:red", lw=0.7)
        ax.set_title(f"{name}: π(x), blue within reach τ = {M.reach:.3f}")
        ax.set_aspect("equal")
    fig.tight_layout()
    return save_figure(fig, out_dir, "t1_projection")


def run(*, fast: bool, out_dir: Path, seed: int = 0) -> ClaimResult:
    """Measure T1 for every manifold in ``MANIFOLDS`` (ambient dimension 10) and check the fixed thresholds."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    table: dict[str, dict[str, float]] = {}
    for name in MANIFOLDS:
        M = make_manifold(name, ambient_dim=10, seed=seed)
        table[name] = _measure(M, fast=fast, gen=gen)
    checks: list[Check] = []
    for key, limit in THRESHOLDS.items():
        rows = {n: v[key] for n, v in table.items() if key in v}
        name, value = worst_of(rows, op="<=")
        checks.append(Check(f"{key} (max over {len(rows)} manifolds)", value, "<=", limit, note=f"worst: {name}"))
    figures = []
    try:
        figures.append(_figure(out_dir))
    except ImportError:   # pragma: no cover - matplotlib is a dependency, but the claim does not need it
        pass
    return ClaimResult("T1", "the nearest-point projections onto the toy manifolds are exact (normal rays, "
                       "idempotence, normality, Dπ = P_T, reach)", checks, numbers={"per_manifold": table},
                       figures=figures, seconds=time.perf_counter() - start)
