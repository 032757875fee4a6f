"""What the app says about a result in words (markdown): each method's notes and colour legend, the
explained token, Integrated Gradients' convergence and completeness, the answer map's notes, and the
progress lines shown while an analysis runs."""

from __future__ import annotations

from typing import Any, Mapping

from ..catalog import ANSWER_MAP_METHODS, METHOD_DESCRIPTIONS, METHOD_HELP, TARGET_FREE_METHODS
from .figure_style import is_signed
from .labels import method_label, quoted_token
from ..settings import COMPLETENESS_TOLERANCE, DEFAULT_TARGET_ERROR, PRESETS, SCORES
from ..results import Analysis, AnswerMap, MethodScores, Target

TOLERANCE = f"{COMPLETENESS_TOLERANCE:.0%}"  # IG's convergence threshold in words: '5%'

ANSWER_MAP_HELP = (
    "**Answer map.** Every generated token (rows), explained by everything before it: the prompt, then "
    "the tokens generated earlier (right of the dark line). Each row is scaled by its largest score; grey "
    "cells come after the explained token (a causal model cannot see them). Pick a method and a generated "
    "token to read one row as highlighted text."
)
CHAT_TEMPLATE_NOTE = (
    "**Chat template:** the prompt went in as the user message of the model's chat template. The tokens "
    "the template added (role markers, the system prompt) are grey: left out of the colour scaling and the "
    "top 5, so that the prompt's own tokens get the colours. Their raw scores stay in the bar chart and the "
    "downloads."
)
#: The methods whose scores follow the `score` setting (occlusion always explains the log-probability).
SCORED_METHODS = ("gradient", "input_x_gradient", "integrated_gradients")


def display_number(value: Any) -> Any:
    """A whole number as UI sliders send it (50.0 → 50), anything else unchanged, for messages."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def stage_text(stage: Any, ig_steps: Any) -> str:
    """The engine's stage (`attribution.engine.Progress`) as a progress line a reader follows."""
    if stage.kind == "method":
        count = "auto" if ig_steps == "auto" else display_number(ig_steps)
        steps = f" ({count} steps)" if stage.method == "integrated_gradients" else ""
        return f"Computing {method_label(stage.method)}{steps}…"
    return stage.description[:1].upper() + stage.description[1:] + "…"


def explained_line(analysis: Analysis, target_description: str) -> str:
    """The explained token (and the contrast's foil) with their ids, for the "Explained token" box."""
    target = quoted_token(analysis.target.text)
    if analysis.foil is None:
        return f"{target}: {target_description} (token id {analysis.target.id})"
    foil = quoted_token(analysis.foil.text)
    return (f"explaining {target} rather than {foil}: {target_description} "
            f"(token ids {analysis.target.id} and {analysis.foil.id})")


def method_help(name: str) -> str:
    fallback = f"Scores from the {method_label(name)} method."
    return METHOD_HELP.get(name) or METHOD_DESCRIPTIONS.get(name, fallback)


def highlight_legend(result: MethodScores, name: str | None = None) -> str:
    if is_signed(name or result.method, result):
        return ("**Colour:** red tokens push the model towards the explained token, purple ones push "
                "away from it; the stronger the colour, the larger the score (scaled so the largest "
                "magnitude is 1).")
    return ("**Colour:** the redder the token, the larger its score (scaled so the largest is 1); "
            "these scores are never negative.")


def percent(fraction: float) -> str:
    """A relative error as a short percentage: 0.01 → '1%', 0.0009 → '0.09%', 0.032 → '3.2%'."""
    return f"{100 * fraction:.3g}%"


def score_noun(score: str) -> str:
    """A SCORES key as words: 'log_probability' → 'log-probability'."""
    return score.replace("_", "-")


def aggregation_words(aggregation: str) -> str:
    """An AGGREGATIONS key as words: 'sum' → 'signed sum', 'l2' → 'L2 norm'."""
    return "signed sum" if aggregation == "sum" else f"{aggregation.upper()} norm"


def ig_settings_text(settings: Mapping[str, Any]) -> str:
    """IG settings (`analyze` keyword arguments, as a preset holds them) in a few words."""
    steps = settings["n_steps"]
    steps = (f"auto steps to {percent(settings.get('target_error', DEFAULT_TARGET_ERROR))}" if steps == "auto"
             else f"{steps} steps")
    held = "context held" if settings["hold_context"] else "context not held"
    return (f"{settings['baseline']} baseline, {aggregation_words(settings['aggregation'])}, {steps}, "
            f"{score_noun(settings['score'])} score, {held}")


#: The recommended preset's IG settings in words (the methods it runs aside).
RECOMMENDED_IG_TEXT = ig_settings_text(PRESETS["recommended"])


