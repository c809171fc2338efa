"""T6: self-supervised partial corruption learns E[x | x̂] (docs/theory.md, T6)."""
import math

import pytest
import torch

from manifold_ae.claims import t6_selfsupervised as t6
from manifold_ae.corruptions import vector
from manifold_ae.manifolds.subspace import Subspace
from manifold_ae.toys import selfsupervised
from manifold_ae.toys.measures import rms


def test_block_masks_are_all_cyclic_blocks():
    n, sizes = 6, (1, 2, 3)
    masks = vector.block_masks(n, sizes)
    expected = set()
    for k in sizes:
        for s in range(n):
            expected.add(tuple(1.0 if j in {(s + i) % n for i in range(k)} else 0.0 for j in range(n)))
    assert masks.shape == (len(sizes) * n, n)
    assert {tuple(r.tolist()) for r in masks} == expected
    assert masks.sum(-1).tolist() == [float(k) for k in sizes for _ in range(n)]


@pytest.mark.parametrize("kwargs, words", [
    (dict(ambient_dim=1, sizes=(1,)), ["ambient_dim", "[2,"]),
    (dict(ambient_dim=5, sizes=(5,)), ["sizes[0]", "[1, 4]"]),
    (dict(ambient_dim=5, sizes=()), ["sizes", "empty"]),
])
def test_block_masks_rejects_bad_input(kwargs, words):
    with pytest.raises(ValueError) as err:
        vector.block_masks(**kwargs)
    assert all(w in str(err.value) for w in words)


def test_finite_mask_family_draws_rows_with_their_probabilities():
    masks = vector.block_masks(4, (1,))                                  # 4 rows, one-hot
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    family = vector.FiniteMaskFamily(masks, probs)
    x = torch.zeros(40_000, 4, dtype=torch.float64)
    drawn = family(x, torch.Generator().manual_seed(0))
    freq = drawn.mean(0)                                             # one-hot rows: column means = frequencies
    se = torch.sqrt(probs * (1 - probs) / x.shape[0])
    assert torch.all((freq - probs).abs() < 5 * se)


@pytest.mark.parametrize("masks, probs, words", [
    (torch.tensor([[0.0, 0.5]]), None, ["masks", "0/1"]),
    (torch.ones(2, 3), torch.tensor([1.0]), ["probs", "(2,)"]),
    (torch.ones(2, 3), torch.tensor([-1.0, 2.0]), ["probs", "non-negative"]),
])
def test_finite_mask_family_rejects_bad_tables(masks, probs, words):
    with pytest.raises(ValueError) as err:
        vector.FiniteMaskFamily(masks, probs)
    assert all(w in str(err.value) for w in words)


def test_finite_mask_family_rejects_wrong_width():
    with pytest.raises(ValueError, match=r"x must have shape \(B, 3\)"):
        vector.FiniteMaskFamily(torch.ones(2, 3))(torch.zeros(5, 4))


