"""The Answer map tab: every generated token explained by everything before it, as a heatmap, and one
generated token's sources as highlighted text (method and token picked from the stored result)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from attribution.display.answer_map_figures import answer_map_highlight, source_exclusions
from attribution.display.explanations import ANSWER_MAP_HELP, answer_map_label, answer_map_notes
from attribution.display.labels import method_label, token_label
from attribution.results import Analysis

from .. import figures, store
from ..inputs import token_index
from ..timing import seconds_text
from ..view import View

OUTPUT_KEYS = ("answer_map:notes", "answer_map:heatmap", "answer_map:highlight")


COMPUTING = ("**Answer map** is being computed: it appears here as soon as it is done. **Stop** ends the "
             "analysis and keeps what is done.")


def build(outputs: dict[str, Any]) -> dict[str, Any]:
    """The tab's components (inside the open gr.Tab); returns its method and token pickers and the offer to
    add the costly methods (IG) to the answer map."""
    outputs["answer_map:notes"] = gr.Markdown(f"{ANSWER_MAP_HELP} Press **Analyze** to see it.",
                                              label="Answer map: notes", elem_classes=["legend-note"])
    add_costly = gr.Button("Add Integrated Gradients to the answer map and analyze again", size="md",
                           visible=False, elem_id="answer-map-add-ig")
    with gr.Row():
        method = gr.Dropdown([], value=None, label="Method", interactive=False, elem_id="answer-map-method")
        token = gr.Dropdown([], value=None, label="Generated token", interactive=False, elem_id="answer-map-token")
    outputs["answer_map:highlight"] = gr.HighlightedText(
        label=answer_map_label(None, 1), show_legend=False, show_inline_category=False, combine_adjacent=False,
        elem_id="answer-map-highlight", elem_classes=["token-scores"])
    outputs["answer_map:heatmap"] = gr.Plot(label="Answer map (generated tokens × sources)", show_label=False,
                                            elem_id="answer-map-heatmap")
    return {"method": method, "token": token, "add_costly": add_costly}


def pending() -> dict[str, Any]:
    """The tab's outputs while the answer map is still being computed."""
    return {"answer_map:notes": COMPUTING, "answer_map:highlight": None}


def not_asked() -> dict[str, Any]:
    """The tab's outputs while an analysis runs without the answer map."""
    return {"answer_map:notes": ("**Answer map** was not asked for: tick *Settings → Explain every generated "
                                 "token (answer map)* and analyze again."), "answer_map:highlight": None}


def offer_text(view: View) -> str:
    """The costly methods left out of the answer map and what adding them would cost."""
    labels = " and ".join(method_label(name) for name in view.left_out_of_map)
    cost = "" if view.map_rerun_s is None else f", about {seconds_text(view.map_rerun_s)} on this model"
    return f"Add {labels} to the answer map and analyze again{cost}"


def left_out_note(analysis: Analysis, view: View) -> str:
    labels = " and ".join(f"**{method_label(name)}**" for name in view.left_out_of_map)
    cost = ("" if view.map_rerun_s is None else
            f" (the analysis again with it: about {seconds_text(view.map_rerun_s)} on this model)")
    note = (f"{labels} is left out of the answer map: it would run once more for every generated token{cost}. "
            "The button below adds it (the analysis runs again), as does ticking *Settings → Integrated "
            "Gradients in the answer map*.")
    if analysis.answer_map:
        return f"{answer_map_notes(analysis, view.all_targets)} {note}"
    return f"**Answer map** was not computed: {note}"


def render(analysis: Analysis, view: View) -> dict[str, Any]:
    """The tab's outputs: the first method and the first generated token, as the pickers start (the
    heatmap is drawn when the tab is seen, `ui.figures`)."""
    notes = (left_out_note(analysis, view) if view.left_out_of_map
             else answer_map_notes(analysis, view.all_targets))
    values: dict[str, Any] = {"answer_map:notes": notes, "answer_map:highlight": None}
    if analysis.answer_map:
        first = next(iter(analysis.answer_map))
        table = analysis.answer_map[first]
        source_exclude, _template = source_exclusions(analysis, table, view.hide_special)
        values["answer_map:highlight"] = answer_map_highlight(table, 1, source_exclude)
    return values


def views(state: str | None, method: Any, token: Any, hide_special: Any) -> list[Any]:
    """A method or token picked: the heatmap (the chosen row outlined) and that generated token's
    highlighted sources, drawn from the stored result (the model is not run)."""
    stored = store.lookup(state)
    if stored is None:
        return [gr.update(), gr.update()]
    return stored_views(stored, method, token, hide_special, draw=True)


def stored_views(stored: store.Stored, method: Any, token: Any, hide_special: Any, draw: bool) -> list[Any]:
    """The heatmap (None with `draw=False`, for the page to draw when it is seen) and one generated token's
    highlighted sources, for a method, token and colour scaling."""
    analysis = stored.analysis
    table = analysis.answer_map.get(method) if isinstance(method, str) else None
    if table is None:
        return [None, gr.update(value=None, label=answer_map_label(None, 1))]
    index = token_index(token, len(table.targets))
    exclude, _template = source_exclusions(analysis, table, bool(hide_special))
    heatmap = None
    if draw:
        heatmap = figures.stored_figures(stored, "answer_map", hide_special, method, index)["answer_map:heatmap"]
    highlight = answer_map_highlight(table, index, exclude)
    return [heatmap, gr.update(value=highlight, label=answer_map_label(table, index))]


def pickers(analysis: Analysis) -> list[Any]:
    """After each analysis: the method and token pickers (first method, first token) and the highlight's
    label."""
    methods = list(analysis.answer_map)
    table = analysis.answer_map[methods[0]] if methods else None
    targets = table.targets if table is not None else ()
    method_update = gr.update(choices=[(method_label(name), name) for name in methods],
                              value=methods[0] if methods else None, interactive=bool(methods))
    token_update = gr.update(
        choices=[(f"{index} · {token_label(token)}", index) for index, token in enumerate(targets, start=1)],
        value=1 if len(targets) else None, interactive=len(targets) > 1)
    return [method_update, token_update, gr.update(label=answer_map_label(table, 1))]


def offer(state: str | None) -> Any:
    """After each analysis: the button that adds the costly methods left out of the answer map, labelled
    with what that costs (hidden when nothing was left out)."""
    stored = store.lookup(state, warn=False)
    if stored is None or not stored.view.left_out_of_map:
        return gr.update(visible=False)
    return gr.update(visible=True, value=offer_text(stored.view))
