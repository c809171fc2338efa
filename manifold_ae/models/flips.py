"""Symmetrised reconstructions: a model averaged over a group of image flips.

If the normal images are invariant under a group G of flips, the projection π onto their manifold and the masked
projection π_S commute with every g ∈ G: π(g x) = g π(x). A trained f does not, exactly. Its symmetrisation

    f̄(x) = (1 / |G|) Σ_{g ∈ G} g⁻¹ f(g x)

is G-equivariant, and its error to π is the mean of the flipped errors g⁻¹ (f − π)(g x). Since flips preserve
norms, convexity gives, for every x,

    ‖f̄(x) − π(x)‖² ≤ (1 / |G|) Σ_g ‖f(g x) − π(g x)‖²,

so on a G-invariant distribution E‖f̄ − π‖² ≤ E‖f − π‖² (docs/theory.md, T8). Flips are their own inverses.
"""
from __future__ import annotations

from typing import Callable

import torch

from manifold_ae.checks import check_choice

__all__ = ["FLIPS", "flip_group", "flip_average"]

#: the groups of ``score.flips``: no flip, the left-right mirror, and both mirrors (the Klein four-group)
FLIPS = ("none", "h", "hv")
_DIMS: dict[str, tuple[tuple[int, ...], ...]] = {
    "none": ((),),
    "h": ((), (-1,)),
    "hv": ((), (-1,), (-2,), (-2, -1)),
}


def flip_group(flips: str) -> tuple[tuple[int, ...], ...]:
    """The group ``flips`` (one of :data:`FLIPS`) as the dims each element flips; ``()`` is the identity."""
    check_choice(flips, "flips", FLIPS)
    return _DIMS[flips]


def flip_average(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, flips: str) -> torch.Tensor:
    """f̄(x) = mean over g of g⁻¹ f(g x) for the flips of ``flips``.

    ``x`` is (B, C, H, W); the result has the shape of ``model(x)``. All flipped copies go through ``model`` in one
    batch of |G|·B images. ``flips = "none"`` is ``model(x)`` itself.
    """
    group = flip_group(flips)
    if len(group) == 1:
        return model(x)
    if x.ndim != 4:
        raise ValueError(f"x must be a batch of images (B, C, H, W), got shape {tuple(x.shape)}")
    batch = torch.cat([x.flip(dims) if dims else x for dims in group])  # (|G| B, C, H, W)
    out = model(batch).float()
    out = out.reshape(len(group), -1, *out.shape[1:])  # (|G|, B, ...): a reshape keeps the batch size dynamic
    return torch.stack([out[i].flip(dims) if dims else out[i] for i, dims in enumerate(group)]).mean(dim=0)