def ig_result_settings(result: Any) -> dict[str, Any]:
    """The IG settings that produced `result` (an IntegratedGradientsScores), as `analyze` keyword
    arguments: with auto steps n_steps is "auto" and target_error the error it aimed for."""
    auto = result.target_error is not None
    settings = {"n_steps": "auto" if auto else int(result.n_steps), "baseline": result.baseline,
                "aggregation": result.aggregation, "score": result.score, "hold_context": bool(result.held)}
    if auto:
        settings["target_error"] = result.target_error
    return settings


def ig_preset(result: Any) -> str | None:
    """The preset whose IG settings produced `result` ("seed", "recommended"), or None. Only IG's own
    settings count (steps, target error, baseline, aggregation, score, held context), not the methods."""
    settings = ig_result_settings(result)
    for name, values in PRESETS.items():
        if all(settings.get(key) == value for key, value in values.items() if key != "methods"):
            return name
    return None


def ig_settings_line(result: Any) -> str:
    """Which IG settings produced the tab, said plainly (the seed's, the recommended or others)."""
    settings = f"**Settings:** {ig_settings_text(ig_result_settings(result))}"
    name = ig_preset(result)
    if name == "recommended":
        return f"{settings} — the **Recommended** settings (trustworthy on the real models measured)."
    offer = (f"The **Recommended** settings ({RECOMMENDED_IG_TEXT}; trustworthy on the real models measured) "
             "are one press away: **Use the recommended IG settings** below.")
    if name == "seed":
        return f"{settings} — the **Seed settings** (the notebook's), so that its numbers appear. {offer}"
    return f"{settings}. {offer}"


def steps_line(result: Any) -> str:
    """With auto steps: the path points used and the completeness error reached, against the target."""
    if result.target_error is None:
        return ""
    target, reached = percent(result.target_error), percent(result.relative_completeness_error)
    if result.reached_target:
        return f"**Steps:** auto: {result.n_steps} path points, {reached} error (target {target})."
    return (f"**Steps:** auto did **NOT** reach the {target} target: {reached} at {result.n_steps} path points, "
            "the most the step budget allows.")


def held_line(held: bool, generated_inputs: int = 0) -> str:
    """Whether IG's baseline held the context, and that generated tokens before the target never are
    (`generated_inputs`: how many of them this input has)."""
    if not held:
        return ("**Context not held:** the baseline replaces every token, the first position and special "
                "tokens included (the seed's way). *Hold context* (Settings) keeps them at their real "
                "embeddings.")
    here = f" (here {generated_inputs})" if generated_inputs else ""
    return ("**Context held:** the baseline keeps the first position, special and chat-template tokens at "
            "their real embeddings, so the path never switches the attention sink off; they get exactly 0. "
            f"Generated tokens before the explained one{here} are not held: they are the answer being "
            "continued, and holding them made IG less complete (SmolLM2: 32% → 68% error).")


def score_line(score: str, name: str) -> str:
    """What the scores explain (IG always says; the gradient methods only when not the logit)."""
    if name == "integrated_gradients":
        return (f"**Score:** {SCORES[score]}. Occlusion always uses the log-probability and the trust "
                "panel's faithfulness the probability, whatever this setting.")
    if name in SCORED_METHODS and score != "logit":
        return f"**Score:** not the logit but {SCORES[score]}."
    return ""


def pad_line(baseline: str, pad_token: str | None) -> str:
    """The token a pad baseline repeats, for the loaded model (`pad_token`: its label, e.g. "'<|im_end|>' (EOS)")."""
    if pad_token is None or not baseline.startswith("pad"):
        return ""
    return f"**Pad baseline** = {pad_token}: the seed sets pad = eos."


