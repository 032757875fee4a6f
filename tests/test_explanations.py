"""attribution.explanations: what the app says about a result in words."""

from __future__ import annotations

import numpy as np

import attribution
from attribution import explanations
from attribution.results import IntegratedGradientsScores, MethodScores
from attribution.trust import Completeness
from sample_analyses import TOKENS, make_analysis, make_rich_analysis


def test_convergence_summary_says_whether_the_integral_converged():
    analysis = make_analysis()
    good = explanations.convergence_summary(analysis.methods["integrated_gradients"])
    assert "2" in good and "has converged" in good and "1%" in good  # 0.02 off of 2 = 1%
    bad_result = IntegratedGradientsScores("integrated_gradients", np.ones(3), convergence_delta=-1.5,
                                           input_output=3.0, baseline_output=1.0, n_steps=10, baseline="zero")
    bad = explanations.convergence_summary(bad_result)
    assert "**not** converged" in bad and "75%" in bad and "more steps" in bad
    assert attribution.RECOMMENDED_BASELINE in bad


def test_completeness_summary_in_words():
    analysis = make_rich_analysis()
    text = explanations.completeness_summary(analysis.trust.completeness)
    assert "50.0%" in text and "100" in text and "30.0%" in text and "not converged" in text
    assert attribution.RECOMMENDED_BASELINE in text
    good = explanations.completeness_summary(Completeness(0.001, 50, "pad"))
    assert "converged" in good and "not converged" not in good and "rerun" not in good
    assert "not run" in explanations.completeness_summary(None)


def test_signed_methods_get_the_signed_legend_even_when_all_scores_are_positive():
    occlusion = MethodScores("occlusion", np.linspace(0.1, 1.0, len(TOKENS)))
    assert "purple" in explanations.highlight_legend(occlusion, "occlusion")


def test_method_notes_explain_the_grey_chat_template_tokens():
    analysis = make_analysis()
    assert "Chat template" in explanations.method_notes("gradient", analysis.methods["gradient"], chat=True)
    assert "Chat template" not in explanations.method_notes("gradient", analysis.methods["gradient"])
