"""Overlay grids and predict's heat-map pictures: PNGs of the expected size and pixels, atomic writes, clear errors."""
import numpy as np
import pytest
import torch
from matplotlib import colormaps
from PIL import Image

from manifold_ae.commands.predict import heatmap_png
from manifold_ae.viz.overlays import heatmap_picture, overlay_grid


def _inputs(n=3, c=3, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, h, w, generator=g)
    x_hat = torch.rand(n, c, h, w, generator=g)
    residual = (x - x_hat).square().mean(1)
    masks = torch.zeros(n, 1, h, w)
    masks[:, :, 4:8, 4:8] = 1
    return x, x_hat, residual, masks, residual > 0.2


def test_overlay_grid_writes_png_with_one_row_per_image(tmp_path):
    x, x_hat, r, m, pred = _inputs()
    path = overlay_grid(x, x_hat, r, m, pred, path=tmp_path / "sub" / "grid.png", titles=["a", "b", "c"],
                        scores=[0.1, 0.2, 0.3], cell_inches=1.0, dpi=50)
    assert path == tmp_path / "sub" / "grid.png"
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size == (5 * 50, 3 * 50)  # 5 columns x 3 rows of 1-inch cells at 50 dpi
        pixels = np.asarray(im.convert("RGB"), dtype=float)
    assert pixels.std() > 10  # something was drawn
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]  # no temporary file left behind


def test_overlay_grid_accepts_grayscale_numpy_and_missing_masks(tmp_path):
    x, x_hat, r, _, _ = _inputs(n=2, c=1)
    path = overlay_grid(x.numpy(), x_hat.numpy(), r.numpy(), None, None, path=tmp_path / "g.png",
                        cell_inches=1.0, dpi=40)
    with Image.open(path) as im:
        assert im.size == (200, 80)


def test_overlay_grid_replaces_existing_file(tmp_path):
    target = tmp_path / "grid.png"
    target.write_bytes(b"old")
    x, x_hat, r, m, pred = _inputs(n=1)
    overlay_grid(x, x_hat, r, m, pred, path=target, dpi=30)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_overlay_grid_bad_shapes_raise_and_leave_no_file(tmp_path):
    x, x_hat, r, m, pred = _inputs(n=2)
    with pytest.raises(ValueError, match=r"residuals must have shape \(2, 16, 16\)"):
        overlay_grid(x, x_hat, r[:1], m, pred, path=tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"images must have shape \(N, C, H, W\) with C = 1 or 3"):
        overlay_grid(x[:, :2], x_hat, r, m, pred, path=tmp_path / "a.png")
    with pytest.raises(ValueError, match="reconstructions must have the shape of images"):
        overlay_grid(x, x_hat[:1], r, m, pred, path=tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"masks must have shape \(2, 16, 16\)"):
        overlay_grid(x, x_hat, r, m[:, :, :8], pred, path=tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"titles must have one entry per image \(2\), got 1"):
        overlay_grid(x, x_hat, r, m, pred, path=tmp_path / "a.png", titles=["only one"])
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------- predict's annotated heat-map picture

def _u8(a):
    return (np.asarray(a, dtype=np.float64) * 255 + 0.5).astype(np.uint8)


def test_heatmap_picture_panels_are_the_image_and_the_blend_pixel_for_pixel():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 12, 20, generator=g, dtype=torch.float64)
    heat = torch.rand(12, 20, generator=g, dtype=torch.float64) * 3.0  # some above vmax = 2: clipped
    pic = heatmap_picture(x, heat, score=0.5, threshold=0.25, vmax=2.0, range_note="test", alpha=0.4)
    a = np.asarray(pic)
    rgb = x.permute(1, 2, 0).numpy()
    blend = 0.6 * rgb + 0.4 * colormaps["inferno"](np.clip(heat.numpy() / 2.0, 0, 1))[..., :3]
    np.testing.assert_array_equal(a[:12, :20], _u8(rgb))
    np.testing.assert_allclose(a[:12, 20:40].astype(int), _u8(blend).astype(int), atol=1)
    assert a.shape[0] > 12 + 30  # caption and colour bar below the panels
    assert pic.info["decision"] == "anomalous: score >= threshold 0.25"
    assert pic.info["colour_range"] == "colour 0 to 2 (test)"


