"""The analyze event (the API's /analyze): the page's inputs become one `attribution.Settings`, the engine
runs, the result is stored for the session (`ui.store`) and turned into every tab's outputs; and the views
read from the stored result after it (the model is not run again)."""

from __future__ import annotations

import inspect
import json
from typing import Any, Callable

import gradio as gr

import attribution
from attribution.catalog import CATALOG
from attribution.display.explanations import display_number, explained_line, ig_preset, stage_text
from attribution.settings import Settings
from attribution.validation import validate_prompt

from . import exports, figures, store
from .inputs import describe_target, model_label, model_name, pad_token_label, page_settings, parse_flag, token_index
from .runtime import gpu, spaces
from .settings import DEFAULTS, SETTING_KEYS
from .tabs import answer_map, compare, method
from .view import View, answer_view, contrast_options, explained_answer_token, result_settings

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
def compute(model: str, prompt: str, settings: Settings,
            stage: Callable[[attribution.Progress], None] | None = None) -> attribution.Analysis:
    """Generation and every attribution method: the only GPU work. Returns CPU numpy data, which
    pickles back from the ZeroGPU worker process."""
    loaded = attribution.load_model(model)
    return attribution.analyze(loaded, prompt, settings, progress=stage)


def render(analysis: attribution.Analysis, view: View) -> list[Any]:
    """Stores the result for the session and returns every output of the analyze event, in OUTPUT_KEYS
    order (the state: the stored result's id). The figures are cleared, not drawn: the page draws the open
    tab's once the rest is shown, and another tab's when it is opened (`ui.figures`)."""
    folder = exports.new_export_dir()
    values: dict[str, Any] = {key: None for key in OUTPUT_KEYS if key in figures.FIGURE_KEYS}
    values |= {
        "answer": analysis.generated_text,
        "explained": explained_line(analysis, describe_target(result_settings(analysis).target)),
    }
    for name in CATALOG:
        values.update(method.render(analysis, name, view))
    values.update(compare.render(analysis, view))
    values.update(answer_map.render(analysis, view))
    json_path, csv_path = exports.write_result_files(analysis, folder)
    values["export:json"] = str(json_path)
    values["export:csv"] = str(csv_path)
    values["export:png"] = None  # drawn when asked for (`figures.export_pngs`)
    values["state"] = store.remember(analysis, view)
    return [values[key] for key in OUTPUT_KEYS]


def page_view(loaded: attribution.LoadedModel, analysis: attribution.Analysis, hide_special: bool,
              all_targets: bool) -> View:
    """How the page shows a fresh result: its display choices, and what only the loaded model knows."""
    # Which token a pad baseline repeats depends on the model's tokenizer: the notes name it.
    pad = result_settings(analysis).baseline.startswith("pad")
    return View(
        hide_special=hide_special, all_targets=all_targets, pad_token=pad_token_label(loaded) if pad else None,
        # The clickable answer shows one token per generated id: only the tokenizer can split it so.
        answer_tokens=tuple(attribution.display_tokens(loaded, analysis.generated_ids)),
        explained=explained_answer_token(analysis),
    )


#: /analyze's parameters: SETTINGS in order with their defaults (gradio reads the API's parameter names and
#: the progress tracker from this signature), then the page's picked foil, which is not part of the API.
ANALYZE_SIGNATURE = inspect.Signature(
    [inspect.Parameter("prompt", inspect.Parameter.POSITIONAL_OR_KEYWORD),
     inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None),
     # None stands for DEFAULTS["methods"]: a list cannot be a default gradio shows
     inspect.Parameter("methods", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)]
    + [inspect.Parameter(key, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=DEFAULTS[key])
       for key in SETTING_KEYS[3:]]
    + [inspect.Parameter("contrast_pick", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None),
       inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress())]
)


def analyze(*arguments: Any, **keywords: Any) -> list[Any]:
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
    bound = ANALYZE_SIGNATURE.bind(*arguments, **keywords)
    bound.apply_defaults()
    values = dict(bound.arguments)
    progress = values.pop("progress")
    if values["methods"] is None:  # a list cannot be a parameter's default
        values["methods"] = DEFAULTS["methods"]
    prompt, model = values["prompt"], model_name(values["model"])
    try:
        validate_prompt(prompt)  # fail fast, before a large model is loaded
        settings = page_settings(values)
        hide_special = parse_flag(values["hide_special"], "hide_special")
        progress(0.05, desc=f"Loading {model_label(model)}…")
        loaded = attribution.load_model(model)  # cached after the first call; a ValueError names the problem
        progress(0.15, desc=f"Generating up to {display_number(settings.max_new_tokens)} tokens and computing "
                            "the attributions…")

        def stage(step: attribution.Progress) -> None:
            progress(0.15 + 0.75 * step.fraction, desc=stage_text(step, settings.n_steps))

        # The ZeroGPU worker is another process: progress stages only here.
        analysis = compute(model, prompt, settings, stage if spaces is None else None)
        view = page_view(loaded, analysis, hide_special, parse_flag(values["all_targets"], "all_targets"))
    except ValueError as error:
        raise gr.Error(str(error)) from None
    return render(analysis, view)


