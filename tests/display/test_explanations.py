"""attribution.explanations: what the app says about a result in words."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import attribution
from attribution.display import explanations
from attribution.reports import Completeness, Progress
from attribution.results import IntegratedGradientsScores, MethodScores
from attribution.settings import PRESETS, Settings
from helpers import TOKENS, make_analysis, make_rich_analysis


def test_convergence_summary_says_whether_the_integral_converged():
    analysis = make_analysis()
    result = analysis.methods["integrated_gradients"]
    good = explanations.convergence_summary(result)
    # From the sample's numbers: F(input) − F(baseline) = 3 − 1 = 2; the scores add up to 2 + 0.02 = 2.02,
    # 0.02 off, which is 1% of 2 (formatted as the summary formats them: 4 and 3 significant digits).
    assert (result.input_output, result.baseline_output, result.convergence_delta) == (3.0, 1.0, 0.02)
    assert "F(input) − F(baseline) = 3 − 1 = **2**. They add up to **2.02**, off by 0.02 (1% of 2)." in good
    assert "with 50 steps the integral has converged" in good
    bad_result = IntegratedGradientsScores("integrated_gradients", np.ones(3), convergence_delta=-1.5,
                                           input_output=3.0, baseline_output=1.0, n_steps=10, baseline="zero")
    bad = explanations.convergence_summary(bad_result)
    # 3 − 1 = 2, the scores add up to 2 − 1.5 = 0.5: 1.5 off is 75% of 2.
    assert "= 3 − 1 = **2**. They add up to **0.5**, off by 1.5 (75% of 2)." in bad
    assert "**not** converged" in bad and "more steps" in bad and "has converged" not in bad
    assert f"the **Recommended** settings ({explanations.RECOMMENDED_IG_TEXT})" in bad
    # A baseline scoring below 0 (SmolLM2's mean baseline: −2.6) is subtracted in parentheses, not "− -2.6".
    below = dataclasses.replace(result, input_output=2.5, baseline_output=-1.25)
    text = explanations.convergence_summary(below)
    assert f"= 2.5 − (−1.25) = **{below.output_difference:.4g}**." in text and "− -" not in text


def test_completeness_summary_in_words():
    analysis = make_rich_analysis()
    text = explanations.completeness_summary(analysis.trust.completeness)
    # The sample's check: 50% off at 50 steps, 30% off when rerun at twice the steps (100).
    assert ("with the *zero* baseline and 50 steps, the signed attributions miss F(input) − F(baseline) by "
            "**50.0%**; rerun at twice the steps (100): **30.0%**.") in text
    assert "**not converged**" in text
    assert f"the **Recommended** settings ({explanations.RECOMMENDED_IG_TEXT})" in text
    good = explanations.completeness_summary(Completeness(0.001, 50, "pad"))
    assert "with the *pad* baseline and 50 steps" in good and "by **0.1%**." in good  # 0.001 of the difference
    assert "**converged**" in good and "not converged" not in good and "rerun" not in good
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
    stage = Progress("method", 1, 3, "integrated_gradients")
    assert explanations.stage_text(stage, "auto") == "Computing Integrated Gradients (auto steps)…"
    assert explanations.stage_text(stage, 50.0) == "Computing Integrated Gradients (50 steps)…"


def test_ig_settings_are_the_analysis_own_record():
    analysis = make_analysis()  # hand-made: its IG result records 50 steps, a zero baseline, L2
    assert explanations.ig_settings(analysis) == explanations.ig_settings(analysis.methods["integrated_gradients"])
    assert explanations.ig_preset(analysis) == "seed"
    # With settings, they are what counts (methods and prompt-specific settings aside).
    recommended = PRESETS["recommended"].replace(methods=("gradient", "integrated_gradients"), target=2, trust=True)
    computed = dataclasses.replace(analysis, settings=recommended)
    assert explanations.ig_settings(computed) is recommended
    assert explanations.ig_preset(computed) == explanations.ig_preset(recommended) == "recommended"
    assert explanations.ig_preset(recommended.replace(score="probability")) is None
    assert explanations.ig_settings_text(PRESETS["seed"]) == (
        "zero baseline, L2 norm, 50 steps, logit score, context not held")
    notes = explanations.method_notes("integrated_gradients", computed)
    assert f"**Settings:** {explanations.RECOMMENDED_IG_TEXT} — the **Recommended** settings" in notes
    without = dataclasses.replace(analysis, methods={"gradient": analysis.methods["gradient"]})
    with pytest.raises(ValueError, match="no settings"):
        explanations.ig_settings(without)


def test_method_notes_read_the_analysis():
    analysis = dataclasses.replace(make_rich_analysis(), settings=Settings(score="log_probability", chat=True))
    notes = explanations.method_notes("gradient", analysis, score="logit")  # the analysis's settings win
    assert "not the logit but the target's log-probability" in notes and "**Contrast:**" in notes
    assert explanations.method_notes("gradient", analysis) == explanations.method_notes(
        "gradient", analysis.methods["gradient"], analysis.foil, analysis.chat, score="log_probability")
    with pytest.raises(ValueError, match="valid choices"):
        explanations.method_notes("occlusion", analysis)


@pytest.mark.parametrize("aggregation", ["l2", "sum"])
def test_the_legend_follows_the_catalog_not_the_scores(aggregation):
    analysis = make_analysis(aggregation=aggregation)
    signed = attribution.catalog.is_signed("integrated_gradients", aggregation)
    assert ("purple" in explanations.method_notes("integrated_gradients", analysis)) == signed
    negative = dataclasses.replace(analysis, methods={**analysis.methods, "gradient": MethodScores(
        "gradient", -np.ones(len(TOKENS)))})
    assert "never negative" in explanations.method_notes("gradient", negative)


def test_converged_is_the_engines_rule():
    # F barely changes along the path: 1e-4 off is tiny, but the relative error is not, and the engine
    # (the trust panel, the verdict) counts that as not converged; so does the tab.
    flat = IntegratedGradientsScores("integrated_gradients", np.ones(3), convergence_delta=1e-4, input_output=1.0,
                                     baseline_output=1.0 - 1e-8, n_steps=50, baseline="zero")
    for result in (flat, ig_result(n_steps=50), ig_result(n_steps=50, convergence_delta=0.5)):
        engine = Completeness(result.relative_completeness_error, result.n_steps, result.baseline).converged
        assert ("the integral has converged" in explanations.convergence_summary(result)) == engine
    assert "barely changes" in explanations.convergence_summary(flat)
