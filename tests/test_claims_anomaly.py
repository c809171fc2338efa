"""T8: the projection residual is the oracle anomaly score (docs/theory.md, T8)."""
import math

import pytest
import torch
from scipy import integrate, stats

from manifold_ae.anomaly.metrics import auroc
from manifold_ae.claims import t8_anomaly as t8
from manifold_ae.toys import anomaly
from manifold_ae.corruptions.vector import PartialCorruption, block_masks
from manifold_ae.manifolds.sphere import Sphere

N = 10


def _circle_distance(circle, x):
    """Closed-form distance to the unit circle c + span(Q): sqrt(‖out-of-plane‖² + (‖in-plane‖ − 1)²)."""
    y = x @ circle.Q                                                       # (B, 2)
    out = x - y @ circle.Q.T
    return torch.sqrt((out ** 2).sum(-1) + (y.norm(dim=-1) - 1) ** 2)


@pytest.fixture(scope="module")
def circle():
    return Sphere(1, radius=1.0, ambient_dim=N, seed=0)


def test_off_manifold_task_puts_anomalies_at_distance_delta(circle):
    x, labels = anomaly.off_manifold_task(circle, 300, delta=0.2, noise_std=0.0,
                                          generator=torch.Generator().manual_seed(0))
    assert x.shape == (600, N) and labels.tolist() == [0.0] * 300 + [1.0] * 300
    dist = _circle_distance(circle, x)
    assert float(dist[:300].abs().max()) < 1e-12
    assert torch.allclose(dist[300:], torch.full((300,), 0.2, dtype=torch.float64), atol=1e-12)


def test_oracle_auroc_is_one_when_anomalies_are_separated_by_construction(circle):
    x, labels = anomaly.off_manifold_task(circle, 400, delta=0.01, noise_std=0.0,
                                          generator=torch.Generator().manual_seed(1))
    assert auroc(labels, anomaly.oracle_score(circle, x[:100], x)) == 1.0


