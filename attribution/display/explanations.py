"""What the app says about a result in words (markdown): each method's notes and colour legend, the
explained token, Integrated Gradients' convergence and completeness, the answer map's notes, and the
progress lines shown while an analysis runs."""

from __future__ import annotations

from ..catalog import ANSWER_MAP_METHODS, METHOD_DESCRIPTIONS, METHOD_HELP, TARGET_FREE_METHODS, is_signed
from .figure_style import analysis_aggregation, result_aggregation
from .labels import method_label, quoted_token
from ..reports import Completeness, Progress
from ..settings import COMPLETENESS_TOLERANCE, PRESET_FIELDS, PRESETS, SCORES, Settings
from ..results import Analysis, AnswerMap, ContextAblationScores, IntegratedGradientsScores, MethodScores, Target
from .ablation import ablation_notes

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


def display_number(value: object) -> object:
    """A whole number as UI sliders send it (50.0 → 50), anything else unchanged, for messages."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def stage_text(stage: Progress, ig_steps: int | float | str) -> str:
    """The engine's stage as a progress line a reader follows (`ig_steps`: IG's step setting, "auto" or
    a count as the page's slider sends it)."""
    if stage.kind == "method":
        count = "auto" if ig_steps == "auto" else display_number(ig_steps)
        steps = f" ({count} steps)" if stage.method == "integrated_gradients" else ""
        return f"Computing {method_label(stage.method)}{steps}…"
    return stage.description[:1].upper() + stage.description[1:] + "…"


def explained_line(analysis: Analysis, target_description: str) -> str:
    """The explained token (and the contrast's foil) with their ids, for the "Explained token" box."""
    target = quoted_token(analysis.target.text)
    if analysis.span is not None:  # a stretch: its text and every token's id
        ids = ", ".join(str(value) for value in analysis.span.ids)
        return f"{quoted_token(analysis.span.text)}: {target_description} (token ids {ids})"
    if analysis.foil is None:
        return f"{target}: {target_description} (token id {analysis.target.id})"
    foil = quoted_token(analysis.foil.text)
    return (f"explaining {target} rather than {foil}: {target_description} "
            f"(token ids {analysis.target.id} and {analysis.foil.id})")


def method_help(name: str) -> str:
    fallback = f"Scores from the {method_label(name)} method."
    return METHOD_HELP.get(name) or METHOD_DESCRIPTIONS.get(name, fallback)


def highlight_legend(result: MethodScores, name: str | None = None, aggregation: str | None = None) -> str:
    """The colour legend of a method's highlighted text; signed by the catalog, with the analysis's IG
    `aggregation` (default: what the result itself records)."""
    aggregation = result_aggregation(result) if aggregation is None else aggregation
    if is_signed(name or result.method, aggregation):
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


def ig_settings_text(settings: Settings) -> str:
    """IG's settings (those a preset decides, the methods aside) in a few words."""
    steps = (f"auto steps to {percent(settings.target_error)}" if settings.n_steps == "auto"
             else f"{settings.n_steps} steps")
    held = "context held" if settings.hold_context else "context not held"
    return (f"{settings.baseline} baseline, {aggregation_words(settings.aggregation)}, {steps}, "
            f"{score_noun(settings.score)} score, {held}")


#: The recommended preset's IG settings in words (the methods it runs aside).
RECOMMENDED_IG_TEXT = ig_settings_text(PRESETS["recommended"])


def ig_settings(source: Analysis | IntegratedGradientsScores) -> Settings:
    """The settings IG ran with: the analysis's own record (`Analysis.settings`). A result built by hand
    (or restored without its settings) has none; then its IG result's record of them stands in, over the
    defaults (with auto steps n_steps is "auto" and target_error the error it aimed for)."""
    if isinstance(source, Analysis):
        if source.settings is not None:
            return source.settings
        result = source.methods.get("integrated_gradients")
        if not isinstance(result, IntegratedGradientsScores):
            raise ValueError("this analysis records no settings and has no Integrated Gradients result to read "
                             f"them from; its methods: {', '.join(source.methods) or 'none'}")
        source = result
    if not isinstance(source, IntegratedGradientsScores):
        raise ValueError(f"IG settings come from an Analysis or an IntegratedGradientsScores, "
                         f"got {type(source).__name__}")
    auto = source.target_error is not None
    changes: dict[str, object] = {"n_steps": "auto" if auto else int(source.n_steps), "baseline": source.baseline,
                                  "aggregation": source.aggregation, "score": source.score,
                                  "hold_context": bool(source.held)}
    if auto:
        changes["target_error"] = source.target_error
    return Settings().replace(**changes)


