"""The What-if / compare tab: edit the analysed prompt and run it again, or compare the analysis with a
second model's or an edited prompt's.

Its own events, none of them part of /analyze: the session's stored result (`ui.store`) is what is edited.
Clicking a word (or token) of the prompt marks it (the indices box shows the marks and can be typed in),
"Mark top k" marks a method's k highest-scoring units and "Mark k random" k random ones; "Regenerate"
runs the prompt with the marked units removed, or replaced by the "Replace with" text, and shows the old and
new answers and the explained token's probability before and after (`attribution.whatif.edit`). "Deletion
curve" draws the picked method's curve on the analysed prompt against random orders
(`attribution.whatif.deletion_curve`), by the same unit. "Compare" runs the analysis's settings on a second
model or an edited prompt and shows the diff table and its sentence (`attribution.diff`); a second model
loads beside the first only when both fit in memory (`attribution.memory`), and the tab says which it did.
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import Any

import gradio as gr
import pandas as pd

import attribution
from attribution import memory
from attribution.diff import diff
from attribution.prompts import has_chat_template
from attribution.display.labels import method_label
from attribution.display.whatif_figures import DIFF_HEADERS, deletion_curve_figure, diff_rows, diff_summary, edit_summary
from attribution.results import Analysis
from attribution.whatif import UNITS, deletion_curve, edit, editable_units, remove_random, remove_top

from .. import store
from ..runtime import gpu

REMOVED = "removed"
HELP = (
    "**What if the prompt were different?** Click words (or tokens) of the analysed prompt to mark them — or "
    "type their numbers (0 = the first) —, or let a method pick its top k, then **Regenerate**: the model "
    "answers the prompt without them (or with them replaced by the *Replace with* text), and the explained "
    "token's probability at its place is shown before and after. **Deletion curve** draws the explained token's "
    "log-probability as the method's top words (or tokens) are removed one by one, against random orders. "
    "**Compare** runs the same settings on a second model or on an edited prompt and shows how each method's "
    "share of every word moved and how alike the rankings are (Spearman ρ with a bootstrap 95% interval)."
)
NO_RESULT = "Press **Analyze** first: the what-if tab edits the analysed prompt."
CURVE_RANDOM_ORDERS = 10  # random orders the page's deletion curve is drawn against (a few seconds on SmolLM2)
# Switched off for the compare run (they cost time and change no method's scores), so not shown as differences.
COMPARE_OFF = {"all_targets": False, "trust": False}


def build(default_model: str, model_choices: list[tuple[str, str]], allow_custom: bool) -> dict[str, Any]:
    """The tab's components (inside the open gr.Tab), by name."""
    parts: dict[str, Any] = {}
    gr.Markdown(HELP)
    with gr.Row():
        parts["unit"] = gr.Radio(list(UNITS), value="word", label="Edit by", scale=1, elem_id="whatif-unit")
        parts["indices"] = gr.Textbox(label="Marked (numbers, comma-separated; 0 = the first)", scale=3,
                                      elem_id="whatif-indices")
        parts["replacement"] = gr.Textbox(label="Replace with (empty: remove the marked; one text per marked "
                                          "unit separated by |)", scale=3, elem_id="whatif-replacement")
    parts["prompt"] = gr.HighlightedText(label="The analysed prompt: click to mark", show_legend=False,
                                         show_inline_category=False, combine_adjacent=False,
                                         color_map={REMOVED: "#ef4444"}, elem_id="whatif-prompt")
    with gr.Row(equal_height=True):
        parts["method"] = gr.Dropdown([], label="Method", scale=2, elem_id="whatif-method")
        parts["k"] = gr.Number(3, label="k", precision=0, minimum=1, scale=1, elem_id="whatif-k")
        parts["top_button"] = gr.Button("Mark top k of the method", scale=2)
        parts["random_button"] = gr.Button("Mark k random", scale=2)
        parts["regenerate_button"] = gr.Button("Regenerate", variant="primary", scale=2, elem_id="whatif-regenerate")
        parts["curve_button"] = gr.Button("Deletion curve", scale=2, elem_id="whatif-curve-button")
    parts["edit"] = gr.Markdown(elem_id="whatif-edit")
    parts["curve"] = gr.Plot(label="Deletion curve", show_label=False, elem_id="whatif-curve")
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
    """The units as the prompt spells them: a word with the whitespace after it, so "Latvia?" reads as typed."""
    units = list(editable_units(analysis, unit).values())
    ends = [item.start for item in units[1:]] + [len(analysis.prompt)]
    shown = []
    for index, (item, end) in enumerate(zip(units, ends)):
        text = item.text if unit == "token" else item.text + analysis.prompt[item.stop:max(end, item.stop)]
        shown.append((text, REMOVED if index in picked else None))
    return shown


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


def plan_edit(picked: list[int], replacement: Any) -> tuple[list[int], dict[int, str]]:
    """The marked units (their numbers) to remove and to replace. No replacement text: all removed. One text:
    it replaces one marked unit, or a stretch of adjacent ones (the first replaced, the rest removed). Texts
    separated by "|": one per marked unit, in the prompt's order (an empty one removes its unit)."""
    text = replacement if isinstance(replacement, str) else ""
    marked = sorted(picked)
    if not text.strip() or not marked:
        return marked, {}
    texts = [part.strip() for part in text.split("|")]
    if len(texts) == 1 and marked == list(range(marked[0], marked[-1] + 1)):
        return marked[1:], {marked[0]: texts[0]}
    if len(texts) != len(marked):
        raise ValueError(f"{len(texts)} replacement text(s) for {len(marked)} marked units that are not one "
                         "stretch: give one text per marked unit, separated by |, or mark adjacent units")
    return ([index for index, new in zip(marked, texts) if not new],
            {index: new for index, new in zip(marked, texts) if new})