def test_oracle_score_is_the_exact_distance(circle):
    x = 1.5 * torch.randn(500, N, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert torch.allclose(anomaly.oracle_score(circle, x[:50], x), _circle_distance(circle, x), atol=1e-12)


def test_corruption_task_has_noisy_normals_and_corrupted_anomalies(circle):
    corruption = PartialCorruption(block_masks(N, (2,)), fill_std=0.5, noise_std=0.01, opacity=0.5)
    x, labels = anomaly.corruption_task(circle, corruption, 2000, generator=torch.Generator().manual_seed(3))
    assert x.shape == (4000, N) and float(labels.sum()) == 2000
    normal_dist = _circle_distance(circle, x[:2000])
    # dist of p + η ε is ≈ η χ_{n−1}: mean η sqrt(n − 1.5) to first order
    assert float(normal_dist.mean()) == pytest.approx(0.01 * math.sqrt(N - 1.5), rel=0.05)
    assert float(_circle_distance(circle, x[2000:]).median()) > 5 * float(normal_dist.median())


def test_residual_score_of_identity_and_of_a_linear_map():
    x = torch.randn(20, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    # the model runs in float32 (x is cast), so the identity's residual is float32 rounding of x
    assert float(anomaly.residual_score(torch.nn.Identity(), x).max()) < 1e-12
    half = torch.nn.Linear(4, 4, bias=False)
    with torch.no_grad():
        half.weight.copy_(0.5 * torch.eye(4))
    assert torch.allclose(anomaly.residual_score(half, x), 0.25 * (x ** 2).sum(-1), atol=1e-6)


def _oracle_auroc_theory(delta, eta, dof):
    """P(dist_anomaly > dist_normal) to first order in η: η² χ²_dof against η² χ'²_dof(λ = δ²/η²)."""
    lam = (delta / eta) ** 2
    value, _ = integrate.quad(lambda t: stats.ncx2.sf(t, dof, lam) * stats.chi2.pdf(t, dof), 0, math.inf)
    return value


@pytest.fixture(scope="module")
def fast_result(tmp_path_factory):
    return t8.run(fast=True, out_dir=tmp_path_factory.mktemp("t8"), seed=0)


def test_run_fast_passes_and_oracle_aurocs_match_chi_square_theory(fast_result, tmp_path_factory):
    r = fast_result
    assert r.claim == "T8" and r.passed, [(c.name, c.measured) for c in r.checks if not c.passed]
    assert r.numbers["oracle_auroc_separated"] == 1.0
    oracle = r.numbers["auroc_off_manifold"]["oracle dist(x, M)"]
    for delta, got in zip(r.numbers["deltas"], oracle):
        expected = _oracle_auroc_theory(delta, 0.01, N - 1)
        assert got == pytest.approx(expected, abs=0.04), delta           # 500 per class: s.e. <= 0.015


def test_run_fast_off_manifold_criterion_is_two_sided_and_partial_one_sided(fast_result):
    off, partial = fast_result.numbers["auroc_off_manifold"], fast_result.numbers["auroc_partial_corruption"]
    i, j = t8.DELTAS.index(t8.CHECK_DELTA), t8.OPACITIES.index(t8.CHECK_OPACITY)
    ssl, oracle = "self-supervised (T6)", "oracle dist(x, M)"
    two, one = fast_result.checks[1], fast_result.checks[2]
    assert two.op == "<=" and two.measured == pytest.approx(abs(off[ssl][i] - off[oracle][i]), abs=1e-15)
    assert one.op == ">=" and one.measured == pytest.approx(partial[ssl][j] - partial[oracle][j], abs=1e-15)
    assert two.target == 0.04 and one.target == -0.04                           # fast-mode tolerance


def test_a_model_far_above_a_degraded_oracle_fails_off_manifold_only(tmp_path, monkeypatch):
    """Noise added to the oracle's distance lowers its AUROC below the model's: off M, where dist(x, M) is the
    Neyman–Pearson score, that gap is a defect and fails; under partial corruption being above is allowed."""
    honest = t8.oracle_score

    def noisy(manifold, train, x):
        g = torch.Generator().manual_seed(x.shape[0])
        return honest(manifold, train, x) + 0.05 * torch.randn(x.shape[0], generator=g, dtype=torch.float64)
    monkeypatch.setattr(t8, "oracle_score", noisy)
    r = t8.run(fast=True, out_dir=tmp_path, seed=0)
    passed = [c.passed for c in r.checks]
    assert passed[1:] == [False, True], [(c.name, c.measured) for c in r.checks]


def test_run_fast_aurocs_rise_with_the_anomaly_strength(fast_result):
    for series in (fast_result.numbers["auroc_off_manifold"], fast_result.numbers["auroc_partial_corruption"]):
        for name, values in series.items():
            assert values[0] < values[-1], name
            assert values[-1] >= 0.99, name                               # strong anomalies: every score detects


# ------------------------------------------------------------------ figure builders (manifold_ae.viz.anomaly_figures)
def test_anomaly_figures_draw_what_they_are_given():
    import numpy as np

    from manifold_ae.viz import anomaly_figures as af

    labels = np.r_[np.zeros(50), np.ones(50)]
    scores = {"oracle": labels + 0.1 * np.arange(100) / 100, "model": np.arange(100) % 7}
    fig = af.roc_figure({"task": (labels, scores)}, oracle="oracle")
    ax = fig.axes[0]
    assert len(ax.lines) == 3                                                # two curves + chance diagonal
    assert "AUROC 1.000" in ax.get_legend().get_texts()[0].get_text()        # separated oracle
    fig = af.gap_vs_mask_figure([1, 2, 3], {"a": [1.0, 2.0, 3.0], "b": [0.1, 0.2, 0.3]})
    assert [list(line.get_ydata()) for line in fig.axes[0].lines] == [[1.0, 2.0, 3.0], [0.1, 0.2, 0.3]]
    mask = np.zeros((4, 5))
    mask[:, 1] = 1
    fig = af.coordinate_residual_figure({"π_S": mask * 0.5, "π": np.full((4, 5), 0.1)}, mask, rows=4)
    assert len(fig.axes) == 3 and len(fig.axes[0].patches) == 4              # one outline per corrupted cell
    bars = [p.get_height() for p in fig.axes[-1].patches]
    assert bars == pytest.approx([0.5, 0.1, 1e-6, 0.1])                      # on S: 0.5, 0.1; off S: 0 (floor), 0.1
    fig = af.auroc_sweep_figure([0.1, 0.2], {"oracle": [0.9, 1.0], "m": [0.8, 0.95]}, oracle="oracle")
    assert fig.axes[0].lines[0].get_linestyle() == "--"
    ring = np.c_[np.cos(np.linspace(0, 6.3, 50)), np.sin(np.linspace(0, 6.3, 50))]
    fig = af.retraction_figure(ring, np.ones((2, 2)), {"π": np.ones((2, 2)) / math.sqrt(2)},
                               {"ρ": np.array([1.0, 1.5, 2.0])})
    assert len(fig.axes) == 2


@pytest.mark.parametrize("call, words", [
    (lambda af: af.gap_vs_mask_figure([1, 2], {"a": [1.0]}), ["series['a']", "2 values"]),
    (lambda af: af.gap_vs_mask_figure([1, 2], {}), ["series", "non-empty"]),
    (lambda af: af.coordinate_residual_figure({"f": [[1.0, 2.0]]}, [[1.0, 0.0, 0.0]]), ["residuals['f']", "shape"]),
    (lambda af: af.roc_figure({}), ["tasks", "non-empty"]),
    (lambda af: af.auroc_sweep_figure([1.0], {"a": "x"}), ["series['a']", "numeric"]),
    (lambda af: af.retraction_figure([[0.0, 1.0]], [[1.0, 1.0]], {"π": [[1.0, 1.0], [2.0, 2.0]]}, {"ρ": [1.0]}),
     ["images['π']", "shape"]),
])
def test_anomaly_figures_reject_bad_input(call, words):
    from manifold_ae.viz import anomaly_figures as af

    with pytest.raises(ValueError) as err:
        call(af)
    assert all(w in str(err.value) for w in words), str(err.value)
