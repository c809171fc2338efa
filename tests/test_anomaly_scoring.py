"""Residual maps, Gaussian smoothing (vs scipy.ndimage) and score reductions (vs hand / numpy sorting)."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from manifold_ae.anomaly.scoring import image_scores, residual_map, smooth, vector_scores


def test_residual_map_is_channel_mean_of_squared_difference_by_hand():
    x = torch.zeros(1, 3, 1, 2, dtype=torch.float64)
    x_hat = torch.tensor([[[[1.0, 0.0]], [[2.0, 0.5]], [[0.0, -1.0]]]], dtype=torch.float64)
    # pixel 0: (1 + 4 + 0) / 3 = 5/3; pixel 1: (0 + 0.25 + 1) / 3 = 1.25/3
    expected = torch.tensor([[[5 / 3, 1.25 / 3]]], dtype=torch.float64)
    out = residual_map(x, x_hat)
    assert out.shape == (1, 1, 2)
    assert torch.allclose(out, expected, atol=1e-15)
    out_np = residual_map(x.numpy(), x_hat.numpy())  # arrays work too
    assert torch.allclose(out_np, expected, atol=1e-15)


def test_residual_map_promotes_bf16_to_float32():
    x = torch.rand(2, 3, 4, 4).bfloat16()
    out = residual_map(x, torch.zeros_like(x))
    assert out.dtype == torch.float32
    assert torch.allclose(out, x.float().square().mean(1))


def test_vector_scores_by_hand():
    x = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    x_hat = torch.tensor([[1.0, 0.0, 4.0], [3.0, 4.0, 0.0]], dtype=torch.float64)
    assert torch.equal(vector_scores(x, x_hat), torch.tensor([5.0, 25.0], dtype=torch.float64))


@pytest.mark.parametrize("sigma,truncate,shape", [
    (0.7, 4.0, (2, 9, 13)), (2.0, 4.0, (1, 16, 16)), (4.0, 3.0, (3, 5, 7)),  # radius 12 > map size
    (1.3, 2.0, (2, 3, 11, 6))])
def test_smooth_matches_scipy_gaussian_filter(sigma, truncate, shape):
    rng = np.random.default_rng(0)
    maps = rng.random(shape)
    out = smooth(torch.from_numpy(maps), sigma=sigma, truncate=truncate).numpy()
    flat = maps.reshape(-1, *shape[-2:])
    ref = np.stack([ndimage.gaussian_filter(m, sigma, mode="reflect", truncate=truncate) for m in flat])
    np.testing.assert_allclose(out, ref.reshape(shape), atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(sigma=st.floats(0.3, 6.0), h=st.integers(1, 12), w=st.integers(1, 12), seed=st.integers(0, 1000))
def test_smooth_matches_scipy_property(sigma, h, w, seed):
    maps = np.random.default_rng(seed).random((1, h, w))
    out = smooth(maps, sigma=sigma).numpy()[0]
    np.testing.assert_allclose(out, ndimage.gaussian_filter(maps[0], sigma, mode="reflect"), atol=1e-12)


def test_smooth_sigma_zero_is_identity_and_float32_kept():
    maps = torch.rand(2, 5, 5)
    assert torch.equal(smooth(maps, sigma=0), maps)
    out = smooth(maps, sigma=1.0)
    assert out.dtype == torch.float32
    assert abs(float(out.sum()) - float(maps.sum())) < 1e-2 * float(maps.sum())  # reflect keeps mass roughly


def test_image_score_reductions_against_sorting():
    rng = np.random.default_rng(1)
    maps = rng.random((4, 6, 5))
    flat = np.sort(maps.reshape(4, -1), axis=1)[:, ::-1]
    t = torch.from_numpy(maps)
    np.testing.assert_allclose(image_scores(t, reduction="max").numpy(), flat[:, 0], atol=0)
    np.testing.assert_allclose(image_scores(t, reduction="mean").numpy(), flat.mean(1), atol=1e-15)
    np.testing.assert_allclose(image_scores(t, reduction="topk", topk=7).numpy(), flat[:, :7].mean(1), atol=1e-15)
    # a count of 1 is the max, a count of all 30 pixels the mean
    np.testing.assert_allclose(image_scores(t, reduction="topk", topk=1).numpy(), flat[:, 0], atol=0)
    np.testing.assert_allclose(image_scores(t, reduction="topk", topk=30).numpy(), flat.mean(1), atol=1e-15)
    # fraction 0.1 of 30 pixels = 3 pixels; 0.01 rounds up to at least 1 pixel (= max); 1.0 is every pixel
    np.testing.assert_allclose(image_scores(t, reduction="topk", top_fraction=0.1).numpy(), flat[:, :3].mean(1),
                               atol=1e-15)
    np.testing.assert_allclose(image_scores(t, reduction="topk", top_fraction=0.01).numpy(), flat[:, 0], atol=0)
    np.testing.assert_allclose(image_scores(t, reduction="topk", top_fraction=1.0).numpy(), flat.mean(1),
                               atol=1e-15)
    # 0.5 of 30 = 15 pixels exactly, 0.51 rounds up to 16
    np.testing.assert_allclose(image_scores(t, reduction="topk", top_fraction=0.5).numpy(), flat[:, :15].mean(1),
                               atol=1e-15)
    np.testing.assert_allclose(image_scores(t, reduction="topk", top_fraction=0.51).numpy(), flat[:, :16].mean(1),
                               atol=1e-15)


@pytest.mark.parametrize("kwargs, message", [
    ({"topk": 17}, r"topk must be an int pixel count in \[1, H\*W = 16\], got 17"),
    ({"topk": 0}, r"topk must be an int pixel count in \[1, H\*W = 16\], got 0"),
    ({"topk": 1.0}, r"topk must be an int pixel count .* got 1\.0; for a fraction of the pixels pass top_fraction"),
    ({"topk": True}, r"topk must be an int pixel count"),
    ({"top_fraction": 1.5}, r"top_fraction must lie in \(0, 1\], got 1\.5"),
    ({"top_fraction": 0.0}, r"top_fraction must lie in \(0, 1\], got 0\.0"),
    ({"top_fraction": "5%"}, r"top_fraction must be a number in \(0, 1\], got '5%'"),
    ({}, r"reduction 'topk' needs exactly one of topk .* or top_fraction .*, got topk=None, top_fraction=None"),
    ({"topk": 3, "top_fraction": 0.1}, r"needs exactly one of topk"),
])
def test_topk_count_and_fraction_errors_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        image_scores(torch.zeros(1, 4, 4), reduction="topk", **kwargs)


def test_count_and_fraction_are_refused_by_the_other_reductions():
    for reduction in ("max", "mean"):
        with pytest.raises(ValueError, match=rf"topk and top_fraction are for reduction 'topk' only, got reduction "
                                             rf"'{reduction}' with topk=5"):
            image_scores(torch.zeros(1, 4, 4), reduction=reduction, topk=5)


def test_bad_inputs_raise_with_names():
    with pytest.raises(ValueError, match=r"x and x_hat must have the same shape, got \(1, 3, 4, 4\) and \(1, 3, 4, 5\)"):
        residual_map(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))
    with pytest.raises(ValueError, match=r"x must have shape \(B, C, H, W\)"):
        residual_map(torch.zeros(3, 4, 4), torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="x_hat contains 1 NaN"):
        residual_map(torch.zeros(1, 1, 2, 2), torch.tensor([[[[0.0, float("nan")], [0.0, 0.0]]]]))
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        smooth(torch.zeros(1, 4, 4), sigma=-1.0)
    with pytest.raises(ValueError, match=r"maps must have shape \(\.\.\., H, W\)"):
        smooth(torch.zeros(4), sigma=1.0)
    with pytest.raises(ValueError, match="reduction must be one of"):
        image_scores(torch.zeros(1, 4, 4), reduction="median")
    with pytest.raises(ValueError, match=r"maps must have shape \(B, H, W\)"):
        image_scores(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="x and x_hat must have the same shape"):
        vector_scores(torch.zeros(2, 3), torch.zeros(2, 4))


def test_pyramid_level_one_is_the_residual_map_and_a_constant_offset_is_seen_at_every_scale():
    from manifold_ae.anomaly.scoring import pyramid_residuals

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g, dtype=torch.float64)
    x_hat = torch.rand(2, 3, 32, 32, generator=g, dtype=torch.float64)
    levels = pyramid_residuals(x, x_hat, scales=(1, 2, 8))
    assert levels.shape == (2, 3, 32, 32)
    assert torch.allclose(levels[:, 0], residual_map(x, x_hat).float(), atol=1e-6)
    offset = pyramid_residuals(x, x + 0.1, scales=(1, 4, 16, 32))  # d = 0.1 everywhere: d^2 at every scale
    assert torch.allclose(offset, torch.full_like(offset, 0.01), atol=1e-6)
    for bad in [(), (0,), (33,), (1.5,), (True,)]:
        with pytest.raises(ValueError, match="scales must be a non-empty tuple of ints"):
            pyramid_residuals(x, x_hat, scales=bad)


def test_pyramid_levels_average_pixel_noise_down_like_one_over_the_block_area():
    """White noise of variance v: the s x s block mean has variance v / s^2, so level s averages to v / s^2
    (bilinear upsampling of the block values preserves their mean to within the border effects)."""
    from manifold_ae.anomaly.scoring import pyramid_residuals

    g = torch.Generator().manual_seed(1)
    x = torch.zeros(8, 1, 128, 128, dtype=torch.float64)
    eps = 0.2 * torch.randn(8, 1, 128, 128, generator=g, dtype=torch.float64)
    levels = pyramid_residuals(x, eps, scales=(1, 2, 4, 8))
    for i, s in enumerate((1, 2, 4, 8)):
        # block means at the coarse grid, by reshaping (an independent computation)
        blocks = eps.reshape(8, 1, 128 // s, s, 128 // s, s).mean(dim=(3, 5))
        coarse_mean = float(blocks.square().mean())
        assert coarse_mean == pytest.approx(0.04 / s ** 2, rel=0.05 + 0.02 * s)
        assert float(levels[:, i].mean()) == pytest.approx(coarse_mean, rel=0.1)


def test_normalise_levels_by_hand():
    from manifold_ae.anomaly.scoring import normalise_levels

    levels = torch.tensor([[[[1.0, 2.0]], [[4.0, 0.5]]]])  # (B=1, S=2, H=1, W=2)
    normal = torch.tensor([[[1.0, 3.0]], [[2.0, 2.0]]])  # (S, H, W): level means 2 and 2
    assert torch.equal(normalise_levels(levels, norm="none"), torch.tensor([[[4.0, 2.0]]]))
    # level: [1/2, 2/2] and [4/2, 0.5/2] -> max [2, 1]
    assert torch.allclose(normalise_levels(levels, norm="level", normal_mean=normal), torch.tensor([[[2.0, 1.0]]]))
    # pixel: divisors (normal + 2) / 2 = [1.5, 2.5] and [2, 2]: [2/3, 0.8] and [2, 0.25] -> [2, 0.8]
    assert torch.allclose(normalise_levels(levels, norm="pixel", normal_mean=normal), torch.tensor([[[2.0, 0.8]]]))
    with pytest.raises(ValueError, match=r"needs normal_mean of shape \(2, 1, 2\)"):
        normalise_levels(levels, norm="pixel")
    with pytest.raises(ValueError, match="norm must be one of"):
        normalise_levels(levels, norm="zscore")
