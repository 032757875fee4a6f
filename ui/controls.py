"""The inputs above the tabs: prompt, chat template, model, the Settings accordion (presets, methods,
IG, score, target, contrast, answer map and trust panel); and their small handlers (nothing here runs
the model)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import gradio as gr

from attribution.catalog import CATALOG
from attribution.display.labels import method_label
from attribution.settings import (
    AGGREGATIONS, BASELINE_LABELS, MAX_ABLATIONS, MAX_NEW_TOKENS_LIMIT, MAX_STEPS, MIN_ABLATIONS, SCORES, allowed_models,
)

from .inputs import PRESET_CONTROLS, TARGET_CHOICES, chat_default, deep_link_settings, preset_settings
from .inputs import model_choices as picker_choices
from .runtime import is_hosted
from .settings import CHAT_MODEL_DEFAULTS, DEEP_LINK_KEYS, DEFAULTS, SEED_PROMPT, model_defaults, page_defaults


def model_choices(default_model: str) -> list[tuple[str, str]]:
    """On a Space: the default, ALLOWED_MODELS and the built-in models (nothing else loads there);
    locally also the demo model and Llama-3.2-1B, and any hub id, folder or .gguf file can be typed in."""
    return picker_choices(default_model, hosted=is_hosted(), allowed=allowed_models())


def build_prompt_row(default_model: str, choices: Sequence[tuple[str, str]],
                     defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Prompt, chat template, system prompt, model picker and the Analyze and Stop buttons (at `defaults`,
    the page's: `ui.settings.page_defaults`)."""
    defaults = defaults if defaults is not None else page_defaults(default_model, chat_default(default_model))
    controls: dict[str, Any] = {}
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            controls["prompt"] = gr.Textbox(value=SEED_PROMPT, label="Prompt", lines=2, max_lines=8,
                                            placeholder="Type a question or sentence…", elem_id="prompt")
            with gr.Row(equal_height=True):
                controls["chat"] = gr.Checkbox(
                    defaults["chat"], label="Chat template", scale=1, min_width=200,
                    info="the prompt as the user message of the model's chat template (ticked for chat models)",
                    elem_id="chat")
                controls["system"] = gr.Textbox(
                    defaults["system"], label="System prompt", lines=1, max_lines=4, scale=3,
                    info="with the chat template; empty: the template's default",
                    placeholder="You are a helpful assistant.", elem_id="system")
        with gr.Column(scale=2, min_width=280):
            controls["model"] = gr.Dropdown(
                list(choices), value=default_model, label="Model", allow_custom_value=not is_hosted(),
                info=("models allowed on this Space" if is_hosted()
                      else "or type a hub id, a local model folder or a .gguf file"),
                elem_id="model",
            )
            with gr.Row(equal_height=True):
                controls["analyze_button"] = gr.Button("Analyze", variant="primary", scale=3,
                                                       elem_id="analyze-button")
                # Ends the running analysis within about a second; what is done stays shown.
                controls["stop_button"] = gr.Button("Stop", variant="stop", scale=1, min_width=80,
                                                    elem_id="stop-button")
    return controls


def build_settings(defaults: Mapping[str, Any] = DEFAULTS) -> dict[str, Any]:
    """The Settings accordion: presets and every setting but the prompt, model, chat and colour scaling,
    each at `defaults` (the page's: `ui.settings.page_defaults`)."""
    with gr.Accordion("Settings", open=False, elem_id="settings"):
        return {**preset_buttons(), **generation_and_ig_controls(defaults), **target_controls(defaults)}


def preset_buttons() -> dict[str, Any]:
    """The row of preset buttons (their events fill the controls: `fill_preset`)."""
    controls: dict[str, Any] = {}
    with gr.Row(equal_height=True):
        gr.Markdown("**Presets** fill the settings below (methods and IG's); nothing runs until you press "
                    "**Analyze**, and anything you change afterwards wins.", elem_classes=["legend-note"])
        controls["seed_button"] = gr.Button("Seed settings", size="md", elem_id="preset-seed")
        controls["recommended_button"] = gr.Button("Recommended (trustworthy on real models)", size="md",
                                                   variant="secondary", elem_id="preset-recommended")
    return controls


