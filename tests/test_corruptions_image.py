"""corruptions/image.py (T6): mask statistics, locality (outside the mask unchanged), range, seeds, fill sources."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from manifold_ae.corruptions.base import MaskedCorruption
from manifold_ae.corruptions.image import (FILL_WEIGHTS, MASK_WEIGHTS, BlobMask, ColorShiftFill, CrackMask,
                                           ElasticFill, LineMask, NoiseFill, PatchFill, PerlinMask, RandomChoice,
                                           RectangleMask, ShadeFill, SmoothMask, TextureFill,
                                           paper_corruption)

MASKS = [PerlinMask(), BlobMask(), RectangleMask(), LineMask(), CrackMask()]
BANK = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(9))
FILLS = [PatchFill(), TextureFill(BANK), NoiseFill(), ElasticFill(), ColorShiftFill(), ShadeFill()]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(b=8, c=3, h=32, w=32, seed=0) -> torch.Tensor:
    """Smooth, distinct images in (0.1, 0.9): a per-sample ramp plus a little noise."""
    g = _gen(seed)
    yy = torch.linspace(0, 1, h)[:, None]
    xx = torch.linspace(0, 1, w)[None, :]
    a = torch.rand(b, c, 1, 1, generator=g)
    x = 0.1 + 0.4 * a + 0.3 * (a * yy + (1 - a) * xx) + 0.1 * torch.rand(b, c, h, w, generator=g)
    return x.clamp(0, 1)


@pytest.mark.parametrize("mask", MASKS, ids=lambda m: type(m).__name__)
def test_masks_binary_nonempty_and_seeded(mask):
    x = _images(b=16)
    m = mask(x, _gen(1))
    assert m.shape == (16, 1, 32, 32) and m.dtype == x.dtype
    assert set(torch.unique(m).tolist()) <= {0.0, 1.0}
    assert torch.all(m.sum((1, 2, 3)) >= 1)  # never empty
    torch.testing.assert_close(mask(x, _gen(1)), m, rtol=0, atol=0)
    assert not torch.equal(mask(x, _gen(2)), m)


def test_perlin_mask_coverage_is_the_drawn_fraction():
    x = _images(b=12, h=40, w=50)
    m = PerlinMask(coverage=(0.2, 0.2))(x, _gen(0))
    counts = m.sum((1, 2, 3))
    assert torch.all(counts == round(0.2 * 40 * 50))  # top-q of continuous noise: exactly round(q H W) pixels
    m = PerlinMask(coverage=(0.05, 0.35))(_images(b=400, h=16, w=16), _gen(1))
    cov = m.mean((1, 2, 3))
    assert float(cov.min()) >= 0.05 - 1 / 256 and float(cov.max()) <= 0.35 + 1 / 256
    assert abs(float(cov.mean()) - 0.2) < 4 * 0.3 / math.sqrt(12 * 400)  # uniform mean 0.2, sd 0.3/sqrt(12)


def test_rectangle_mask_area_exact():
    m = RectangleMask(count=(1, 1), size=(0.25, 0.25))(_images(b=10, h=64, w=64), _gen(0))
    assert torch.all(m.sum((1, 2, 3)) == 16 * 16)  # one 16 x 16 box, always fully inside


def test_blob_mask_without_roughness_is_a_disc():
    m = BlobMask(count=(1, 1), radius=(0.1, 0.1), roughness=0.0)(_images(b=40, h=100, w=100), _gen(0))
    areas = m.sum((1, 2, 3))
    assert abs(float(areas.median()) - math.pi * 10 ** 2) / (math.pi * 100) < 0.05  # some discs are cut by the border
    assert float(areas.max()) <= math.pi * 10 ** 2 * 1.05


def test_line_mask_is_a_thin_capsule():
    m = LineMask(count=(1, 1), width=(6 / 256, 6 / 256), length=(0.1, 0.1))(_images(b=60, h=256, w=256), _gen(0))
    capsule = 25.6 * 6 + math.pi * 3 ** 2  # segment × width + two half discs
    areas = m.sum((1, 2, 3))
    assert abs(float(areas.median()) - capsule) / capsule < 0.1


def test_crack_mask_is_thin_meandering_and_inside_its_box():
    from scipy import ndimage

    side = 128
    x = _images(b=64, h=side, w=side)
    masks = {w: CrackMask(width=(w / side, w / side), extent=(0.5, 0.5))(x, _gen(0))[:, 0].numpy() for w in (2, 4)}
    for w, m in masks.items():
        for mi in m:
            ys, xs = np.nonzero(mi)
            assert np.ptp(ys) <= side / 2 + 1 and np.ptp(xs) <= side / 2 + 1  # inside a box of half the side
        # thin: eroding with a square wider than the crack leaves (almost) nothing; critical points of the
        # noise, where the first-order distance estimate fails, may leave a few pixels
        survive = ndimage.binary_erosion(m, structure=np.ones((1, w + 2, w + 2), bool)).sum() / m.sum()
        assert survive < 0.03, (w, survive)
    # area ~ curve length × width: doubling the width doubles the area (same seed, same curves)
    ratio = masks[4].sum() / masks[2].sum()
    assert 1.7 < ratio < 2.3, ratio
    # meandering: a mask is not a straight segment (its pixels do not lie on one line)
    bent = 0
    for mi in masks[2]:
        pts = np.argwhere(mi).astype(float)
        if len(pts) >= 20:
            s = np.linalg.svd(pts - pts.mean(0), compute_uv=False)
            bent += s[1] / s[0] > 0.2
    assert bent > 32


def test_paper_corruption_default_recipe_and_weights():
    x = _images(b=32, h=24, w=24)
    bank = torch.rand(4, 3, 24, 24, generator=_gen(3))
    default = paper_corruption(image_size=24, channels=3, texture_bank=bank, opacity=(0.3, 1.0))
    explicit = MaskedCorruption(  # the published recipe, written out with the public classes
        RandomChoice([PerlinMask(), BlobMask(), RectangleMask(), LineMask()], weights=[0.4, 0.3, 0.15, 0.15]),
        RandomChoice([PatchFill(), TextureFill(bank), NoiseFill(), ElasticFill(), ColorShiftFill()],
                     weights=[0.3, 0.25, 0.15, 0.15, 0.15]), opacity=(0.3, 1.0), clean_fraction=0.1)
    a, ma = default(x, _gen(5))
    b, mb = explicit(x, _gen(5))
    assert torch.equal(a, b) and torch.equal(ma, mb)
    only_cracks = paper_corruption(image_size=24, channels=3, texture_bank=bank,
                                   mask_weights={"perlin": 0, "blob": 0, "rectangle": 0, "line": 0, "crack": 1},
                                   fill_weights={"patch": 0, "texture": 0, "elastic": 0, "color": 0})
    assert [type(m) for m in only_cracks.mask.options] == [CrackMask]
    assert [type(f) for f in only_cracks.fill.options] == [NoiseFill]  # "noise" left out: its default weight
    assert list(MASK_WEIGHTS) == ["perlin", "blob", "rectangle", "line", "crack", "smooth"] and len(FILL_WEIGHTS) == 5
    with_cracks = paper_corruption(image_size=24, channels=3, texture_bank=bank, mask_weights={"crack": 0.2})
    assert [type(m) for m in with_cracks.mask.options] == [PerlinMask, BlobMask, RectangleMask, LineMask, CrackMask]
    assert with_cracks.mask.weights == pytest.approx(tuple(v / 1.2 for v in (0.4, 0.3, 0.15, 0.15, 0.2)))
    for bad, words in [((0, 0, 0, 0, 1), r"mask_weights must be a mapping \{option name: weight\} over \['perlin'"),
                       ({"crak": 1}, r"mask_weights: unknown option name\(s\) \['crak'\].*did you mean 'crack'"),
                       ({"perlin": 0, "blob": 0, "rectangle": 0, "line": 0}, r"mask_weights must have a positive sum"),
                       ({"blob": -1}, r"mask_weights\['blob'\] must be a finite weight >= 0, got -1")]:
        with pytest.raises(ValueError, match=words):
            paper_corruption(image_size=24, mask_weights=bad)


@pytest.mark.parametrize("fill", FILLS, ids=lambda f: type(f).__name__)
@pytest.mark.parametrize("mask", MASKS, ids=lambda m: type(m).__name__)
def test_corruption_changes_only_masked_pixels(mask, fill):
    x = _images(b=6, h=16, w=16, seed=3)
    corrupt = MaskedCorruption(mask, fill, opacity=(1.0, 1.0))
    x_tilde, m = corrupt(x, _gen(4))
    assert x_tilde.shape == x.shape and m.shape == (6, 1, 16, 16)
    assert float(x_tilde.min()) >= 0 and float(x_tilde.max()) <= 1
    outside = (m == 0).expand_as(x)
    assert torch.equal(x_tilde[outside], x[outside])  # bit-identical outside the mask
    changed = (x_tilde != x).any(1, keepdim=True)
    assert float(changed[m == 1].float().mean()) > 0.5
    again, m2 = corrupt(x, _gen(4))
    assert torch.equal(again, x_tilde) and torch.equal(m2, m)


def test_patch_fill_takes_other_images_of_the_batch():
    x = _images(b=7, seed=5)
    content = PatchFill(translate=False)(x, _gen(0))
    sources = []
    for i in range(7):
        hits = [j for j in range(7) if torch.equal(content[i], x[j])]
        assert hits and hits[0] != i  # an exact copy of another image (a derangement)
        sources.append(hits[0])
    assert sorted(sources) == list(range(7))
    shifted = PatchFill(translate=True)(x, _gen(0))
    for i in range(7):  # a cyclic shift of another image: same multiset of pixel values
        match = [k for k in range(7) if k != i and torch.equal(shifted[i].flatten().sort().values,
                                                                 x[k].flatten().sort().values)]
        assert match
    single = PatchFill()(x[:1], _gen(3))  # a batch of one borrows a shifted copy of itself
    assert torch.equal(single.flatten().sort().values, x[:1].flatten().sort().values)


def test_patch_and_texture_fill_from_a_bank():
    bank = torch.rand(4, 1, 12, 12, generator=_gen(7))
    x = torch.rand(9, 1, 12, 12, generator=_gen(8))
    content = PatchFill(bank=bank, translate=False)(x, _gen(0))
    assert all(any(torch.equal(content[i], bank[k]) for k in range(4)) for i in range(9))
    tex = TextureFill(bank, jitter=0.0)(x, _gen(0))
    variants = [bank[k].flip(dims) for k in range(4) for dims in ([], [-2], [-1], [-2, -1])]
    assert all(any(torch.equal(tex[i], v) for v in variants) for i in range(9))
    rgb = TextureFill(bank)(torch.rand(2, 3, 24, 24), _gen(0))  # gray bank → RGB, 12 → 24 px
    assert rgb.shape == (2, 3, 24, 24) and torch.equal(rgb[:, 0], rgb[:, 2])


def test_default_texture_bank_is_seeded():
    x = torch.rand(4, 3, 20, 20)
    a = TextureFill(count=6, seed=1)(x, _gen(0))
    b = TextureFill(count=6, seed=1)(x, _gen(0))
    c = TextureFill(count=6, seed=2)(x, _gen(0))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0 and float(a.max()) <= 1 and float(a.std()) > 0.02


def test_elastic_fill_identity_constant_and_bounded_displacement():
    x = _images(b=3, h=24, w=24)
    torch.testing.assert_close(ElasticFill(magnitude=(0.0, 0.0))(x, _gen(0)), x, atol=1e-6, rtol=0)
    const = torch.full((2, 3, 24, 24), 0.37)
    torch.testing.assert_close(ElasticFill()(const, _gen(0)), const, atol=1e-6, rtol=0)
    # a horizontal ramp r(x) = x / W: the warped value moves by at most the displacement, here ≤ 0.05 W px
    w = 64
    ramp = (torch.arange(w, dtype=torch.float32) / w).expand(4, 1, w, w).contiguous()
    out = ElasticFill(magnitude=(0.05, 0.05))(ramp, _gen(1))
    inner = (slice(None), slice(None), slice(None), slice(8, w - 8))  # away from the reflected border
    err = (out - ramp)[inner].abs()
    assert float(err.max()) <= 0.05 + 1e-5 and float(err.max()) > 0.01


def test_color_shift_and_noise_fill_statistics():
    x = _images(b=4)
    shifted = ColorShiftFill(brightness=(0.1, 0.1), contrast=(1.0, 1.0), color=(0.0, 0.0))(x, _gen(0))
    torch.testing.assert_close(shifted, (x + 0.1).clamp(0, 1), atol=1e-6, rtol=0)
    mid = torch.full((8, 3, 64, 64), 0.5)
    noisy = NoiseFill(sigma=(0.1, 0.1), additive=True)(mid, _gen(0))
    assert abs(float((noisy - mid).std()) - 0.1) < 0.003 and abs(float((noisy - mid).mean())) < 0.002
    fresh = NoiseFill(sigma=(0.0, 0.0))(mid, _gen(0))  # independent of x: a uniform random level per channel
    levels = fresh[:, :, 0, 0]
    assert torch.equal(fresh, levels[:, :, None, None].expand_as(fresh)) and float(levels.std()) > 0.1


def test_random_choice_frequencies_match_weights():
    opts = [lambda x, g, k=k: torch.full((x.shape[0], 1), float(k)) for k in range(3)]
    pick = RandomChoice(opts, weights=[0.5, 0.0, 1.5])
    out = pick(torch.zeros(4000, 1), _gen(0)).squeeze(1)
    share = (out == 2).float().mean()
    assert not torch.any(out == 1)
    assert abs(float(share) - 0.75) < 4 * math.sqrt(0.75 * 0.25 / 4000)
    masks = RandomChoice(MASKS)(_images(b=10), _gen(0))
    assert masks.shape == (10, 1, 32, 32)


def test_random_choice_puts_each_options_output_back_in_batch_order():
    # reference: the choice of every sample recomputed by hand from the same uniform draws
    opts = [lambda x, g, k=k: (x + 10 * k, torch.full_like(x, float(k))) for k in range(3)]
    x = torch.arange(12.0)[:, None]  # (12, 1), sample i holds i
    out, chosen = RandomChoice(opts, weights=[1, 2, 1])(x, _gen(3))
    u = torch.rand(12, generator=_gen(3))
    expected = [0 if v < 0.25 else 1 if v < 0.75 else 2 for v in u.tolist()]
    assert chosen.squeeze(1).tolist() == expected and len(set(expected)) == 3
    assert torch.equal(out, x + 10 * chosen)
    one = RandomChoice(opts, weights=[0, 1, 0])(x, _gen(3))  # every sample takes option 1
    assert torch.equal(one[0], x + 10) and torch.equal(one[1], torch.ones_like(x))


def test_a_sample_corrupted_from_its_own_seed_does_not_depend_on_its_batch():
    from manifold_ae.corruptions.base import corrupt_per_sample

    corrupt = paper_corruption(image_size=16, channels=3, texture_bank=BANK, seed=0)
    x = _images(b=6, h=16, w=16)
    seeds = [11, 2 ** 62, 5, 7, 0, 123456789]
    x_tilde, m = corrupt_per_sample(corrupt, x, seeds)
    assert x_tilde.shape == x.shape and m.shape == (6, 1, 16, 16)
    for i, seed in enumerate(seeds):  # reference: the sample alone, with a generator seeded by hand
        alone, m_alone = corrupt(x[i:i + 1], torch.Generator().manual_seed(seed))
        assert torch.equal(x_tilde[i:i + 1], alone) and torch.equal(m[i:i + 1], m_alone)
    shard, m_shard = corrupt_per_sample(corrupt, x[1::2], seeds[1::2])  # another split of the same samples
    assert torch.equal(shard, x_tilde[1::2]) and torch.equal(m_shard, m[1::2])
    assert not torch.equal(corrupt_per_sample(corrupt, x, [s + 1 for s in seeds])[0], x_tilde)
    with pytest.raises(ValueError, match=r"seeds must hold one seed per sample \(6\), got 2"):
        corrupt_per_sample(corrupt, x, [1, 2])
    with pytest.raises(ValueError, match=r"seeds must be integers in \[0, 2\*\*63\)"):
        corrupt_per_sample(corrupt, x, [-1, 0, 0, 0, 0, 0])


def test_sample_seeds_are_splitmix64_of_seed_step_and_position():
    from manifold_ae.loop import _mix64, sample_seeds

    # SplitMix64 reference outputs (Steele, Lea & Flood 2014; Vigna's splitmix64.c): state 0 -> 0xE220A8397B1DCDAF,
    # then 0x6E789E6AA1B965F4 (the state advanced by the golden gamma once more)
    assert _mix64(0) == 0xE220A8397B1DCDAF and _mix64(0x9E3779B97F4A7C15) == 0x6E789E6AA1B965F4
    full = sample_seeds(seed=3, step=17, positions=range(8))
    assert len(set(full)) == 8 and all(0 <= v < 2 ** 63 for v in full)
    ranks = [sample_seeds(seed=3, step=17, positions=range(r, 8, 2)) for r in range(2)]  # 2 processes
    assert [ranks[j % 2][j // 2] for j in range(8)] == full
    others = sample_seeds(seed=3, step=18, positions=range(8)) + sample_seeds(seed=4, step=17, positions=range(8))
    assert not set(others) & set(full)


def test_paper_corruption_clean_fraction_and_locality():
    corrupt = paper_corruption(image_size=16, channels=1, clean_fraction=0.25, seed=0)
    x = _images(b=400, c=1, h=16, w=16)
    x_tilde, m = corrupt(x, _gen(0))
    clean = m.sum((1, 2, 3)) == 0
    assert abs(float(clean.float().mean()) - 0.25) < 4 * math.sqrt(0.25 * 0.75 / 400)
    assert torch.equal(x_tilde[clean], x[clean])
    outside = (m == 0).expand_as(x)
    assert torch.equal(x_tilde[outside], x[outside])
    again, _ = paper_corruption(image_size=16, channels=1, clean_fraction=0.25, seed=0)(x, _gen(0))
    assert torch.equal(again, x_tilde)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2 ** 31), b=st.integers(1, 5), c=st.sampled_from([1, 3]), h=st.integers(8, 24),
       w=st.integers(8, 24))
def test_paper_corruption_property(seed, b, c, h, w):
    x = torch.rand(b, c, h, w, generator=_gen(seed))
    x_tilde, m = paper_corruption(image_size=(h, w), channels=c, seed=0)(x, _gen(seed))
    assert x_tilde.shape == x.shape and m.shape == (b, 1, h, w)
    assert float(x_tilde.min()) >= 0 and float(x_tilde.max()) <= 1
    assert torch.equal(x_tilde[(m == 0).expand_as(x)], x[(m == 0).expand_as(x)])


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match=r"x must be a floating tensor of images \(B, C, H, W\)"):
        PerlinMask()(torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match=r"coverage must be an interval \(low, high\) with low <= high"):
        PerlinMask(coverage=(0.5, 0.1))
    with pytest.raises(ValueError, match=r"cells must be powers of two"):
        PerlinMask(cells=(3, 8))
    with pytest.raises(ValueError, match=r"count\[0\] must be an integer in \[1, None\], got 0"):
        BlobMask(count=(0, 2))
    with pytest.raises(ValueError, match=r"bank must be a floating tensor \(N, C, H, W\)"):
        PatchFill(bank=torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match=r"weights must have one entry per option \(2\), got 3"):
        RandomChoice([NoiseFill(), ElasticFill()], weights=[1, 1, 1])
    with pytest.raises(ValueError, match=r"weights\[1\] must be >= 0"):
        RandomChoice([NoiseFill(), ElasticFill()], weights=[1, -1])
    with pytest.raises(ValueError, match=r"channels must be one of \[1, 3\], got 2"):
        paper_corruption(image_size=8, channels=2)
    with pytest.raises(ValueError, match=r"bank has 2 channels; expected 1 or 3"):
        TextureFill(torch.rand(2, 2, 8, 8))(torch.rand(1, 3, 8, 8))


@pytest.mark.gpu
def test_cuda_images_with_cpu_generator_match_cpu():
    x = _images(b=4, h=32, w=32)
    corrupt = paper_corruption(image_size=32, channels=3, seed=0)
    cpu, m_cpu = corrupt(x, _gen(0))
    gpu, m_gpu = corrupt(x.cuda(), _gen(0))
    assert torch.equal(m_gpu.cpu(), m_cpu)
    assert float((gpu.cpu() - cpu).abs().max()) < 1e-4


@pytest.mark.gpu
def test_corruptions_and_a_training_step_on_cuda_never_synchronise():
    from manifold_ae.corruptions.base import corrupt_per_sample
    from manifold_ae.loop import train_step
    from manifold_ae.models.unet import GatedUNet
    from manifold_ae.objectives import SelfSupervised

    x = _images(b=8, h=32, w=32).cuda()
    corrupt = paper_corruption(image_size=32, channels=3, seed=0)
    model = GatedUNet(3, width=4, depth=2, dilations=(1, 2)).cuda()
    objective = SelfSupervised(model, corruption=corrupt)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train_step(objective, x, optimizer, seeds=list(range(8)))  # warm-up: lazy initialisation may synchronise
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        corrupt(x, torch.Generator(device="cuda").manual_seed(0))
        corrupt_per_sample(corrupt, x, list(range(8)))
        loss = train_step(objective, x, optimizer, seeds=list(range(8, 16)))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss)


def test_smooth_mask_is_soft_large_and_partly_transparent():
    """SmoothMask: values in [0, peak] with peak in the amplitude interval, a full-strength core of about the drawn
    coverage, a soft ramp (intermediate values), and the same mask from the same seed."""
    x = _images(b=16, c=1, h=64, w=64)
    sampler = SmoothMask(coverage=(0.2, 0.2), amplitude=(0.3, 0.6), edge=0.15)
    m = sampler(x, _gen(3))
    assert m.shape == (16, 1, 64, 64) and torch.equal(m, sampler(x, _gen(3)))
    peak = m.amax(dim=(1, 2, 3))
    assert bool(((peak >= 0.3 - 1e-6) & (peak <= 0.6 + 1e-6)).all())
    core = (m >= peak[:, None, None, None] * (1 - 1e-6)).float().mean(dim=(1, 2, 3))
    assert core.sub(0.2).abs().max() < 0.01  # the top 20 % of the noise, up to ties at one pixel
    ramp = ((m > 0) & (m < peak[:, None, None, None] * 0.99)).float().mean(dim=(1, 2, 3))
    assert bool((ramp > 0.01).all())  # a soft edge, not a hard threshold
    for bad, words in [({"coverage": (0.0, 0.2)}, "coverage"), ({"amplitude": (0.0, 0.5)}, "amplitude"),
                       ({"edge": 1.0}, "edge")]:
        with pytest.raises(ValueError, match=words):
            SmoothMask(**bad)


def test_noise_sigma_adds_gaussian_noise_everywhere_after_the_blend():
    """noise_sigma: x_tilde minus the noise-free corruption from the same seed has the Gaussian's std, including on
    clean samples and outside the mask; the mask is the occlusion's."""
    x = _images(b=32, c=1, h=32, w=32)
    plain = MaskedCorruption(RectangleMask(), ColorShiftFill(), opacity=(1.0, 1.0), clean_fraction=0.5)
    noisy = MaskedCorruption(RectangleMask(), ColorShiftFill(), opacity=(1.0, 1.0), clean_fraction=0.5,
                             noise_sigma=0.05)
    a, ma = plain(x, _gen(4))
    b, mb = noisy(x, _gen(4))
    assert torch.equal(ma, mb)
    eps = b - a
    assert abs(float(eps.std()) - 0.05) < 0.05 * 0.02  # 32768 draws: the std's relative error ~0.4 %
    assert abs(float(eps.mean())) < 0.05 * 0.02
    outside = eps[(ma == 0).expand_as(eps)]
    assert abs(float(outside.std()) - 0.05) < 0.05 * 0.03
    with pytest.raises(ValueError, match="noise_sigma"):
        MaskedCorruption(RectangleMask(), ColorShiftFill(), noise_sigma=-0.1)
    recipe = paper_corruption(image_size=16, channels=1, texture_bank=BANK[:, :1], noise_sigma=0.02)
    assert recipe.noise_sigma == 0.02


def test_shade_fill_is_the_closed_form_contrast_change_without_gain():
    """ShadeFill with gain 0: exactly the global contrast change (x - m) c + m of the sample's mean m, clipped."""
    x = _images(b=6, c=1, h=32, w=32)
    out = ShadeFill(gain=(0.0, 0.0), contrast=(1.5, 1.5))(x, _gen(0))
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(out, ((x - m) * 1.5 + m).clamp(0, 1))


def test_shade_fill_gain_is_a_smooth_field_within_its_bounds():
    """ShadeFill with contrast 1: out / x = 1 + g n with |g n| <= 0.4, and the field varies smoothly (Perlin on at
    most 4 cells over 64 px moves at most a few hundredths per pixel), unlike white noise of the same range; the
    texture is kept (out and x correlate strongly)."""
    x = _images(b=16, c=1, h=64, w=64)
    out = ShadeFill(gain=(0.4, 0.4), contrast=(1.0, 1.0))(x, _gen(5))
    ratio = out / x
    assert float(ratio.min()) >= 1 - 0.4 - 1e-5 and float(ratio.max()) <= 1 + 0.4 + 1e-5
    assert float((ratio - 1).abs().amax(dim=(1, 2, 3)).min()) > 0.1  # a real gain change in every sample
    step = max(float((ratio[..., 1:, :] - ratio[..., :-1, :]).abs().max()),
               float((ratio[..., 1:] - ratio[..., :-1]).abs().max()))
    assert step < 0.06  # Perlin: |dn/dpixel| <= ~2.2 * cells / side; white noise would move ~0.8
    corr = np.corrcoef((x - x.mean((2, 3), keepdim=True)).flatten(), (out - out.mean((2, 3), keepdim=True)).flatten())
    assert corr[0, 1] > 0.8
    with pytest.raises(ValueError, match="gain"):
        ShadeFill(gain=(0.5, 1.5))
    with pytest.raises(ValueError, match="cells"):
        ShadeFill(cells=(1, 3))


def test_shade_weight_gives_that_fraction_of_samples_the_soft_shading_masks():
    """paper_corruption(shade_weight=f): with only binary recipe masks (rectangles), the samples with a soft mask
    (values strictly between 0 and 1) are the shading ones; their share is f (1 - clean) within 4 binomial sd."""
    x = _images(b=600, c=1, h=32, w=32)
    f, clean = 0.3, 0.1
    corrupt = paper_corruption(image_size=32, channels=1, clean_fraction=clean, opacity=(1.0, 1.0),
                               mask_weights={"perlin": 0, "blob": 0, "line": 0}, shade_weight=f)
    _, m = corrupt(x, _gen(2))
    soft = ((m > 0) & (m < 1)).flatten(1).any(1).float().mean().item()
    p = f * (1 - clean)
    assert abs(soft - p) < 4 * math.sqrt(p * (1 - p) / 600)
    assert isinstance(paper_corruption(image_size=32, channels=1), MaskedCorruption)  # 0: the recipe as before
    with pytest.raises(ValueError, match="shade_weight"):
        paper_corruption(image_size=32, channels=1, shade_weight=1.5)
