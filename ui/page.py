"""The page: the input controls, the tabs (one module each), the downloads, and the events between them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gradio as gr

import attribution
from attribution.catalog import CATALOG, LAYERED_METHODS
from attribution.display.labels import method_label

from . import documents, downloads, exports, figures
from .analysis import (
    EXAMPLE_KEYS,
    OUTPUT_KEYS,
    SCALED_KEYS,
    after_analysis,
    analyze_example,
    explain_answer_token,
    example_state,
    follow_display,
    pick_contrast,
    regroup,
    scaled_views,
)
from .streaming import STOPPED_KEYS, analyze_stream, analyze_unless_pending, stopped_notes
from .controls import (
    MODEL_KIND_CONTROLS,
    build_granularity,
    build_hide_special,
    build_prompt_row,
    build_settings,
    fill_preset,
    from_query,
    model_choices,
    model_picked,
    step_fields,
    target_fields,
)
from .inputs import PRESET_CONTROLS, chat_default
from .runtime import is_hosted
from .settings import SETTING_KEYS, example_rows, page_defaults, share_js
from .tabs import answer_map, compare, method, whatif
from .view import EXPLAINED

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


@dataclass
class Page:
    """The page's components, by role, for wiring their events."""

    controls: dict[str, Any]  # the inputs (SETTINGS names), the Analyze and preset buttons, the contrast picker
    outputs: dict[str, Any]  # the analyze event's (OUTPUT_KEYS), drawing events' (FIGURE_KEYS) and examples' outputs
    method_controls: dict[str, dict[str, Any]]  # each method tab's own controls (`method.build`)
    map_pickers: dict[str, Any]  # the answer map's method and token pickers, and its offer to add IG ("add_costly")
    tabs: dict[str, gr.Tab]
    share: dict[str, Any]  # the PNG button, the share button and its link box
    answer_tokens: gr.HighlightedText  # the clickable answer
    contrast_pick: gr.State  # the foil picked from the list: {"id", "text"} (not part of the API)
    state: gr.State  # the session's stored result's id (`ui.store`)
    open_tab: gr.Textbox  # which tab is open (its figures are drawn first)
    examples_slot: gr.Column
    whatif: dict[str, Any] = field(default_factory=dict)  # the What-if / compare tab's own components
    documents: dict[str, Any] = field(default_factory=dict)  # the Documents accordion's (`ui.documents`)

    def components(self, keys: Any) -> list[Any]:
        return [self.outputs[key] for key in keys]

    @property
    def setting_inputs(self) -> list[Any]:
        return [self.controls[key] for key in SETTING_KEYS]

    @property
    def run(self) -> dict[str, Any]:
        """The analyze event, its results as they come (`analyze_stream`). preprocess=False: the inputs are
        plain JSON values and `analyze` (with the library) validates every one, so an API caller's bad value
        (text in a number, NaN, out of range) gets a message naming the setting instead of gradio's "the
        upstream Gradio app has raised an exception". Progress (and an error) shows once, on the answer,
        instead of on every output."""
        return dict(fn=analyze_stream, inputs=[*self.setting_inputs, self.contrast_pick],
                    outputs=self.components(OUTPUT_KEYS), preprocess=False, concurrency_id="model",
                    concurrency_limit=1, show_progress_on=[self.answer_tokens])

    @property
    def draw(self) -> dict[str, Any]:
        """Drawing the open tab's figures from the stored result (the model is not run again)."""
        inputs = [self.open_tab, self.controls["hide_special"], self.map_pickers["method"],
                  self.map_pickers["token"], self.state]
        return dict(fn=figures.draw_tab, inputs=inputs, outputs=self.components(figures.FIGURE_KEYS),
                    preprocess=False, show_progress="minimal", **IN_ORDER)

    @property
    def scaled(self) -> dict[str, Any]:
        """Redrawing what the colour scaling touches from the stored result."""
        inputs = [self.state, self.controls["hide_special"], self.map_pickers["method"], self.map_pickers["token"]]
        return dict(fn=scaled_views, inputs=inputs, outputs=self.components(SCALED_KEYS), show_progress="minimal",
                    **IN_ORDER)


#: One queue for every event that draws into the figures, first come first drawn: a tab opened while the
#: figures of a new result are being cleared and drawn is drawn after that, never overwritten.
IN_ORDER = dict(concurrency_id="figures", concurrency_limit=1)
PRIVATE = dict(api_visibility="private")


