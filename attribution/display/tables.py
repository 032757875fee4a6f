"""Scores as rows of values rather than pictures: the highlighted-text pairs (token, score scaled into
[−1, 1]), the top-tokens table and the trust panel's faithfulness and agreement tables."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .labels import method_label, token_label
from ..results import Analysis, normalize_max_abs, top_k

TOP_HEADERS = ["rank", "token", "position", "score"]
FAITHFULNESS_HEADERS = ["method", "comprehensiveness ↑", "random (comp.)", "sufficiency ↓", "random (suff.)",
                        "beats random?"]
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


def faithfulness_rows(report: Any) -> list[list[Any]]:
    """[method, comprehensiveness, random, sufficiency, random, verdict] per method of a TrustReport
    (numbers as text to three decimals, so the table reads evenly)."""
    rows = []
    for name, item in report.faithfulness.items():
        better_comp = item.comprehensiveness > item.random_comprehensiveness
        better_suff = item.sufficiency < item.random_sufficiency
        verdict = ("yes, both" if better_comp and better_suff
                   else "comprehensiveness only" if better_comp
                   else "sufficiency only" if better_suff else "no")
        numbers = (item.comprehensiveness, item.random_comprehensiveness, item.sufficiency, item.random_sufficiency)
        rows.append([method_label(name), *(f"{value:.3f}" for value in numbers), verdict])
    return rows


def agreement_rows(report: Any, n_content: int) -> list[list[Any]]:
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
