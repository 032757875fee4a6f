"""What the app says about a result in words (markdown): each method's notes and colour legend, the
explained token, Integrated Gradients' convergence and completeness, the answer map's notes, and the
progress lines shown while an analysis runs."""

from __future__ import annotations

from typing import Any

from .answer_map import ANSWER_MAP_METHODS
from .app_inputs import parse_target
from .figure_style import is_signed
from .integrated_gradients import RECOMMENDED_BASELINE
from .labels import method_label, quoted_token
from .methods import METHOD_DESCRIPTIONS
from .results import Analysis, AnswerMap, MethodScores, Target

METHOD_HELP = {
    "gradient": (
        "How sensitive the explained token's logit is to each input token: the L2 norm of the "
        "gradient with respect to that token's embedding (the seed's method A). Fast, but noisy."
    ),
    "attention": (
        "How much the last position attends to each input token, averaged over every head and layer "
        "(the seed's method B). It shows where information is read from, not how it is used; the first "
        "token often soaks up attention that means little."
    ),
    "integrated_gradients": (
        "Gradients averaged along a straight path from a baseline (an input with the information "
        "removed; see Settings) to the real prompt, times the difference (the seed's method C, with "
        "Captum's rule). Slower, but its signed scores account for the whole change in the logit: see "
        "the check below."
    ),
    "input_x_gradient": (
        "Each token's embedding times the gradient, summed: a signed first-order estimate of how much "
        "the token adds to (red) or takes from (purple) the explained token's logit. Fast."
    ),
    "attention_rollout": (
        "Attention composed through every layer with the residual path (Abnar & Zuidema 2020): how much "
        "of the last position's representation flows from each token. Never negative."
    ),
    "occlusion": (
        "Hide one token at a time (by the attention mask) and measure how much the explained token's "
        "log-probability drops: red tokens were needed, purple ones were in the way. One forward pass "
        "per token, batched."
    ),
}
#: Methods whose scores do not depend on the explained token (a contrast leaves them unchanged).
TARGET_FREE_METHODS = ("attention", "attention_rollout")
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
#: (baseline, aggregation): the seed notebook's IG settings, which the app starts with so that its
#: numbers appear, and the recommended signed view (it converged on every model measured).
SEED_IG_SETTINGS = ("zero", "l2")
RECOMMENDED_IG_SETTINGS = (RECOMMENDED_BASELINE, "sum")


def display_number(value: Any) -> Any:
    """A whole number as UI sliders send it (50.0 → 50), anything else unchanged, for messages."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def stage_text(description: str, ig_steps: Any) -> str:
    """The engine's stage ("computing integrated_gradients") as a progress line a reader follows."""
    if description.startswith("computing "):
        name = description.removeprefix("computing ")
        steps = f" ({display_number(ig_steps)} steps)" if name == "integrated_gradients" else ""
        return f"Computing {method_label(name)}{steps}…"
    return description[:1].upper() + description[1:] + "…"


def describe_target(target: str, target_k: Any) -> str:
    """The "Explain" setting in words: 'generated token 3'."""
    if target == "generated":
        return f"generated token {parse_target(target, target_k, None)}"
    if target == "text":
        return "the custom target's first token"
    return "the predicted next token"


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


def ig_settings_line(result: Any) -> str:
    """Which IG settings produced the tab, said plainly (the seed's defaults, or the recommended view)."""
    aggregation = "signed sum" if result.aggregation == "sum" else f"{result.aggregation.upper()} norm"
    settings = f"*{result.baseline}* baseline, {aggregation}, {result.n_steps} steps"
    recommended_baseline = RECOMMENDED_IG_SETTINGS[0]
    if (result.baseline, result.aggregation) == RECOMMENDED_IG_SETTINGS:
        return f"**Settings:** {settings} — the recommended signed view."
    if (result.baseline, result.aggregation) == SEED_IG_SETTINGS:
        return (f"**Settings:** {settings} — the seed notebook's settings, the default so that its numbers "
                f"appear. The recommended signed view (*{recommended_baseline}* baseline, signed sum: it "
                "converged on every model measured) is one press away: **Use the recommended IG settings** "
                "below.")
    return (f"**Settings:** {settings}. The recommended signed view is the *{recommended_baseline}* baseline "
            "with signed sums (**Use the recommended IG settings** below).")


def _baseline_advice(baseline: str) -> str:
    if baseline == RECOMMENDED_BASELINE:
        return ""
    return f" or the recommended {RECOMMENDED_BASELINE} baseline"


def convergence_summary(result: Any) -> str:
    """Integrated Gradients' completeness check in words a newcomer can follow (markdown)."""
    total = result.convergence_delta + result.output_difference
    expected = result.output_difference
    error = abs(result.convergence_delta)
    lines = [
        "**Did the integral converge?** Integrated Gradients promises that the raw (signed) scores add "
        f"up to how much the target logit changes between the {result.baseline} baseline and the real "
        f"prompt: F(input) − F(baseline) = {result.input_output:.4g} − {result.baseline_output:.4g} = "
        f"**{expected:.4g}**. They add up to **{total:.4g}**, off by {error:.3g}"
    ]
    if abs(expected) > 1e-6:
        percent = 100.0 * error / abs(expected)
        lines[0] += f" ({percent:.3g}% of {expected:.4g})."
        converged = percent <= 5.0
    else:
        lines[0] += " (the logit barely changes along the path, so a percentage says little)."
        converged = error <= 1e-3
    if converged:
        lines.append(
            f"That is within the 5% the method's authors suggest: with {result.n_steps} steps the "
            "integral has converged, and the scores can be trusted to account for the prediction."
        )
    else:
        lines.append(
            f"That is more than 5%: with {result.n_steps} steps the integral has **not** converged. "
            f"Try more steps (Settings → IG steps){_baseline_advice(result.baseline)}."
        )
    if getattr(result, "aggregation", "sum") == "l2":
        lines.append(
            "The bars show each token's L2 norm (the seed's view, always ≥ 0), which does not add up to "
            "anything; the check above uses the signed attributions before taking norms."
        )
    return "\n\n".join(lines)


def method_notes(name: str, result: MethodScores, foil: Target | None = None, chat: bool = False) -> str:
    """A method tab's notes: what the method measures, the colour legend, the chat template (`chat`),
    the contrast, and for IG its settings and convergence."""
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
        parts.append(ig_settings_line(result))
        parts.append(convergence_summary(result))
    return "\n\n".join(parts)


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
        text += "That is within 5%: **converged** — the scores account for the prediction."
    else:
        advice = ("more steps" if check.baseline == RECOMMENDED_BASELINE
                  else f"the {RECOMMENDED_BASELINE} baseline with signed sums (the recommended IG settings)")
        text += f"That is over 5%: **not converged** — try {advice}."
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
