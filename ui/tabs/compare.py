"""The Compare tab: the trust verdict, every method's normalised scores side by side, and how far to
trust them (faithfulness, agreement, IG completeness)."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from attribution.display.explanations import completeness_summary
from attribution.display.tables import AGREEMENT_HEADERS, FAITHFULNESS_HEADERS, agreement_rows, faithfulness_rows
from attribution.results import Analysis

from ..view import View

TRUST_HELP = (
    "**Faithfulness** (ERASER, averaged over hiding k = 1, 2, 20% and 50% of the content tokens): "
    "*comprehensiveness* is how much the explained token's score drops when a method's top-k tokens "
    "are hidden; *sufficiency* is how much it drops when only those are kept. The *drops of* column names "
    "the score (by default the explained token's log-probability; with a contrast, log p(explained) − "
    "log p(contrast)). **Higher comprehensiveness than random = the method found "
    "tokens that matter; lower sufficiency is better.** *Random*: the same for random token orders, their "
    "mean with its bootstrap interval in brackets; a method *beats random* on a measure only when it "
    "lies beyond that interval on the better side, and its *evidence* is clear (both measures), weak (one) "
    "or none. Start/special tokens always stay visible."
)
AGREEMENT_HELP = (
    "**Agreement.** Spearman rank correlation of every pair of methods over the content tokens (1: the same "
    "order, 0: unrelated, −1: opposite), and how many of their top-3 tokens they share."
)
COMPARE_HELP = (
    "Each method's scores are min–max normalised as in the seed notebook: 1 is that method's most "
    "important token and 0 its least, so compare which tokens each method ranks high rather than raw "
    "values. Methods that were not run are left out. The held context (first position, special and "
    "chat-template tokens; grey) is left out of the normalisation: untick *Leave held context out of the "
    "colour scaling* (above the tabs) for the seed's view."
)

OUTPUT_KEYS = ("compare:verdict", "compare:heatmap", "compare:bars", "compare:faithfulness", "compare:agreement",
               "compare:overlap", "compare:completeness")


def build(outputs: dict[str, Any]) -> None:
    """The tab's components (inside the open gr.Tab)."""
    outputs["compare:verdict"] = gr.Markdown("**Verdict:** press **Analyze** to see how far the scores can be trusted.",
                                             label="Trust verdict", elem_id="verdict")
    gr.Markdown(COMPARE_HELP)
    outputs["compare:heatmap"] = gr.Plot(label="Combined normalised heatmap (methods × tokens)", show_label=False,
                                         elem_id="compare-heatmap")
    outputs["compare:bars"] = gr.Plot(label="Normalised scores per method", show_label=False, elem_id="compare-bars")
    gr.Markdown("### How far to trust these scores")
    gr.Markdown(TRUST_HELP)
    outputs["compare:faithfulness"] = gr.Dataframe(headers=FAITHFULNESS_HEADERS, label="Faithfulness (AOPC)",
                                                   interactive=False, elem_id="faithfulness")
    gr.Markdown(AGREEMENT_HELP)
    with gr.Row(equal_height=False):
        outputs["compare:agreement"] = gr.Plot(label="Agreement (Spearman ρ, methods × methods)", show_label=False,
                                               scale=1, elem_id="agreement-heatmap")
        outputs["compare:overlap"] = gr.Dataframe(
            headers=AGREEMENT_HEADERS, label="Pairs of methods", interactive=False,
            column_widths=["56%", "20%", "24%"], scale=1, min_width=360, max_height=560, elem_id="agreement-table")
    outputs["compare:completeness"] = gr.Markdown(label="Integrated Gradients completeness", elem_id="completeness")


def off() -> dict[str, Any]:
    """The trust panel's outputs when it was not asked for."""
    return {
        "compare:verdict": ("**Trust panel is off.** Tick *Settings → Trust panel* and analyze again to "
                            "see how far these scores can be trusted."),
        "compare:faithfulness": pd.DataFrame([], columns=FAITHFULNESS_HEADERS),
        "compare:overlap": pd.DataFrame([], columns=AGREEMENT_HEADERS),
        "compare:completeness": "",
    }


def trust_views(analysis: Analysis) -> dict[str, Any]:
    """The trust panel's outputs: the verdict, faithfulness and agreement tables and figure, and IG's
    completeness in words."""
    report = analysis.trust
    if report is None:
        return off()
    n_content = int((~analysis.context_tokens).sum())  # the tokens agreement ranks, as the trust panel counts them
    return {
        "compare:verdict": f"**Verdict:** {report.verdict}",
        "compare:faithfulness": pd.DataFrame(faithfulness_rows(report), columns=FAITHFULNESS_HEADERS),
        "compare:overlap": pd.DataFrame(agreement_rows(report, n_content), columns=AGREEMENT_HEADERS),
        "compare:completeness": completeness_summary(report.completeness),
    }


def pending() -> dict[str, Any]:
    """The trust panel's outputs while it is still being computed (it comes last)."""
    return {
        "compare:verdict": ("**Verdict:** the trust panel is being computed: it comes last, once every method "
                            "is done. **Stop** ends the analysis and keeps what is done."),
        "compare:faithfulness": pd.DataFrame([], columns=FAITHFULNESS_HEADERS),
        "compare:overlap": pd.DataFrame([], columns=AGREEMENT_HEADERS),
        "compare:completeness": "",
    }


def render(analysis: Analysis, view: View) -> dict[str, Any]:
    """The tab's outputs for an analysis; its figures are drawn when the tab is seen (`ui.figures`). The
    verdict says what the trust panel was computed per when that is not tokens or not what is shown."""
    values = trust_views(analysis)
    report = analysis.trust
    if report is not None and (report.granularity != "token" or view.granularity != "token"):
        unit = report.granularity
        note = f"*Computed per {unit}: faithfulness removed whole {unit}s, agreement ranked them.*"
        if unit != view.granularity:
            note += (f" *The scores above are shown per {view.granularity}; choose Scores per {view.granularity} "
                     "and analyze again for the panel per it.*")
        values["compare:verdict"] = f"{values['compare:verdict']}\n\n{note}"
    return values