def build_layout(default_model: str, choices: list[tuple[str, str]],
                 defaults: dict[str, Any] | None = None) -> Page:
    """Every component, in page order (inside the open gr.Blocks), at the page's `defaults`
    (`ui.settings.page_defaults`)."""
    defaults = defaults or page_defaults(default_model, chat_default(default_model))
    outputs: dict[str, Any] = {}
    method_controls: dict[str, dict[str, Any]] = {}
    gr.Markdown(INTRO)
    controls = build_prompt_row(default_model, choices, defaults)
    documents_parts = documents.build()  # near the prompt, which it fills
    examples_slot = gr.Column()  # filled at the end, once the outputs the examples fill exist
    controls.update(build_settings(defaults))
    contrast_pick = gr.State(None)
    with gr.Row(equal_height=True):
        # The answer as text is the API's first output; the page shows it as clickable tokens instead.
        outputs["answer"] = gr.Textbox(label="Generated answer", interactive=False, visible=False, elem_id="answer")
        answer_tokens = gr.HighlightedText(
            label="Generated answer: click a token to explain it (Explain → a stretch: click its first and last token)", show_legend=False, show_inline_category=False,
            combine_adjacent=False, color_map={EXPLAINED: "#f59e0b"}, scale=3, elem_id="answer-tokens")
        outputs["explained"] = gr.Textbox(label="Explained token", interactive=False, scale=4, elem_id="explained")
        controls["hide_special"] = build_hide_special(defaults)
    controls.update(build_granularity(defaults))
    tabs: dict[str, gr.Tab] = {}
    with gr.Tabs(elem_id="method-tabs"):
        for name in CATALOG:
            with gr.Tab(method_label(name), id=name, elem_id=f"tab-{name}") as tabs[name]:
                method_controls[name] = method.build(name, outputs)
        with gr.Tab("Answer map", id="answer_map", elem_id="tab-answer_map") as tabs["answer_map"]:
            map_pickers = answer_map.build(outputs)
        with gr.Tab("Compare", id="compare", elem_id="tab-compare") as tabs["compare"]:
            compare.build(outputs)
    # Below the method tabs rather than among them: ten tabs overflow the tab row at 1400 px (gradio hides
    # the last ones in a menu), and what-if is a step after reading the tabs.
    with gr.Accordion("What-if: edit the prompt, or compare with another model or prompt", open=False,
                      elem_id="tab-whatif"):
        whatif_parts = whatif.build(default_model, list(choices), allow_custom=not is_hosted())
    share = downloads.build(outputs)
    outputs["state"] = state = gr.State(None, time_to_live=exports.EXPORT_TTL_S)
    # A cached example's result id (its state, which gradio's example cache cannot hold).
    outputs["example:result"] = gr.Textbox(visible=False, elem_id="example-result")
    # A hidden input, so that the API's /figures can name a tab.
    open_tab = gr.Textbox(next(iter(CATALOG)), visible=False, elem_id="open-tab")
    for name in LAYERED_METHODS:
        outputs[f"{name}:layer"] = method_controls[name]["layer"]
        outputs[f"{name}:heads"] = method_controls[name]["heads"]
    return Page(controls, outputs, method_controls, map_pickers, tabs, share, answer_tokens, contrast_pick, state,
                open_tab, examples_slot, whatif_parts, documents_parts)


#: The answer as it is generated (the hidden answer text changes with each token) shown in the clickable
#: answer's place, as one plain token, until the first stage's tokens come (`after_analysis`). In the browser:
#: no request, so it never lands after the tokens that replace it.
STREAMED_ANSWER_JS = "(text) => [text ? [{token: text, class_or_confidence: null}] : []]"  # [the one output]


