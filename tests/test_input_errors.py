"""Small input traps a new user met: each gets a clear ValueError naming the argument and what was expected."""
import numpy as np
import pytest

from manifold_ae.checks import check_fraction, check_positive
from manifold_ae.manifolds import make_manifold
from manifold_ae.toys.detectors import ProjectionDetector


@pytest.mark.parametrize("bad", ["2", b"2", True])
def test_numbers_given_as_strings_or_bools_are_refused(bad):
    with pytest.raises(ValueError, match=r"radius must be a number"):
        check_positive(bad, "radius")
    with pytest.raises(ValueError, match=r"q must be a number"):
        check_fraction(bad, "q")
    assert check_positive(np.float32(2.5), "radius") == 2.5 and check_fraction(0.5, "q") == 0.5


def test_a_manifold_refuses_a_string_radius():
    with pytest.raises(ValueError, match=r"radius must be a number, got '2'"):
        make_manifold("circle", radius="2")
    assert make_manifold("circle", radius=2).radius == 2.0


def test_projection_detector_given_a_name_says_how_to_build_the_manifold():
    with pytest.raises(ValueError, match=r"not its name 'circle'.*make_manifold\('circle', ambient_dim=3\)"):
        ProjectionDetector("circle").fit(np.random.default_rng(0).random((20, 3)))


def test_dae_field_explorer_refuses_a_sigma_its_slider_cannot_show():
    from manifold_ae.viz.widgets import dae_field_explorer
    with pytest.raises(ValueError, match=r"sigma must lie in \[0\.01, 0\.5\], got 5"):
        dae_field_explorer(sigma=5)
