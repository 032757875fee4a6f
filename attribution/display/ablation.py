"""Context ablation's own notes (torch-free): the surrogate's held-out fit, its trust figure, and the
sources it ranks highest with their text."""

from __future__ import annotations

import numpy as np

from ..results import ContextAblationScores

#: Held-out LDS at or above which the surrogate's weights are called a good summary of the ablations
#: (ContextCite reports LDS of about 0.5 to 0.9 on its benchmarks; below 0.5 the linear model misranks
#: many of the ablations it was not fitted on).
GOOD_LDS = 0.5
TOP_SOURCES = 3


def lds_line(result: ContextAblationScores) -> str:
    """The surrogate's held-out fit in plain words."""
    n_groups = len(result.groups)
    unit = f"{result.granularity}{'s' if n_groups != 1 else ''}"
    head = (f"**Surrogate fit:** {result.n_ablations} random ablations of the prompt's {n_groups} removable {unit}; "
            f"the log-probability is {result.full_score:.3g} with all of them and {result.empty_score:.3g} with none")
    if result.heldout_lds is None:
        return (head + ". Its held-out fit (LDS) is undefined here (the held-out predictions or scores do not vary), "
                "so the weights cannot be checked.")
    verdict = ("the weights are a fair summary of what removing them does" if result.heldout_lds >= GOOD_LDS else
               "the linear model misranks many ablations, so read the weights with care (try more ablations)")
    return (head + f". On ablations it was not fitted on, its predictions rank the actual log-probabilities with "
            f"Spearman **LDS = {result.heldout_lds:.2f}** (1: perfectly, 0: no better than chance): {verdict}.")


def top_sources_line(result: ContextAblationScores, count: int = TOP_SOURCES) -> str:
    """The sources that raise the log-probability most, with their text and weight."""
    order = [int(index) for index in np.argsort(-result.group_weights, kind="stable")
             if result.group_weights[index] > 0][:count]
    if not order:
        return f"**Top sources:** no {result.granularity} raises the log-probability (every weight is 0 or less)."
    items = "; ".join(f"“{result.group_labels[index]}” ({result.group_weights[index]:+.3g})" for index in order)
    return f"**Top sources** (weight: log-probability gained by keeping it): {items}."


def ablation_notes(result: ContextAblationScores) -> list[str]:
    return [lds_line(result), top_sources_line(result)]
