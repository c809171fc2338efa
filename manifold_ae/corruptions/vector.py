"""Vector corruptions for the self-supervised objective (docs/theory.md, T6) and Gaussian noise (T3, T4).

A corruption is a mask sampler (where) times a fill (what), combined by
``manifold_ae.corruptions.base.MaskedCorruption``::

    corruption = MaskedCorruption(RandomSubsetMask(0.25), GaussianFill(1.0))
    x_tilde, mask = corruption(x, generator)          # x: (B, n); mask: (B, n) in {0, 1}

Masks here act on the flattened feature axes of a batch (B, ...) — for vectors, on the coordinates.
Every sampler and fill takes an explicit ``torch.Generator``; random numbers are drawn on the generator's
device (``x.device`` without one) and moved to ``x.device``, so a CPU generator also drives CUDA batches.
Fills other than ``ShuffleFill`` are independent of ``x`` (they use only its shape, dtype and device), which
is what T6's optimum E[x | x_tilde] = masked projection assumes.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from manifold_ae.checks import as_tensor, check_fraction, check_int, check_positive
from manifold_ae.corruptions.base import MaskedCorruption
from manifold_ae.rng import draw_device, rand, randint, randn

__all__ = ["RandomSubsetMask", "BlockMask", "FullMask", "GaussianFill", "UniformFill", "ShuffleFill",
           "ConstantFill", "GaussianNoise", "block_masks", "FiniteMaskFamily", "PartialCorruption"]


def _check_batch(x: Any, owner: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.shape[0] == 0 or not x.is_floating_point():
        got = (f"tensor of shape {tuple(x.shape)} and dtype {x.dtype}" if isinstance(x, torch.Tensor)
               else type(x).__name__)
        raise ValueError(f"{owner}: x must be a floating tensor of shape (B, ...) with B >= 1, got {got}")
    return x


def _rand(shape: tuple[int, ...], x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform [0, 1) numbers of ``shape`` with x's dtype, drawn on the generator's device, on x's device."""
    return rand(shape, generator=generator, device=x.device, dtype=x.dtype)


