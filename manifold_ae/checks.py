"""Input checks shared by the whole package.

Every public entry point validates its arguments with these helpers so that bad input fails early with a
``ValueError`` naming the argument, the offending value and what was expected.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["as_tensor", "as_array", "check_points", "check_positive", "check_fraction", "check_int", "check_choice",
           "as_hw"]


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    return repr(value)


def as_tensor(x: Any, *, name: str = "x", dtype: torch.dtype | None = torch.float64,
              device: torch.device | str | None = None, allow_nonfinite: bool = False) -> torch.Tensor:
    """Convert ``x`` (tensor, array, list) to a floating tensor and reject NaN/Inf.

    Tensors that already have a floating dtype keep it when ``dtype`` is None; autograd history is kept.
    """
    if isinstance(x, torch.Tensor):
        t = x
        if dtype is not None and t.dtype != dtype:
            t = t.to(dtype)
        elif not t.is_floating_point():
            t = t.to(torch.get_default_dtype())
    else:
        try:
            t = torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=dtype or torch.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be numeric array-like, got {_describe(x)}") from err
    if device is not None:
        t = t.to(device)
    if not allow_nonfinite and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} contains {bad} NaN or Inf value(s) ({_describe(t)}); expected finite values")
    return t


def as_array(values: Any, name: str, *, ndim: int | None = None) -> np.ndarray:
    """``values`` (array-like or tensor, autograd history dropped) as a float64 numpy array.

    Raises ValueError naming ``name`` when the values are not numeric or do not have ``ndim`` axes.
    """
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric array-like, got {type(values).__name__}") from err
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} axis/axes, got shape {arr.shape}")
    return arr


def check_points(x: Any, *, ambient_dim: int, name: str = "x", dtype: torch.dtype | None = torch.float64,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """Return ``x`` as a tensor of shape (..., ambient_dim) with finite entries, else raise ValueError."""
    t = as_tensor(x, name=name, dtype=dtype, device=device)
    if t.ndim == 0 or t.shape[-1] != ambient_dim:
        raise ValueError(f"{name} must have shape (..., {ambient_dim}) (last axis = ambient dimension), "
                         f"got {_describe(t)}")
    return t


def check_positive(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """Return ``float(value)`` if it is finite and > 0 (>= 0 with ``allow_zero``), else raise ValueError.

    A string or a bool is not a number here (``float("2")`` would accept the first, ``float(True)`` the second).
    """
    if isinstance(value, (str, bytes, bool)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a number, got {value!r}") from err
    ok = math.isfinite(v) and (v >= 0 if allow_zero else v > 0)
    if not ok:
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value!r}")
    return v


def check_fraction(value: Any, name: str, *, low: float = 0.0, high: float = 1.0,
                   low_inclusive: bool = True, high_inclusive: bool = True) -> float:
    """Return ``float(value)`` if it lies in the interval [low, high] (ends as stated), else raise ValueError.

    A string or a bool is not a number here.
    """
    if isinstance(value, (str, bytes, bool)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a number, got {value!r}") from err
    lo_ok = v >= low if low_inclusive else v > low
    hi_ok = v <= high if high_inclusive else v < high
    if not (math.isfinite(v) and lo_ok and hi_ok):
        interval = f"{'[' if low_inclusive else '('}{low}, {high}{']' if high_inclusive else ')'}"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return v


def check_int(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``int(value)`` if it is an integer within [minimum, maximum], else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        raise ValueError(f"{name} must be an integer in [{minimum}, {maximum}], got {value!r}")
    return v


def check_choice(value: Any, name: str, choices: tuple[str, ...] | list[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def as_hw(size: int | Sequence[int], name: str = "image_size") -> tuple[int, int]:
    """Return ``size`` as (H, W): an int means a square, a pair is (height, width)."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        s = check_int(size, name, minimum=1)
        return s, s
    if isinstance(size, Sequence) and not isinstance(size, str) and len(size) == 2:
        return check_int(size[0], f"{name}[0] (height)", minimum=1), check_int(size[1], f"{name}[1] (width)",
                                                                                minimum=1)
    raise ValueError(f"{name} must be a positive int or a pair (height, width) of positive ints, got {size!r}")
