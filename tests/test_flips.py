"""Flip-averaged reconstructions (``models.flips``) against closed forms, equivariance and the convexity bound."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from manifold_ae.images.config import ModelConfig, ScoreConfig
from manifold_ae.images.pipeline import Pipeline, build_model
from manifold_ae.models.flips import FLIPS, flip_average, flip_group

#: the group elements written out by hand, as dims to flip (independent of flip_group's table)
BY_HAND = {"h": [(), (-1,)], "hv": [(), (-1,), (-2,), (-2, -1)]}


def flipped(t: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return t.flip(dims) if dims else t


@pytest.mark.parametrize("flips", ["h", "hv"])
def test_a_pixelwise_gain_averages_to_the_mean_of_its_flipped_gain_maps(flips):
    """f(x) = W ⊙ x gives g⁻¹ f(g x) = (g W) ⊙ x, so f̄(x) = x ⊙ mean_g g W: a closed form."""
    gen = torch.Generator().manual_seed(0)
    w = torch.rand(1, 1, 6, 9, generator=gen)
    x = torch.rand(4, 1, 6, 9, generator=gen)
    expected = x * torch.stack([flipped(w, d) for d in BY_HAND[flips]]).mean(dim=0)
    got = flip_average(lambda z: w * z, x, flips)
    assert got.shape == x.shape
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, w * x, atol=1e-3)  # W is not symmetric: averaging changes the map


def test_a_translation_is_undone_in_the_mirrored_copy():
    """f shifts one column right (a roll); its left-right mirror shifts left, so f̄ = the mean of both rolls."""
    x = torch.rand(2, 1, 5, 8, generator=torch.Generator().manual_seed(1))
    got = flip_average(lambda z: z.roll(1, dims=-1), x, "h")
    assert torch.allclose(got, (x.roll(1, dims=-1) + x.roll(-1, dims=-1)) / 2, atol=1e-6)


@pytest.mark.parametrize("flips", FLIPS)
def test_an_equivariant_model_is_left_unchanged(flips):
    """A convolution with a kernel symmetric in both axes and zero padding commutes with both mirrors."""
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        k = torch.rand(3, 3, generator=torch.Generator().manual_seed(2))
        conv.weight.copy_(((k + k.flip(0) + k.flip(1) + k.flip(0, 1)) / 4)[None, None])
    x = torch.rand(3, 1, 7, 10, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.allclose(flip_average(conv, x, flips), conv(x), atol=1e-6)


@pytest.mark.parametrize("flips", ["h", "hv"])
def test_the_symmetrised_error_is_bounded_by_the_mean_flipped_error(flips):
    """For an equivariant target π (here a symmetric blur) and any f: ‖f̄(x) − π(x)‖² ≤ mean_g ‖f(gx) − π(gx)‖²
    for every x; the gap is exactly the spread mean_g ‖a_g − ā‖² of the un-flipped errors a_g = g⁻¹ (f − π)(g x)
    around their mean ā = f̄(x) − π(x), and on the flip-closed set {g x} the mean error of f̄ is below that of f."""
    torch.manual_seed(4)
    f = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 1, 5, padding=2))
    pi = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    x = torch.rand(6, 1, 12, 12)
    group = BY_HAND[flips]
    with torch.no_grad():
        assert torch.allclose(pi(x.flip(-1)), pi(x).flip(-1), atol=1e-6)  # the target is equivariant
        lhs = (flip_average(f, x, flips) - pi(x)).pow(2).sum(dim=(1, 2, 3))
        rhs = torch.stack([(f(flipped(x, d)) - pi(flipped(x, d))).pow(2).sum(dim=(1, 2, 3)) for d in group]).mean(0)
        assert bool((lhs <= rhs * (1 + 1e-5)).all())
        a_g = torch.stack([flipped(f(flipped(x, d)) - pi(flipped(x, d)), d) for d in group])  # (|G|, B, 1, H, W)
        spread = (a_g - a_g.mean(dim=0)).pow(2).sum(dim=(2, 3, 4)).mean(dim=0)  # (B,)
        assert torch.allclose(rhs - lhs, spread, rtol=1e-4, atol=1e-6)
        assert bool((spread > 1e-3 * rhs).all())  # f is not equivariant: the bound is not an equality
        closed = torch.cat([flipped(x, d) for d in group])  # an invariant (empirical) distribution
        err_bar = (flip_average(f, closed, flips) - pi(closed)).pow(2).mean()
        err = (f(closed) - pi(closed)).pow(2).mean()
    assert float(err_bar) < float(err)


def test_none_is_the_model_itself_and_the_copies_go_through_in_one_batch():
    calls = []

    def model(z: torch.Tensor) -> torch.Tensor:
        calls.append(z.shape[0])
        return 2 * z

    x = torch.rand(3, 1, 4, 4)
    assert torch.equal(flip_average(model, x, "none"), 2 * x) and calls == [3]
    calls.clear()
    flip_average(model, x, "hv")
    assert calls == [12]
    assert flip_group("hv") == tuple(BY_HAND["hv"])


def test_bad_flips_are_rejected_by_name():
    with pytest.raises(ValueError, match="flips"):
        flip_average(lambda z: z, torch.rand(1, 1, 4, 4), "vh")
    with pytest.raises(ValueError, match="score.flips"):
        ScoreConfig(flips="horizontal")
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        flip_average(lambda z: z, torch.rand(4, 4), "h")


def test_the_pipeline_scores_the_flip_averaged_reconstruction():
    """Pipeline.__call__ with score.flips = 'hv': its reconstruction and residual are those of f̄, by hand."""
    torch.manual_seed(5)
    model = build_model(ModelConfig(width=4, depth=2, dilations=(1, 2), sdc_layers=1), channels=1)
    score = ScoreConfig(sigma=0.0, reduction="max", flips="hv")
    pipe = Pipeline(model, image_size=16, channels=1, score=score)
    x = torch.rand(2, 1, 16, 16)
    out = pipe(x)
    with torch.no_grad():
        expected = torch.stack([flipped(model(flipped(x, d)), d) for d in BY_HAND["hv"]]).mean(0)
        plain = model(x)
    assert torch.allclose(out.reconstruction, expected, atol=1e-5)
    assert torch.allclose(out.residual, (x - expected).pow(2).mean(dim=1), atol=1e-6)
    assert not torch.allclose(out.reconstruction, plain, atol=1e-4)  # the untrained U-Net is not equivariant
    pipe.score_config = dataclasses.replace(score, flips="none")
    assert torch.allclose(pipe(x).reconstruction, plain, atol=1e-6)


def test_an_export_with_flips_matches_the_pipeline(tmp_path):
    pytest.importorskip("onnxruntime")
    from manifold_ae.images.export import OnnxPipeline, export_onnx

    torch.manual_seed(6)
    model = build_model(ModelConfig(width=4, depth=2, dilations=(1, 2), sdc_layers=1), channels=1)
    pipe = Pipeline(model, image_size=16, channels=1, score=ScoreConfig(sigma=1.0, reduction="topk", topk=10,
                                                                         flips="h", batch_size=3))
    meta = export_onnx(pipe, tmp_path / "export")
    assert meta["score"]["flips"] == "h"
    x = torch.rand(5, 1, 16, 16)
    ref, onnx = pipe(x), OnnxPipeline(pipe, tmp_path / "export")(x)
    assert float((onnx.heatmap - ref.heatmap).abs().max()) <= 1e-4 * float(ref.heatmap.abs().max())
    assert float((onnx.score - ref.score).abs().max()) <= 1e-4 * float(ref.score.abs().max())


def test_random_flip_draws_each_group_element_uniformly_per_image():
    """Every output image is one of its four flips; over 4000 images each element's count is a Binomial(4000,
    1/4) rate (within 4 standard deviations); 'none' is the identity and consumes no randomness."""
    from manifold_ae.loop import random_flip

    x = torch.rand(4000, 1, 3, 5, generator=torch.Generator().manual_seed(7))  # no image equals its flips
    out = random_flip(x, "hv", generator=torch.Generator().manual_seed(8))
    hits = torch.stack([(out == flipped(x, d)).flatten(1).all(dim=1) for d in BY_HAND["hv"]])  # (4, N)
    assert bool((hits.sum(dim=0) == 1).all())
    sd = (4000 * 0.25 * 0.75) ** 0.5
    assert bool(((hits.sum(dim=1).float() - 1000).abs() < 4 * sd).all()), hits.sum(dim=1)
    h = random_flip(x, "h", generator=torch.Generator().manual_seed(8))
    assert bool(((h == x).flatten(1).all(1) | (h == x.flip(-1)).flatten(1).all(1)).all())
    gen = torch.Generator().manual_seed(9)
    assert random_flip(x, "none", generator=gen) is x and torch.equal(gen.get_state(),
                                                                      torch.Generator().manual_seed(9).get_state())
    with pytest.raises(ValueError, match="train.flips"):
        from manifold_ae.images.config import TrainConfig
        TrainConfig(flips="x")


def test_random_gain_scales_each_image_by_one_uniform_factor_and_zero_draws_nothing():
    """Each output image is g·x (clipped) with one g per image; over 4000 images g is Uniform(1 − j, 1 + j):
    its mean within 4 standard errors of 1 and its range reaching both ends; jitter 0 is the identity."""
    from manifold_ae.images.config import TrainConfig
    from manifold_ae.loop import random_gain

    x = 0.2 + 0.5 * torch.rand(4000, 1, 3, 5, generator=torch.Generator().manual_seed(7))  # no clipping at j = 0.3
    out = random_gain(x, 0.3, generator=torch.Generator().manual_seed(8))
    g = (out / x).flatten(1)  # (N, 15): one factor per image
    assert torch.allclose(g, g[:, :1].expand_as(g), rtol=1e-5)
    g = g[:, 0]
    sd = 0.6 / 12 ** 0.5  # Uniform(0.7, 1.3)
    assert abs(float(g.mean()) - 1) < 4 * sd / 4000 ** 0.5
    assert 0.7 <= float(g.min()) < 0.71 and 1.29 < float(g.max()) <= 1.3
    bright = random_gain(torch.full((50, 1, 2, 2), 0.9), 0.3, generator=torch.Generator().manual_seed(1))
    assert float(bright.max()) == 1.0 and float(bright.min()) >= 0.9 * 0.7   # clipped to [0, 1]
    gen = torch.Generator().manual_seed(9)
    assert random_gain(x, 0.0, generator=gen) is x and torch.equal(gen.get_state(),
                                                                   torch.Generator().manual_seed(9).get_state())
    for bad in (-0.1, 1.0, "0.2"):
        with pytest.raises(ValueError, match="train.gain_jitter"):
            TrainConfig(gain_jitter=bad)