def ig_preset(source: Analysis | Settings | IntegratedGradientsScores) -> str | None:
    """The preset ("seed", "recommended") whose settings other than the methods (`PRESET_FIELDS`) are the
    analysis's, or None."""
    settings = source if isinstance(source, Settings) else ig_settings(source)
    for name, values in PRESETS.items():
        if all(getattr(settings, key) == getattr(values, key) for key in PRESET_FIELDS if key != "methods"):
            return name
    return None


def ig_settings_line(settings: Settings) -> str:
    """Which IG settings produced the tab, said plainly (the seed's, the recommended or others)."""
    line = f"**Settings:** {ig_settings_text(settings)}"
    name = ig_preset(settings)
    if name == "recommended":
        return f"{line} — the **Recommended** settings (trustworthy on the real models measured)."
    offer = (f"The **Recommended** settings ({RECOMMENDED_IG_TEXT}; trustworthy on the real models measured) "
             "are one press away: **Use the recommended IG settings** below.")
    if name == "seed":
        return f"{line} — the **Seed settings** (the notebook's), so that its numbers appear. {offer}"
    return f"{line}. {offer}"


def steps_line(result: IntegratedGradientsScores) -> str:
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
        return (f"**Score:** {SCORES[score]}. Occlusion always uses the log-probability, and the trust "
                "panel's faithfulness its own scale (its table's *drops of* column), whatever this setting.")
    if name in SCORED_METHODS and score != "logit":
        return f"**Score:** not the logit but {SCORES[score]}."
    return ""


def pad_line(baseline: str, pad_token: str | None) -> str:
    """The token a pad baseline repeats, for the loaded model (`pad_token`: its label, e.g. "'<|im_end|>' (EOS)")."""
    if pad_token is None or not baseline.startswith("pad"):
        return ""
    return f"**Pad baseline** = {pad_token}: the seed sets pad = eos."


def _operand(value: float) -> str:
    """A number subtracted in a sum: a negative one in parentheses with a minus sign, "(−2.622)", not "− -2.622"."""
    return f"(−{-value:.4g})" if value < 0 else f"{value:.4g}"


def convergence_summary(result: IntegratedGradientsScores, settings: Settings | None = None) -> str:
    """Integrated Gradients' completeness check in words a newcomer can follow (markdown). Whether it
    converged is the engine's rule (`Completeness.converged`, the trust panel's), so the tab and the
    Compare tab never disagree; `settings`: what IG ran with (default: what the result records)."""
    total = result.convergence_delta + result.output_difference
    expected = result.output_difference
    error = abs(result.convergence_delta)
    score = score_noun(result.score)
    lines = [
        "**Did the integral converge?** Integrated Gradients promises that the raw (signed) scores add "
        f"up to how much the target {score} changes between the {result.baseline} baseline and the real "
        f"prompt: F(input) − F(baseline) = {result.input_output:.4g} − {_operand(result.baseline_output)} = "
        f"**{expected:.4g}**. They add up to **{total:.4g}**, off by {error:.3g}"
    ]
    if abs(expected) > 1e-6:
        percent_off = 100.0 * error / abs(expected)
        lines[0] += f" ({percent_off:.3g}% of {expected:.4g})."
    else:
        lines[0] += f" (the {score} barely changes along the path, so a percentage says little)."
    converged = result.converged
    auto = result.target_error is not None
    steps = f"{result.n_steps} path points (auto)" if auto else f"{result.n_steps} steps"
    if converged:
        lines.append(
            f"That is within the {TOLERANCE} the method's authors suggest: with {steps} the "
            "integral has converged, and the scores can be trusted to account for the prediction."
        )
    else:
        advice = ("" if ig_preset(settings or result) == "recommended"
                  else f", or the **Recommended** settings ({RECOMMENDED_IG_TEXT})")
        more = "" if auto else "more steps (Settings → IG steps), auto steps"
        lines.append(
            f"That is more than {TOLERANCE}: with {steps} the integral has **not** converged. "
            f"Try {more or 'another baseline'}{advice}."
        )
    if result.aggregation == "l2":
        lines.append(
            "The bars show each token's L2 norm (the seed's view, always ≥ 0), which does not add up to "
            "anything; the check above uses the signed attributions before taking norms."
        )
    return "\n\n".join(lines)


