"""Vector corruptions: mask statistics, fills independent of x, ShuffleFill sources, seeds, bad input (T6)."""
import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from manifold_ae.corruptions.base import MaskedCorruption
from manifold_ae.corruptions.vector import (BlockMask, ConstantFill, FullMask, GaussianFill, GaussianNoise,
                                            RandomSubsetMask, ShuffleFill, UniformFill)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_random_subset_exact_size_and_uniform_marginals():
    num, D, k = 20000, 10, 3
    mask = RandomSubsetMask(size=k)(torch.zeros(num, D, dtype=torch.float64), gen(0))
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert torch.all(mask.sum(1) == k)
    p = k / D
    se = math.sqrt(p * (1 - p) / num)
    assert torch.all((mask.mean(0) - p).abs() < 4 * se)


def test_random_subset_all_k_subsets_equally_likely():
    num, D, k = 12000, 4, 2
    mask = RandomSubsetMask(size=k)(torch.zeros(num, D), gen(1))
    subsets = list(itertools.combinations(range(D), k))  # 6 subsets
    counts = torch.tensor([int(((mask[:, list(s)].sum(1) == k)).sum()) for s in subsets], dtype=torch.float64)
    p = 1 / len(subsets)
    se = math.sqrt(num * p * (1 - p))
    assert counts.sum() == num
    assert torch.all((counts - num * p).abs() < 4 * se), counts


def test_random_subset_fraction_rounds_to_at_least_one():
    x = torch.zeros(5, 10)
    assert torch.all(RandomSubsetMask(0.25)(x, gen(0)).sum(1) == 2)   # round(2.5) = 2
    assert torch.all(RandomSubsetMask(0.01)(x, gen(0)).sum(1) == 1)   # never empty
    assert RandomSubsetMask(0.3).num_corrupted(10) == 3


def test_random_subset_independent_bernoulli_statistics():
    num, D, f = 20000, 8, 0.3
    mask = RandomSubsetMask(f, independent=True)(torch.zeros(num, D), gen(2))
    se = math.sqrt(f * (1 - f) / (num * D))
    assert abs(float(mask.mean()) - f) < 4 * se
    assert mask.sum(1).unique().numel() > 3  # sizes vary per sample (binomial)


def test_masks_act_on_flattened_features_of_any_shape():
    x = torch.zeros(7, 2, 3, 4)
    mask = RandomSubsetMask(size=5)(x, gen(3))
    assert mask.shape == x.shape
    assert torch.all(mask.flatten(1).sum(1) == 5)


def test_block_mask_contiguous_with_uniform_start():
    num, D, size = 12000, 8, 3
    mask = BlockMask(size)(torch.zeros(num, D), gen(4))
    assert torch.all(mask.sum(1) == size)
    starts = mask.argmax(1)
    # contiguous: ones exactly at start .. start + size - 1
    idx = torch.arange(D)
    expected = ((idx >= starts[:, None]) & (idx < starts[:, None] + size)).float()
    assert torch.equal(mask, expected)
    positions = D - size + 1
    counts = torch.bincount(starts, minlength=D).double()
    assert torch.all(counts[positions:] == 0)
    se = math.sqrt(num * (1 / positions) * (1 - 1 / positions))
    assert torch.all((counts[:positions] - num / positions).abs() < 4 * se)


def test_block_mask_wrap_has_uniform_marginals_and_wraps():
    num, D, size = 20000, 6, 4
    mask = BlockMask(size, wrap=True)(torch.zeros(num, D, dtype=torch.float64), gen(5))
    assert torch.all(mask.sum(1) == size)
    p = size / D
    se = math.sqrt(p * (1 - p) / num)
    assert torch.all((mask.mean(0) - p).abs() < 4 * se)
    assert bool(((mask[:, 0] == 1) & (mask[:, -1] == 1)).any())  # some blocks wrap around the end


def test_full_mask():
    assert torch.equal(FullMask()(torch.zeros(3, 4), gen(0)), torch.ones(3, 4))


@pytest.mark.parametrize("fill, mean, var", [
    (GaussianFill(2.0, mean=1.0), 1.0, 4.0),
    (UniformFill(-1.0, 3.0), 1.0, 16 / 12),
    (ConstantFill(0.7), 0.7, 0.0),
])
def test_fills_statistics_and_independent_of_x(fill, mean, var):
    num = 40000
    x1 = torch.zeros(num, 2, dtype=torch.float64)
    x2 = torch.randn(num, 2, dtype=torch.float64, generator=gen(9)) * 5 + 3
    c1, c2 = fill(x1, gen(6)), fill(x2, gen(6))
    assert torch.equal(c1, c2)  # depends on the generator only, never on x's values
    se = math.sqrt(var / c1.numel()) if var > 0 else 1e-12
    assert abs(float(c1.mean()) - mean) < 4 * se + 1e-12
    assert abs(float(c1.var()) - var) < 0.05 * var + 1e-12


def test_uniform_fill_stays_in_interval():
    c = UniformFill(2.0, 2.5)(torch.zeros(1000, 3), gen(0))
    assert float(c.min()) >= 2.0 and float(c.max()) < 2.5


def test_shuffle_fill_takes_whole_samples_from_other_rows():
    B, D = 6, 4
    x = torch.arange(B, dtype=torch.float64)[:, None] * 10 + torch.arange(D)  # row b = 10 b + (0..D-1)
    counts = torch.zeros(B, B)
    g = gen(7)
    for _ in range(3000):
        c = ShuffleFill()(x, g)
        source = (c[:, 0] / 10).long()
        assert torch.equal(c, x[source])  # whole rows of x
        assert torch.all(source != torch.arange(B))  # never the sample itself
        counts[torch.arange(B), source] += 1
    off = counts[~torch.eye(B, dtype=torch.bool)]
    p = 1 / (B - 1)
    se = math.sqrt(3000 * p * (1 - p))
    assert torch.all((off - 3000 * p).abs() < 4 * se)  # uniform over the other samples


