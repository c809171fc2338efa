"""manifold_ae.viz.figures: the figure builders draw the data they are given (checked against plain NumPy)."""
import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.quiver import Quiver
from PIL import Image

from manifold_ae.viz.figures import jacobian_spectra, lambda_sweep, rate_plot, save_figure, vector_field


def _lines(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def test_save_figure_writes_png_and_returns_relative_path(tmp_path):
    fig = rate_plot([1, 2, 4], {"a": [1, 4, 16]})
    rel = save_figure(fig, tmp_path, "t9_rate")
    assert rel == "figures/t9_rate.png"
    with Image.open(tmp_path / rel) as img:
        assert img.format == "PNG" and img.size[0] > 200


@pytest.mark.parametrize("name", ["../escape", "a/b", "", "x y"])
def test_save_figure_rejects_bad_names(tmp_path, name):
    with pytest.raises(ValueError, match="name must be a file stem"):
        save_figure(Figure(), tmp_path, name)


def test_rate_plot_legend_carries_the_fitted_slope():
    rng = np.random.default_rng(0)
    x = np.array([0.025, 0.05, 0.1, 0.2])
    y = 0.7 * x ** 2 * np.exp(0.05 * rng.standard_normal(4))
    expected = np.polyfit(np.log(x), np.log(y), 1)[0]  # independent reference
    fig = rate_plot(x, {"gap": y, "flat": np.ones(4)}, fit=["gap"], reference_slope=2.0)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"gap (slope {expected:.2f})" in labels and "flat" in labels and "slope 2 guide" in labels
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    np.testing.assert_allclose(_lines(ax)[f"gap (slope {expected:.2f})"].get_ydata(), y)


def test_rate_plot_drops_nonpositive_values_on_log_axes():
    fig = rate_plot([1, 2, 3], {"a": [1.0, 0.0, 2.0]}, fit=False)
    np.testing.assert_allclose(_lines(fig.axes[0])["a"].get_xdata(), [1, 3])


def test_rate_plot_rejects_bad_input():
    with pytest.raises(ValueError, match=r"series\['a'\] must have shape \(3,\)"):
        rate_plot([1, 2, 3], {"a": [1, 2]})
    with pytest.raises(ValueError, match="fit names"):
        rate_plot([1, 2, 3], {"a": [1, 2, 3]}, fit=["b"])
    with pytest.raises(ValueError, match="at least one curve"):
        rate_plot([1, 2, 3], {})


def test_vector_field_draws_scaled_displacements():
    fig = vector_field({"half": lambda x: 0.5 * x, "identity": lambda x: x}, extent=(-1, 1, -2, 2), grid=5,
                       manifold=np.array([[0.0, 0.0], [1.0, 1.0]]), arrow_scale=0.5)
    assert len(fig.axes) == 2
    quiver = next(c for c in fig.axes[0].collections if isinstance(c, Quiver))
    gx, gy = np.meshgrid(np.linspace(-1, 1, 5), np.linspace(-2, 2, 5))
    np.testing.assert_allclose(quiver.U, 0.5 * (0.5 * gx.ravel() - gx.ravel()))
    np.testing.assert_allclose(quiver.V, 0.5 * (0.5 * gy.ravel() - gy.ravel()))
    still = next(c for c in fig.axes[1].collections if isinstance(c, Quiver))
    assert np.abs(still.U).max() == 0 and np.abs(still.V).max() == 0


def test_vector_field_rejects_bad_input():
    with pytest.raises(ValueError, match="extent must be"):
        vector_field({"f": lambda x: x}, extent=(1, -1, 0, 1))
    with pytest.raises(ValueError, match=r"fields\['f'\] must map \(G, 2\) to \(G, 2\)"):
        vector_field({"f": lambda x: x[:, :1]})
    with pytest.raises(ValueError, match="grid must be an integer"):
        vector_field({"f": lambda x: x}, grid=1)
    with pytest.raises(ValueError, match="arrow_scale must be > 0"):
        vector_field({"f": lambda x: x}, arrow_scale=0.0)
    with pytest.raises(ValueError, match="at least one map"):
        vector_field({})
    with pytest.raises(ValueError, match="manifold must have 2 axis"):
        vector_field({"f": lambda x: x}, manifold=[1.0, 2.0])


def test_jacobian_spectra_plots_sorted_means_bands_and_projector():
    s = np.array([[0.2, 1.0, 0.0], [0.4, 0.8, 0.1]])  # (P=2, k=3), unsorted rows
    fig = jacobian_spectra({"J": s}, intrinsic_dim=1, references={"exact": [0.0, 0.9, 0.3]})
    ax = fig.axes[0]
    lines = _lines(ax)
    np.testing.assert_allclose(lines["J"].get_ydata(), [0.9, 0.3, 0.05])
    np.testing.assert_allclose(lines["exact"].get_ydata(), [0.9, 0.3, 0.0])
    np.testing.assert_allclose(lines["tangent projector (d = 1)"].get_ydata(), [1.0, 0.0, 0.0])
    assert any(isinstance(c, PolyCollection) for c in ax.collections)  # the min-max band


def test_jacobian_spectra_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one set"):
        jacobian_spectra({}, intrinsic_dim=1)
    with pytest.raises(ValueError, match="intrinsic_dim must be an integer"):
        jacobian_spectra({"J": [1.0]}, intrinsic_dim=-1)
    with pytest.raises(ValueError, match=r"spectra\['J'\] must have shape \(P, k\) or \(k,\)"):
        jacobian_spectra({"J": np.ones((2, 2, 2))}, intrinsic_dim=1)
    with pytest.raises(ValueError, match=r"references\['W\*'\] must have 1 axis"):
        jacobian_spectra({"J": [1.0]}, intrinsic_dim=1, references={"W*": [[1.0]]})
    with pytest.raises(ValueError, match="x must be numeric array-like"):
        rate_plot("abc", {"a": [1.0]})


def test_lambda_sweep_panels():
    lams = [1.0, 0.1, 0.01]
    fig = lambda_sweep(lams, [0.5, 0.1, 0.05], [0.3, 0.8, 0.98], intrinsic_dim=1, gap_target=0.1,
                       extra={"normal": [0.01, 0.02, 0.04]})
    gap_ax, frob_ax = fig.axes
    np.testing.assert_allclose(_lines(gap_ax)["normal"].get_ydata(), [0.01, 0.02, 0.04])
    np.testing.assert_allclose(_lines(frob_ax)["d = 1"].get_ydata(), [1.0, 1.0])
    assert gap_ax.get_xscale() == "log"


def test_lambda_sweep_rejects_bad_input():
    with pytest.raises(ValueError, match="like lams"):
        lambda_sweep([1.0, 0.1], [0.5], [0.3, 0.8], intrinsic_dim=1)
    with pytest.raises(ValueError, match="lams must be > 0"):
        lambda_sweep([1.0, 0.0], [0.5, 0.1], [0.3, 0.8], intrinsic_dim=1)
    with pytest.raises(ValueError, match=r"extra\['x'\]"):
        lambda_sweep([1.0, 0.1], [0.5, 0.1], [0.3, 0.8], intrinsic_dim=1, extra={"x": [1.0]})
