"""data/io.py: decoding, channel conversion, resizing (stretch / pad), mask binarisation and every error path."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from manifold_ae.checks import as_hw
from manifold_ae.images.data.io import list_images, load_image, load_mask, load_pair


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
