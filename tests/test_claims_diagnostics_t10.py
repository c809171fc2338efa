"""T10 (docs/theory.md, "T10"): the fast run passes with numbers that agree with closed forms computed here, and a
NaN in a diagnostic fails its own check and the claim."""
from __future__ import annotations

import math

import pytest
import torch

from manifold_ae.claims import runner, t10_diagnostics


@pytest.fixture(scope="module")
def fast_result(tmp_path_factory):
    torch.set_num_threads(1)
    return t10_diagnostics.run(fast=True, out_dir=tmp_path_factory.mktemp("t10"), seed=0)


def test_t10_is_registered_after_t9():
    assert runner.CLAIMS["T10"][0] == "manifold_ae.claims.t10_diagnostics"
    assert list(runner.CLAIMS)[-2:] == ["T9", "T10"]


def test_frobenius_bound_is_d_plus_rho_squared_times_the_normal_dimension():
    assert t10_diagnostics.frobenius_bound(0.35, n=256) == pytest.approx(2 + 0.1225 * 254, rel=1e-12)
    assert t10_diagnostics.frobenius_bound(1.0, n=256) == pytest.approx(256)     # ρ = 1: the identity's n
    assert t10_diagnostics.frobenius_bound(0.0, n=256) == 2                       # ρ = 0: the projection's d


def test_t10_fast_run_passes_against_closed_forms(fast_result):
    assert fast_result.passed, [(c.name, c.measured) for c in fast_result.checks if not c.passed]
    assert len(fast_result.checks) == 6  # items 1-4 on the translation manifold, 7-8 on the built-in data
    numbers = fast_result.numbers
    # ‖Dπ‖_F² = d = 2 within four standard errors of the probe mean
    proj = numbers["projection_frobenius_sq"]
    assert abs(proj["mean"] - 2) < 4 * proj["standard_error"]
    # the exact projection is idempotent to roundoff; a trained map is not
    assert numbers["idempotence"]["projection"]["max"] < 1e-12
    # π conserves nothing of the pasted patch only where it must: at opacity 1 it changes the clean pixels too
    # (T7: it spreads its residual), so its 'changed_outside' is positive, and 'removed_inside' <= 1 by definition
    rows = numbers["conservation"]["projection"]
    assert [r["opacity"] for r in rows][0] == 0.05 and rows[-1]["opacity"] == 1.0
    assert all(r["removed_inside"] <= 1 + 1e-12 for r in rows)
    # two gate levels of the depth-2 U-Net, coarsest first, AUROCs in [0, 1]
    gates = numbers["gates"]["selfsupervised"]
    assert [g["level_size"] for g in gates] == [8, 16]
    assert all(0 <= g["auroc_closed"] <= 1 for g in gates)


def test_t10_fails_on_a_nan_in_the_jacobian_probe(tmp_path, monkeypatch):
    probe = t10_diagnostics.hutchinson_frobenius

    def nan_probe(f, x, **kwargs):
        est, se = probe(f, x, **kwargs)
        return torch.full_like(est, math.nan), se

    monkeypatch.setattr(t10_diagnostics, "hutchinson_frobenius", nan_probe)
    result = t10_diagnostics.run(fast=True, out_dir=tmp_path, seed=0)
    failed = [c.name for c in result.checks if not c.passed]
    assert not result.passed
    assert len(failed) == 2, failed          # the projection's and the DAE's Frobenius checks; the others pass
    assert all("Hutchinson" in name for name in failed)


def test_an_identity_model_fails_the_built_in_conservation_check(monkeypatch):
    """A model that copies its input lets all of a defect through (passed_inside = 1 exactly): item 7 must fail on
    it, as a planted bug. The identity is idempotent (a projection onto everything), so item 8 gives 0 exactly."""
    monkeypatch.setattr(t10_diagnostics, "train_builtin", lambda *a, **k: torch.nn.Identity())
    checks, numbers = t10_diagnostics._builtin_checks(fast=True, seed=0, generator=torch.Generator().manual_seed(0))
    assert [c.passed for c in checks] == [False, True]
    assert numbers["selfsupervised"]["conservation"][-1]["passed_inside"] == pytest.approx(1.0, abs=1e-12)
    assert numbers["selfsupervised"]["idempotence"]["mean"] == 0
    assert numbers["selfsupervised"]["gates"] == []  # no gates to read on a model without skips


def test_built_in_images_are_the_quick_presets_category_and_size():
    from manifold_ae.images.config import load_config
    from manifold_ae.images.data.synthetic import synthetic_sample

    quick = load_config("quick").data
    assert (t10_diagnostics.BUILTIN["category"], t10_diagnostics.BUILTIN["image_size"]) == (quick.category,
                                                                                            quick.image_size)
    x = t10_diagnostics.builtin_images("good", 2)
    assert x.shape == (2, 3, 64, 64)
    assert torch.equal(x[1], synthetic_sample("weave", group="good", index=1, image_size=64)[0])
