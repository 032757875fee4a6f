"""The analyze event (the API's /analyze): validate the settings, run the engine, and turn the result into
every tab's outputs; and the views redrawn from the stored result after it (the model is not run again)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import gradio as gr

import attribution
from attribution.catalog import CATALOG
from attribution.display.explanations import display_number, explained_line, stage_text
from attribution.targets import display_tokens, validate_prompt

from . import exports, figures
from .inputs import (
    describe_target,
    model_label,
    pad_token_label,
    parse_contrast,
    parse_flag,
    parse_steps,
    parse_system,
    parse_target,
    token_index,
)
from .runtime import gpu, spaces
from .settings import DEFAULTS
from .tabs import answer_map, compare, method
from .view_state import (
    View,
    analysis_from_view_state,
    answer_view,
    contrast_options,
    dump_view_state,
    explained_answer_token,
    load_view_state,
)

#: The outputs of the analyze event (and of `/analyze` in the API), in this order.
OUTPUT_KEYS = (
    ["answer", "explained"]
    + [key for name in CATALOG for key in method.output_keys(name)]
    + list(answer_map.OUTPUT_KEYS)
    + list(compare.OUTPUT_KEYS)
    + ["export:json", "export:csv", "export:png", "state"]
)
#: The outputs redrawn from the stored result when "Leave held context out" changes (no model run); the
#: figures it changes are cleared, and the page redraws the open tab's.
SCALED_KEYS = ([f"{name}:{part}" for name in CATALOG for part in ("highlight", "top")]
               + ["compare:heatmap", "compare:bars", "answer_map:heatmap", "answer_map:highlight"])


@gpu
def compute(model_name: str, prompt: str, settings: dict[str, Any],
            stage: Callable[[Any], None] | None = None) -> attribution.Analysis:
    """Generation and every attribution method: the only GPU work. Returns CPU numpy data, which
    pickles back from the ZeroGPU worker process."""
    loaded = attribution.load_model(model_name)
    return attribution.analyze(loaded, prompt, progress=stage, **settings)


def render(analysis: attribution.Analysis, view: View) -> list[Any]:
    """Every output of the analyze event, in OUTPUT_KEYS order. The figures are cleared, not drawn: the page
    draws the open tab's once the rest is shown, and another tab's when it is opened (`ui.figures`)."""
    folder = exports.new_export_dir()
    values: dict[str, Any] = {key: None for key in OUTPUT_KEYS if key in figures.FIGURE_KEYS}
    values |= {
        "answer": analysis.generated_text,
        "explained": explained_line(analysis, view.target_description),
    }
    for name in CATALOG:
        values.update(method.render(analysis, name, view))
    values.update(compare.render(analysis, view))
    values.update(answer_map.render(analysis, view))
    json_path, csv_path = exports.write_result_files(analysis, folder)
    values["export:json"] = str(json_path)
    values["export:csv"] = str(csv_path)
    values["export:png"] = None  # drawn when asked for (`figures.export_pngs`)
    values["state"] = dump_view_state(analysis, view.answer_tokens, view.explained, figures.remember(analysis))
    return [values[key] for key in OUTPUT_KEYS]


def analyze(
    prompt: str,
    model: str | None = None,
    methods: Sequence[str] | None = None,
    max_new_tokens: float = DEFAULTS["max_new_tokens"],
    ig_steps: float = DEFAULTS["ig_steps"],
    ig_baseline: str = DEFAULTS["ig_baseline"],
    aggregation: str = DEFAULTS["aggregation"],
    target: str = DEFAULTS["target"],
    target_k: float = DEFAULTS["target_k"],
    target_text: str = DEFAULTS["target_text"],
    contrast_text: str = DEFAULTS["contrast_text"],
    all_targets: bool = DEFAULTS["all_targets"],
    trust: bool = DEFAULTS["trust"],
    hide_special: bool = DEFAULTS["hide_special"],
    chat: bool = DEFAULTS["chat"],
    system: str = DEFAULTS["system"],
    ig_auto: bool = DEFAULTS["ig_auto"],
    target_error: float = DEFAULTS["target_error"],
    score: str = DEFAULTS["score"],
    hold_context: bool = DEFAULTS["hold_context"],
    contrast_pick: dict[str, Any] | None = None,
    progress: gr.Progress = gr.Progress(),
) -> list[Any]:
    """Explain which prompt tokens drove the model's next token, with every attribution method.

    `contrast_text`: explain the token rather than this alternative ("why Riga rather than Tallinn?";
    its first token is the foil, '' for none). `all_targets`: also the answer map (every generated
    token × the tokens before it). `trust`: also the trust panel. `hide_special` (display only): leave the
    held context (first position, special and chat-template tokens) out of the colour scaling, the top 5
    and the comparison; False is the seed's view. `chat`: send the prompt as the user message of the
    model's chat template (its tokens are then shown grey, out of the colour scaling and the top 5);
    `system`: the system prompt with chat ('' = the template's default). `ig_auto` (or ig_steps="auto"):
    IG refines its steps until its completeness error is at most `target_error` (0.01 = 1%). `score`:
    what the gradient methods and IG explain (logit | probability | log_probability). `hold_context`: IG's
    baseline keeps the held context at its real embeddings. (`contrast_pick`, the UI's picked foil id, is
    not part of the API.)

    Returns the generated answer, the explained token, then per method its notes, highlighted tokens
    (scores scaled into [-1, 1]), bar chart and top-5 table (attention also its layers × tokens
    heatmap), the answer map's notes, heatmap and first generated token's highlighted sources, the
    trust verdict, the comparison heatmap and bars, the faithfulness table, the agreement heatmap and
    top-3 overlap table, IG's completeness, and the JSON, CSV and PNG exports.
    """
    if model is None or (isinstance(model, str) and not model.strip()):
        model = attribution.default_model_name()
    if methods is None:
        methods = DEFAULTS["methods"]
    try:
        validate_prompt(prompt)  # fail fast, before a large model is loaded
        parsed_target = parse_target(target, target_k, target_text)
        contrast = parse_contrast(contrast_text, contrast_pick)
        all_targets = parse_flag(all_targets, "all_targets")
        trust = parse_flag(trust, "trust")
        hide_special = parse_flag(hide_special, "hide_special")
        chat = parse_flag(chat, "chat")
        system = parse_system(system, chat)
        n_steps = parse_steps(ig_steps, ig_auto)
        hold_context = parse_flag(hold_context, "hold_context")
        progress(0.05, desc=f"Loading {model_label(model)}…")
        loaded = attribution.load_model(model)  # cached after the first call; a ValueError names the problem
        progress(0.15, desc=f"Generating up to {display_number(max_new_tokens)} tokens and computing the "
                            "attributions…")

        def stage(step: Any) -> None:  # an attribution.engine.Progress
            progress(0.15 + 0.75 * step.fraction, desc=stage_text(step, n_steps))

        analysis = compute(model, prompt, {
            "methods": methods,
            "max_new_tokens": max_new_tokens,
            "n_steps": n_steps,
            "target_error": target_error,
            "baseline": ig_baseline,
            "aggregation": aggregation,
            "score": score,
            "hold_context": hold_context,
            "target": parsed_target,
            "contrast": contrast,
            # Nothing generated, nothing to map: the answer map is skipped rather than refused.
            "all_targets": all_targets and max_new_tokens != 0,
            "trust": trust,
            "chat": chat,
            "system": system,
        }, stage if spaces is None else None)  # the ZeroGPU worker is another process: stages only here
        # Which token a pad baseline repeats depends on the model's tokenizer: the notes name it.
        pad_token = pad_token_label(loaded) if str(ig_baseline).startswith("pad") else None
    except ValueError as error:
        raise gr.Error(str(error)) from None
    view = View(
        hide_special=hide_special, all_targets=all_targets, score=score, pad_token=pad_token,
        target_description=describe_target(target, target_k),
        # The clickable answer shows one token per generated id: only the tokenizer can split it so.
        answer_tokens=tuple(display_tokens(loaded, analysis.generated_ids)),
        explained=explained_answer_token(analysis, parsed_target),
    )
    return render(analysis, view)


#: What a cached example stores: everything but the figures and the PNG files, which are drawn when seen
#: (gradio's example cache writes an empty output as '' and cannot read it back).
EXAMPLE_KEYS = [key for key in OUTPUT_KEYS if key not in figures.FIGURE_KEYS and key != "export:png"]


def analyze_example(*settings: Any) -> list[Any]:
    """`analyze` for the Examples table (settings in SETTINGS order), EXAMPLE_KEYS outputs."""
    values = dict(zip(OUTPUT_KEYS, analyze(*settings)))
    return [values[key] for key in EXAMPLE_KEYS]


def scaled_views(state: str | None, hide_special: Any, method_name: Any, token: Any) -> list[Any]:
    """Everything the colour scaling touches (SCALED_KEYS order: highlights, top 5s, comparison and
    answer map), redrawn from the stored result when "Leave held context out of the colour scaling"
    changes: the model is not run again."""
    data = load_view_state(state)
    analysis = analysis_from_view_state(data)
    if analysis is None:
        return [gr.update() for _key in SCALED_KEYS]
    hide_special = bool(hide_special)
    exclude = View(hide_special=hide_special).exclude(analysis)
    values: dict[str, Any] = {}
    for name in CATALOG:
        values.update(method.scaled(analysis, name, exclude))
    values["compare:heatmap"] = values["compare:bars"] = None
    values["answer_map:heatmap"], values["answer_map:highlight"] = answer_map.views(state, method_name, token,
                                                                                    hide_special, draw=False)
    return [values[key] for key in SCALED_KEYS]


def after_analysis(state: str | None, contrast_pick: Any) -> list[Any]:
    """After each analysis: the answer-map pickers (first method, first token), the contrast picker's
    choices (the picked foil kept while it is still the one in use), the recommended-IG button, the
    answer-map label and the clickable answer (the explained token marked)."""
    data = load_view_state(state)
    method_update, token_update, label_update = answer_map.pickers(data)
    picked = contrast_pick.get("id") if isinstance(contrast_pick, dict) else None
    in_use = picked is not None and picked == data.get("foil_id")
    contrast_update = gr.update(choices=contrast_options(data), value=picked if in_use else "")
    ig = data.get("ig")
    recommend_update = gr.update(visible=ig is not None and ig.get("preset") != "recommended")
    return [method_update, token_update, contrast_update, recommend_update, label_update, answer_view(data)]


def explain_answer_token(state: str | None, event: gr.SelectData) -> list[Any]:
    """A generated token clicked in the answer: explain that token (Explain → generated token k); the
    analysis then runs again. Nothing changes before the first analysis."""
    count = len(load_view_state(state).get("answer", []))
    if not count or not isinstance(event.index, int):
        return [gr.update(), gr.update()]
    return ["generated", token_index(event.index + 1, count)]


def pick_contrast(choice: Any, state: str | None) -> list[Any]:
    """A foil picked from the list: its text goes into the contrast box, its id is remembered (the id is
    what the analysis uses while the box still shows that text)."""
    if choice in (None, ""):
        return ["", None]
    for item in load_view_state(state).get("predictions", []):
        if item["id"] == choice:
            return [item["text"], {"id": int(item["id"]), "text": item["text"]}]
    return [gr.update(), None]