def convergence_summary(result: Any) -> str:
    """Integrated Gradients' completeness check in words a newcomer can follow (markdown)."""
    total = result.convergence_delta + result.output_difference
    expected = result.output_difference
    error = abs(result.convergence_delta)
    score = score_noun(result.score)
    lines = [
        "**Did the integral converge?** Integrated Gradients promises that the raw (signed) scores add "
        f"up to how much the target {score} changes between the {result.baseline} baseline and the real "
        f"prompt: F(input) − F(baseline) = {result.input_output:.4g} − {result.baseline_output:.4g} = "
        f"**{expected:.4g}**. They add up to **{total:.4g}**, off by {error:.3g}"
    ]
    if abs(expected) > 1e-6:
        percent_off = 100.0 * error / abs(expected)
        lines[0] += f" ({percent_off:.3g}% of {expected:.4g})."
        converged = percent_off <= 100.0 * COMPLETENESS_TOLERANCE
    else:
        lines[0] += f" (the {score} barely changes along the path, so a percentage says little)."
        converged = error <= 1e-3
    auto = result.target_error is not None
    steps = f"{result.n_steps} path points (auto)" if auto else f"{result.n_steps} steps"
    if converged:
        lines.append(
            f"That is within the {TOLERANCE} the method's authors suggest: with {steps} the "
            "integral has converged, and the scores can be trusted to account for the prediction."
        )
    else:
        advice = ("" if ig_preset(result) == "recommended"
                  else f", or the **Recommended** settings ({RECOMMENDED_IG_TEXT})")
        more = "" if auto else "more steps (Settings → IG steps), auto steps"
        lines.append(
            f"That is more than {TOLERANCE}: with {steps} the integral has **not** converged. "
            f"Try {more or 'another baseline'}{advice}."
        )
    if getattr(result, "aggregation", "sum") == "l2":
        lines.append(
            "The bars show each token's L2 norm (the seed's view, always ≥ 0), which does not add up to "
            "anything; the check above uses the signed attributions before taking norms."
        )
    return "\n\n".join(lines)


def method_notes(name: str, result: MethodScores, foil: Target | None = None, chat: bool = False, *,
                 score: str = "logit", pad_token: str | None = None, generated_inputs: int = 0) -> str:
    """A method tab's notes: what the method measures, the colour legend, the chat template (`chat`),
    the contrast, the score when it matters (`score`, the one analyze used), and for IG its settings,
    steps, pad token (`pad_token`, see `pad_line`), held context (`generated_inputs`: generated tokens
    before the target in the input, never held) and convergence."""
    label = method_label(name)
    parts = [f"**{label}.** {method_help(name)}", highlight_legend(result, name)]
    if chat:
        parts.append(CHAT_TEMPLATE_NOTE)
    if foil is not None:
        if name in TARGET_FREE_METHODS:
            parts.append(f"**Contrast:** {label} does not depend on the explained token, so these scores are "
                         f"the same with or without the contrast with {quoted_token(foil.text)}.")
        else:
            parts.append(f"**Contrast:** these scores explain the explained token's score minus that of "
                         f"{quoted_token(foil.text)} — why this token rather than that one.")
    if hasattr(result, "convergence_delta"):
        parts += [ig_settings_line(result), steps_line(result), pad_line(result.baseline, pad_token),
                  score_line(result.score, name), held_line(result.held, generated_inputs),
                  convergence_summary(result)]
    else:
        parts.append(score_line(score, name))
    return "\n\n".join(part for part in parts if part)


def completeness_summary(check: Any) -> str:
    """IG's completeness check from the trust report, in plain words (markdown)."""
    if check is None:
        return ("**Integrated Gradients completeness:** not checked — Integrated Gradients was not run "
                "(tick it under *Settings → Methods*).")
    text = (f"**Integrated Gradients completeness:** with the *{check.baseline}* baseline and "
            f"{check.n_steps} steps, the signed attributions miss F(input) − F(baseline) by "
            f"**{check.relative_error:.1%}**")
    if check.rerun_n_steps is not None and check.rerun_relative_error is not None:
        text += (f"; rerun at twice the steps ({check.rerun_n_steps}): **{check.rerun_relative_error:.1%}**")
    text += ". "
    if check.converged:
        text += f"That is within {TOLERANCE}: **converged** — the scores account for the prediction."
    else:
        advice = ("more steps" if check.baseline == PRESETS["recommended"]["baseline"]
                  else f"the **Recommended** settings ({RECOMMENDED_IG_TEXT})")
        text += f"That is over {TOLERANCE}: **not converged** — try {advice}."
    return text


def answer_map_notes(analysis: Analysis, all_targets: bool) -> str:
    """The Answer map tab's notes, or why there is no answer map."""
    if analysis.answer_map:
        note = ANSWER_MAP_HELP
        if analysis.foil is not None:
            note += (" The answer map explains each generated token on its own: the contrast applies to the "
                     "method tabs only.")
        return note
    if not all_targets:
        return ("**Answer map** was not computed: tick *Settings → Explain every generated token (answer map)* "
                "and analyze again.")
    if not len(analysis.generated_ids):
        return "**Answer map:** no tokens were generated (*Settings → Max new tokens* is 0)."
    supported = ", ".join(method_label(name) for name in ANSWER_MAP_METHODS)
    return f"**Answer map:** none of the chosen methods supports it; it is built for {supported}."


def answer_map_label(table: AnswerMap | None, index: int) -> str:
    """The label over one generated token's highlighted sources."""
    if table is None:
        return "One generated token: its sources coloured by score"
    token = quoted_token(table.targets[index - 1])
    return f"Why {token} (generated token {index}): the tokens before it, coloured by score"