analyze.__signature__ = ANALYZE_SIGNATURE  # type: ignore[attr-defined]


#: What a cached example stores: everything but the figures and the PNG files, which are drawn when seen
#: (gradio's example cache writes an empty output as '' and cannot read it back), and but the state, which
#: it cannot hold at all (a gr.State output is cached empty). The stored result's id goes in a hidden
#: text output instead ("example:result"), and `example_state` makes it the session's.
EXAMPLE_KEYS = [key for key in OUTPUT_KEYS if key not in figures.FIGURE_KEYS and key not in ("export:png", "state")]
EXAMPLE_KEYS.append("example:result")


def analyze_example(*settings: Any) -> list[Any]:
    """`analyze` for the Examples table (settings in SETTINGS order), EXAMPLE_KEYS outputs. Its result is
    pinned in the store: the example cache hands its id out for as long as the process runs."""
    values = dict(zip(OUTPUT_KEYS, analyze(*settings)))
    values["example:result"] = values["state"]
    store.pin(values["state"], slot=json.dumps(settings, default=str))
    return [values[key] for key in EXAMPLE_KEYS]


def example_state(result_id: Any) -> str | None:
    """A cached example shown: its stored result becomes the session's (the state), so that every view
    reads it. None, with a warning, for an id the store does not hold as an example's (a cache written by
    another process): the views then show nothing of an earlier result."""
    if store.is_pinned(result_id):
        return result_id
    gr.Warning(store.EXPIRED)
    return None


def scaled_views(state: str | None, hide_special: Any, method_name: Any, token: Any) -> list[Any]:
    """Everything the colour scaling touches (SCALED_KEYS order: highlights, top 5s, comparison and
    answer map), redrawn from the stored result when "Leave held context out of the colour scaling"
    changes: the model is not run again. An expired result is left as shown (the figures drawn next say
    it has gone)."""
    stored = store.lookup(state, warn=False)
    if stored is None:
        return [gr.update() for _key in SCALED_KEYS]
    analysis, view = stored.analysis, stored.view.scaled(hide_special)
    exclude = view.exclude(analysis)
    values: dict[str, Any] = {}
    for name in CATALOG:
        values.update(method.scaled(analysis, name, exclude))
    values["compare:heatmap"] = values["compare:bars"] = None
    values["answer_map:heatmap"], values["answer_map:highlight"] = answer_map.stored_views(
        stored, method_name, token, view.hide_special, draw=False)
    return [values[key] for key in SCALED_KEYS]


def after_analysis(state: str | None, contrast_pick: Any) -> list[Any]:
    """After each analysis: the answer-map pickers (first method, first token), the contrast picker's
    choices (the picked foil kept while it is still the one in use), the recommended-IG button, the
    answer-map label and the clickable answer (the explained token marked)."""
    stored = store.lookup(state, warn=False)  # the figures drawn at the same time warn if it has gone
    if stored is None:
        return [gr.update()] * 6
    analysis = stored.analysis
    method_update, token_update, label_update = answer_map.pickers(analysis)
    picked = contrast_pick.get("id") if isinstance(contrast_pick, dict) else None
    in_use = picked is not None and analysis.foil is not None and picked == analysis.foil.id
    contrast_update = gr.update(choices=contrast_options(analysis), value=picked if in_use else "")
    ran_ig = "integrated_gradients" in analysis.methods
    recommend_update = gr.update(visible=ran_ig and ig_preset(analysis) != "recommended")
    return [method_update, token_update, contrast_update, recommend_update, label_update,
            answer_view(stored.view)]


def explain_answer_token(state: str | None, event: gr.SelectData) -> list[Any]:
    """A generated token clicked in the answer: explain that token (Explain → generated token k); the
    analysis then runs again. Nothing changes before the first analysis."""
    stored = store.lookup(state)
    count = 0 if stored is None else len(stored.view.answer_tokens)
    if not count or not isinstance(event.index, int):
        return [gr.update(), gr.update()]
    return ["generated", token_index(event.index + 1, count)]


def pick_contrast(choice: Any, state: str | None) -> list[Any]:
    """A foil picked from the list: its text goes into the contrast box, its id is remembered (the id is
    what the analysis uses while the box still shows that text)."""
    if choice in (None, ""):
        return ["", None]
    stored = store.lookup(state)
    predictions = () if stored is None else stored.analysis.top_predictions
    for prediction in predictions:
        if prediction.id == choice:
            return [prediction.text, {"id": int(prediction.id), "text": prediction.text}]
    return [gr.update(), None]