def test_partial_corruption_keeps_clean_coordinates_and_fills_the_mask():
    tau, a = 0.7, 0.5
    corruption = vector.PartialCorruption(vector.block_masks(5, (2,)), fill_std=tau, noise_std=0.0, opacity=a)
    x = torch.randn(50_000, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x_hat, mask = corruption(x, torch.Generator().manual_seed(2))
    assert torch.equal(mask.sum(-1), torch.full((50_000,), 2.0, dtype=torch.float64))
    assert torch.equal(x_hat[mask == 0], x[mask == 0])                   # clean coordinates untouched
    fill = ((x_hat - x) / a + x)[mask == 1]                              # recovers the fill c
    assert abs(float(fill.mean())) < 4 * tau / math.sqrt(fill.numel())
    assert abs(float(fill.std()) - tau) < 0.01


def test_partial_corruption_adds_noise_after_the_fill():
    eta, tau = 0.3, 0.4
    corruption = vector.PartialCorruption(vector.block_masks(4, (1,)), fill_std=tau, noise_std=eta)
    x = torch.zeros(40_000, 4, dtype=torch.float64)
    x_hat, mask = corruption(x, torch.Generator().manual_seed(3))
    assert abs(float(x_hat[mask == 0].std()) - eta) < 0.01
    assert abs(float(x_hat[mask == 1].std()) - math.hypot(eta, tau)) < 0.01   # variance τ² + η²


@pytest.mark.parametrize("kwargs, name", [
    (dict(fill_std=0.0, noise_std=0.1), "fill_std"),
    (dict(fill_std=1.0, noise_std=-0.1), "noise_std"),
    (dict(fill_std=1.0, noise_std=0.1, opacity=0.0), "opacity"),
])
def test_partial_corruption_rejects_bad_parameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        vector.PartialCorruption(vector.block_masks(4, (1,)), **kwargs)


def _reference_bayes(x_hat, U, masks, tau, eta):
    """Plain per-sample, per-mask loop over the Gaussian mixture posterior (independent of theory.bayes)."""
    n = U.shape[0]
    sigma = U @ U.T
    out = torch.zeros_like(x_hat)
    for b in range(x_hat.shape[0]):
        logs, means = [], []
        for m in masks:
            D = torch.diag(1 - m)
            C = D @ sigma @ D + tau ** 2 * torch.diag(m) + eta ** 2 * torch.eye(n, dtype=x_hat.dtype)
            dist = torch.distributions.MultivariateNormal(torch.zeros(n, dtype=x_hat.dtype), C)
            logs.append(dist.log_prob(x_hat[b]))
            means.append(sigma @ D @ torch.linalg.solve(C, x_hat[b]))
        w = torch.softmax(torch.stack(logs), 0)
        out[b] = (w[:, None] * torch.stack(means)).sum(0)
    return out


def test_gaussian_bayes_map_matches_a_plain_loop_and_is_orthogonal_to_features():
    task = selfsupervised.ToyTask(Subspace(2, ambient_dim=5, seed=3),
                      vector.PartialCorruption(vector.block_masks(5, (1, 2)), fill_std=0.5, noise_std=0.05), None, [])
    gen = torch.Generator().manual_seed(4)
    x, _ = task.manifold.sample(20, generator=gen)
    x_hat, _ = task.corruption(x, gen)
    got = selfsupervised.gaussian_bayes_map(task, x_hat)
    ref = _reference_bayes(x_hat, task.manifold.Q, task.corruption.masks, 0.5, 0.05)
    assert torch.allclose(got, ref, atol=1e-9)
    # orthogonality principle of the conditional mean: E[(x − r*(x̂)) g(x̂)] = 0 for features g (Monte Carlo)
    x, _ = task.manifold.sample(100_000, generator=gen)
    x_hat, _ = task.corruption(x, gen)
    err = x - selfsupervised.gaussian_bayes_map(task, x_hat)                          # (N, n)
    for g in (x_hat, x_hat ** 2, torch.tanh(3 * x_hat)):
        prod = (err[:, :, None] * g[:, None, :]).reshape(err.shape[0], -1)   # (N, n*n)
        z = prod.mean(0) / (prod.std(0) / math.sqrt(prod.shape[0]))
        assert float(z.abs().max()) < 5.0
    # ... which the identity map violates
    prod = ((x - x_hat)[:, :, None] * x_hat[:, None, :]).reshape(x.shape[0], -1)
    assert float((prod.mean(0) / (prod.std(0) / math.sqrt(prod.shape[0]))).abs().max()) > 20.0


def test_rms():
    v = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    assert rms(v) == pytest.approx(math.sqrt(25 / 2))


@pytest.fixture(scope="module")
def fast_result(tmp_path_factory):
    return t6.run(fast=True, out_dir=tmp_path_factory.mktemp("t6"), seed=0)


def test_run_fast_passes_with_its_numbers(fast_result, tmp_path_factory):
    r = fast_result
    assert r.claim == "T6" and r.passed, [(c.name, c.measured) for c in r.checks if not c.passed]
    g = r.numbers["gaussian"]
    assert g["relative_error_to_bayes"] <= 0.10
    # Bayes optimality: no map beats r* (Monte-Carlo tolerance), and the model is far better than the identity
    assert g["risk_model"] >= 0.9 * g["risk_bayes"]
    assert g["risk_model"] < 0.1 * g["risk_identity"]
    c = r.numbers["circle"]
    assert all(a < 0.25 * b for a, b in zip(c["model_to_masked"], c["masked_to_full"]))
    assert len(r.figures) == 1


def test_run_fast_identity_risk_matches_closed_form(fast_result):
    """E‖x̂ − x‖² = Σ_S P(S) Σ_{i∈S} (Σ_ii + τ²) + n η² for the Gaussian task (independent closed form)."""
    m = Subspace(2, ambient_dim=8, seed=0)
    masks = vector.block_masks(8, (1, 2, 3))
    var = torch.diagonal(m.Q @ m.Q.T)                                     # (n,) Σ_ii
    expected = float((masks @ (var + 0.5 ** 2)).mean()) + 8 * 0.05 ** 2
    assert fast_result.numbers["gaussian"]["risk_identity"] == pytest.approx(expected, rel=0.15)


def test_circle_masked_projection_gap_grows_like_the_in_plane_part_of_the_corruption(fast_result):
    """π(x̂) moves with the in-plane part of the corruption, so ‖π_S − π‖ grows with |S| (monotone)."""
    gap = fast_result.numbers["circle"]["masked_to_full"]
    assert gap[0] < gap[1] < gap[2]
    assert gap[-1] / gap[0] >= 1.3
