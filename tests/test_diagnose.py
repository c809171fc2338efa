"""``manifold-ae diagnose``: the projection measurements against closed forms, then the command end to end."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from fakes import make_fake_mvtec
from manifold_ae.commands.diagnose import main
from manifold_ae.commands.train import main as train_main
from manifold_ae.images.baselines import fit_pca, pca_state
from manifold_ae.images.diagnose import (DefectBatch, conservation_curve, gate_aurocs, hutchinson_frobenius,
                                         far_residual_ratio, idempotence_ratio, jacobian_excess,
                                         localisation_by_scale, make_defects, rademacher)
from manifold_ae.manifolds.translation import TranslationManifold, band_limited_template
from test_train import TINY


def _images(n: int, size: int = 4, channels: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def _pca(k: int, seed: int = 1):
    return fit_pca(_images(30, seed=seed), n_components=k)


def test_rademacher_probes_are_plus_minus_one_with_mean_zero():
    v = rademacher((20000,), generator=torch.Generator().manual_seed(0))
    assert set(v.unique().tolist()) == {-1.0, 1.0}
    assert abs(float(v.mean())) < 4 / math.sqrt(20000)


def test_hutchinson_on_the_identity_and_a_scaling_is_exact():
    x = _images(3)
    g = torch.Generator().manual_seed(0)
    est, se = hutchinson_frobenius(lambda t: t, x, probes=3, generator=g)
    # ‖v‖² = D for every Rademacher v: no variance at all
    assert torch.equal(est, torch.full((3,), 16.0, dtype=torch.float64)) and torch.equal(se, torch.zeros(3).double())
    est, _ = hutchinson_frobenius(lambda t: 3 * t, x, probes=2, generator=g)
    assert torch.allclose(est, torch.full((3,), 9 * 16.0, dtype=torch.float64))


def test_hutchinson_on_pca_is_its_rank_within_the_closed_form_standard_error():
    k, probes = 3, 400
    pca = _pca(k)
    P = pca.components.double().T @ pca.components.double()  # (16, 16) rank-k projector
    assert abs(float(torch.trace(P)) - k) < 1e-5
    # Rademacher: Var(vᵀ P v) = 2 (‖P‖_F² − Σ P_ii²); independent of the estimator's own spread
    ref_se = math.sqrt(2 * (float((P ** 2).sum()) - float((P.diagonal() ** 2).sum())) / probes)
    est, se = hutchinson_frobenius(pca, _images(4, seed=2), probes=probes, generator=torch.Generator().manual_seed(3))
    assert torch.all((est - k).abs() < 4 * ref_se), (est, ref_se)
    assert torch.allclose(se, torch.full_like(se, ref_se), rtol=0.25)


def test_hutchinson_on_the_translation_projection_at_points_on_m_is_two():
    tm = TranslationManifold(band_limited_template(8, bandwidth=2, seed=0))
    points, _ = tm.sample(4, generator=torch.Generator().manual_seed(1))
    images = tm.as_images(points)[:, None]  # (4, 1, 8, 8)

    def project(t):
        return tm.as_images(tm.project(tm.as_points(t[:, 0])))[:, None]

    est, se = hutchinson_frobenius(project, images, probes=64, generator=torch.Generator().manual_seed(2))
    mean, mean_se = float(est.mean()), float(se.pow(2).sum().sqrt() / 4)
    assert mean_se < 0.2 and abs(mean - 2.0) < 4 * mean_se, (mean, mean_se)


def test_idempotence_of_pca_identity_and_scalings():
    x = _images(5)
    assert float(idempotence_ratio(_pca(4), x).max()) < 1e-4   # a projection: f∘f = f
    assert torch.equal(idempotence_ratio(lambda t: t, x), torch.zeros(5, dtype=torch.float64))   # 0/0 := 0
    # f = c x: ‖c(c − 1) x‖ / ‖(1 − c) x‖ = |c|
    for c in (0.5, 2.0, -1.5):
        assert torch.allclose(idempotence_ratio(lambda t: c * t, x), torch.full((5,), abs(c), dtype=torch.float64))


def _defects(seed: int = 0) -> DefectBatch:
    return make_defects(_images(6, size=32, channels=3, seed=seed), kind="synthetic_blob", seed=seed)


def test_defects_keep_the_mask_and_content_fixed_across_opacities():
    d = _defects()
    assert float(d.mask.sum()) > 0 and torch.equal(d.at(0.0), d.x)
    outside = (d.mask == 0).expand_as(d.x)
    assert torch.equal(d.at(0.7)[outside], d.x[outside])
    inside = (d.mask == 1).expand_as(d.x)
    assert torch.allclose(d.at(0.4)[inside], (0.6 * d.x + 0.4 * d.content)[inside])
    with pytest.raises(ValueError, match="opacity"):
        d.at(1.5)


def test_conservation_of_the_identity_the_clean_map_and_a_half_removal():
    d = _defects()
    for row in conservation_curve(lambda t: t, d):
        assert row["removed_inside"] == pytest.approx(0, abs=1e-6) and row["passed_inside"] == pytest.approx(1)
        assert row["changed_outside"] == 0
    for row in conservation_curve(lambda t: d.x, d):   # returns the clean image: removes everything
        assert row["removed_inside"] == pytest.approx(1) and row["passed_inside"] == 0
        assert row["changed_outside"] == 0
    # x + (x̃ − x) / 2 keeps a quarter of the defect energy
    rows = conservation_curve(lambda t: d.x + 0.5 * (t - d.x), d, opacities=(0.2, 1.0))
    assert [r["opacity"] for r in rows] == [0.2, 1.0]
    assert all(r["removed_inside"] == pytest.approx(0.75, rel=1e-5) for r in rows)
    assert all(r["passed_inside"] == pytest.approx(0.25, rel=1e-5) for r in rows)
    # f = t / 2 does not fix x: half of the defect's amplitude passes, measured from f(x) = x / 2
    assert set(d.mask.unique().tolist()) == {0.0, 1.0}
    for r in conservation_curve(lambda t: 0.5 * t, d):
        assert r["passed_inside"] == pytest.approx(0.25, rel=1e-5)
        assert r["changed_outside"] == pytest.approx(0.25, rel=1e-5)   # ‖x̃/2 − x̃‖² = ‖x/2‖² outside m


def test_localisation_by_scale_of_a_restorer_the_identity_and_a_faint_region_in_noise():
    d = _defects()
    # a map that returns the clean images leaves exactly the defect in the residual: AUROC 1 at scale 1;
    # the identity leaves nothing anywhere: every pixel ties, AUROC 1/2 at every scale
    assert localisation_by_scale(lambda t: d.x, d, scales=(1,))[0]["pixel_auroc"] == 1.0
    assert [r["pixel_auroc"] for r in localisation_by_scale(lambda t: t, d)] == [0.5] * 5
    # a faint region (+δ over a 32 × 32 square of 64 × 64 images) under i.i.d. residual noise N(0, σ²): at scale 1
    # the AUROC is P(|δ + Z₁| > |Z₂|) = E[2 Φ(|δ + Z₁| / σ) − 1] (closed form, by quadrature); 8 × 8 local means
    # shrink the noise to σ / 8 and separate the region but for the blocks its border blurs
    from scipy import integrate, stats

    delta, sigma, n = 0.1, 0.3, 8
    g = torch.Generator().manual_seed(3)
    x = torch.rand(n, 1, 64, 64, generator=g, dtype=torch.float64)
    mask = torch.zeros(n, 1, 64, 64, dtype=torch.float64)
    mask[..., 16:48, 16:48] = 1
    noise = {}

    def f(t):   # the clean image plus a fixed noise field per input: the residual is the defect minus the noise
        key = bool(torch.equal(t, x))
        if key not in noise:
            noise[key] = sigma * torch.randn(t.shape, generator=g, dtype=t.dtype)
        return x + noise[key]

    region = DefectBatch(x, mask, x + delta, "region")
    rows = localisation_by_scale(f, region, scales=(1, 2, 8, 128))
    assert [r["scale"] for r in rows] == [1, 2, 8]   # 128 is larger than the images
    expected, _ = integrate.quad(lambda z: (2 * stats.norm.cdf(abs(delta + z) / sigma) - 1)
                                 * stats.norm.pdf(z, scale=sigma), -8 * sigma, 8 * sigma)
    assert rows[0]["pixel_auroc"] == pytest.approx(expected, abs=0.01)   # s.e. ≈ 0.003 for 8192 positives
    assert rows[0]["pixel_auroc"] < rows[1]["pixel_auroc"] < rows[2]["pixel_auroc"]
    assert rows[2]["pixel_auroc"] > 0.95
    with pytest.raises(ValueError, match="scales"):
        localisation_by_scale(f, region, scales=(65,))
    with pytest.raises(ValueError, match="no pixel"):
        localisation_by_scale(f, DefectBatch(x, 0 * mask, x, "none"))


def test_far_residual_ratio_is_one_for_a_local_map_and_the_closed_form_for_a_global_shift():
    x = _images(4, size=32)
    mask = torch.zeros(4, 1, 32, 32)
    mask[..., 4:12, 4:12] = 1
    d = DefectBatch(x, mask, torch.ones_like(x), "square")
    # f = t/2 keeps every far pixel as on the clean image: ratio 1
    assert far_residual_ratio(lambda t: 0.5 * t, d) == pytest.approx(1.0)
    assert math.isnan(far_residual_ratio(lambda t: t, d))   # the identity has no residual to compare
    # f = t/2 + k·mean(t − x) shifts the whole image by kμ (μ = the defect's mean change per image): far from it the
    # residual is x/2 − kμ instead of x/2, so the ratio is Σ(x/2 − kμ)² / Σ(x/2)² over the far pixels
    k = -3.0

    def shift(t):
        return 0.5 * t + k * (t - x).mean(dim=(1, 2, 3), keepdim=True)

    far = torch.ones(4, 1, 32, 32, dtype=torch.bool)
    far[..., : 12 + 4, : 12 + 4] = False   # within 4 px of the square (rows and columns 0 .. 15)
    mu = (d.at(1.0) - x).mean(dim=(1, 2, 3), keepdim=True)
    expected = float(((0.5 * x - k * mu) ** 2)[far.expand_as(x)].sum() / ((0.5 * x) ** 2)[far.expand_as(x)].sum())
    assert expected > 1.05 and far_residual_ratio(shift, d) == pytest.approx(expected, rel=1e-5)
    # the margin: with none, the pixels next to the square count as far too
    assert far_residual_ratio(shift, d, margin=0) != pytest.approx(expected, rel=1e-5)


class _LeftHalfTwice(nn.Module):
    """x ↦ 2x on the left half of the columns, 0 on the right: its left-right flip average is the identity."""

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        w = torch.zeros(t.shape[-1], dtype=t.dtype)
        w[: t.shape[-1] // 2] = 2
        return t * w


def test_diagnose_measures_the_flip_averaged_map_that_evaluate_scores():
    from manifold_ae.images.config import ScoreConfig
    from manifold_ae.images.diagnose import diagnose_model
    from manifold_ae.images.pipeline import Pipeline

    x = _images(3, size=16)
    results = {flips: diagnose_model(Pipeline(_LeftHalfTwice(), image_size=16, channels=1,
                                              score=ScoreConfig(flips=flips, sigma=0.0)),
                                     x, kinds=("synthetic_blob",), probes=1) for flips in ("none", "h")}
    averaged = results["h"]   # (2x·[left] + flip(2 flip(x)·[left])) / 2 = x: the identity
    assert averaged["flips"] == "h" and averaged["jacobian"]["excess_clean"]["max"] == pytest.approx(0, abs=1e-6)
    blob = averaged["defects"]["synthetic_blob"]
    assert all(r["passed_inside"] == pytest.approx(1) for r in blob["conservation"])
    assert [r["pixel_auroc"] for r in blob["localisation"]] == [0.5] * 5   # the residual is 0 everywhere
    # one pass of the model: the right half is zeroed, so half of a random probe is lost
    assert results["none"]["jacobian"]["excess_clean"]["mean"] == pytest.approx(1.0, abs=0.15)


class _GateStub(nn.Module):
    """A model whose only gate map is the given per-pixel field, at full resolution."""

    def __init__(self, gate: torch.Tensor) -> None:
        super().__init__()
        self.gate = gate

    def gate_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.gate.expand(x.shape[0], 2, *x.shape[-2:])]


def test_gate_auroc_is_one_for_gates_shut_on_the_mask_and_a_half_for_constant_gates():
    d = _defects()
    [row] = gate_aurocs(_GateStub(1 - d.mask), d)
    assert row["auroc_closed"] == 1.0 and row["mean_gate_inside"] == 0 and row["mean_gate_outside"] == 1
    assert gate_aurocs(_GateStub(torch.full_like(d.mask, 0.3)), d)[0]["auroc_closed"] == 0.5
    assert gate_aurocs(nn.Identity(), d) == []


def test_jacobian_excess_of_identity_pca_and_a_constant_map():
    x = _images(4)
    g = torch.Generator().manual_seed(5)
    assert torch.equal(jacobian_excess(lambda t: t, x, probes=2, generator=g), torch.zeros(4, dtype=torch.float64))
    # E‖(I − P) v‖² / E‖v‖² = (D − k) / D
    assert torch.allclose(jacobian_excess(_pca(4), x, probes=300, generator=g),
                          torch.full((4,), 1 - 4 / 16, dtype=torch.float64), atol=0.03)
    region = torch.zeros(4, 1, 4, 4)
    region[..., :2] = 1
    const = jacobian_excess(lambda t: 0 * t + 0.5, x, region=region, probes=2, generator=g)
    assert torch.allclose(const, torch.ones(4, dtype=torch.float64))
    # the column mirror moves the probed half onto the other half: inside the region nothing of v_r is kept
    mirror = jacobian_excess(lambda t: t.flip(-1), x, region=region, probes=3, generator=g)
    assert torch.allclose(mirror, torch.ones(4, dtype=torch.float64))
    assert torch.isnan(jacobian_excess(lambda t: t, x, region=torch.zeros(4, 1, 4, 4), probes=1, generator=g)).all()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    root = make_fake_mvtec(tmp_path_factory.mktemp("fake"), category="widget", n_train=12, size=32)
    out = tmp_path_factory.mktemp("cmp")
    assert train_main([*TINY, f"--data.root={root}", f"--out={out / 'ss'}", "--no-progress", "--train.steps=3",
                       "--data.holdout_fraction=0.34", "--score.threshold_quantile=0.75"]) == 0
    train = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    (out / "pca").mkdir()
    torch.save(pca_state(fit_pca(train, n_components=5)), out / "pca" / "pca.pt")
    return out


def _strict(text: str):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


def test_diagnose_command_writes_every_file_and_measures_the_pca_baseline(tiny_run, capsys):
    run, out = tiny_run / "ss", tiny_run / "diag"
    assert main([str(run), f"--out={out}", f"--compare={tiny_run}", "--no-progress", "--device=cpu",
                 "--probes=6", "--kinds=synthetic_blob,synthetic_line"]) == 0
    for name in ("diagnose.json", "diagnose.md", "figures/conservation.png", "figures/gates.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert not list(out.rglob(".*.tmp"))
    record = _strict((out / "diagnose.json").read_text())
    assert set(record["models"]) == {"model", "pca"} and record["values_per_image"] == 3 * 32 * 32
    assert record["num_images"] == 4 and record["kinds"] == ["synthetic_blob", "synthetic_line"]
    pca = record["models"]["pca"]
    assert pca["idempotence"]["clean"]["max"] < 1e-3
    jac = pca["jacobian"]
    assert abs(jac["frobenius_sq"]["mean"] - 5) < 4 * jac["frobenius_sq_mean_standard_error"] + 1e-6
    model = record["models"]["model"]
    assert len(model["defects"]["synthetic_blob"]["conservation"]) == 7
    assert record["flips"] == "none" and model["flips"] == "none"
    loc = model["defects"]["synthetic_blob"]["localisation"]
    assert [r["scale"] for r in loc] == [1, 2, 4, 8, 16] and all(0 <= r["pixel_auroc"] <= 1 for r in loc)
    assert (out / "figures" / "localisation.png").stat().st_size > 0
    assert model["defects"]["synthetic_blob"]["far_residual_ratio"] > 0 and "far residual ×" in \
        (out / "diagnose.md").read_text()
    gates = model["defects"]["synthetic_blob"]["gates"]
    assert [g["level_size"] for g in gates] == [16, 32]   # depth 2: two gated levels, coarsest first
    assert all(0 <= g["auroc_closed"] <= 1 for g in gates)
    md = (out / "diagnose.md").read_text()
    assert "| pca |" in md and "synthetic_line" in md
    assert "results in" in capsys.readouterr().out


def test_diagnose_default_output_folder_is_inside_the_run(tiny_run):
    run = tiny_run / "ss"
    assert main([str(run), "--no-progress", "--device=cpu", "--probes=1", "--max-images=2",
                 "--kinds=synthetic_faint_line"]) == 0
    record = _strict((run / "diagnose" / "diagnose.json").read_text())
    assert record["num_images"] == 2 and set(record["models"]) == {"model"}


def test_missing_run_checkpoint_and_bad_options_are_one_line_errors(tiny_run, tmp_path, capsys):
    assert main([str(tmp_path / "nowhere"), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--no-progress"]) == 2
    assert "checkpoint" in capsys.readouterr().err
    assert main([str(tiny_run / "ss"), "--no-progress", "--kinds=scratch", f"--out={tmp_path / 'o'}"]) == 2
    assert "synthetic_blob" in capsys.readouterr().err
    assert main([str(tiny_run / "ss"), "--no-progress", f"--compare={tmp_path / 'none'}",
                 f"--out={tmp_path / 'o'}"]) == 2
    assert "--compare" in capsys.readouterr().err
