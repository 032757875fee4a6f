"""The What-if / compare tab: edit the analysed prompt and run it again, or compare the analysis with a
second model's or an edited prompt's.

Its own events, none of them part of /analyze: the session's stored result (`ui.store`) is what is edited.
Clicking a word (or token) of the prompt marks it for removal (the indices box shows the marks and can be
typed in), "Remove top k" marks a method's k highest-scoring units and "Remove k random" k random ones;
"Regenerate" runs the edited prompt and shows the old and new answers and the explained token's probability
before and after (`attribution.whatif.edit`). "Compare" runs the analysis's settings on a second model or an
edited prompt and shows the diff table, its sentence (`attribution.diff`) and the deletion curve of a method
on the analysed prompt (`attribution.whatif.deletion_curve`); a second model loads beside the first only
when both fit in memory (`attribution.memory`), and the tab says which it did.
"""

from __future__ import annotations

import io
import os
from typing import Any

import gradio as gr
import pandas as pd

import attribution
from attribution import memory
from attribution.diff import diff
from attribution.display.labels import method_label
from attribution.display.whatif_figures import DIFF_HEADERS, deletion_curve_figure, diff_rows, diff_summary, edit_summary
from attribution.results import Analysis
from attribution.whatif import UNITS, deletion_curve, edit, editable_units, remove_random, remove_top

from .. import store
from ..runtime import gpu

REMOVED = "removed"
HELP = (
    "**What if the prompt were different?** Click words (or tokens) of the analysed prompt to mark them for "
    "removal — or type their numbers (0 = the first) —, or let a method pick its top k, then **Regenerate**: "
    "the model answers the edited prompt, and the explained token's probability at its place is shown before "
    "and after. **Compare** runs the same settings on a second model or on an edited prompt and shows how each "
    "method's share of every word moved, how alike the rankings are (Spearman ρ with a bootstrap 95% interval), "
    "and the deletion curve: the explained token's log-probability as the method's top words are removed, "
    "against random orders."
)
NO_RESULT = "Press **Analyze** first: the what-if tab edits the analysed prompt."
CURVE_RANDOM_ORDERS = 10  # random orders the page's deletion curve is drawn against (a few seconds on SmolLM2)


def build(default_model: str, model_choices: list[tuple[str, str]], allow_custom: bool) -> dict[str, Any]:
    """The tab's components (inside the open gr.Tab), by name."""
    parts: dict[str, Any] = {}
    gr.Markdown(HELP)
    with gr.Row():
        parts["unit"] = gr.Radio(list(UNITS), value="word", label="Edit by", scale=1, elem_id="whatif-unit")
        parts["indices"] = gr.Textbox(label="Remove (numbers, comma-separated; 0 = the first)", scale=3,
                                      elem_id="whatif-indices")
    parts["prompt"] = gr.HighlightedText(label="The analysed prompt: click to mark for removal", show_legend=False,
                                         show_inline_category=False, combine_adjacent=False,
                                         color_map={REMOVED: "#ef4444"}, elem_id="whatif-prompt")
    with gr.Row(equal_height=True):
        parts["method"] = gr.Dropdown([], label="Method", scale=2, elem_id="whatif-method")
        parts["k"] = gr.Number(3, label="k", precision=0, minimum=1, scale=1, elem_id="whatif-k")
        parts["top_button"] = gr.Button("Remove top k of the method", scale=2)
        parts["random_button"] = gr.Button("Remove k random", scale=2)
        parts["regenerate_button"] = gr.Button("Regenerate", variant="primary", scale=2, elem_id="whatif-regenerate")
    parts["edit"] = gr.Markdown(elem_id="whatif-edit")
    gr.Markdown("### Compare with a second model or an edited prompt")
    with gr.Row(equal_height=True):
        parts["second_model"] = gr.Dropdown(model_choices, value=default_model, label="Second model",
                                            allow_custom_value=allow_custom, scale=2, elem_id="whatif-model")
        parts["second_prompt"] = gr.Textbox(label="Prompt (edit it to compare prompts)", scale=3,
                                            elem_id="whatif-second-prompt")
        parts["compare_button"] = gr.Button("Compare", variant="primary", scale=1, elem_id="whatif-compare")
    parts["memory"] = gr.Markdown(elem_id="whatif-memory")
    parts["summary"] = gr.Markdown(elem_id="whatif-summary")
    parts["table"] = gr.Dataframe(headers=DIFF_HEADERS, label="Each method's share of every word, a → b (%)",
                                  interactive=False, elem_id="whatif-table")
    parts["curve"] = gr.Plot(label="Deletion curve", show_label=False, elem_id="whatif-curve")
    return parts


