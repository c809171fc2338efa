"""Random numbers drawn on the generator's device: the one place that decides where a draw happens.

A ``torch.Generator`` lives on one device and only draws there, while the tensors it serves may live elsewhere
(a CPU generator seeding corruptions of CUDA batches keeps runs identical across devices). Every function here
draws on ``generator.device`` (on ``device`` when ``generator`` is None, i.e. torch's global generator of that
device) and returns the result on ``device``. The arguments mirror ``torch.rand`` and friends, so the numbers are
exactly the ones ``torch.rand(..., generator=generator, device=generator.device)`` gives.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["draw_device", "rand", "randn", "randint", "randperm"]

Device = torch.device | str | None


def draw_device(generator: torch.Generator | None, device: Device) -> torch.device:
    """The device a draw happens on: the generator's, or ``device`` (default CPU) for torch's global generator."""
    if generator is not None:
        return generator.device
    return torch.device("cpu") if device is None else torch.device(device)


def rand(shape: Sequence[int], *, generator: torch.Generator | None = None, device: Device = None,
         dtype: torch.dtype | None = None) -> torch.Tensor:
    """Uniform [0, 1) numbers of ``shape`` (``dtype`` default: torch's default float), on ``device``."""
    return torch.rand(tuple(shape), generator=generator, device=draw_device(generator, device),
                      dtype=dtype).to(device)


def randn(shape: Sequence[int], *, generator: torch.Generator | None = None, device: Device = None,
          dtype: torch.dtype | None = None) -> torch.Tensor:
    """Standard normal numbers of ``shape`` (``dtype`` default: torch's default float), on ``device``."""
    return torch.randn(tuple(shape), generator=generator, device=draw_device(generator, device),
                       dtype=dtype).to(device)


def randint(low: int, high: int, shape: Sequence[int], *, generator: torch.Generator | None = None,
            device: Device = None) -> torch.Tensor:
    """Integers uniform in ``[low, high)`` (int64) of ``shape``, on ``device``."""
    return torch.randint(low, high, tuple(shape), generator=generator,
                         device=draw_device(generator, device)).to(device)


def randperm(n: int, *, generator: torch.Generator | None = None, device: Device = None) -> torch.Tensor:
    """A random permutation of ``range(n)`` (int64), on ``device``."""
    return torch.randperm(n, generator=generator, device=draw_device(generator, device)).to(device)
