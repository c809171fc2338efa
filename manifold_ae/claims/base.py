"""What one claim check returns: measured numbers, criteria fixed in advance, and a verdict."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["Check", "ClaimResult", "worst", "worst_of"]


def worst(values: Iterable[float], *, op: str) -> float:
    """The value that decides a criterion ``op`` over many measurements: the largest for '<=', the smallest for
    '>='; a NaN or infinite value anywhere is returned itself, so the criterion fails (``max([1e-12, nan])`` is
    ``1e-12`` in Python, which is how a NaN used to slip through).
    """
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("worst() needs at least one value")
    for v in vals:
        if not math.isfinite(v):
            return v
    if op == "<=":
        return max(vals)
    if op == ">=":
        return min(vals)
    raise ValueError(f"worst() takes op '<=' or '>=', got {op!r}")


def worst_of(rows: Mapping[str, float], *, op: str) -> tuple[str, float]:
    """``(key, value)`` of the row that decides ``op`` over ``rows`` (see ``worst``): a non-finite row first."""
    if not rows:
        raise ValueError("worst_of() needs at least one row")
    value = worst(rows.values(), op=op)
    key = next(k for k, v in rows.items() if float(v) == value or (math.isnan(value) and math.isnan(float(v))))
    return key, value


@dataclasses.dataclass(frozen=True)
class Check:
    """One criterion: ``measured`` compared with ``target`` by ``op`` (one of '<=', '>=', 'in')."""

    name: str
    measured: float
    op: str
    target: float | tuple[float, float]
    note: str = ""

    @property
    def passed(self) -> bool:
        """False whenever ``measured`` is NaN or infinite, whatever the criterion."""
        if not math.isfinite(float(self.measured)):
            return False
        if self.op == "<=":
            return self.measured <= self.target
        if self.op == ">=":
            return self.measured >= self.target
        if self.op == "in":
            lo, hi = self.target
            return lo <= self.measured <= hi
        raise ValueError(f"Check.op must be '<=', '>=' or 'in', got {self.op!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["passed"] = self.passed
        return d


@dataclasses.dataclass
class ClaimResult:
    """Result of one claim (T1..T10): checks with verdicts, extra numbers, figure paths, wall time."""

    claim: str                      # "T3"
    title: str                      # one line statement
    checks: list[Check]
    numbers: dict[str, Any] = dataclasses.field(default_factory=dict)   # tables/series for the report
    figures: list[str] = dataclasses.field(default_factory=list)        # paths relative to the report dir
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"claim": self.claim, "title": self.title, "passed": self.passed, "seconds": self.seconds,
                "checks": [c.to_dict() for c in self.checks], "numbers": _jsonable(self.numbers),
                "figures": self.figures}


def _jsonable(obj: Any) -> Any:
    """Convert tensors/arrays/numpy scalars inside ``obj`` to plain JSON values."""
    try:
        import numpy as np
        import torch
    except ImportError:  # pragma: no cover
        return obj
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj

