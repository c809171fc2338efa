"""What one claim check returns: measured numbers, criteria fixed in advance, and a verdict."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

__all__ = ["Check", "ClaimResult"]


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
    """Result of one claim (T1..T8): checks with verdicts, extra numbers, figure paths, wall time."""

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

