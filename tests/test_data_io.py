"""data/io.py: decoding, channel conversion, resizing (stretch / pad), mask binarisation and every error path."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from manifold_ae.checks import as_hw
from manifold_ae.images.data.io import (EmptyMaskError, ImageDataset, Sample, binarise_mask, list_images, load_image,
                                        load_mask, load_pair)


def _write(arr: np.ndarray, path, mode=None):
    Image.fromarray(arr, mode=mode).save(path)
    return path


def test_load_image_rgb_values_exact(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(7, 11, 3), dtype=np.uint8)
    x = load_image(_write(arr, tmp_path / "a.png"), channels=3)
    assert x.shape == (3, 7, 11) and x.dtype == torch.float32
    np.testing.assert_allclose(x.permute(1, 2, 0).numpy(), arr / 255.0, atol=1e-7)


def test_gray_to_rgb_repeats_and_rgb_to_gray_is_luma(tmp_path):
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, size=(5, 6), dtype=np.uint8)
    x = load_image(_write(gray, tmp_path / "g.png"), channels=3)
    for c in range(3):
        np.testing.assert_allclose(x[c].numpy(), gray / 255.0, atol=1e-7)
    rgb = rng.integers(0, 256, size=(5, 6, 3), dtype=np.uint8)
    y = load_image(_write(rgb, tmp_path / "c.png"), channels=1)
    luma = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255.0  # ITU-R 601
    assert y.shape == (1, 5, 6)
    np.testing.assert_allclose(y[0].numpy(), luma, atol=1e-6)


def test_16bit_and_rgba_files(tmp_path):
    arr16 = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    Image.fromarray(arr16).save(tmp_path / "d.png")
    x = load_image(tmp_path / "d.png", channels=1)
    np.testing.assert_allclose(x[0].numpy(), arr16 / 65535.0, atol=1e-6)
    rgba = np.zeros((3, 4, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 10  # alpha is dropped, not multiplied in
    y = load_image(_write(rgba, tmp_path / "e.png"), channels=3)
    np.testing.assert_allclose(y[0].numpy(), 200 / 255.0, atol=1e-7)


def test_stretch_resize_close_to_pillow_bilinear(tmp_path):
    yy, xx = np.mgrid[0:64, 0:96]
    arr = np.round(255 * (0.5 + 0.4 * np.sin(yy / 5.0) * np.cos(xx / 7.0))).astype(np.uint8)
    path = _write(arr, tmp_path / "s.png")
    x = load_image(path, channels=1, size=(32, 40))
    ref = np.asarray(Image.open(path).resize((40, 32), Image.Resampling.BILINEAR), dtype=np.float64) / 255
    assert x.shape == (1, 32, 40)
    assert np.abs(x[0].numpy() - ref).max() < 0.02  # both antialiased triangle filters; Pillow rounds to uint8


def test_pad_mode_letterboxes_keeping_aspect(tmp_path):
    rng = np.random.default_rng(2)
    arr = rng.integers(0, 256, size=(20, 40), dtype=np.uint8)
    img_path = _write(arr, tmp_path / "p.png")
    mask = np.full((20, 40), 255, dtype=np.uint8)
    mask_path = _write(mask, tmp_path / "p_mask.png")
    image, m = load_pair(img_path, mask_path, channels=1, size=32, resize_mode="pad")
    # scale min(32/20, 32/40) = 0.8 -> inner 16 x 32 centred: rows 8..23
    assert image.shape == (1, 32, 32) and m.shape == (1, 32, 32)
    assert torch.all(image[:, :8] == 0) and torch.all(image[:, 24:] == 0)
    assert torch.all(m[:, :8] == 0) and torch.all(m[:, 24:] == 0) and torch.all(m[:, 8:24] == 1)
    inner = load_image(img_path, channels=1, size=(16, 32))  # the same content, stretched to the inner box
    torch.testing.assert_close(image[:, 8:24], inner)


def test_mask_binarised_at_128_and_nearest_resize(tmp_path):
    vals = np.array([[0, 127, 128, 255]], dtype=np.uint8)
    m = load_mask(_write(vals, tmp_path / "m.png"))
    np.testing.assert_array_equal(m[0].numpy(), [[0, 0, 1, 1]])
    box = np.zeros((8, 8), dtype=np.uint8)
    box[2:5, 3:7] = 200
    up = load_mask(_write(box, tmp_path / "b.png"), size=16)
    np.testing.assert_array_equal(up[0].numpy(), np.kron(box >= 128, np.ones((2, 2))))  # nearest ×2 reference
    assert set(np.unique(load_mask(tmp_path / "b.png", size=(5, 13)).numpy())) <= {0.0, 1.0}


# a binary reference pattern (defect = True) written below in every mask encoding
_REF = np.zeros((6, 9), dtype=bool)
_REF[1:4, 2:7] = True
_REF[5, 0] = True


def _palette(ref: np.ndarray, colour: tuple[int, int, int]) -> Image.Image:
    im = Image.fromarray(ref.astype(np.uint8), mode="L").convert("P")  # indices 0 / 1 ...
    im.putpalette([0, 0, 0, *colour] + [0, 0, 0] * 254)  # ... shown black / colour
    return im


@pytest.mark.parametrize("encoding, name", [
    (lambda r: Image.fromarray(r.astype(np.uint8)), "zero_one_8bit.png"),
    (lambda r: Image.fromarray(r.astype(np.uint8) * 255), "zero_255.png"),
    (lambda r: Image.fromarray(r.astype(np.uint8) * 37), "zero_37.png"),  # any nonzero value is defect
    (lambda r: Image.fromarray(r), "bool.png"),  # mode "1"
    (lambda r: Image.fromarray(r), "bool.tif"),
    (lambda r: _palette(r, (255, 0, 0)), "palette_red.png"),
    (lambda r: _palette(r, (60, 0, 0)), "palette_dark.png"),  # luma 18 of 255: below the old 128 rule
    (lambda r: Image.fromarray(r.astype(np.uint16)), "zero_one_16bit.png"),  # "I;16"
    (lambda r: Image.fromarray(r.astype(np.uint16) * 65535), "zero_65535.tif"),
    (lambda r: Image.fromarray(r.astype(np.int32) * 70000), "int32.tif"),  # "I"
    (lambda r: Image.fromarray(r.astype(np.float32)), "float.tif"),  # "F"
    (lambda r: Image.fromarray(np.stack([r * 200, r * 0, r * 0], -1).astype(np.uint8)), "rgb_red.png"),
    (lambda r: Image.fromarray(np.stack([r * 255] * 3 + [np.full(r.shape, 255)], -1).astype(np.uint8)),
     "rgba_white.png"),
    (lambda r: Image.fromarray(np.stack([r * 255, np.full(r.shape, 255)], -1).astype(np.uint8), mode="LA"),
     "gray_alpha.png"),
])
def test_two_valued_masks_in_every_encoding(tmp_path, encoding, name):
    im = encoding(_REF)
    im.save(tmp_path / name)
    with Image.open(tmp_path / name) as back:
        mode = back.mode
    m = load_mask(tmp_path / name)
    assert m.shape == (1, 6, 9) and m.dtype == torch.float32, mode
    np.testing.assert_array_equal(m[0].numpy(), _REF.astype(np.float32), err_msg=f"{name} read as mode {mode}")


def test_more_valued_masks_threshold_at_half_their_full_scale(tmp_path):
    ramp = np.arange(6 * 9).reshape(6, 9) * 5  # 0 .. 265: three or more values
    soft8 = np.clip(ramp, 0, 255).astype(np.uint8)
    Image.fromarray(soft8).save(tmp_path / "soft8.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "soft8.png")[0].numpy(), soft8 >= 128)
    soft16 = (np.arange(6 * 9).reshape(6, 9) * 1200).astype(np.uint16)  # 0 .. 63600: scale 65535
    Image.fromarray(soft16).save(tmp_path / "soft16.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "soft16.png")[0].numpy(), soft16 > 32767.5)
    small16 = np.clip(ramp, 0, 255).astype(np.uint16)  # 16-bit file holding 8-bit values: scale 255
    Image.fromarray(small16).save(tmp_path / "small16.tif")
    np.testing.assert_array_equal(load_mask(tmp_path / "small16.tif")[0].numpy(), small16 >= 128)
    noise = (np.arange(6 * 9).reshape(6, 9) % 4).astype(np.uint8)  # lossy background 0..3, no defect
    Image.fromarray(noise).save(tmp_path / "noise.png")
    assert float(load_mask(tmp_path / "noise.png").sum()) == 0.0
    jpeg_like = np.where(_REF, 250, 0).astype(np.uint8) + (np.arange(6 * 9).reshape(6, 9) % 3).astype(np.uint8)
    Image.fromarray(jpeg_like).save(tmp_path / "jpeg_like.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "jpeg_like.png")[0].numpy(), _REF)


def test_binarise_mask_rules_on_arrays():
    np.testing.assert_array_equal(binarise_mask(np.array([[0, 3], [3, 0]])), [[False, True], [True, False]])
    np.testing.assert_array_equal(binarise_mask(np.full((2, 2), 9)), np.ones((2, 2), bool))  # constant nonzero
    np.testing.assert_array_equal(binarise_mask(np.zeros((2, 2))), np.zeros((2, 2), bool))
    np.testing.assert_array_equal(binarise_mask(np.array([[100, 200]])), [[False, True]])  # 8-bit scale: > 127.5
    np.testing.assert_array_equal(binarise_mask(np.array([[0.2, 0.4, 0.9]])), [[False, False, True]])  # scale 1
    np.testing.assert_array_equal(binarise_mask(np.array([[0.0, 1e10, 4e9]])), [[False, True, False]])  # above


def test_empty_mask_of_an_anomalous_image_is_a_named_error(tmp_path):
    image = _write(np.full((6, 9), 90, np.uint8), tmp_path / "dent.png")
    mask = _write(np.zeros((6, 9), np.uint8), tmp_path / "dent_mask.png")
    _, m = load_pair(image, mask, channels=1)  # a mask of zeros is fine for a normal image ...
    assert float(m.sum()) == 0.0
    with pytest.raises(EmptyMaskError, match=r"dent_mask\.png of the anomalous image .*dent\.png marks no defect "
                                             r"pixel.*empty_masks='exclude' \(--data\.empty_masks=exclude\)"):
        load_pair(image, mask, channels=1, anomalous=True)  # ... not for an anomalous one
    ds = ImageDataset([Sample(image, None, 0, "good"), Sample(image, mask, 1, "dent")], image_size=8, channels=1)
    assert float(ds[0]["mask"].sum()) == 0.0
    with pytest.raises(EmptyMaskError, match=r"dent_mask\.png"):
        ds[1]


def test_drop_empty_masks_counts_and_reports(tmp_path):
    image = _write(np.full((6, 9), 90, np.uint8), tmp_path / "x.png")
    empty = _write(np.zeros((6, 9), np.uint8), tmp_path / "empty_mask.png")
    full = _write(_REF.astype(np.uint8), tmp_path / "ok_mask.png")
    broken = tmp_path / "broken_mask.png"
    broken.write_bytes(full.read_bytes()[:20])
    samples = [Sample(image, None, 0, "good"), Sample(image, empty, 1, "a"), Sample(image, full, 1, "b"),
               Sample(image, broken, 1, "c")]
    ds = ImageDataset(samples, image_size=(6, 9), channels=1)
    with pytest.warns(UserWarning, match=r"left out 1 of 4 images: .*empty_mask\.png"):
        dropped = ds.drop_empty_masks()
    assert dropped == (samples[1],) and ds.excluded == (samples[1],)
    assert ds.samples == (samples[0], samples[2], samples[3]) and ds.labels == [0, 1, 1]  # the unreadable one stays
    np.testing.assert_array_equal(ds[1]["mask"][0].numpy(), _REF)
    with pytest.raises(ValueError, match=r"cannot read mask file .*broken_mask\.png"):
        ds[2]
    assert ds.drop_empty_masks() == ()  # nothing more to leave out
    only_empty = ImageDataset(samples[:2], image_size=(6, 9), channels=1)
    with pytest.raises(ValueError, match=r"every one of the 1 anomalous images has an empty mask"):
        only_empty.drop_empty_masks()


def test_load_pair_without_mask_gives_zeros(tmp_path):
    path = _write(np.full((6, 9, 3), 77, np.uint8), tmp_path / "n.png")
    image, mask = load_pair(path, None, channels=3, size=(4, 4))
    assert image.shape == (3, 4, 4) and mask.shape == (1, 4, 4) and float(mask.abs().sum()) == 0.0
    torch.testing.assert_close(image, torch.full((3, 4, 4), 77 / 255.0))


def test_missing_file_error_names_path(tmp_path):
    missing = tmp_path / "nope.png"
    with pytest.raises(ValueError, match=r"nope\.png does not exist; expected an image file"):
        load_image(missing)
    with pytest.raises(ValueError, match=r"mask file .*nope\.png does not exist"):
        load_mask(missing)


def test_truncated_and_non_image_files_error(tmp_path):
    arr = np.random.default_rng(3).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    good = _write(arr, tmp_path / "full.png")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(ValueError, match=r"cannot read image file .*truncated\.png.*expected a complete"):
        load_image(truncated)
    text = tmp_path / "text.png"
    text.write_text("not an image")
    with pytest.raises(ValueError, match=r"cannot read image file .*text\.png"):
        load_image(text)
    jpg = tmp_path / "t.jpg"
    Image.fromarray(arr).save(jpg, quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(jpg.read_bytes()[: len(jpg.read_bytes()) // 2])
    with pytest.raises(ValueError, match=r"cut\.jpg"):
        load_image(cut)


def test_mask_size_mismatch_names_both_files(tmp_path):
    img = _write(np.zeros((10, 12), np.uint8), tmp_path / "x.png")
    mask = _write(np.zeros((10, 11), np.uint8), tmp_path / "x_mask.png")
    with pytest.raises(ValueError, match=r"x_mask\.png is 10x11 .*expected 10x12, the size of its image .*x\.png"):
        load_pair(img, mask, channels=1, size=8)
    with pytest.raises(ValueError, match=r"x_mask\.png is 10x11 .*expected 10x12"):
        load_mask(mask, expected_size=(10, 12))


def test_list_images_errors(tmp_path):
    with pytest.raises(ValueError, match=r"missing does not exist; expected a folder of images"):
        list_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty holds no images; expected at least one"):
        list_images(tmp_path / "empty")
    d = tmp_path / "d"
    d.mkdir()
    _write(np.zeros((2, 2), np.uint8), d / "a.PNG")
    (d / ".hidden").write_text("ignored")
    assert [p.name for p in list_images(d)] == ["a.PNG"]
    (d / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"unexpected file .*notes\.txt .*expected only images"):
        list_images(d)
    (d / "notes.txt").unlink()
    (d / "sub").mkdir()
    with pytest.raises(ValueError, match=r"unexpected sub-folder .*sub .*not searched recursively"):
        list_images(d)


def test_bad_arguments_name_the_argument(tmp_path):
    path = _write(np.zeros((4, 4), np.uint8), tmp_path / "z.png")
    with pytest.raises(ValueError, match=r"channels must be one of \[1, 3\], got 2"):
        load_image(path, channels=2)
    with pytest.raises(ValueError, match=r"resize_mode must be one of \['stretch', 'pad'\], got 'crop'"):
        load_image(path, resize_mode="crop")
    with pytest.raises(ValueError, match=r"size must be an integer in \[1, None\], got 0"):
        load_image(path, size=0)
    with pytest.raises(ValueError, match=r"image_size must be a positive int or a pair"):
        as_hw((1, 2, 3))


@settings(max_examples=15, deadline=None)
@given(h=st.integers(3, 60), w=st.integers(3, 60), th=st.integers(4, 40), tw=st.integers(4, 40))
def test_pad_mode_property(tmp_path_factory, h, w, th, tw):
    """Letterboxing keeps the aspect ratio (to rounding), centres the content and keeps masks binary."""
    d = tmp_path_factory.mktemp("pad")
    img = _write(np.full((h, w), 200, np.uint8), d / "i.png")
    msk = _write(np.full((h, w), 255, np.uint8), d / "m.png")
    image, mask = load_pair(img, msk, channels=1, size=(th, tw), resize_mode="pad")
    assert image.shape == (1, th, tw) and mask.shape == (1, th, tw)
    rows = torch.nonzero(mask[0].any(1)).squeeze(1)
    cols = torch.nonzero(mask[0].any(0)).squeeze(1)
    ih, iw = len(rows), len(cols)
    s = min(th / h, tw / w)
    assert ih == min(th, max(1, round(h * s))) and iw == min(tw, max(1, round(w * s)))
    assert int(rows[0]) == (th - ih) // 2 and int(cols[0]) == (tw - iw) // 2
    assert float(mask.sum()) == ih * iw  # a full box: binary, no holes
    assert torch.all(image[mask == 0] == 0)