def generation_and_ig_controls(defaults: Mapping[str, Any] = DEFAULTS) -> dict[str, Any]:
    """Methods and max new tokens, then IG's steps, baseline and aggregation, the score and the held context."""
    controls: dict[str, Any] = {}
    with gr.Row():
        controls["methods"] = gr.CheckboxGroup([(method_label(name), name) for name in CATALOG],
                                               value=defaults["methods"], label="Methods")
        controls["max_new_tokens"] = gr.Slider(0, MAX_NEW_TOKENS_LIMIT, value=defaults["max_new_tokens"], step=1,
                                               label="Max new tokens", info="greedy tokens generated for the answer")
    with gr.Row(equal_height=True):
        controls["ig_steps"] = gr.Slider(1, MAX_STEPS, value=defaults["ig_steps"], step=1, label="IG steps",
                                         scale=2, info="more steps: a more exact integral, slower",
                                         elem_id="ig-steps")
        controls["ig_auto"] = gr.Checkbox(defaults["ig_auto"], label="Auto steps", scale=1, min_width=160,
                                          info="refine until the completeness error is under the target",
                                          elem_id="ig-auto")
        controls["target_error"] = gr.Number(
            defaults["target_error"], label="Target error (auto)", minimum=0, maximum=1, step=0.001, scale=1,
            min_width=160, visible=defaults["ig_auto"], info="a fraction: 0.01 = 1%", elem_id="target-error")
    with gr.Row():
        controls["ig_baseline"] = gr.Radio(
            [(label, key) for key, label in BASELINE_LABELS.items()], value=defaults["ig_baseline"],
            label="IG baseline",
            info="pad = the EOS token's embedding (the seed sets pad = eos); the IG notes name the model's token",
            elem_id="ig-baseline")
        controls["aggregation"] = gr.Radio([(description, key) for key, description in AGGREGATIONS.items()],
                                           value=defaults["aggregation"], label="IG aggregation")
    with gr.Row():
        controls["score"] = gr.Radio(
            [(description, key) for key, description in SCORES.items()], value=defaults["score"],
            label="Score explained (gradient, input × gradient, IG)",
            info="occlusion always uses the log-probability; faithfulness has its own scale (the Compare tab's "
                 "table names it in *drops of*)", elem_id="score")
        controls["hold_context"] = gr.Checkbox(
            defaults["hold_context"], label="Hold context (IG)",
            info="the baseline keeps the first position, special and chat-template tokens at their real "
                 "embeddings (they get exactly 0). Generated tokens before the explained one are not "
                 "held: holding them made IG less complete on SmolLM2 (32% → 68% error)",
            elem_id="hold-context")
    with gr.Row():
        controls["n_ablations"] = gr.Slider(
            MIN_ABLATIONS, MAX_ABLATIONS, value=defaults["n_ablations"], step=1, label="Context ablation: ablations",
            info="random subsets of the sentences removed to fit its surrogate (one forward pass each): more "
                 "give steadier weights and a better held-out fit, slower", elem_id="n-ablations")
    return controls


