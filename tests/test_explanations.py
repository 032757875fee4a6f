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
    assert f"the **Recommended** settings ({explanations.RECOMMENDED_IG_TEXT})" in bad


def test_completeness_summary_in_words():
    analysis = make_rich_analysis()
    text = explanations.completeness_summary(analysis.trust.completeness)
    assert "50.0%" in text and "100" in text and "30.0%" in text and "not converged" in text
    assert f"the **Recommended** settings ({explanations.RECOMMENDED_IG_TEXT})" in text
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


def ig_result(**settings) -> IntegratedGradientsScores:
    """IG scores made with `settings` (IntegratedGradientsScores fields), 2% off by default."""
    values = {"convergence_delta": 0.02, "input_output": 3.0, "baseline_output": 1.0, **settings}
    return IntegratedGradientsScores("integrated_gradients", np.ones(3), **values)


def test_ig_preset_recognises_the_seed_and_the_recommended_settings():
    seed, recommended = attribution.PRESETS["seed"], attribution.PRESETS["recommended"]
    assert explanations.ig_preset(ig_result(n_steps=seed["n_steps"], baseline=seed["baseline"],
                                            aggregation=seed["aggregation"])) == "seed"
    assert explanations.ig_preset(ig_result(
        n_steps=81, baseline=recommended["baseline"], aggregation=recommended["aggregation"], held=True,
        target_error=recommended["target_error"])) == "recommended"
    # One setting off and it is neither: a fixed count, another target, another score, the context not held.
    for changes in ({"target_error": None}, {"target_error": 0.05}, {"score": "probability"}, {"held": False}):
        settings = {"n_steps": 81, "baseline": recommended["baseline"], "aggregation": "sum", "held": True,
                    "target_error": recommended["target_error"], **changes}
        assert explanations.ig_preset(ig_result(**settings)) is None, changes
    assert explanations.RECOMMENDED_IG_TEXT == (
        f"{recommended['baseline']} baseline, signed sum, auto steps to 1%, logit score, context held")


def test_the_ig_notes_say_the_steps_score_pad_token_and_held_context():
    reached = ig_result(n_steps=81, baseline="mean", aggregation="sum", held=True, target_error=0.05)
    assert explanations.steps_line(reached) == "**Steps:** auto: 81 path points, 1% error (target 5%)."
    missed = ig_result(n_steps=729, baseline="pad", aggregation="sum", target_error=0.001)
    assert explanations.steps_line(missed).startswith("**Steps:** auto did **NOT** reach the 0.1% target: 1% at 729")
    assert explanations.steps_line(ig_result(n_steps=50)) == ""  # fixed steps: the convergence check says it
    notes = explanations.method_notes("integrated_gradients", missed, pad_token='"<|im_end|>" (EOS, token id 2)',
                                      generated_inputs=3)
    assert '**Pad baseline** = "<|im_end|>" (EOS, token id 2)' in notes
    assert "**Score:** the target's logit" in notes and "**Context not held:**" in notes
    assert "with 729 path points (auto)" in notes
    held = explanations.method_notes("integrated_gradients", reached, pad_token='"x" (EOS, token id 2)',
                                     generated_inputs=3)
    assert "Pad baseline" not in held  # a mean baseline repeats no token
    assert "**Context held:**" in held and "Generated tokens before the explained one (here 3) are not held" in held
    assert explanations.percent(0.0009) == "0.09%" and explanations.percent(0.032) == "3.2%"


def test_the_gradient_notes_name_the_score_only_when_it_is_not_the_logit():
    gradient = MethodScores("gradient", np.ones(3))
    assert "**Score:**" not in explanations.method_notes("gradient", gradient)
    assert "not the logit but the target's log-probability" in explanations.method_notes(
        "gradient", gradient, score="log_probability")
    assert "**Score:**" not in explanations.method_notes("occlusion", MethodScores("occlusion", np.ones(3)),
                                                         score="probability")


def test_progress_line_for_auto_steps():
    from attribution.engine import Progress

    stage = Progress("method", 1, 3, "integrated_gradients")
    assert explanations.stage_text(stage, "auto") == "Computing Integrated Gradients (auto steps)…"
    assert explanations.stage_text(stage, 50.0) == "Computing Integrated Gradients (50 steps)…"
