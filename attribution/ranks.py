"""Rank statistics (torch-free): average ranks, Spearman's rank correlation and its bootstrap interval,
shared by the trust panel's agreement between methods (`attribution.trust`), the context-ablation
surrogate's held-out fit (its LDS) and the diff of two analyses (`attribution.diff`)."""

from __future__ import annotations

import numpy as np

from .bootstrap import LEVEL, RESAMPLES


def rank_average(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties sharing their average rank (as Spearman's rho needs)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    start = 0
    while start < len(values):
        stop = start
        while stop + 1 < len(values) and sorted_values[stop + 1] == sorted_values[start]:
            stop += 1
        ranks[order[start : stop + 1]] = (start + stop) / 2 + 1
        start = stop + 1
    return ranks


def spearman(first: np.ndarray, second: np.ndarray) -> float | None:
    """Spearman's rank correlation; None when undefined: fewer than two tokens (every one held), or
    either vector constant."""
    if len(first) < 2:
        return None
    first_ranks, second_ranks = rank_average(np.asarray(first)), rank_average(np.asarray(second))
    if np.ptp(first_ranks) == 0 or np.ptp(second_ranks) == 0:
        return None
    return float(np.corrcoef(first_ranks, second_ranks)[0, 1])


def spearman_interval(first: np.ndarray, second: np.ndarray, level: float = LEVEL,
                      resamples: int = RESAMPLES) -> tuple[float, float] | None:
    """Percentile-bootstrap interval of Spearman's rho over the paired units (seeded: the same data, the
    same bounds). Resamples where rho is undefined (all ties) are left out; None when fewer than three
    units or fewer than half the resamples give a value."""
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if len(first) != len(second):
        raise ValueError(f"paired values differ in length: {len(first)} and {len(second)}")
    if len(first) < 3:
        return None
    rng = np.random.default_rng(0)
    values = []
    for rows in rng.integers(0, len(first), size=(resamples, len(first))):
        rho = spearman(first[rows], second[rows])
        if rho is not None:
            values.append(rho)
    if len(values) < resamples / 2:
        return None
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)