def target_controls(defaults: Mapping[str, Any] = DEFAULTS) -> dict[str, Any]:
    """What is explained, the contrast, and the answer map and trust panel switches."""
    controls: dict[str, Any] = {}
    with gr.Row():
        controls["target"] = gr.Radio(TARGET_CHOICES, value=defaults["target"], label="Explain")
        controls["target_k"] = gr.Number(defaults["target_k"], precision=0, minimum=1, label="Generated token k",
                                         info="1 = the first generated token", visible=False)
        controls["target_text"] = gr.Textbox(defaults["target_text"], label="Custom target text",
                                             placeholder="' Riga' (mind the leading space)", visible=False)
        controls["target_span"] = gr.Textbox(
            defaults["target_span"], label="Stretch of the answer (tokens k-m)", placeholder="2-5",
            info="or click its first and then its last token in the answer; explained: the sum of their "
                 "scores (with Score → log_probability: log p of the stretch)",
            visible=defaults["target"] == "span", elem_id="target-span")
    with gr.Row():
        controls["continuation"] = gr.Textbox(
            defaults["continuation"], label="…or explain a continuation",
            info="text teacher-forced right after the prompt (after the chat template's reply header), explained "
                 "as a stretch; Explain must be the predicted next token; empty: none",
            placeholder="' Riga is the capital' (mind the leading space)", elem_id="continuation")
    with gr.Row():
        controls["contrast_choice"] = gr.Dropdown(
            [("(none)", "")], value="", label="Contrast: why the explained token rather than…",
            info="the model's likeliest alternatives at that position, with their probabilities "
                 "(filled in after each analysis)", elem_id="contrast-choice")
        controls["contrast_text"] = gr.Textbox(
            defaults["contrast_text"], label="…or type the alternative",
            info="its first token is the contrast; empty: no contrast",
            placeholder="' Tallinn' (mind the leading space)", elem_id="contrast-text")
    with gr.Row():
        controls["all_targets"] = gr.Checkbox(
            defaults["all_targets"], label="Explain every generated token (answer map)",
            info="the Answer map tab; on the demo model it adds well under a second, on large models "
                 "it costs about one attribution per method for the whole answer",
            elem_id="all-targets")
        controls["trust"] = gr.Checkbox(
            defaults["trust"], label="Trust panel",
            info="faithfulness, agreement and IG completeness under Compare; a few batched forward "
                 "passes, plus one IG rerun at twice the steps when IG has not converged",
            elem_id="trust")
        controls["answer_map_ig"] = gr.Checkbox(
            defaults["answer_map_ig"], label="Integrated Gradients in the answer map",
            info="IG once more for every generated token: on SmolLM2-135M about a minute for 20 tokens, against "
                 "2 s for the other methods' maps (chat models start without it; the Answer map tab offers it "
                 "with its estimated cost)", elem_id="answer-map-ig")
    return controls


def build_hide_special(defaults: Mapping[str, Any] = DEFAULTS) -> gr.Checkbox:
    """The colour-scaling switch shown next to the answer (display only: the scores do not change)."""
    with gr.Column(scale=3, min_width=300):  # its own column: a Row's form would squeeze it
        return gr.Checkbox(
            defaults["hide_special"],
            label="Leave held context (first position, special, template tokens) out of colour scaling",
            info="the first token often soaks up attention (an attention sink): grey, out of the scaling, "
                 "the top 5 and the comparison; scores unchanged. Off: the seed's view",
            elem_id="hide-special")


def from_query(query: Mapping[str, str], choices: Sequence[str]) -> list[Any]:
    """Deep link → input values (SETTINGS order); a missing or invalid parameter leaves its input as it
    is. On a Space only the listed models can be linked to."""
    settings = deep_link_settings(query, choices, any_model=not is_hosted())
    return [settings[key] if key in settings else gr.update() for key in DEEP_LINK_KEYS]


#: The controls whose defaults depend on whether the model is a chat model (`CHAT_MODEL_DEFAULTS`).
MODEL_KIND_CONTROLS = tuple(CHAT_MODEL_DEFAULTS)


def model_picked(model: Any, *values: Any) -> list[Any]:
    """Another model picked: the Chat template box follows it (`chat_default`), and so do the IG and answer-map
    settings (MODEL_KIND_CONTROLS, the values given in that order) while they are still one kind of model's
    defaults; changed by hand, they are left as they are."""
    chat = chat_default(model)
    current = dict(zip(MODEL_KIND_CONTROLS, values))
    untouched = any(all(_same(current[key], model_defaults(kind)[key]) for key in MODEL_KIND_CONTROLS)
                    for kind in (False, True))
    wanted = model_defaults(chat)
    return [chat, *(wanted[key] if untouched else gr.update() for key in MODEL_KIND_CONTROLS)]


def _same(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return bool(value) == bool(default)
    if isinstance(default, (int, float)) and isinstance(value, (int, float)):
        return float(value) == float(default)
    return value == default


def target_fields(target: str) -> list[Any]:
    return [gr.update(visible=target == "generated"), gr.update(visible=target == "text"),
            gr.update(visible=target == "span")]


def step_fields(auto: Any) -> list[Any]:
    """IG steps is a fixed count unless Auto steps is ticked; then the target error is what counts."""
    return [gr.update(interactive=not auto), gr.update(visible=bool(auto))]


def fill_preset(name: str, names: Sequence[str] = PRESET_CONTROLS) -> list[Any]:
    """`attribution.PRESETS[name]` as values for the settings controls in `names` (nothing runs); a
    control the preset leaves alone (IG steps under auto) is not updated."""
    values = preset_settings(name)
    return [values[key] if key in values else gr.update() for key in names]
