"""Measurements shared by the toy experiments, the claims and the widgets."""
from __future__ import annotations

import torch

__all__ = ["rms"]


def rms(v: torch.Tensor) -> float:
    """Root-mean-square norm ``sqrt(mean_b ‖v_b‖²)`` of a batch of vectors (B, n)."""
    return float(v.pow(2).sum(-1).mean().sqrt())
