"""The one seeded split of a set of images into parts (train, held-out, test), used by every dataset.

``seeded_split(num, sizes=(a, b), seed=s)`` permutes ``range(num)`` once with numpy's ``default_rng(s)`` and
cuts the permutation into consecutive parts of ``a``, ``b`` and the remaining items, each returned sorted. The
callers only choose the sizes and the order of the parts:

* MVTec layout (``data.dataset`` ``mvtec``/``synthetic``): (held-out, train) of the normal training images;
* ``folder``: (normal test, held-out, train) of the normal folder;
* Magnetic Tile (``magnetic_tile_splits``): (train, val, test) of ``MT_Free``.

The same ``(num, sizes, seed)`` always gives the same parts, so ``train`` and ``evaluate`` hold out exactly the
same images.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from manifold_ae.checks import check_int

__all__ = ["seeded_split"]


def seeded_split(num: int, *, sizes: Sequence[int], seed: int) -> list[list[int]]:
    """Seeded partition of ``range(num)`` into ``len(sizes) + 1`` parts, each sorted.

    Parameters
    ----------
    num : int
        Number of items, >= 0.
    sizes : sequence of int
        Sizes of the first parts (each >= 0, summing to at most ``num``); the last part gets the rest.
    seed : int
        Seed of ``numpy.random.default_rng``, >= 0.

    Returns
    -------
    list of ``len(sizes) + 1`` sorted lists of indices
        Disjoint, covering ``range(num)``; part ``i`` is entries ``sum(sizes[:i]) .. sum(sizes[:i + 1])`` of the
        permutation.
    """
    num = check_int(num, "num", minimum=0)
    seed = check_int(seed, "seed", minimum=0)
    sizes = [check_int(s, f"sizes[{i}]", minimum=0) for i, s in enumerate(sizes)]
    if sum(sizes) > num:
        raise ValueError(f"sizes {sizes} sum to {sum(sizes)}, more than the {num} items to split")
    perm = np.random.default_rng(seed).permutation(num)  # (num,)
    bounds = np.cumsum([0, *sizes, num - sum(sizes)])
    return [sorted(perm[a:b].tolist()) for a, b in zip(bounds[:-1], bounds[1:])]
