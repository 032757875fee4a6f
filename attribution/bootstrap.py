"""Percentile-bootstrap intervals for a mean (seeded: the same data, the same bounds), shared by the
trust panel (over random token orders), dataset summaries (over rows) and the evaluation (over prompts)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

LEVEL = 0.95
RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """A mean over rows with its percentile-bootstrap interval (seeded: the same data, the same bounds)."""

    mean: float
    low: float
    high: float
    n: int

    def text(self, digits: int = 3) -> str:
        return f"{self.mean:.{digits}g} [{self.low:.{digits}g}, {self.high:.{digits}g}]"


def mean_interval(values: Iterable[Any], level: float = LEVEL, resamples: int = RESAMPLES) -> Interval | None:
    """None when no finite value is given."""
    sample = np.array([float(value) for value in values if value is not None and math.isfinite(value)])
    if sample.size == 0:
        return None
    rng = np.random.default_rng(0)
    means = np.empty(resamples)
    # Blocks keep the index matrix small for large datasets (resamples × n would not fit).
    block = max(1, 2_000_000 // sample.size)
    for start in range(0, resamples, block):
        stop = min(resamples, start + block)
        means[start:stop] = sample[rng.integers(0, sample.size, size=(stop - start, sample.size))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(sample.mean()), float(low), float(high), int(sample.size))
