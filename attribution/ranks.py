"""Rank statistics (torch-free): average ranks and Spearman's rank correlation, shared by the trust
panel's agreement between methods and the context-ablation surrogate's held-out fit (its LDS)."""

from __future__ import annotations

import numpy as np


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
    """Spearman's rank correlation; None when undefined: fewer than two values, or either vector constant."""
    if len(first) < 2:
        return None
    first_ranks, second_ranks = rank_average(np.asarray(first)), rank_average(np.asarray(second))
    if np.ptp(first_ranks) == 0 or np.ptp(second_ranks) == 0:
        return None
    return float(np.corrcoef(first_ranks, second_ranks)[0, 1])
