"""Context ablation's notes quote the surrogate's held-out fit and its top sources with their text."""

from __future__ import annotations

import numpy as np

from attribution.display.ablation import GOOD_LDS, lds_line, top_sources_line
from attribution.display.explanations import method_notes
from attribution.results import ContextAblationScores


def _result(lds, weights=(2.0, -1.0, 0.5)):
    groups = ((1, 2), (3,), (4, 5))
    scores = np.zeros(6)
    for group, weight in zip(groups, weights):
        scores[list(group)] = weight
    return ContextAblationScores(method="context_ablation", scores=scores, group_labels=("Anna lives in Paris.", "Bob.",
                                 "Cats purr."), groups=groups, group_weights=weights, masks=np.ones((16, 3), dtype=bool),
                                 ablation_scores=np.zeros(16), heldout_lds=lds, full_score=-0.25, empty_score=-6.0)


def test_the_held_out_fit_is_quoted_and_judged():
    good, poor, undefined = lds_line(_result(0.83)), lds_line(_result(GOOD_LDS - 0.1)), lds_line(_result(None))
    assert "LDS = 0.83" in good and "fair summary" in good and "16 random ablations" in good and "3 removable sentences" in good
    assert "with care" in poor and "undefined" in undefined
    assert "-0.25 with all of them and -6 with none" in good


def test_the_top_sources_are_the_positive_weights_largest_first():
    line = top_sources_line(_result(0.8))
    assert line.index("Anna lives in Paris.") < line.index("Cats purr.") and "Bob." not in line
    assert "no sentence raises" in top_sources_line(_result(0.8, weights=(0.0, -1.0, -0.5)))


def test_the_method_tab_notes_include_them():
    notes = method_notes("context_ablation", _result(0.7))
    assert "LDS = 0.70" in notes and "“Anna lives in Paris.” (+2)" in notes
