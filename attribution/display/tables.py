"""Scores as rows of values rather than pictures: the highlighted-text pairs (token, score scaled into
[−1, 1]), the top-tokens table and the trust panel's faithfulness and agreement tables.

The trust texts here are shared by the page and the command line (`attribution.__main__`), so that both
say the same: every statement about trust (beats random, evidence, the scale of the drops) is read from
the engine's `Faithfulness` fields and properties, never recomputed from the numbers.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..bootstrap import LEVEL
from ..reports import REMOVALS, Faithfulness, TrustReport
from .labels import method_label, token_label
from ..results import Analysis, normalize_max_abs, top_k

TOP_HEADERS = ["rank", "token", "position", "score"]
FAITHFULNESS_HEADERS = ["method", "comprehensiveness ↑", f"random (comp., {LEVEL:.0%} interval)", "sufficiency ↓",
                        f"random (suff., {LEVEL:.0%} interval)", "beats random?", "evidence", "drops of"]
AGREEMENT_HEADERS = ["methods", "Spearman ρ", "top-3 shared"]


def highlight_values(
    tokens: Sequence[str], scores: np.ndarray, exclude: np.ndarray | None = None
) -> list[tuple[str, float | None]]:
    """(token, score) pairs for a highlighted-text view, each score scaled into [−1, 1].

    Scores are divided by the largest magnitude, so zero stays zero and the sign is kept: signed
    methods use the whole range (red positive, purple negative), non-negative ones use [0, 1].
    Tokens stay as decoded (leading spaces included) so that, joined, they read as the prompt.
    `exclude` (bool per token, e.g. BOS as an attention sink): left out of the scaling and uncoloured
    (score None).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if len(tokens) != scores.shape[0]:
        raise ValueError(f"{len(tokens)} tokens for {scores.shape[0]} scores")
    excluded = np.zeros(scores.shape[0], dtype=bool) if exclude is None else np.asarray(exclude, dtype=bool)
    scaled = np.clip(normalize_max_abs(scores, exclude=excluded), -1.0, 1.0)
    return [(str(token), None if hidden else round(float(value), 4))
            for token, value, hidden in zip(tokens, scaled, excluded)]


def top_rows(analysis: Analysis, name: str, k: int = 5, exclude: np.ndarray | None = None) -> list[list[Any]]:
    """The k highest-scoring tokens of one method: [rank, token, position, raw score]; tokens flagged in
    `exclude` (those left out of the colour scaling) are left out."""
    scores = analysis.methods[name].scores
    return [
        [rank, token_label(analysis.input_tokens[index]), index, float(f"{scores[index]:.4g}")]
        for rank, index in enumerate(top_k(scores, k, exclude), start=1)
    ]


def number_text(value: float) -> str:
    """A faithfulness number as the tables write it: three decimals, so the columns read evenly."""
    return f"{value:.3f}"


def interval_text(mean: float, interval: tuple[float, float]) -> str:
    """The random orders' mean with its bootstrap interval, "0.210 [0.150, 0.270]" (the brackets of
    `attribution.bootstrap.Interval.text`, which stay unambiguous when a bound is negative); a result
    built without an interval says so, since then nothing beats it."""
    low, high = interval
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{number_text(mean)} [no interval]"
    return f"{number_text(mean)} [{number_text(low)}, {number_text(high)}]"


def beats_random_text(item: Faithfulness) -> str:
    """On which measures the method beats its random interval, as the engine decides it
    (`comprehensiveness_beats_random`, `sufficiency_beats_random`)."""
    comprehensive, sufficient = item.comprehensiveness_beats_random, item.sufficiency_beats_random
    if comprehensive and sufficient:
        return "yes, both"
    if comprehensive:
        return "comprehensiveness only"
    return "sufficiency only" if sufficient else "no"


def faithfulness_rows(report: TrustReport) -> list[list[Any]]:
    """One row per method of a trust report, in FAITHFULNESS_HEADERS' order: its comprehensiveness and
    sufficiency, the random orders' mean with its interval, on which measures it beats random, the
    engine's evidence, and what the drops are drops of (`Faithfulness.measured`)."""
    return [
        [method_label(name), number_text(item.comprehensiveness),
         interval_text(item.random_comprehensiveness, item.random_comprehensiveness_interval),
         number_text(item.sufficiency), interval_text(item.random_sufficiency, item.random_sufficiency_interval),
         beats_random_text(item), item.evidence, item.measured]
        for name, item in report.faithfulness.items()
    ]


def faithfulness_note(report: TrustReport) -> str:
    """What the faithfulness numbers are, read from the report: what drops, how tokens were removed and
    how many random orders the interval comes from ("" without faithfulness)."""
    items = list(report.faithfulness.values())
    if not items:
        return ""
    measured = " / ".join(dict.fromkeys(item.measured for item in items))
    removals = "; ".join(dict.fromkeys(REMOVALS.get(item.removal, item.removal) for item in items))
    orders = "/".join(dict.fromkeys(str(item.random_orders) for item in items))
    return (f"drops of {measured}; a token removed is {removals}; random: the mean over {orders} random "
            f"token orders, with its {LEVEL:.0%} bootstrap interval in brackets; a method beats random on a "
            "measure when it lies beyond that interval on the better side")


def agreement_rows(report: TrustReport, n_content: int) -> list[list[Any]]:
    """[pair, Spearman ρ, top-3 shared] for every pair of methods of a TrustReport."""
    n_top = min(3, n_content)
    rows = []
    for key in dict.fromkeys([*report.spearman, *report.top3_overlap]):
        first, _, second = key.partition("|")
        rho = report.spearman.get(key)
        overlap = report.top3_overlap.get(key)
        shared = "n/a" if overlap is None or not n_top else f"{round(overlap * n_top)} of {n_top}"
        rows.append([f"{method_label(first)} vs {method_label(second)}",
                     "n/a" if rho is None else f"{rho:.2f}", shared])
    return rows