def _analysis(state: Any) -> Analysis:
    stored = store.lookup(state)
    if stored is None:
        raise gr.Error(NO_RESULT)
    return stored.analysis


def _keys(analysis: Analysis, unit: str) -> list[int]:
    return list(editable_units(analysis, unit))


def parse_indices(text: Any, count: int) -> list[int]:
    """The indices box: numbers 0..count − 1, comma- or space-separated (duplicates dropped)."""
    picked: list[int] = []
    for part in str(text or "").replace(",", " ").split():
        if not part.isdigit() or int(part) >= count:
            raise ValueError(f"{part!r} is not the number of a unit of the prompt: use 0 to {count - 1}")
        if int(part) not in picked:
            picked.append(int(part))
    return picked


def _highlight(analysis: Analysis, unit: str, picked: list[int]) -> list[tuple[str, str | None]]:
    units = list(editable_units(analysis, unit).values())
    return [(item.text if unit == "token" else f"{item.text} ", REMOVED if index in picked else None)
            for index, item in enumerate(units)]


def _marks(analysis: Analysis, unit: str, picked: list[int]) -> list[Any]:
    return [_highlight(analysis, unit, picked), ", ".join(map(str, sorted(picked)))]


def show_prompt(state: Any, unit: Any) -> list[Any]:
    """After each analysis and when the unit changes: the prompt's units, no marks, the methods to pick
    from, and the compare prompt set to the analysed one."""
    stored = store.lookup(state, warn=False)
    if stored is None:
        return [[], "", gr.update(), gr.update()]
    analysis = stored.analysis
    names = list(analysis.methods)
    return [*_marks(analysis, unit, []), gr.update(choices=[(method_label(name), name) for name in names],
                                                   value=names[0] if names else None), analysis.prompt]


def toggle(state: Any, unit: Any, indices: Any, event: gr.SelectData) -> list[Any]:
    """A unit clicked: marked for removal, or unmarked."""
    analysis = _analysis(state)
    count = len(_keys(analysis, unit))
    try:
        picked = parse_indices(indices, count)
    except ValueError:
        picked = []
    index = event.index if isinstance(event.index, int) else None
    if index is not None and 0 <= index < count:
        picked = [item for item in picked if item != index] if index in picked else picked + [index]
    return _marks(analysis, unit, picked)


def typed(state: Any, unit: Any, indices: Any) -> Any:
    """The indices box edited: the marks follow it."""
    analysis = _analysis(state)
    try:
        return _highlight(analysis, unit, parse_indices(indices, len(_keys(analysis, unit))))
    except ValueError as error:
        raise gr.Error(str(error)) from None


def pick_top(state: Any, unit: Any, method: Any, k: Any) -> list[Any]:
    """Mark the method's top k units (outside the held context)."""
    analysis = _analysis(state)
    try:
        chosen = remove_top(analysis, method, k, unit=unit)
    except ValueError as error:
        raise gr.Error(str(error)) from None
    keys = _keys(analysis, unit)
    return _marks(analysis, unit, [keys.index(key) for key in chosen])


def pick_random(state: Any, unit: Any, k: Any) -> list[Any]:
    """Mark k random units (a new draw each time)."""
    analysis = _analysis(state)
    try:
        chosen = remove_random(analysis, k, unit=unit, seed=int.from_bytes(os.urandom(4), "little"))
    except ValueError as error:
        raise gr.Error(str(error)) from None
    keys = _keys(analysis, unit)
    return _marks(analysis, unit, [keys.index(key) for key in chosen])


@gpu
def _run_edit(analysis: Analysis, keys: list[int], unit: str):
    return edit(attribution.load_model(analysis.model), analysis, remove=keys, unit=unit)


