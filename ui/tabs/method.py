"""A method's tab (one per registered method): notes, highlighted prompt tokens, bar chart and top-5
table; for layered methods (attention) also the layers × tokens heatmap and a per-head view."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from attribution.catalog import LAYERED_METHODS
from attribution.display.explanations import RECOMMENDED_IG_TEXT, grouping_note, method_help, method_notes
from attribution.display.labels import method_label
from attribution.display.method_figures import head_heatmap_figure
from attribution.display.tables import TOP_HEADERS, highlight_values, top_rows
from attribution.results import Analysis

from .. import store
from ..view import View

PARTS = ("notes", "highlight", "bars", "top")


def output_keys(name: str) -> list[str]:
    """The tab's outputs of the analyze event, in order."""
    return [f"{name}:{part}" for part in PARTS + (("layers",) if name in LAYERED_METHODS else ())]


def build(name: str, outputs: dict[str, Any]) -> dict[str, Any]:
    """The tab's components (inside the open gr.Tab): the analyze outputs go into `outputs`; returns the
    tab's own controls: IG's recommended-settings button, a layered method's layer slider and head plot."""
    label = method_label(name)
    controls: dict[str, Any] = {}
    outputs[f"{name}:notes"] = gr.Markdown(f"**{label}.** {method_help(name)} Press **Analyze** to see it.",
                                           label=f"{label}: notes", elem_classes=["legend-note"])
    if name == "integrated_gradients":
        controls["recommend"] = gr.Button(
            f"Use the recommended IG settings ({RECOMMENDED_IG_TEXT}) and analyze again",
            size="md", visible=False, elem_id="recommended-ig")
    outputs[f"{name}:highlight"] = gr.HighlightedText(
        label=f"{label}: prompt tokens coloured by score", show_legend=False, show_inline_category=False,
        combine_adjacent=False, elem_id=f"highlight-{name}", elem_classes=["token-scores"])
    with gr.Row(equal_height=False):
        outputs[f"{name}:bars"] = gr.Plot(label=f"{label}: bar chart", show_label=False, scale=3,
                                          elem_id=f"bars-{name}")
        outputs[f"{name}:top"] = gr.Dataframe(
            headers=TOP_HEADERS, label="Top 5 tokens", interactive=False,
            column_widths=["14%", "46%", "20%", "20%"], scale=2, min_width=320, elem_id=f"top-{name}")
    if name in LAYERED_METHODS:
        outputs[f"{name}:layers"] = gr.Plot(label=f"{label} per layer (layers × tokens)", show_label=False,
                                            elem_id=f"layers-{name}")
        controls["layer"] = gr.Slider(0, 1, value=0, step=1, label="Layer for the per-head view", visible=False,
                                      elem_id=f"layer-{name}")
        controls["heads"] = gr.Plot(label=f"{label} per head of the chosen layer", show_label=False,
                                    visible=False, elem_id=f"heads-{name}")
    return controls


def top_table(analysis: Analysis, name: str, exclude: Any) -> pd.DataFrame:
    """A method's top-5 table, leaving out the tokens left out of the colour scaling."""
    return pd.DataFrame(top_rows(analysis, name, exclude=exclude), columns=TOP_HEADERS)


def scaled(analysis: Analysis, name: str, exclude: Any) -> dict[str, Any]:
    """What the colour scaling touches: the highlighted tokens and the top 5 (unchanged when not run)."""
    if name not in analysis.methods:
        return {f"{name}:highlight": gr.update(), f"{name}:top": gr.update()}
    scores = analysis.methods[name].scores
    return {f"{name}:highlight": highlight_values(analysis.input_tokens, scores, exclude),
            f"{name}:top": top_table(analysis, name, exclude)}


#: A method's notes while it runs (results as they come: the cheap methods first, IG last).
COMPUTING = ("**{label}** is being computed: its tokens appear here as soon as it is done (the progress over "
             "the answer says how long the analysis has left). **Stop** ends the analysis and keeps what is done.")


def empty(name: str, notes: str) -> dict[str, Any]:
    """The tab's outputs with no scores: only `notes`."""
    return {f"{name}:notes": notes, f"{name}:highlight": None, f"{name}:top": pd.DataFrame([], columns=TOP_HEADERS)}


def pending(name: str) -> dict[str, Any]:
    """The tab's outputs while its method is still running."""
    return empty(name, COMPUTING.format(label=method_label(name)))


def not_computed(name: str) -> dict[str, Any]:
    return empty(name, f"**{method_label(name)}** was not computed: tick it under *Settings → Methods* and analyze "
                       "again.")


def render(analysis: Analysis, name: str, view: View) -> dict[str, Any]:
    """The tab's outputs for an analysis; its figures are drawn when the tab is seen (`ui.figures`)."""
    result = analysis.methods.get(name)
    values: dict[str, Any] = {}
    if result is None:
        values.update(not_computed(name))
    else:
        grouped = grouping_note(name, getattr(result, "aggregation", None), view.granularity)
        values[f"{name}:notes"] = " ".join(part for part in (grouped, method_notes(name, analysis, pad_token=view.pad_token))
                                           if part)
        values[f"{name}:highlight"] = highlight_values(analysis.input_tokens, result.scores, view.exclude(analysis))
        values[f"{name}:top"] = top_table(analysis, name, view.exclude(analysis))
    return values


def layer_heads(analysis: Analysis, name: str, layer: Any) -> Any:
    """The per-head heatmap of one layer of a layered method (None when it has no per-head weights)."""
    per_head = getattr(analysis.methods.get(name), "per_head", None)
    if per_head is None or not len(per_head):
        return None
    layer = min(max(int(layer or 0), 0), len(per_head) - 1)
    foil = None if analysis.foil is None else analysis.foil.text
    return head_heatmap_figure(analysis.input_tokens, per_head, layer, analysis.target.text, method_label(name), foil)


def head_figure(state: str | None, name: str, layer: float | None) -> Any:
    """The layer slider moved: that layer's per-head heatmap, drawn from the stored result (the model is
    not run)."""
    stored = store.lookup(state)
    return None if stored is None else layer_heads(stored.figure_source(name), name, layer)


def head_views(stored: store.Stored, name: str) -> list[Any]:
    """After each analysis: size the per-head slider to the model's layers and draw the last layer."""
    shown = stored.figure_source(name)
    per_head = getattr(shown.methods.get(name), "per_head", None)
    if per_head is None or not len(per_head):
        return [gr.update(visible=False), gr.update(value=None, visible=False)]
    last = len(per_head) - 1
    return [gr.update(minimum=0, maximum=max(last, 1), value=last, visible=True, interactive=last > 0),
            gr.update(value=layer_heads(shown, name, last), visible=True)]