def wire_analysis(page: Page) -> None:
    """Analyze (button, Enter, a clicked answer token, the IG tab's offer, the answer map's offer of IG), Stop,
    and what follows each result and each stage of it: the open tab's figures, the pickers, the contrast
    choices, the clickable answer, the answer map's offer."""
    controls = page.controls
    runs = [controls["analyze_button"].click(**page.run, api_name="analyze"),
            controls["prompt"].submit(**page.run, **PRIVATE)]
    # Each result or stage shown in the page's "Scores per" and colour scaling, also when they were changed
    # before it had a stage to change (`follow_display`); queued before the figures are drawn.
    page.state.change(follow_display, [page.state, controls["granularity"], controls["hide_special"]],
                      page.components(OUTPUT_KEYS), show_progress="hidden", **PRIVATE, **IN_ORDER)
    # Figures are drawn when seen: the open tab's once an analysis (or a cached example) is shown.
    page.state.change(figures.draw_after_analysis, [page.open_tab, controls["hide_special"], page.state],
                      page.components(figures.FIGURE_KEYS), show_progress="minimal", **PRIVATE, **IN_ORDER)
    recommend_button = page.method_controls["integrated_gradients"]["recommend"]
    page.state.change(after_analysis, [page.state, page.contrast_pick],
                      [page.map_pickers["method"], page.map_pickers["token"], controls["contrast_choice"],
                       recommend_button, page.outputs["answer_map:highlight"], page.answer_tokens],
                      concurrency_limit=None, show_progress="hidden", **PRIVATE)
    add_costly = page.map_pickers["add_costly"]
    page.state.change(answer_map.offer, page.state, add_costly, concurrency_limit=None, show_progress="hidden",
                      **PRIVATE)
    page.outputs["answer"].change(None, page.outputs["answer"], page.answer_tokens, js=STREAMED_ANSWER_JS,
                                  queue=False, show_progress="hidden", **PRIVATE)
    runs.append(page.answer_tokens.select(
        explain_answer_token, [page.state, controls["target"], controls["target_span"]],
        [controls["target"], controls["target_k"], controls["target_span"]], queue=False, **PRIVATE,
    ).then(**{**page.run, "fn": analyze_unless_pending}, **PRIVATE))  # a stretch's first click runs nothing
    # The IG tab's offer: the recommended IG settings (the methods as they are), then run.
    ig_controls = [name for name in PRESET_CONTROLS if name != "methods"]
    runs.append(recommend_button.click(lambda: fill_preset("recommended", ig_controls), None,
                                       [controls[name] for name in ig_controls], queue=False, **PRIVATE).then(
        **page.run, **PRIVATE))
    # Documents: the passages and question fill the prompt, Scores per and Explain, then run; the top sources
    # table follows each stored result.
    runs.append(documents.wire(page.documents, controls, page.state, page.run, PRIVATE))
    # The answer map's offer: IG (the costly methods) in the answer map too, then run.
    runs.append(add_costly.click(lambda: True, None, controls["answer_map_ig"], queue=False, **PRIVATE).then(
        **page.run, **PRIVATE))
    # Stop cancels the running (or queued) analysis: `analyze_stream` then tells the engine to stop, the model
    # is free for the next request within about a second, and what was done stays on the page.
    asked = [page.state, page.outputs["answer"], controls["methods"], controls["all_targets"], controls["trust"]]
    controls["stop_button"].click(stopped_notes, asked, page.components(STOPPED_KEYS), cancels=runs, queue=False,
                                  **PRIVATE)


def wire_views(page: Page) -> None:
    """Views redrawn from the stored result: another tab opened, the API's /figures and /figures_png, the
    colour scaling, the answer map's pickers, a layered method's layer."""
    for name, tab in page.tabs.items():
        tab.select(lambda _name=name: _name, None, page.open_tab, queue=False, **PRIVATE).then(**page.draw, **PRIVATE)
    # The API's way to a tab's figures for the caller's last analysis: /figures(tab, hide_special, ...).
    figures_button = gr.Button(visible=False, elem_id="figures-api")
    figures_button.click(**page.draw, api_name="figures")
    page.share["png_button"].click(figures.export_pngs, [page.state, page.controls["hide_special"]],
                                   page.outputs["export:png"], api_name="figures_png", concurrency_limit=None)
    for name in LAYERED_METHODS:
        layer, heads = page.method_controls[name]["layer"], page.method_controls[name]["heads"]
        layer.input(lambda state, index, _name=name: method.head_figure(state, _name, index), [page.state, layer],
                    heads, trigger_mode="always_last", **PRIVATE, **IN_ORDER)
    pickers = page.map_pickers
    for picker in (pickers["method"], pickers["token"]):
        picker.input(answer_map.views, [page.state, pickers["method"], pickers["token"], page.controls["hide_special"]],
                     page.components(["answer_map:heatmap", "answer_map:highlight"]), trigger_mode="always_last",
                     show_progress="minimal", **PRIVATE, **IN_ORDER)
    page.controls["hide_special"].input(**page.scaled, trigger_mode="always_last", **PRIVATE).then(
        **page.draw, **PRIVATE)
    # "Scores per": every output redrawn from the stored result per the new groups (the model is not run);
    # the new state's change draws the open tab's figures, as after an analysis.
    page.controls["granularity"].input(regroup, [page.state, page.controls["granularity"], page.controls["hide_special"]],
                                       page.components(OUTPUT_KEYS), trigger_mode="always_last",
                                       show_progress="minimal", **PRIVATE, **IN_ORDER)