def regenerate(state: Any, unit: Any, indices: Any) -> str:
    """Run the prompt without the marked units: the old and new answers and probabilities."""
    analysis = _analysis(state)
    try:
        keys = _keys(analysis, unit)
        picked = parse_indices(indices, len(keys))
        if not picked:
            raise ValueError("mark at least one word or token to remove (click it, or type its number)")
        return edit_summary(_run_edit(analysis, [keys[index] for index in picked], unit))
    except ValueError as error:
        raise gr.Error(str(error)) from None


@gpu
def _run_compare(analysis: Analysis, second_model: str, second_prompt: str, method: str):
    """The second analysis (same settings, without the answer map and trust panel), the memory plan (None
    for the same model) and the first analysis's deletion curve."""
    settings = analysis.settings or attribution.Settings(methods=tuple(analysis.methods))
    settings = settings.replace(all_targets=False, trust=False)
    plan = None
    if second_model == analysis.model:
        loaded = attribution.load_model(second_model)
        second = attribution.analyze(loaded, second_prompt, settings)
    else:
        loaded, plan = memory.load_second(analysis.model, second_model)
        try:
            second = attribution.analyze(loaded, second_prompt, settings)
        finally:
            memory.finish_second(loaded, plan)
    curve = deletion_curve(attribution.load_model(analysis.model), analysis, method, n_random=CURVE_RANDOM_ORDERS,
                           unit="word")
    return second, plan, curve


def compare(state: Any, second_model: Any, second_prompt: Any, method: Any) -> list[Any]:
    """Compare the analysis with the second model's or the edited prompt's: the memory note, the diff
    summary (answers, settings, ρ, the sentence), its table and the deletion curve."""
    from ..figures import plot_value

    analysis = _analysis(state)
    second_model = (second_model or "").strip() or analysis.model
    second_prompt = second_prompt if isinstance(second_prompt, str) and second_prompt.strip() else analysis.prompt
    try:
        if second_model == analysis.model and second_prompt == analysis.prompt:
            raise ValueError("pick another model or edit the prompt: the same model on the same prompt gives the same result")
        if method not in analysis.methods:
            raise ValueError(f"pick a method for the deletion curve: one of {', '.join(analysis.methods)}")
        second, plan, curve = _run_compare(analysis, second_model, second_prompt, method)
    except ValueError as error:
        raise gr.Error(str(error)) from None
    result = diff(analysis, second)
    note = "Same model: nothing else was loaded." if plan is None else plan.text(analysis.model)
    buffer = io.BytesIO()
    deletion_curve_figure(curve).savefig(buffer, format="png", dpi=store.DPI)
    return [note, diff_summary(result), pd.DataFrame(diff_rows(result), columns=DIFF_HEADERS),
            plot_value(buffer.getvalue())]


def wire(parts: dict[str, Any], state: gr.State, private: dict[str, Any]) -> None:
    """The tab's events (none of them /analyze's, none in the API: `attribution.whatif` and `attribution.diff`
    are the library's way to the same): marks, regenerate, compare."""
    marks = [parts["prompt"], parts["indices"]]
    state.change(show_prompt, [state, parts["unit"]], [*marks, parts["method"], parts["second_prompt"]],
                 concurrency_limit=None, show_progress="hidden", **private)
    parts["unit"].change(show_prompt, [state, parts["unit"]], [*marks, parts["method"], parts["second_prompt"]],
                         queue=False, **private)
    parts["prompt"].select(toggle, [state, parts["unit"], parts["indices"]], marks, queue=False, **private)
    parts["indices"].submit(typed, [state, parts["unit"], parts["indices"]], parts["prompt"], queue=False, **private)
    parts["top_button"].click(pick_top, [state, parts["unit"], parts["method"], parts["k"]], marks, queue=False,
                              **private)
    parts["random_button"].click(pick_random, [state, parts["unit"], parts["k"]], marks, queue=False, **private)
    model = dict(concurrency_id="model", concurrency_limit=1)
    parts["regenerate_button"].click(regenerate, [state, parts["unit"], parts["indices"]], parts["edit"],
                                     **model, **private)
    parts["compare_button"].click(compare, [state, parts["second_model"], parts["second_prompt"], parts["method"]],
                                  [parts["memory"], parts["summary"], parts["table"], parts["curve"]],
                                  **model, **private)


__all__ = ["build", "compare", "pick_random", "pick_top", "regenerate", "show_prompt", "toggle", "typed", "wire"]
