"""The page: the input controls, the tabs (one module each), the downloads, and the events between them."""

from __future__ import annotations

from typing import Any

import gradio as gr

import attribution
from attribution.catalog import CATALOG, LAYERED_METHODS
from attribution.display.labels import method_label

from . import downloads, exports, figures
from .analysis import (
    EXAMPLE_KEYS,
    OUTPUT_KEYS,
    SCALED_KEYS,
    after_analysis,
    analyze,
    analyze_example,
    explain_answer_token,
    pick_contrast,
    scaled_views,
)
from .controls import (
    build_hide_special,
    build_prompt_row,
    build_settings,
    fill_preset,
    from_query,
    model_choices,
    step_fields,
    target_fields,
)
from .inputs import PRESET_FIELDS, chat_default
from .runtime import is_hosted
from .settings import SETTING_KEYS, example_rows, page_defaults, share_js
from .tabs import answer_map, compare, method
from .view_state import EXPLAINED

INTRO = (
    "# Token attribution\n"
    "Which words in a prompt made the language model predict its next token? Type a prompt, press "
    "**Analyze**, and compare attribution methods tab by tab: the seed notebook's **gradients**, "
    "**attention weights** and **Integrated Gradients**, and more, side by side under **Compare**. "
    "Every figure, the JSON and the CSV can be downloaded below the tabs."
)

CSS = """
.gradio-container { max-width: 1280px !important; margin: 0 auto !important; }
#analyze-button { min-height: 3rem; }
.legend-note p { margin: 0.2rem 0; }
#verdict { border-left: 5px solid var(--color-accent); background: var(--background-fill-secondary);
           padding: 0.5rem 1rem; border-radius: 6px; }
#verdict p { font-size: 1.08rem; margin: 0.2rem 0; }
/* Tokens left out of the colour scaling (the chat template's, hidden special tokens) come without a score. */
.token-scores .score-token:not(.highlighted) { color: var(--body-text-color-subdued); opacity: 0.55; }
#answer-tokens .token { cursor: pointer; }
"""

# A deep link that names a prompt runs the analysis once its values are filled in.
AUTORUN_JS = """
() => {
  if (new URLSearchParams(window.location.search).has("prompt")) {
    setTimeout(() => document.querySelector("#analyze-button")?.click(), 300);
  }
}
"""


def launch_options() -> dict[str, Any]:
    """What `launch()` needs besides the address (in gradio 6, css and theme belong to launch)."""
    return {"css": CSS, "theme": gr.themes.Soft(primary_hue="orange", secondary_hue="blue")}


