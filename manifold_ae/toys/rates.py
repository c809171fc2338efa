"""Rates of the claims that hold only in a limit: a log-log fit that turns a bad measurement into a failing fit.

``theory.loglog_fit`` raises on a NaN, an infinity or a non-positive value, as a library function should. A claim
measures many rates in one run, and one broken measurement must fail its own checks, not hide the others behind
an exception: :func:`loglog_rate` returns a fit of NaNs instead, which ``claims.base.Check`` never passes.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from manifold_ae.theory import LogLogFit, loglog_fit

__all__ = ["loglog_rate"]


def loglog_rate(xs: Any, ys: Any) -> LogLogFit:
    """Slope, intercept and r² of ``log y`` against ``log x``; all NaN when some ``y`` is not finite and > 0.

    Parameters
    ----------
    xs, ys : (k,) array-like
        The limit parameter (σ, λ, ...) and the measured gaps; ``xs`` as :func:`theory.loglog_fit` wants it.

    Returns
    -------
    LogLogFit
    """
    y = torch.as_tensor(ys, dtype=torch.float64).reshape(-1)
    if not bool((torch.isfinite(y) & (y > 0)).all()):
        return LogLogFit(math.nan, math.nan, math.nan)
    return loglog_fit(xs, y)