def test_heatmap_picture_colour_bar_runs_from_zero_to_vmax_left_to_right():
    pic = heatmap_picture(torch.zeros(1, 8, 8), torch.zeros(8, 8), score=0.1, threshold=0.3, vmax=1.0,
                          range_note="r", font_size=11, bar_height=10)
    a = np.asarray(pic).astype(int)
    row = a[8 + 2 * 14 + 2 + 5]  # middle row of the bar: panels (8) + two caption lines (14 px) + 2
    cmap = colormaps["inferno"]
    np.testing.assert_allclose(row[0], _u8(cmap(0.0)[:3]), atol=1)
    np.testing.assert_allclose(row[-1], _u8(cmap(1.0)[:3]), atol=1)
    assert pic.info["decision"] == "normal: score < threshold 0.3"
    no_thr = heatmap_picture(torch.zeros(1, 8, 8), torch.zeros(8, 8), score=0.1, threshold=None, vmax=1.0,
                             range_note="r", no_threshold="trained without held-out images")
    assert no_thr.info["decision"] == "no threshold: trained without held-out images"


def test_heatmap_picture_rejects_mismatched_heatmap_and_bad_vmax():
    with pytest.raises(ValueError, match=r"heatmap must have shape \(8, 8\) to match image, got \(4, 8\)"):
        heatmap_picture(torch.zeros(3, 8, 8), torch.zeros(4, 8), score=0, threshold=None, vmax=1, range_note="")
    with pytest.raises(ValueError, match="vmax must be a finite number > 0, got 0.0"):
        heatmap_picture(torch.zeros(3, 8, 8), torch.zeros(8, 8), score=0, threshold=None, vmax=0.0, range_note="")


def _write_rgb(path, h, w, seed):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


@pytest.mark.parametrize("resize_mode", ["stretch", "pad"])
def test_heatmap_png_is_written_at_the_files_resolution(tmp_path, resize_mode):
    pixels = _write_rgb(tmp_path / "wide.png", 20, 40, seed=2)  # H0 = 20, W0 = 40
    heat = torch.zeros(16, 16)
    if resize_mode == "pad":  # letterbox of a 20 x 40 file in 16 x 16: inner box 8 x 16 at row 4
        heat[4:12] = 0.5
    else:
        heat[:] = 0.5
    out = heatmap_png(tmp_path / "wide.png", heat, tmp_path / "out" / "wide.png", score=0.7, threshold=None,
                      vmax=1.0, range_note="note", channels=3, resize_mode=resize_mode, alpha=0.5)
    with Image.open(out) as im:
        a = np.asarray(im.convert("RGB")).astype(int)
        assert im.text["decision"] == "no threshold: the checkpoint stores none"
        assert im.text["score"] == "0.7"
    np.testing.assert_array_equal(a[:20, :40], pixels)  # the file itself, not the 16 x 16 model input
    # the heat map covers the file exactly: a constant 0.5 everywhere (padding cropped away, not stretched in)
    expected = 0.5 * pixels / 255 + 0.5 * np.asarray(colormaps["inferno"](0.5)[:3])
    np.testing.assert_allclose(a[:20, 40:80], _u8(expected).astype(int), atol=1)


def test_heatmap_png_stated_size_resizes_image_and_heat_map(tmp_path):
    _write_rgb(tmp_path / "a.png", 20, 40, seed=3)
    out = heatmap_png(tmp_path / "a.png", torch.full((16, 16), 0.25), tmp_path / "h.png", score=0.1,
                      threshold=0.2, vmax=1.0, range_note="n", channels=1, size=(30, 50))
    with Image.open(out) as im:
        a = np.asarray(im.convert("RGB")).astype(int)
        assert im.text["decision"] == "normal: score < threshold 0.2"
    assert a.shape[1] >= 100 and a.shape[0] > 30
    gray = a[:30, :50]
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()  # channels=1: gray
    assert np.array_equal(a[29, 50:100] != 255, np.ones((50, 3), bool))  # heat panel fills all 30 rows