def method_notes(name: str, source: Analysis | MethodScores, foil: Target | None = None, chat: bool = False, *,
                 score: str = "logit", pad_token: str | None = None, generated_inputs: int = 0) -> str:
    """A method tab's notes: what the method measures, the colour legend, the chat template, the contrast,
    the score when it matters, and for IG its settings, steps, pad token (`pad_token`, see `pad_line`),
    held context and convergence.

    Pass the `Analysis`: its foil, chat flag, settings (the score, IG's settings, the aggregation that
    decides the sign) and the generated tokens before the target (never held) are read from it, and
    `foil`, `chat`, `score` and `generated_inputs` are ignored. Given one result instead (a result built
    by hand), those keywords say them, and IG's settings are what its result records."""
    settings: Settings | None = None
    if isinstance(source, Analysis):
        if name not in source.methods:
            raise ValueError(f"no {name!r} result in this analysis; valid choices: {', '.join(source.methods)}")
        result, foil, chat, settings = source.methods[name], source.foil, source.chat, source.settings
        generated_inputs = source.n_tokens - (source.n_prompt_tokens or source.n_tokens)
        aggregation = analysis_aggregation(source)
        score = score if settings is None else settings.score
    else:
        result, aggregation = source, result_aggregation(source)
    label = method_label(name)
    parts = [f"**{label}.** {method_help(name)}", highlight_legend(result, name, aggregation)]
    if chat:
        parts.append(CHAT_TEMPLATE_NOTE)
    if foil is not None:
        if name in TARGET_FREE_METHODS:
            parts.append(f"**Contrast:** {label} does not depend on the explained token, so these scores are "
                         f"the same with or without the contrast with {quoted_token(foil.text)}.")
        else:
            parts.append(f"**Contrast:** these scores explain the explained token's score minus that of "
                         f"{quoted_token(foil.text)} — why this token rather than that one.")
    if isinstance(result, IntegratedGradientsScores):
        ig = settings or ig_settings(result)
        parts += [ig_settings_line(ig), steps_line(result), pad_line(result.baseline, pad_token),
                  score_line(result.score, name), held_line(result.held, generated_inputs),
                  convergence_summary(result, ig)]
    else:
        parts.append(score_line(score, name))
    if isinstance(result, ContextAblationScores):
        parts += ablation_notes(result)
    return "\n\n".join(part for part in parts if part)


def completeness_summary(check: Completeness | None) -> str:
    """IG's completeness check from the trust report, in plain words (markdown); converged or not is the
    engine's `Completeness.converged` (the best of the run and its rerun)."""
    if check is None:
        return ("**Integrated Gradients completeness:** not checked — Integrated Gradients was not run "
                "(tick it under *Settings → Methods*).")
    text = (f"**Integrated Gradients completeness:** with the *{check.baseline}* baseline and "
            f"{check.n_steps} steps, the signed attributions miss F(input) − F(baseline) by "
            f"**{check.relative_error:.1%}**")
    rerun = check.rerun_n_steps is not None and check.rerun_relative_error is not None
    if rerun:
        text += (f"; rerun at twice the steps ({check.rerun_n_steps}): **{check.rerun_relative_error:.1%}**")
    text += ". "
    if check.converged and rerun:
        # The scores shown are the first run's: say that only the rerun's account for the prediction.
        text += (f"That is within {TOLERANCE}: **converged** at {check.rerun_n_steps} steps — the scores shown "
                 f"are the {check.n_steps}-step run's; set *IG steps* to {check.rerun_n_steps} to see scores "
                 "that account for the prediction.")
    elif check.converged:
        text += f"That is within {TOLERANCE}: **converged** — the scores account for the prediction."
    else:
        advice = ("more steps" if check.baseline == PRESETS["recommended"].baseline
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


def grouping_note(name: str, aggregation: str | None, granularity: str) -> str:
    """How a method's scores are shown per word, sentence or segment (its catalog `combine`), in a sentence
    for its tab; "" per token."""
    if granularity == "token":
        return ""
    from attribution.catalog import combine_rule

    rule = combine_rule(name, aggregation)
    how = {"sum": f"its tokens' scores added (they are shares or signed terms, so the {granularity}s' scores "
                  "keep their total)",
           "l2": "the L2 norm of its tokens' scores, √Σ s² (the norm over all the group's embedding dimensions)",
           "remove": f"measured by removing whole {granularity}s (occlusion: the drop when the {granularity} is "
                     "hidden at once), not added from its tokens' scores"}[rule]
    return (f"*Scores per {granularity}:* each {granularity}'s score is {how}; the held context stays one "
            "group per token.")