def wire_settings(page: Page) -> None:
    """The settings controls' own events: fields shown with their choice, the model's chat default, the
    contrast picker, the presets (nothing of these runs the model)."""
    controls = page.controls
    controls["target"].change(target_fields, controls["target"],
                              [controls["target_k"], controls["target_text"], controls["target_span"]],
                              queue=False, **PRIVATE)
    # Only the user's pick: a deep link sets the model and its own chat setting together. The IG and answer-map
    # settings follow a chat model too while they are at a model's defaults (`model_picked`).
    kind_controls = [controls[name] for name in MODEL_KIND_CONTROLS]
    controls["model"].input(model_picked, [controls["model"], *kind_controls], [controls["chat"], *kind_controls],
                            queue=False, **PRIVATE)
    controls["contrast_choice"].input(pick_contrast, [controls["contrast_choice"], page.state],
                                      [controls["contrast_text"], page.contrast_pick], queue=False, **PRIVATE)
    controls["contrast_text"].input(lambda: ["", None], None, [controls["contrast_choice"], page.contrast_pick],
                                    queue=False, **PRIVATE)
    controls["ig_auto"].change(step_fields, controls["ig_auto"], [controls["ig_steps"], controls["target_error"]],
                               queue=False, **PRIVATE)
    for name in ("seed", "recommended"):
        # Filled, not run; the colour scaling is display only, so the current views follow it at once.
        controls[f"{name}_button"].click(lambda _name=name: fill_preset(_name), None,
                                         [controls[key] for key in PRESET_CONTROLS], queue=False, **PRIVATE).then(
            **page.scaled, **PRIVATE).then(**page.draw, **PRIVATE)


def wire_links(demo: gr.Blocks, page: Page, defaults: dict[str, Any], models: list[str]) -> None:
    """The share link (written in the browser) and the deep link a page is opened with."""
    page.share["share_button"].click(None, page.setting_inputs, page.share["share_url"], js=share_js(defaults),
                                     **PRIVATE)

    def load_query(request: gr.Request) -> list[Any]:
        return from_query(dict(request.query_params), models)

    demo.load(load_query, None, page.setting_inputs, queue=False, **PRIVATE).then(None, js=AUTORUN_JS, **PRIVATE)


def build_demo(default_model: str | None = None, *, cache_examples: bool = True) -> gr.Blocks:
    default_model = default_model or attribution.default_model_name()
    choices = model_choices(default_model)
    defaults = page_defaults(default_model, chat_default(default_model))
    # Gradio's cached copies of the downloads age out as our originals do.
    export_age = (exports.EXPORT_TTL_S, exports.EXPORT_TTL_S)
    with gr.Blocks(title="Token attribution", delete_cache=export_age) as demo:
        page = build_layout(default_model, choices, defaults)
        wire_analysis(page)
        wire_views(page)
        wire_settings(page)
        wire_links(demo, page, defaults, [value for _label, value in choices])
        whatif.wire(page.whatif, page.state, PRIVATE)
        with page.examples_slot:
            examples = gr.Examples(
                example_rows(defaults), page.setting_inputs, page.components(EXAMPLE_KEYS), fn=analyze_example,
                cache_examples=cache_examples, cache_mode="lazy" if cache_examples else None, visible_columns=[0],
                api_visibility="private", label="Examples (the default settings)",
            )
        if cache_examples:  # uncached, an example only fills the inputs
            # After the cached outputs are shown (gradio's event that loads them): the example's stored result
            # becomes the session's, and the state's change draws its figures and views as after any analysis.
            # Queued: gradio reports a changed state (and so fires its change events) only from queued events.
            examples.load_input_event.then(example_state, page.outputs["example:result"], page.state, **PRIVATE)
    demo.queue(default_concurrency_limit=1, max_size=64)
    return demo


__all__ = ["build_demo", "is_hosted", "launch_options"]