def _randn(shape: tuple[int, ...], x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return randn(shape, generator=generator, device=x.device, dtype=x.dtype)


def _randint(low: int, high: int, shape: tuple[int, ...], x: torch.Tensor,
             generator: torch.Generator | None) -> torch.Tensor:
    return randint(low, high, shape, generator=generator, device=x.device)


# ----------------------------------------------------------------------------------------------- masks


class RandomSubsetMask:
    """A uniformly random subset S of the features of each sample (1 = corrupted).

    Give exactly one of ``fraction`` or ``size``. With ``size`` (or ``fraction``, which means
    ``k = max(1, round(fraction * D))`` of the D features) every sample gets exactly k corrupted features,
    drawn uniformly among all k-subsets, so each feature is corrupted with probability k / D. With
    ``independent=True`` (only with ``fraction``) each feature is corrupted independently with probability
    ``fraction`` instead.

    Parameters
    ----------
    fraction : float in (0, 1], optional
    size : int >= 1, optional
    independent : bool, default False
    """

    def __init__(self, fraction: float | None = None, *, size: int | None = None, independent: bool = False) -> None:
        if (fraction is None) == (size is None):
            raise ValueError(f"RandomSubsetMask needs exactly one of fraction or size, got fraction={fraction!r} "
                             f"and size={size!r}")
        self.fraction = None if fraction is None else check_fraction(fraction, "fraction", low_inclusive=False)
        self.size = None if size is None else check_int(size, "size", minimum=1)
        if independent and self.fraction is None:
            raise ValueError("RandomSubsetMask: independent=True needs fraction (a per-feature probability), "
                             f"got size={size!r}")
        self.independent = bool(independent)

    def num_corrupted(self, num_features: int) -> int:
        """k, the number of corrupted features out of ``num_features`` (not used when ``independent``)."""
        k = self.size if self.size is not None else max(1, round(self.fraction * num_features))
        if k > num_features:
            raise ValueError(f"RandomSubsetMask: size={k} exceeds the number of features {num_features}")
        return k

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = _check_batch(x, "RandomSubsetMask")
        batch, num = x.shape[0], math.prod(x.shape[1:])
        u = _rand((batch, num), x, generator)  # (B, D)
        if self.independent:
            return (u < self.fraction).to(x.dtype).reshape(x.shape)
        k = self.num_corrupted(num)
        idx = u.argsort(dim=1)[:, :k]  # (B, k) uniformly random k-subsets
        mask = torch.zeros(batch, num, dtype=x.dtype, device=x.device).scatter_(1, idx, 1.0)
        return mask.reshape(x.shape)

    def __repr__(self) -> str:
        if self.size is not None:
            return f"RandomSubsetMask(size={self.size})"
        return f"RandomSubsetMask({self.fraction}, independent={self.independent})"


class BlockMask:
    """A block of ``size`` contiguous features (flattened order) at a uniformly random start.

    With ``wrap=True`` the start is uniform over all D positions and the block wraps around the end, so every
    feature is corrupted with probability size / D; otherwise the block lies inside [0, D).
    """

    def __init__(self, size: int, *, wrap: bool = False) -> None:
        self.size = check_int(size, "size", minimum=1)
        self.wrap = bool(wrap)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = _check_batch(x, "BlockMask")
        batch, num = x.shape[0], math.prod(x.shape[1:])
        if self.size > num:
            raise ValueError(f"BlockMask: size={self.size} exceeds the number of features {num}")
        positions = torch.arange(num, device=x.device)  # (D,)
        if self.wrap:
            start = _randint(0, num, (batch, 1), x, generator)  # (B, 1)
            mask = (positions - start) % num < self.size
        else:
            start = _randint(0, num - self.size + 1, (batch, 1), x, generator)  # (B, 1)
            mask = (positions >= start) & (positions < start + self.size)
        return mask.to(x.dtype).reshape(x.shape)

    def __repr__(self) -> str:
        return f"BlockMask({self.size}, wrap={self.wrap})"


class FullMask:
    """Every feature corrupted (with ``ShuffleFill``: replace the whole sample by another one)."""

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.ones_like(_check_batch(x, "FullMask"))

    def __repr__(self) -> str:
        return "FullMask()"


# ----------------------------------------------------------------------------------------------- fills


class GaussianFill:
    """Content ``mean + scale * N(0, 1)`` i.i.d. per feature, independent of x."""

    def __init__(self, scale: float = 1.0, *, mean: float = 0.0) -> None:
        self.scale = check_positive(scale, "scale")
        self.mean = float(as_tensor(mean, name="mean"))

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = _check_batch(x, "GaussianFill")
        return self.mean + self.scale * _randn(tuple(x.shape), x, generator)

    def __repr__(self) -> str:
        return f"GaussianFill({self.scale}, mean={self.mean})"


class UniformFill:
    """Content uniform on [low, high) i.i.d. per feature, independent of x."""

    def __init__(self, low: float = 0.0, high: float = 1.0) -> None:
        self.low = float(as_tensor(low, name="low"))
        self.high = float(as_tensor(high, name="high"))
        if not self.low < self.high:
            raise ValueError(f"UniformFill needs low < high, got low={low!r}, high={high!r}")

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = _check_batch(x, "UniformFill")
        return self.low + (self.high - self.low) * _rand(tuple(x.shape), x, generator)

    def __repr__(self) -> str:
        return f"UniformFill({self.low}, {self.high})"


class ShuffleFill:
    """Content taken from *other* samples of the batch.

    Sample b receives sample ``(b + j_b) mod B`` with ``j_b`` uniform in {1, ..., B-1}, so never itself; with
    ``per_coordinate=True`` every feature draws its own source sample (content then follows the product of
    the data's marginals). Needs B >= 2.
    """

    def __init__(self, *, per_coordinate: bool = False) -> None:
        self.per_coordinate = bool(per_coordinate)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = _check_batch(x, "ShuffleFill")
        batch = x.shape[0]
        if batch < 2:
            raise ValueError(f"ShuffleFill takes values from other samples and needs a batch of B >= 2, "
                             f"got x of shape {tuple(x.shape)}")
        rows = torch.arange(batch, device=x.device)
        if not self.per_coordinate:
            offset = _randint(1, batch, (batch,), x, generator)  # (B,)
            return x[(rows + offset) % batch]
        flat = x.reshape(batch, -1)  # (B, D)
        offset = _randint(1, batch, tuple(flat.shape), x, generator)  # (B, D)
        source = (rows[:, None] + offset) % batch  # (B, D): content[b, j] = flat[source[b, j], j]
        return torch.gather(flat, 0, source).reshape(x.shape)

    def __repr__(self) -> str:
        return f"ShuffleFill(per_coordinate={self.per_coordinate})"


class ConstantFill:
    """Content equal to ``value`` everywhere."""

    def __init__(self, value: float = 0.0) -> None:
        self.value = float(as_tensor(value, name="value"))

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.full_like(_check_batch(x, "ConstantFill"), self.value)

    def __repr__(self) -> str:
        return f"ConstantFill({self.value})"


# ------------------------------------------------------------------------------------------ additive noise


class GaussianNoise:
    """Additive Gaussian noise ``x_tilde = x + sigma * eps``, eps ~ N(0, I); the mask is all ones (T3, T4).

    Parameters
    ----------
    sigma : float or array-like
        A number > 0 (isotropic noise), or a tensor broadcastable to one sample ``x[0]`` with entries >= 0,
        not all zero (anisotropic noise: the negative control whose DAE optimum is not the orthogonal
        projection).
    """

    def __init__(self, sigma: float | torch.Tensor) -> None:
        if isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
            self.sigma: float | torch.Tensor = check_positive(sigma, "sigma")
            return
        s = as_tensor(sigma, name="sigma")
        if s.ndim == 0:
            self.sigma = check_positive(float(s), "sigma")
            return
        if bool((s < 0).any()) or not bool((s > 0).any()):
            raise ValueError(f"sigma must have entries >= 0, not all zero, got {s.tolist() if s.numel() < 20 else s}")
        self.sigma = s.detach().clone()

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = _check_batch(x, "GaussianNoise")
        sigma = self.sigma
        if isinstance(sigma, torch.Tensor):
            sample_shape = tuple(x.shape[1:])
            try:
                ok = tuple(torch.broadcast_shapes(sigma.shape, sample_shape)) == sample_shape
            except RuntimeError:
                ok = False
            if not ok:
                raise ValueError(f"GaussianNoise: sigma of shape {tuple(sigma.shape)} must broadcast to one sample "
                                 f"of shape {sample_shape}")
            sigma = sigma.to(device=x.device, dtype=x.dtype)
        eps = _randn(tuple(x.shape), x, generator)  # (B, ...)
        return x + sigma * eps, torch.ones_like(x)

    def __repr__(self) -> str:
        s = self.sigma if not isinstance(self.sigma, torch.Tensor) else f"tensor{tuple(self.sigma.shape)}"
        return f"GaussianNoise({s})"


# --------------------------------------------------------------- finite mask families (T6 oracles)


def block_masks(ambient_dim: int, sizes: tuple[int, ...]) -> torch.Tensor:
    """All cyclic blocks of contiguous coordinates of the given sizes: a finite mask family (T6).

    Parameters
    ----------
    ambient_dim : int
        n.
    sizes : tuple of int
        Block lengths, each in [1, n - 1].

    Returns
    -------
    (len(sizes) * n, n) float64 tensor
        Row ``i * n + s`` corrupts coordinates ``s, s+1, ..., s+sizes[i]-1`` (mod n); 1 = corrupted.
    """
    n = check_int(ambient_dim, "ambient_dim", minimum=2)
    if not sizes:
        raise ValueError("sizes must name at least one block length, got an empty tuple")
    rows = []
    j = torch.arange(n)
    for i, k in enumerate(sizes):
        k = check_int(k, f"sizes[{i}]", minimum=1, maximum=n - 1)
        for s in range(n):
            rows.append(((j - s) % n < k).to(torch.float64))  # (n,)
    return torch.stack(rows)


class FiniteMaskFamily:
    """Mask sampler drawing one row of a fixed table per sample (the finite family the T6 oracles of docs/theory.md assume).

    Parameters
    ----------
    masks : (S, n) tensor
        0/1 rows, 1 = corrupted.
    probs : (S,) tensor, optional
        Probabilities of the rows (default uniform).
    """

    def __init__(self, masks: torch.Tensor, probs: torch.Tensor | None = None) -> None:
        m = as_tensor(masks, name="masks")
        if m.ndim != 2 or m.shape[0] < 1 or not bool(((m == 0) | (m == 1)).all()):
            raise ValueError(f"masks must be an (S, n) table of 0/1 rows with S >= 1, got shape {tuple(m.shape)}")
        self.masks = m
        if probs is None:
            p = torch.full((m.shape[0],), 1.0 / m.shape[0], dtype=torch.float64)
        else:
            p = as_tensor(probs, name="probs")
            if p.shape != (m.shape[0],) or bool((p < 0).any()) or float(p.sum()) <= 0:
                raise ValueError(f"probs must be non-negative of shape ({m.shape[0]},) with a positive sum, "
                                 f"got shape {tuple(p.shape)}")
            p = p / p.sum()
        self.probs = p

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.masks.shape[1]:
            raise ValueError(f"FiniteMaskFamily: x must have shape (B, {self.masks.shape[1]}), "
                             f"got {tuple(x.shape)}")
        idx = torch.multinomial(self.probs.to(draw_device(generator, x.device)), x.shape[0], replacement=True,
                                generator=generator).to(self.masks.device)  # (B,)
        return self.masks[idx].to(device=x.device, dtype=x.dtype)  # (B, n)

    def __repr__(self) -> str:
        return f"FiniteMaskFamily({self.masks.shape[0]} masks of length {self.masks.shape[1]})"


class PartialCorruption:
    """``x̂ = x + a M_S (c − x) + η``: a mask from a finite family, Gaussian fill, then noise everywhere.

    With opacity ``a = 1`` (training) this is ``D_S x + M_S c + η``. The noise is added *after* the fill, as the
    oracles assume (a corrupted coordinate has variance ``fill_std² + noise_std²``). Returns ``(x̂, mask)``
    with the true mask (1 = corrupted).

    Parameters
    ----------
    masks : (S, n) tensor
    fill_std : float
        τ > 0.
    noise_std : float
        η >= 0.
    opacity : float in (0, 1], default 1
        Blend weight ``a`` of the fill (T8 uses faint corruptions, a < 1, as harder anomalies).
    """

    def __init__(self, masks: torch.Tensor, *, fill_std: float, noise_std: float, opacity: float = 1.0) -> None:
        self.family = FiniteMaskFamily(masks)
        self.fill_std = check_positive(fill_std, "fill_std")
        self.noise_std = check_positive(noise_std, "noise_std", allow_zero=True)
        self.opacity = check_fraction(opacity, "opacity", low_inclusive=False)
        self._masked = MaskedCorruption(self.family, GaussianFill(self.fill_std),
                                        opacity=(self.opacity, self.opacity))

    @property
    def masks(self) -> torch.Tensor:
        return self.family.masks

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x_hat, mask = self._masked(x, generator)  # (B, n), (B, n)
        if self.noise_std > 0:
            x_hat = x_hat + self.noise_std * _randn(tuple(x.shape), x, generator)
        return x_hat, mask

    def __repr__(self) -> str:
        return (f"PartialCorruption({self.family!r}, fill_std={self.fill_std}, noise_std={self.noise_std}, "
                f"opacity={self.opacity})")
