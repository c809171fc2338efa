"""T1: the exact projection oracle is right (docs/theory.md T1).

For every toy manifold, embedded in R^n by a random isometry, measure: the normal-ray error
‖π(p + tν) − p‖/τ for t up to 0.9 τ; idempotence ‖π(π(x)) − π(x)‖/τ; the residual's tangential part
‖P_T(π(x))(x − π(x))‖; ‖Dπ(p) − P_T(p)‖ by autograd on M; for circle and sphere the off-manifold Jacobian
against (R/‖Qᵀ(x − c)‖) Q Qᵀ P_T; Federer's reach on a dense sample against the analytic τ; and for the
numeric projections the gap to a dense brute-force search. Thresholds are fixed below, before any run.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from manifold_ae.claims.base import Check, ClaimResult, worst_of
from manifold_ae.manifolds import MANIFOLDS, Manifold, estimate_reach, make_manifold

__all__ = ["run"]

THRESHOLDS = {"normal_ray": 1e-9, "idempotence": 1e-10, "residual_normal": 1e-9, "jacobian_on": 1e-8,
              "jacobian_off": 1e-9, "reach_rel": 1e-3, "numeric_vs_brute": 1e-12}


def _interior_params(M: Manifold, num: int, gen: torch.Generator) -> torch.Tensor:
    _, params = M.sample(num, generator=gen)
    if M.name == "helix":
        return params.clamp(0.5, M.s_max - 0.5)
    if M.name in ("swiss_roll", "s_curve"):
        t = params[:, 0].clamp(M.curve.t_min + 0.3, M.curve.t_max - 0.3)
        return torch.stack([t, params[:, 1].clamp(0.1, M.height - 0.1)], -1)
    return params


def _reach_sample(M: Manifold, num: int, gen: torch.Generator) -> torch.Tensor:
    """Dense sample for Federer's formula: parameter grids for the curves and tori, random elsewhere."""
    if M.name == "helix":
        return M.from_params(torch.linspace(0, M.s_max, num, dtype=M.dtype)[:, None])
    if M.name in ("swiss_roll", "s_curve"):
        t = torch.linspace(M.curve.t_min, M.curve.t_max, num, dtype=M.dtype)
        return M.from_params(torch.stack([t, torch.zeros_like(t)], -1))
    if M.name in ("flat_torus", "ring_torus"):
        k = int(math.sqrt(num))
        u = torch.arange(k, dtype=M.dtype) * 2 * math.pi / k
        U, V = torch.meshgrid(u, u, indexing="ij")
        return M.from_params(torch.stack([U.reshape(-1), V.reshape(-1)], -1))
    return M.sample(num, generator=gen)[0]


def _measure(M: Manifold, *, fast: bool, gen: torch.Generator) -> dict[str, float]:
    tau = M.reach if math.isfinite(M.reach) else 1.0
    num = 500 if fast else 5000
    out: dict[str, float] = {"reach": M.reach}
    ray = M.sample_normal_ray(num, fraction=0.9, generator=gen)
    out["normal_ray"] = float((M.project(ray.x) - ray.p).norm(dim=-1).max()) / tau
    p = M.from_params(_interior_params(M, num, gen))
    x = p + tau * torch.randn(num, M.ambient_dim, generator=gen, dtype=M.dtype)
    res = M.project_with_info(x)
    out["idempotence"] = float((M.project(res.point) - res.point).norm(dim=-1).max()) / tau
    ray_res = M.project_with_info(ray.x)            # residual normality where the foot point is interior
    T = M.tangent_basis(ray_res.point)
    tangential = (T.transpose(-1, -2) @ (ray.x - ray_res.point)[..., None]).squeeze(-1).norm(dim=-1)
    out["residual_normal"] = float(tangential.max()) / tau
    jac = 0.0
    for q in M.from_params(_interior_params(M, 3 if fast else 10, gen)):
        J = torch.autograd.functional.jacobian(M.project, q)
        jac = max(jac, float(torch.linalg.matrix_norm(J - M.tangent_projector(q), ord=2)))
    out["jacobian_on"] = jac
    if M.name in ("circle", "sphere"):
        err = 0.0
        for xo in M.sample_normal_ray(3 if fast else 10, generator=gen).x:
            J = torch.autograd.functional.jacobian(M.project, xo)
            QQ = M.Q @ M.Q.T
            expected = M.radius / float((M.Q.T @ (xo - M.centre)).norm()) * QQ @ M.tangent_projector(xo) @ QQ
            err = max(err, float(torch.linalg.matrix_norm(J - expected, ord=2)))
        out["jacobian_off"] = err
    if math.isfinite(M.reach):
        pts = _reach_sample(M, 900 if fast else 3000, gen)
        est = estimate_reach(pts, M.tangent_basis(pts))
        out["reach_estimate"] = est
        out["reach_rel"] = abs(est - M.reach) / M.reach
    if M.name in ("helix", "swiss_roll"):
        y = M.from_params(_interior_params(M, 200, gen)) + 2 * tau * torch.randn(200, M.ambient_dim, generator=gen,
                                                                                   dtype=M.dtype)
        d_num = M.distance(y)
        d_brute = _brute_force_distance(M, y, nodes=200_000 if fast else 1_000_000)
        out["numeric_vs_brute"] = float((d_num - d_brute).max())       # <= 0: never worse than brute force
        out["brute_minus_numeric"] = float((d_brute - d_num).max())    # grid error of the brute force
    return out


def _brute_force_distance(M: Manifold, y: torch.Tensor, *, nodes: int) -> torch.Tensor:
    """Distance to a dense parameter grid of the curve (heights are clamped exactly)."""
    yb = M._to_base(y)                                                   # (B, 3)
    if M.name == "helix":
        grid = M._point_base(torch.linspace(0, M.s_max, nodes, dtype=M.dtype)[:, None])   # (G, 3)
        out_of_span = (y - M._from_base(yb)).norm(dim=-1)
        d = torch.stack([(grid - row).norm(dim=-1).min() for row in yb])
        return torch.sqrt(d ** 2 + out_of_span ** 2)
    t = torch.linspace(M.curve.t_min, M.curve.t_max, nodes, dtype=M.dtype)
    prof = M.curve.point(t)                                             # (G, 2)
    h_gap = yb[:, 1] - yb[:, 1].clamp(0, M.height)
    out_of_span = (y - M._from_base(yb)).norm(dim=-1)
    d = torch.stack([(prof - row).norm(dim=-1).min() for row in yb[:, [0, 2]]])
    return torch.sqrt(d ** 2 + h_gap ** 2 + out_of_span ** 2)


def _figure(out_dir: Path) -> str:
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

    from manifold_ae.viz.figures import save_figure

    fig = Figure(figsize=(9, 4.2))
    axes = fig.subplots(1, 2)
    gen = torch.Generator().manual_seed(0)
    for ax, name in zip(axes, ("swiss_roll", "s_curve")):
        M = make_manifold(name)
        t = torch.linspace(M.curve.t_min, M.curve.t_max, 800, dtype=M.dtype)
        prof = M.curve.point(t)
        ax.plot(prof[:, 0], prof[:, 1], "k-", lw=1.5, label="M (profile)")
        lo, hi = prof.min(0).values - 1.5, prof.max(0).values + 1.5
        x = lo + (hi - lo) * torch.rand(60, 2, generator=gen, dtype=M.dtype)
        x3 = torch.stack([x[:, 0], torch.full_like(x[:, 0], M.height / 2), x[:, 1]], -1)
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