@gpu
def _run_edit(analysis: Analysis, remove: list[int], replace: dict[int, str], unit: str):
    return edit(attribution.load_model(analysis.model), analysis, remove=remove, replace=replace, unit=unit)


def regenerate(state: Any, unit: Any, indices: Any, replacement: Any = "") -> str:
    """Run the prompt with the marked units removed (or replaced): the old and new answers and probabilities."""
    analysis = _analysis(state)
    try:
        keys = _keys(analysis, unit)
        picked = parse_indices(indices, len(keys))
        if not picked:
            raise ValueError("mark at least one word or token to remove or replace (click it, or type its number)")
        remove, replace = plan_edit(picked, replacement)
        return edit_summary(_run_edit(analysis, [keys[index] for index in remove],
                                      {keys[index]: new for index, new in replace.items()}, unit))
    except ValueError as error:
        raise gr.Error(str(error)) from None


def _png(figure: Any) -> Any:
    from ..figures import plot_value

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=store.DPI)
    return plot_value(buffer.getvalue())


@gpu
def _run_curve(analysis: Analysis, method: str, unit: str):
    return deletion_curve(attribution.load_model(analysis.model), analysis, method, n_random=CURVE_RANDOM_ORDERS,
                          unit=unit)


def curve(state: Any, unit: Any, method: Any) -> Any:
    """The picked method's deletion curve on the analysed prompt, by the unit picked, against random orders."""
    analysis = _analysis(state)
    try:
        if method not in analysis.methods:
            raise ValueError(f"pick a method for the deletion curve: one of {', '.join(analysis.methods)}")
        return _png(deletion_curve_figure(_run_curve(analysis, method, unit)))
    except ValueError as error:
        raise gr.Error(str(error)) from None


def _second_settings(settings: attribution.Settings, loaded: Any) -> tuple[attribution.Settings, str | None]:
    """The first analysis's settings for the second model; a chat analysis runs the raw prompt on a model
    without a chat template (the demo model against SmolLM2), and the note says so."""
    if settings.chat and not has_chat_template(loaded):
        return (settings.replace(chat=False, system=None),
                f"{loaded.name} has no chat template: it ran on the raw prompt (the setting chat differs).")
    return settings, None


@gpu
def _run_compare(analysis: Analysis, second_model: str, second_prompt: str):
    """The second analysis (same settings, without the answer map and trust panel), the memory plan (None
    for the same model) and a note on the settings it could not keep (or None)."""
    settings = analysis.settings or attribution.Settings(methods=tuple(analysis.methods))
    settings = settings.replace(**COMPARE_OFF)
    if second_model == analysis.model:
        return attribution.analyze(attribution.load_model(second_model), second_prompt, settings), None, None
    loaded, plan = memory.load_second(analysis.model, second_model)
    try:
        settings, changed = _second_settings(settings, loaded)
        second = attribution.analyze(loaded, second_prompt, settings)
    finally:
        memory.finish_second(loaded, plan)
    return second, plan, changed


def compare(state: Any, second_model: Any, second_prompt: Any) -> list[Any]:
    """Compare the analysis with the second model's or the edited prompt's: the memory note, the diff
    summary (answers, settings, ρ, the sentence) and its table."""
    analysis = _analysis(state)
    second_model = (second_model or "").strip() or analysis.model
    second_prompt = second_prompt if isinstance(second_prompt, str) and second_prompt.strip() else analysis.prompt
    try:
        if second_model == analysis.model and second_prompt == analysis.prompt:
            raise ValueError("pick another model or edit the prompt: the same model on the same prompt gives the same result")
        second, plan, changed = _run_compare(analysis, second_model, second_prompt)
    except ValueError as error:
        raise gr.Error(str(error)) from None
    result = diff(analysis, second)
    # The settings the compare run switched off itself are not differences the user made.
    result = dataclasses.replace(result, settings={name: values for name, values in result.settings.items()
                                                   if name not in COMPARE_OFF})
    note = "Same model: nothing else was loaded." if plan is None else plan.text(analysis.model)
    if changed is not None:
        note += " " + changed
    return [note, diff_summary(result), pd.DataFrame(diff_rows(result), columns=DIFF_HEADERS)]


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
    parts["regenerate_button"].click(regenerate, [state, parts["unit"], parts["indices"], parts["replacement"]],
                                     parts["edit"], **model, **private)
    parts["curve_button"].click(curve, [state, parts["unit"], parts["method"]], parts["curve"], **model, **private)
    parts["compare_button"].click(compare, [state, parts["second_model"], parts["second_prompt"]],
                                  [parts["memory"], parts["summary"], parts["table"]], **model, **private)


__all__ = ["build", "compare", "curve", "pick_random", "pick_top", "plan_edit", "regenerate", "show_prompt",
           "toggle", "typed", "wire"]
