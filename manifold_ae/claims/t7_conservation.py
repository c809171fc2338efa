"""T7: conservation: the orthogonal projection changes an input least, the masked one only on S (docs/theory.md).

(a) For every map ρ into M, ``‖x − ρ(x)‖ ≥ dist(x, M) = ‖x − π(x)‖`` with equality iff ρ(x) = π(x) (π is the
nearest point by definition). We check it on constructed retractions (idempotent maps onto M that fix M) that are
not π: radial retraction from a shifted centre (circle, sphere, flat torus factor-wise), an angular slide along a
circle, an oblique projection onto a subspace, and a map into M that is no retraction (nearest of a few nodes).
The excess ``(‖x − ρ(x)‖² − dist²) / ‖ρ(x) − π(x)‖²`` is positive whenever ρ(x) ≠ π(x).

(b) For partial corruption the masked projection π_S(x̂) (T6) fixes the clean coordinates exactly, so its
per-coordinate residual vanishes off S and localises the corrupted set. The self-supervised model of T6 should
behave the same way (coordinate AUROC ≥ 0.95), while the full projection π spreads the residual over all
coordinates.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from manifold_ae.claims.base import Check, ClaimResult, worst
from manifold_ae.corruptions.vector import PartialCorruption
from manifold_ae.manifolds.base import Manifold
from manifold_ae.manifolds.sphere import Sphere
from manifold_ae.manifolds.subspace import Subspace
from manifold_ae.manifolds.torus import FlatTorus
from manifold_ae.toys.anomaly import coordinate_auroc
from manifold_ae.toys.measures import rms
from manifold_ae.toys.retractions import (Map, angular_slide, nearest_node_map, oblique_projection,
                                          radial_retraction, retraction_excess, torus_radial_retraction)
from manifold_ae.toys.selfsupervised import circle_masked_projection, circle_task, predict

__all__ = ["TITLE", "run"]

TITLE = "the orthogonal projection changes an input least; the masked projection changes only S (conservation)"


def _test_points(manifold: Manifold, num: int, gen: torch.Generator) -> torch.Tensor:
    """Half on normal rays inside the reach, half Gaussian points anywhere (scale 1.5): (num, n)."""
    near = manifold.sample_normal_ray(num // 2, fraction=0.9, generator=gen).x
    far = 1.5 * torch.randn(num - num // 2, manifold.ambient_dim, generator=gen, dtype=torch.float64)
    return torch.cat([near, manifold.centre + far])


def _retraction_suite(seed: int) -> dict[str, tuple[Manifold, Map, bool]]:
    """name -> (manifold, map, is a retraction) for the constructed competitors of π."""
    gen = torch.Generator().manual_seed(seed + 7)
    circle = Sphere(1, radius=1.0, ambient_dim=10, seed=seed)
    sphere = Sphere(2, radius=1.0, ambient_dim=6, seed=seed)
    torus = FlatTorus(a=1.0, b=0.5, ambient_dim=6, seed=seed)
    plane = Subspace(2, ambient_dim=6, seed=seed)
    nodes, _ = sphere.sample(32, generator=gen)
    oblique = plane.Q + 0.5 * torch.randn(6, 2, generator=gen, dtype=torch.float64)
    return {
        "circle: radial from shifted centre": (circle, radial_retraction(circle, shift=torch.tensor(
            [0.5, 0.2], dtype=torch.float64)), True),
        "circle: angular slide": (circle, angular_slide(circle, rate=0.5), True),
        "sphere S²: radial from shifted centre": (sphere, radial_retraction(sphere, shift=torch.tensor(
            [0.3, -0.4, 0.2], dtype=torch.float64)), True),
        "flat torus: factor-wise radial": (torus, torus_radial_retraction(torus, shift=torch.tensor(
            [0.4, 0.1, -0.2, 0.15], dtype=torch.float64)), True),
        "plane: oblique projection": (plane, oblique_projection(plane, oblique), True),
        "sphere S²: nearest of 32 nodes": (sphere, nearest_node_map(nodes), False),
    }


def run(*, fast: bool, out_dir: Path, seed: int = 0) -> ClaimResult:
    """(a) the retraction inequality on random points; (b) localisation by the masked projection and the model."""
    from manifold_ae.viz.anomaly_figures import coordinate_residual_figure, retraction_figure
    from manifold_ae.viz.figures import save_figure

    start = time.perf_counter()
    out_dir = Path(out_dir)
    num = 1000 if fast else 4000
    gen = torch.Generator().manual_seed(seed + 2000)

    # (a) π against other maps onto M
    per_map: dict[str, dict[str, float]] = {}
    ratios: dict[str, torch.Tensor] = {}
    on_m_errors: list[float] = []
    for name, (manifold, rho, is_retraction) in _retraction_suite(seed).items():
        x = _test_points(manifold, num, gen)                                     # (num, n)
        rho_x, pi_x = rho(x), manifold.project(x)
        per_map[name] = retraction_excess(x, rho_x, pi_x)
        on_m_errors.append(float(manifold.distance(rho_x).max()))               # ρ maps into M
        if is_retraction:
            on_m_errors.append(float((rho(rho_x) - rho_x).abs().max()))          # ρ∘ρ = ρ: fixes M
        ratios[name] = torch.linalg.vector_norm(x - rho_x, dim=-1) / manifold.distance(x)
    on_m_error = worst(on_m_errors, op="<=")
    violation = worst([v["max_violation"] for v in per_map.values()], op="<=")
    strict = worst([v["min_normalised_excess"] for v in per_map.values()], op=">=")

    # (b) localisation of the corrupted coordinates (noiseless test inputs, the T6 circle model)
    task = circle_task(fast=fast, seed=seed)
    corruption = PartialCorruption(task.corruption.masks, fill_std=task.corruption.fill_std, noise_std=0.0)
    x, _ = task.manifold.sample(num // 2, generator=gen)
    x_hat, mask = corruption(x, gen)                                              # (B, n), (B, n)
    masked = circle_masked_projection(task, x_hat, mask, steps=30)
    full = task.manifold.project(x_hat)
    model = predict(task.model, x_hat)
    maps = {"masked projection π_S": masked, "trained self-supervised f": model, "full projection π": full}
    aurocs = {name: coordinate_auroc(x_hat, y, mask) for name, y in maps.items()}
    clean = mask < 0.5
    off_s = {name: float((x_hat - y)[clean].abs().max()) for name, y in maps.items()}
    norms = {name: rms(x_hat - y) for name, y in maps.items()}

    checks = [
        Check("constructed maps land on M and retractions fix M: max dist(ρ(x), M), ‖ρ(ρ(x)) − ρ(x)‖",
              on_m_error, "<=", 1e-9),
        Check("‖x − ρ(x)‖ ≥ dist(x, M) for every map: largest violation dist − ‖x − ρ(x)‖", violation, "<=", 1e-12,
              note=f"{len(per_map)} maps x {num} points, inside and beyond the reach"),
        Check("strict where ρ(x) ≠ π(x): min (‖x − ρ(x)‖² − dist²)/‖ρ(x) − π(x)‖²", strict, ">=", 1e-9),
        Check("masked projection changes only S: max |x̂ − π_S(x̂)| off S", off_s["masked projection π_S"], "<=", 1e-8),
        Check("coordinate AUROC of the oracle (masked projection)", aurocs["masked projection π_S"], ">=", 0.99),
        Check("coordinate AUROC of the trained self-supervised model", aurocs["trained self-supervised f"], ">=",
              0.95),
    ]
    circle2d = Sphere(1, radius=1.0)
    few = 1.3 * torch.randn(8, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    picture = {"π": circle2d.project(few),
               "radial from (0.5, 0.2)": radial_retraction(circle2d, shift=torch.tensor([0.5, 0.2],
                                                                                       dtype=torch.float64))(few),
               "angular slide": angular_slide(circle2d, rate=0.5)(few)}
    ring = circle2d.from_params(torch.linspace(0, 2 * math.pi, 200, dtype=torch.float64)[:, None])
    figures = [
        save_figure(retraction_figure(ring, few, picture, ratios, title="T7: every map into M changes x more than π"),
                    out_dir, "t7_retractions"),
        save_figure(coordinate_residual_figure({k: (x_hat - v) for k, v in maps.items()}, mask,
                                               title="T7: per-coordinate residual |x̂ − f(x̂)|, cyan = corrupted S"),
                    out_dir, "t7_coordinate_residuals"),
    ]
    numbers = {"retractions": per_map, "coordinate_auroc": aurocs, "max_residual_off_mask": off_s,
               "rms_residual": norms, "num_points": num}
    return ClaimResult("T7", TITLE, checks, numbers, figures, time.perf_counter() - start)
