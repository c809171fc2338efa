"""Timing shared by the benchmark scripts (imported as ``timing`` when a script runs from benchmarks/)."""
from __future__ import annotations

import math
import time
from typing import Any, Callable

__all__ = ["best_time"]


def best_time(fn: Callable[[], Any], repeats: int) -> float:
    """Best CPU time (process_time) of ``repeats`` calls: on a shared machine wall time measures the neighbours."""
    best = math.inf
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best
