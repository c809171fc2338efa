"""Overlay grids: a readable PNG of the expected size, atomic writes, clear shape errors."""
import numpy as np
import pytest
import torch
from PIL import Image

from manifold_ae.viz.overlays import overlay_grid


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
