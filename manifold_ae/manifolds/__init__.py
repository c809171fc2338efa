"""Exact toy manifolds with certified nearest-point projections, embedded isometrically in R^n (T1).

``make_manifold(name, ambient_dim=..., seed=..., **params)`` builds one of ``MANIFOLDS``; every manifold
offers ``sample``, ``project``/``project_with_info``, ``distance``, ``contains``, ``tangent_basis``,
``tangent_projector``, ``normal_basis``, ``sample_normal_ray``, ``from_params`` and the analytic ``reach``,
and the hooks claims and tests use instead of names (``interior_params``, ``on_boundary``, ``reach_sample``,
``numeric_projection``/``brute_force_distance``, ``projection_jacobian``); docs/new-manifold.md says how to add
one. ``Spiral`` (the Swiss roll's planar profile) is a building block outside ``MANIFOLDS``.
"""
from __future__ import annotations

from manifold_ae.checks import check_choice
from manifold_ae.manifolds.base import Manifold, NormalRaySample, ProjectionResult
from manifold_ae.manifolds.grating import GratingManifold
from manifold_ae.manifolds.helix import Helix, helix_curve, helix_reach
from manifold_ae.manifolds.reach import REACH_RTOL, estimate_reach, within_reach
from manifold_ae.manifolds.s_curve import S_CURVE_REACH, SCurve
from manifold_ae.manifolds.sphere import Circle, Sphere
from manifold_ae.manifolds.subspace import Subspace
from manifold_ae.manifolds.swiss_roll import SPIRAL_REACH, Spiral, SwissRoll, spiral_curve
from manifold_ae.manifolds.torus import FlatTorus, RingTorus
from manifold_ae.manifolds.translation import TranslationManifold, band_limited_template

__all__ = ["MANIFOLDS", "make_manifold", "Manifold", "ProjectionResult", "NormalRaySample", "Subspace", "Circle",
           "Sphere", "FlatTorus", "RingTorus", "Helix", "SwissRoll", "SCurve", "estimate_reach", "helix_reach",
           "SPIRAL_REACH", "S_CURVE_REACH", "IMAGE_MANIFOLDS", "make_image_manifold", "TranslationManifold",
           "GratingManifold", "band_limited_template", "Spiral", "within_reach", "REACH_RTOL", "helix_curve",
           "spiral_curve"]

_CLASSES: dict[str, type[Manifold]] = {
    "subspace": Subspace, "circle": Circle, "sphere": Sphere, "flat_torus": FlatTorus, "ring_torus": RingTorus,
    "helix": Helix, "swiss_roll": SwissRoll, "s_curve": SCurve,
}
MANIFOLDS: tuple[str, ...] = tuple(_CLASSES)


def make_manifold(name: str, *, ambient_dim: int | None = None, seed: int = 0, **params) -> Manifold:
    """Build the manifold ``name`` embedded in R^ambient_dim by a seeded random isometry.

    Parameters
    ----------
    name : str
        One of ``MANIFOLDS``.
    ambient_dim : int or None, default None
        n >= base dimension; None keeps the base space (Q = I).
    seed : int, default 0
        Seed of the random orthonormal embedding Q.
    **params
        The family's own parameters: subspace ``d, scale``; circle ``radius``; sphere ``k, radius``;
        flat_torus ``a, b``; ring_torus ``R, r``; helix ``a, b, turns``; swiss_roll/s_curve ``height``;
        all accept ``Q``, ``centre``, ``dtype``.
    """
    check_choice(name, "name", MANIFOLDS)
    cls = _CLASSES[name]
    try:
        return cls(ambient_dim=ambient_dim, seed=seed, **params)
    except TypeError as err:   # unknown keyword: say which family and what it accepts
        raise ValueError(f"invalid parameters {sorted(params)} for manifold {name!r}: {err}") from err


IMAGE_MANIFOLDS: tuple[str, ...] = ("translation", "grating")   # kept apart from MANIFOLDS: T1 loops over those


def make_image_manifold(name: str, *, size: int = 32, seed: int = 0, **params) -> Manifold:
    """Build an image manifold of ``size × size`` images (points flattened to (..., size²)), T9 groundwork.

    Parameters
    ----------
    name : str
        One of ``IMAGE_MANIFOLDS``.
    size : int, default 32
        Image side N.
    seed : int, default 0
        Seed of the random template (translation).
    **params
        translation: ``bandwidth`` (default 4; the template is ``band_limited_template(size, bandwidth=, seed=)``)
        or an explicit ``template`` (N, N); grating: ``wavevectors``, ``amplitude``; both accept ``dtype``.
    """
    check_choice(name, "name", IMAGE_MANIFOLDS)
    try:
        if name == "translation":
            template = params.pop("template", None)
            bandwidth = params.pop("bandwidth", 4)
            if template is None:
                template = band_limited_template(size, bandwidth=bandwidth, seed=seed)
            return TranslationManifold(template, **params)
        return GratingManifold(size=size, **params)
    except TypeError as err:   # unknown keyword: say which family and what it accepts
        raise ValueError(f"invalid parameters {sorted(params)} for image manifold {name!r}: {err}") from err