def test_shuffle_fill_per_coordinate_sources():
    B, D = 5, 30
    x = torch.arange(B, dtype=torch.float64)[:, None] * 100 + torch.arange(D)
    c = ShuffleFill(per_coordinate=True)(x, gen(8))
    source = ((c - torch.arange(D)) / 100).round().long()  # (B, D)
    assert torch.equal(c, x[source, torch.arange(D)])
    assert torch.all(source != torch.arange(B)[:, None])
    assert all(source[b].unique().numel() > 1 for b in range(B))  # features come from several samples


def test_gaussian_noise_isotropic_and_anisotropic():
    num = 40000
    x = torch.randn(num, 3, dtype=torch.float64, generator=gen(0))
    x_tilde, mask = GaussianNoise(0.3)(x, gen(1))
    assert torch.equal(mask, torch.ones_like(x))
    eps = x_tilde - x
    assert torch.all(eps.mean(0).abs() < 4 * 0.3 / math.sqrt(num))
    torch.testing.assert_close(eps.std(0), torch.full((3,), 0.3, dtype=torch.float64), rtol=0.03, atol=0)
    sigma = torch.tensor([0.0, 0.1, 1.0])
    eps = GaussianNoise(sigma)(x, gen(2))[0] - x
    assert torch.all(eps[:, 0] == 0)
    torch.testing.assert_close(eps.std(0), sigma.double(), rtol=0.03, atol=0)


def test_masked_corruption_changes_only_masked_entries():
    x = torch.randn(50, 8, dtype=torch.float64, generator=gen(0))
    x_tilde, mask = MaskedCorruption(RandomSubsetMask(size=3), ConstantFill(9.0))(x, gen(1))
    assert torch.equal(x_tilde[mask == 0], x[mask == 0])
    assert torch.all(x_tilde[mask == 1] == 9.0)


@pytest.mark.parametrize("corruption", [
    MaskedCorruption(RandomSubsetMask(0.3), GaussianFill(1.0)),
    MaskedCorruption(BlockMask(2, wrap=True), UniformFill(0.0, 1.0)),
    MaskedCorruption(FullMask(), ShuffleFill()),
    GaussianNoise(0.5),
])
def test_corruptions_reproducible_from_seed(corruption):
    x = torch.randn(16, 6, generator=gen(0))
    a, ma = corruption(x, gen(11))
    b, mb = corruption(x, gen(11))
    c, _ = corruption(x, gen(12))
    assert torch.equal(a, b) and torch.equal(ma, mb)
    assert not torch.equal(a, c)


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(2, 6), dims=st.lists(st.integers(1, 5), min_size=1, max_size=3),
       fraction=st.floats(0.01, 1.0), seed=st.integers(0, 2**31 - 1))
def test_masks_are_binary_floats_in_unit_interval(batch, dims, fraction, seed):
    x = torch.randn(batch, *dims)
    D = math.prod(dims)
    for sampler in (RandomSubsetMask(fraction), RandomSubsetMask(fraction, independent=True),
                    BlockMask(max(1, D // 2), wrap=bool(seed % 2)), FullMask()):
        m = sampler(x, gen(seed))
        assert m.shape == x.shape and m.dtype == x.dtype
        assert bool(((m == 0) | (m == 1)).all())


@pytest.mark.parametrize("make, match", [
    (lambda: RandomSubsetMask(0.0), r"fraction must lie in \(0.0, 1.0\]"),
    (lambda: RandomSubsetMask(size=0), "size must be an integer"),
    (lambda: RandomSubsetMask(), "exactly one of fraction or size"),
    (lambda: RandomSubsetMask(0.5, size=2), "exactly one of fraction or size"),
    (lambda: RandomSubsetMask(size=2, independent=True), "independent=True needs fraction"),
    (lambda: BlockMask(0), "size must be an integer"),
    (lambda: GaussianFill(0.0), "scale must be > 0"),
    (lambda: UniformFill(1.0, 1.0), "needs low < high"),
    (lambda: GaussianNoise(0.0), "sigma must be > 0"),
    (lambda: GaussianNoise(-0.1), "sigma must be > 0"),
    (lambda: GaussianNoise(torch.zeros(3)), "sigma must have entries >= 0, not all zero"),
    (lambda: GaussianNoise(torch.tensor([0.1, -0.1])), "sigma must have entries >= 0"),
    (lambda: GaussianNoise(float("nan")), "sigma must be > 0"),
])
def test_bad_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_batches():
    with pytest.raises(ValueError, match=r"RandomSubsetMask: size=5 exceeds the number of features 4"):
        RandomSubsetMask(size=5)(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"BlockMask: size=5 exceeds the number of features 4"):
        BlockMask(5)(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"ShuffleFill .* needs a batch of B >= 2"):
        ShuffleFill()(torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"GaussianNoise: sigma of shape \(3,\) must broadcast to one sample "
                       r"of shape \(4,\)"):
        GaussianNoise(torch.ones(3))(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"FullMask: x must be a floating tensor of shape \(B, \.\.\.\)"):
        FullMask()(torch.zeros(4))
    with pytest.raises(ValueError, match=r"GaussianFill: x must be a floating tensor"):
        GaussianFill()(torch.zeros(2, 4, dtype=torch.long))