def build_demo(default_model: str | None = None, *, cache_examples: bool = True) -> gr.Blocks:
    default_model = default_model or attribution.default_model_name()
    choices = model_choices(default_model)
    outputs: dict[str, Any] = {}
    method_controls: dict[str, dict[str, Any]] = {}

    # Gradio's cached copies of the downloads age out as our originals do.
    export_age = (exports.EXPORT_TTL_S, exports.EXPORT_TTL_S)
    with gr.Blocks(title="Token attribution", delete_cache=export_age) as demo:
        gr.Markdown(INTRO)
        controls = build_prompt_row(default_model, choices)
        examples_slot = gr.Column()  # filled at the end, once the outputs the examples fill exist
        controls.update(build_settings())
        contrast_pick = gr.State(None)  # the foil picked from the list: {"id", "text"} (not part of the API)

        with gr.Row(equal_height=True):
            # The answer as text is the API's first output; the page shows it as clickable tokens instead.
            outputs["answer"] = gr.Textbox(label="Generated answer", interactive=False, visible=False,
                                           elem_id="answer")
            answer_tokens = gr.HighlightedText(
                label="Generated answer: click a token to explain it", show_legend=False,
                show_inline_category=False, combine_adjacent=False, color_map={EXPLAINED: "#f59e0b"}, scale=3,
                elem_id="answer-tokens")
            outputs["explained"] = gr.Textbox(label="Explained token", interactive=False, scale=4,
                                              elem_id="explained")
            controls["hide_special"] = build_hide_special()
        setting_inputs = [controls[key] for key in SETTING_KEYS]
        preset_controls = [controls[field] for field in PRESET_FIELDS]
        inputs = [*setting_inputs, contrast_pick]

        tabs: dict[str, gr.Tab] = {}
        with gr.Tabs(elem_id="method-tabs"):
            for name in CATALOG:
                with gr.Tab(method_label(name), id=name, elem_id=f"tab-{name}") as tabs[name]:
                    method_controls[name] = method.build(name, outputs)
            with gr.Tab("Answer map", id="answer_map", elem_id="tab-answer_map") as tabs["answer_map"]:
                map_pickers = answer_map.build(outputs)
            with gr.Tab("Compare", id="compare", elem_id="tab-compare") as tabs["compare"]:
                compare.build(outputs)
        share = downloads.build(outputs)
        outputs["state"] = state = gr.State(None, time_to_live=exports.EXPORT_TTL_S)
        # Which tab is open (its figures are drawn first); a hidden input, so that the API's /figures can name one.
        open_tab = gr.Textbox(next(iter(CATALOG)), visible=False, elem_id="open-tab")
        for name in LAYERED_METHODS:
            outputs[f"{name}:layer"] = method_controls[name]["layer"]
            outputs[f"{name}:heads"] = method_controls[name]["heads"]
        figure_outputs = [outputs[key] for key in figures.FIGURE_KEYS]

        output_components = [outputs[key] for key in OUTPUT_KEYS]
        # Progress (and an error) shows once, on the answer, instead of on every output.
        run = dict(fn=analyze, inputs=inputs, outputs=output_components, preprocess=False, concurrency_id="model",
                   concurrency_limit=1, show_progress_on=[answer_tokens])
        # preprocess=False: the inputs are plain JSON values and `analyze` (with the library) validates
        # every one, so an API caller's bad value (text in a number, NaN, out of range) gets a message
        # naming the setting instead of gradio's "the upstream Gradio app has raised an exception".
        controls["analyze_button"].click(**run, api_name="analyze")
        controls["prompt"].submit(**run, api_visibility="private")
        controls["target"].change(target_fields, controls["target"], [controls["target_k"], controls["target_text"]],
                                  queue=False, api_visibility="private")
        # Only the user's pick: a deep link sets the model and its own chat setting together.
        controls["model"].input(chat_default, controls["model"], controls["chat"], queue=False,
                                api_visibility="private")

        # Figures are drawn when seen, from the kept result (the model is not run again): the open tab's once
        # an analysis (or a cached example) is shown, another tab's when it is opened.
        draw_inputs = [open_tab, controls["hide_special"], map_pickers["method"], map_pickers["token"], state]
        # One queue for every event that draws into the figures, first come first drawn: a tab opened while
        # the figures of a new result are being cleared and drawn is drawn after that, never overwritten.
        in_order = dict(concurrency_id="figures", concurrency_limit=1)
        draw = dict(fn=figures.draw_tab, inputs=draw_inputs, outputs=figure_outputs, preprocess=False,
                    show_progress="minimal", **in_order)
        state.change(figures.draw_after_analysis, [open_tab, controls["hide_special"], state], figure_outputs,
                     api_visibility="private", show_progress="minimal", **in_order)
        for name, tab in tabs.items():
            tab.select(lambda _name=name: _name, None, open_tab, queue=False, api_visibility="private").then(
                **draw, api_visibility="private")
        # The API's way to a tab's figures for the caller's last analysis: /figures(tab, hide_special, ...).
        figures_button = gr.Button(visible=False, elem_id="figures-api")
        figures_button.click(**draw, api_name="figures")
        for name in LAYERED_METHODS:
            layer, heads = method_controls[name]["layer"], method_controls[name]["heads"]
            layer.input(lambda value, index, _name=name: method.head_figure(value, _name, index), [state, layer],
                        heads, api_visibility="private", trigger_mode="always_last", **in_order)
        recommend_button = method_controls["integrated_gradients"]["recommend"]
        scaled_inputs = [state, controls["hide_special"], map_pickers["method"], map_pickers["token"]]
        scaled_outputs = [outputs[key] for key in SCALED_KEYS]
        state.change(after_analysis, [state, contrast_pick],
                     [map_pickers["method"], map_pickers["token"], controls["contrast_choice"], recommend_button,
                      outputs["answer_map:highlight"], answer_tokens], api_visibility="private",
                     concurrency_limit=None, show_progress="hidden")
        answer_tokens.select(explain_answer_token, state, [controls["target"], controls["target_k"]], queue=False,
                             api_visibility="private").then(**run, api_visibility="private")
        for picker in map_pickers.values():
            picker.input(answer_map.views, [state, map_pickers["method"], map_pickers["token"],
                                            controls["hide_special"]],
                         [outputs["answer_map:heatmap"], outputs["answer_map:highlight"]], api_visibility="private",
                         trigger_mode="always_last", show_progress="minimal", **in_order)
        controls["hide_special"].input(scaled_views, scaled_inputs, scaled_outputs, api_visibility="private",
                                       trigger_mode="always_last", **in_order,
                                       show_progress="minimal").then(**draw, api_visibility="private")
        controls["contrast_choice"].input(pick_contrast, [controls["contrast_choice"], state],
                                          [controls["contrast_text"], contrast_pick], queue=False,
                                          api_visibility="private")
        controls["contrast_text"].input(lambda: ["", None], None, [controls["contrast_choice"], contrast_pick],
                                        queue=False, api_visibility="private")
        controls["ig_auto"].change(step_fields, controls["ig_auto"], [controls["ig_steps"], controls["target_error"]],
                                   queue=False, api_visibility="private")
        for name in ("seed", "recommended"):
            # Filled, not run; the colour scaling is display only, so the current views follow it at once.
            controls[f"{name}_button"].click(lambda _name=name: fill_preset(_name), None, preset_controls, queue=False,
                                             api_visibility="private").then(
                scaled_views, scaled_inputs, scaled_outputs, api_visibility="private", **in_order,
                show_progress="minimal").then(**draw, api_visibility="private")
        # The IG tab's offer: the recommended IG settings (the methods as they are), then run.
        ig_fields = [field for field in PRESET_FIELDS if field != "methods"]
        recommend_button.click(lambda: fill_preset("recommended", ig_fields), None,
                               [controls[field] for field in ig_fields], queue=False,
                               api_visibility="private").then(**run, api_visibility="private")

        share["png_button"].click(figures.export_pngs, [state, controls["hide_special"]], outputs["export:png"],
                                  api_name="figures_png", concurrency_limit=None)

        defaults = page_defaults(default_model, chat_default(default_model))
        share["share_button"].click(None, setting_inputs, share["share_url"], api_visibility="private",
                                    js=share_js(defaults))

        choice_values = [value for _label, value in choices]

        def load_query(request: gr.Request) -> list[Any]:
            return from_query(dict(request.query_params), choice_values)

        demo.load(load_query, None, setting_inputs, queue=False, api_visibility="private").then(
            None, js=AUTORUN_JS, api_visibility="private")

        with examples_slot:
            gr.Examples(
                example_rows(defaults), setting_inputs, [outputs[key] for key in EXAMPLE_KEYS], fn=analyze_example,
                cache_examples=cache_examples,
                cache_mode="lazy" if cache_examples else None, visible_columns=[0], api_visibility="private",
                label="Examples (the default settings)",
            )
    demo.queue(default_concurrency_limit=1, max_size=64)
    return demo


__all__ = ["build_demo", "is_hosted", "launch_options"]
