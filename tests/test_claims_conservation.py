"""T7: conservation: π changes an input least among maps into M; π_S changes only S (docs/theory.md, T7)."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from manifold_ae.claims import t7_conservation as t7
from manifold_ae.toys import retractions
from manifold_ae.toys.anomaly import coordinate_auroc
from manifold_ae.manifolds.sphere import Sphere
from manifold_ae.manifolds.subspace import Subspace
from manifold_ae.manifolds.torus import FlatTorus

floats = st.floats(-3.0, 3.0, allow_nan=False)


@settings(max_examples=40, deadline=None)
@given(y=st.lists(floats, min_size=3, max_size=3), a=st.lists(st.floats(-0.5, 0.5), min_size=3, max_size=3))
def test_radial_retraction_excess_is_the_sphere_closed_form(y, a):
    """On the unit sphere ‖x − q‖² − ‖x − π(x)‖² = ‖x‖ ‖q − π(x)‖² for every q on it (law of cosines)."""
    x = torch.tensor([y], dtype=torch.float64)
    r = float(torch.linalg.vector_norm(x))
    if r < 1e-3:
        return
    sphere = Sphere(2)
    rho_x = retractions.radial_retraction(sphere, shift=torch.tensor(a, dtype=torch.float64))(x)
    pi_x = x / r                                                           # closed form, independent of project()
    assert float(torch.linalg.vector_norm(rho_x)) == pytest.approx(1.0, abs=1e-12)
    lhs = float(((x - rho_x) ** 2).sum() - ((x - pi_x) ** 2).sum())
    assert lhs == pytest.approx(r * float(((rho_x - pi_x) ** 2).sum()), abs=1e-10)
    assert lhs >= -1e-12                                                   # T7: never better than π


def test_radial_retraction_is_a_retraction_and_is_pi_without_shift():
    circle = Sphere(1, ambient_dim=7, seed=2)
    gen = torch.Generator().manual_seed(0)
    x = 2 * torch.randn(200, 7, generator=gen, dtype=torch.float64)
    rho = retractions.radial_retraction(circle, shift=torch.tensor([0.3, -0.6], dtype=torch.float64))
    rho_x = rho(x)
    assert float(circle.distance(rho_x).max()) < 1e-12                    # lands on M
    assert torch.allclose(rho(rho_x), rho_x, atol=1e-12)                  # fixes M
    centred = retractions.radial_retraction(circle, shift=torch.zeros(2, dtype=torch.float64))
    y = x @ circle.Q                                                      # base part, closed-form π = Q y/‖y‖
    assert torch.allclose(centred(x), (y / y.norm(dim=-1, keepdim=True)) @ circle.Q.T, atol=1e-12)


def test_radial_retraction_rejects_a_shift_outside_the_ball():
    with pytest.raises(ValueError, match=r"shift must have shape \(2,\) and norm < radius 1.0"):
        retractions.radial_retraction(Sphere(1), shift=torch.tensor([1.0, 0.5], dtype=torch.float64))


def test_oblique_projection_is_idempotent_and_pays_exactly_pythagoras():
    plane = Subspace(2, ambient_dim=5, seed=1)
    gen = torch.Generator().manual_seed(1)
    V = plane.Q + 0.7 * torch.randn(5, 2, generator=gen, dtype=torch.float64)
    rho = retractions.oblique_projection(plane, V)
    x = torch.randn(300, 5, generator=gen, dtype=torch.float64)
    rho_x = rho(x)
    pi_x = x @ plane.Q @ plane.Q.T
    assert torch.allclose(rho(rho_x), rho_x, atol=1e-12)
    lhs = ((x - rho_x) ** 2).sum(-1) - ((x - pi_x) ** 2).sum(-1)
    assert torch.allclose(lhs, ((rho_x - pi_x) ** 2).sum(-1), atol=1e-10)   # x − π ⟂ plane ∋ ρ − π


def test_torus_radial_retraction_lands_on_the_torus_and_fixes_it():
    torus = FlatTorus(a=1.0, b=0.5, ambient_dim=6, seed=3)
    x = torch.randn(200, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    rho = retractions.torus_radial_retraction(torus, shift=torch.tensor([0.4, 0.1, -0.2, 0.15], dtype=torch.float64))
    y = rho(x) @ torus.Q                                                   # base coordinates
    assert torch.allclose(y[:, :2].norm(dim=-1), torch.ones(200, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(y[:, 2:].norm(dim=-1), torch.full((200,), 0.5, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(rho(rho(x)), rho(x), atol=1e-12)


def test_angular_slide_fixes_the_circle_and_slides_by_rate_times_distance():
    circle = Sphere(1)
    p = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    rho = retractions.angular_slide(circle, rate=0.5)
    assert torch.allclose(rho(p), p, atol=1e-12)
    got = rho(torch.tensor([[2.0, 0.0]], dtype=torch.float64))            # distance 1 -> angle 0.5
    assert torch.allclose(got, torch.tensor([[math.cos(0.5), math.sin(0.5)]], dtype=torch.float64), atol=1e-12)


def test_nearest_node_map_picks_the_closest_node():
    nodes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    x = torch.tensor([[0.9, 0.2], [-0.1, 2.0], [-3.0, 0.1]], dtype=torch.float64)
    assert torch.equal(retractions.nearest_node_map(nodes)(x), nodes)


def test_retraction_excess_on_hand_made_points():
    x = torch.tensor([[0.0, 2.0], [0.0, 3.0]], dtype=torch.float64)
    pi_x = torch.tensor([[0.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    rho_x = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    out = retractions.retraction_excess(x, rho_x, pi_x)
    # point 1: ‖x − ρ‖² = 5, dist² = 1, ‖ρ − π‖² = 2 -> excess 2; point 2: ρ = π, excluded
    assert out["min_normalised_excess"] == pytest.approx(2.0)
    assert out["max_violation"] == pytest.approx(0.0)
    assert out["mean_ratio"] == pytest.approx((math.sqrt(5) + 1.0) / 2)
    assert out["fraction_differing"] == pytest.approx(0.5)


def test_coordinate_auroc_perfect_reversed_and_tied():
    mask = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    x_hat = torch.zeros(2, 3)
    assert coordinate_auroc(x_hat, -mask * 2.0, mask) == pytest.approx(1.0)
    assert coordinate_auroc(x_hat, -(1 - mask), mask) == pytest.approx(0.0)
    assert coordinate_auroc(x_hat, torch.zeros(2, 3), mask) == pytest.approx(0.5)


def test_run_fast_passes_with_exact_conservation(tmp_path):
    r = t7.run(fast=True, out_dir=tmp_path, seed=0)
    assert r.claim == "T7" and r.passed, [(c.name, c.measured) for c in r.checks if not c.passed]
    n = r.numbers
    assert n["coordinate_auroc"]["masked projection π_S"] == 1.0
    assert n["max_residual_off_mask"]["masked projection π_S"] < 1e-8
    # the full projection changes x̂ least in norm (T7) yet localises S worse than the masked projection
    assert n["rms_residual"]["full projection π"] < n["rms_residual"]["masked projection π_S"]
    assert n["coordinate_auroc"]["full projection π"] < 0.97
    # oblique projection: excess equals ‖ρ − π‖² exactly (Pythagoras), so the normalised excess is 1
    assert n["retractions"]["plane: oblique projection"]["min_normalised_excess"] == pytest.approx(1.0, abs=1e-6)
    assert all((tmp_path / f).is_file() for f in r.figures)


def test_a_nan_in_one_map_fails_the_run_instead_of_being_skipped_by_max(tmp_path, monkeypatch):
    """max([-1e-9, nan]) is -1e-9 in Python: the aggregation over maps must let the NaN decide."""
    honest = t7.retraction_excess
    calls = []

    def broken(x, rho_x, pi_x):
        out = honest(x, rho_x, pi_x)
        calls.append(x.shape)
        if len(calls) == 2:                                  # the second map, so a plain max() would drop the NaN
            out["max_violation"] = math.nan
        return out
    monkeypatch.setattr(t7, "retraction_excess", broken)
    r = t7.run(fast=True, out_dir=tmp_path, seed=0)
    failed = [c.name for c in r.checks if not c.passed]
    assert len(failed) == 1 and "largest violation" in failed[0], failed
    assert math.isnan(next(c.measured for c in r.checks if c.name == failed[0]))


def test_torus_and_slide_reject_what_they_cannot_retract_onto():
    torus = FlatTorus(a=1.0, b=0.5, ambient_dim=6, seed=3)
    with pytest.raises(ValueError, match=r"shift must have shape \(4,\) with ‖shift\[:2\]‖ < a = 1.0"):
        retractions.torus_radial_retraction(torus, shift=torch.tensor([0.0, 0.0, 0.6, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="angular_slide needs a circle"):
        retractions.angular_slide(Sphere(2), rate=0.5)
