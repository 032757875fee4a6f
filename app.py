"""The Gradio app (and Hugging Face Space): which prompt tokens drove the model's next token?

The Gradio Blocks UI only: page text, the handlers, the layout and its events, and launch. Everything
they show comes from `attribution`: the analysis, its figures (`plotting` and the `*_figures` modules),
tables, explanations, exports and the stored view state. Only this module turns a ValueError into
gr.Error.

    python app.py                      # http://127.0.0.1:7860 on the shipped demo model, offline
    python app.py --share              # plus a public *.gradio.live link (or GRADIO_SHARE=1)
    python app.py --host 0.0.0.0 --port 8080 --model meta-llama/Llama-3.2-1B
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

if os.environ.get("SPACE_ID"):
    try:  # ZeroGPU: `spaces` must be imported before torch sets up CUDA.
        import spaces
    except ImportError:
        spaces = None
else:
    spaces = None

import gradio as gr
import pandas as pd
from gradio.components.plot import PlotData

import attribution
from attribution import exports
from attribution.answer_map_figures import answer_map_figure, answer_map_highlight, source_exclusions
from attribution.app_inputs import (
    DEEP_LINK_KEYS,
    PRESET_FIELDS,
    TARGET_CHOICES,
    chat_default,
    deep_link_settings,
    model_label,
    parse_contrast,
    parse_flag,
    parse_steps,
    parse_system,
    parse_target,
    preset_settings,
    token_index,
)
from attribution.app_inputs import model_choices as picker_choices
from attribution.comparison_figures import comparison_bars_figure, comparison_heatmap_figure
from attribution.explanations import (
    ANSWER_MAP_HELP,
    RECOMMENDED_IG_TEXT,
    answer_map_label,
    answer_map_notes,
    completeness_summary,
    describe_target,
    display_number,
    explained_line,
    method_help,
    method_notes,
    pad_token_label,
    stage_text,
)
from attribution.figure_style import excluded_tokens
from attribution.labels import method_label, token_label
from attribution.method_figures import LAYERED_METHODS, head_heatmap_figure
from attribution.plotting import analysis_figures
from attribution.tables import (
    AGREEMENT_HEADERS,
    FAITHFULNESS_HEADERS,
    TOP_HEADERS,
    agreement_rows,
    faithfulness_rows,
    highlight_values,
    top_rows,
)
from attribution.targets import (
    DEFAULT_TARGET_ERROR,
    MAX_NEW_TOKENS_LIMIT,
    MAX_STEPS,
    display_tokens,
    validate_prompt,
)
from attribution.view_state import (
    EXPLAINED,
    analysis_from_view_state,
    answer_map_from_view_state,
    answer_view,
    contrast_options,
    dump_view_state,
    explained_answer_token,
    load_view_state,
)

# --- constants -------------------------------------------------------------------------------

SEED_PROMPT = "What is the Capital City of Latvia?"
EXAMPLE_PROMPTS = (
    SEED_PROMPT,
    "The capital of France is",
    "Which city is the capital of Germany?",
    "The Eiffel Tower is located in the city of",
)
SEED = attribution.PRESETS["seed"]
DEFAULTS = {
    # Every registered method, so every tab has something to show. This also keeps the cached examples
    # free of empty outputs: gradio's example cache writes None as '' and cannot read it back.
    "methods": list(attribution.METHODS),
    "max_new_tokens": 20,
    # The seed notebook's IG settings (the seed preset's), so that its numbers appear.
    "ig_steps": SEED["n_steps"],
    "ig_baseline": SEED["baseline"],
    "aggregation": SEED["aggregation"],
    "target": "next",
    "target_k": 1,
    "target_text": "",
    "contrast_text": "",  # "" = no contrast
    # Both cost well under a second of compute on the demo model (measured: about 0.15 s CPU for the
    # answer map and 0.2 s for the trust panel, on top of 0.1 s for the six methods), so both are on.
    "all_targets": True,
    "trust": True,
    # Display only (the scores are the same either way): the held context (first position, special and
    # template tokens) stays grey, out of the colour scaling, so one attention sink does not wash out every
    # other colour. The Seed settings button unticks it: the seed's view, every token scaled.
    "hide_special": True,
    # The API's defaults: the raw prompt, as before chat templates. The page ticks Chat template for chat
    # models (chat_default) instead.
    "chat": False,
    "system": "",  # "" = the chat template's default system prompt
    "ig_auto": False,  # True: IG steps to `target_error` (n_steps="auto")
    "target_error": DEFAULT_TARGET_ERROR,
    "score": SEED["score"],
    "hold_context": SEED["hold_context"],
}
TRUST_HELP = (
    "**Faithfulness** (ERASER, averaged over hiding k = 1, 2, 20% and 50% of the content tokens): "
    "*comprehensiveness* is how much the explained token's probability drops when a method's top-k tokens "
    "are hidden; *sufficiency* is how much it drops when only those are kept. **Higher comprehensiveness "
    "than random = the method found tokens that matter; lower sufficiency is better.** *Random*: the same "
    "for random token orders. Start/special tokens always stay visible; with a contrast, the drops are in "
    "log p(explained) − log p(contrast)."
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
INTRO = (
    "# Token attribution\n"
    "Which words in a prompt made the language model predict its next token? Type a prompt, press "
    "**Analyze**, and compare attribution methods tab by tab: the seed notebook's **gradients**, "
    "**attention weights** and **Integrated Gradients**, and more, side by side under **Compare**. "
    "Every figure, the JSON and the CSV can be downloaded below the tabs."
)
GPU_DURATION_S = 120

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


def launch_options() -> dict[str, Any]:
    """What `launch()` needs besides the address (in gradio 6, css and theme belong to launch)."""
    return {"css": CSS, "theme": gr.themes.Soft(primary_hue="orange", secondary_hue="blue")}


def is_hosted() -> bool:
    return bool(os.environ.get("SPACE_ID"))


def model_choices(default_model: str) -> list[tuple[str, str]]:
    """On a Space: the default, ALLOWED_MODELS and the built-in models (nothing else loads there);
    locally also the demo model and Llama-3.2-1B, and any hub id, folder or .gguf file can be typed in."""
    allowed = [item.strip() for item in os.environ.get("ALLOWED_MODELS", "").split(",") if item.strip()]
    return picker_choices(default_model, hosted=is_hosted(), allowed=allowed)


METHOD_PARTS = ("notes", "highlight", "bars", "top")

#: The outputs of the `analyze` event (and of `/analyze` in the API), in this order.
OUTPUT_KEYS = (
    ["answer", "explained"]
    + [
        f"{name}:{part}"
        for name in attribution.METHODS
        for part in METHOD_PARTS + (("layers",) if name in LAYERED_METHODS else ())
    ]
    + ["answer_map:notes", "answer_map:heatmap", "answer_map:highlight"]
    + ["compare:verdict", "compare:heatmap", "compare:bars", "compare:faithfulness", "compare:agreement",
       "compare:overlap", "compare:completeness"]
    + ["export:json", "export:csv", "export:png", "state"]
)
#: The settings inputs (the /analyze parameters, in order: new ones only ever appended) by DEFAULTS name.
SETTING_KEYS = ("prompt", "model", "methods", "max_new_tokens", "ig_steps", "ig_baseline", "aggregation", "target",
                "target_k", "target_text", "contrast_text", "all_targets", "trust", "hide_special", "chat", "system",
                "ig_auto", "target_error", "score", "hold_context")
#: The outputs redrawn from the stored result when "Leave held context out" changes (no model run).
SCALED_KEYS = ([f"{name}:{part}" for name in attribution.METHODS for part in ("highlight", "top")]
               + ["compare:heatmap", "compare:bars", "answer_map:heatmap", "answer_map:highlight"])


# --- ZeroGPU ---------------------------------------------------------------------------------


def gpu(function: Callable) -> Callable:
    """`@spaces.GPU` on a ZeroGPU Space (the `spaces` package imported there); a no-op elsewhere."""
    if spaces is None:
        return function
    return spaces.GPU(duration=GPU_DURATION_S)(function)


@gpu
def compute(model_name: str, prompt: str, settings: dict[str, Any],
            stage: Callable[[Any], None] | None = None) -> attribution.Analysis:
    """Generation and every attribution method: the only GPU work. Returns CPU numpy data, which
    pickles back from the ZeroGPU worker process."""
    loaded = attribution.load_model(model_name)
    return attribution.analyze(loaded, prompt, progress=stage, **settings)


# --- exports ---------------------------------------------------------------------------------


def save_png(figure: Any, path: Path) -> PlotData:
    """Write the figure as a PNG download and hand the same bytes to gr.Plot (rendered once, not twice)."""
    encoded = base64.b64encode(exports.write_png(figure, path)).decode("ascii")
    return PlotData(type="matplotlib", plot=f"data:image/png;base64,{encoded}")


# --- handlers --------------------------------------------------------------------------------


def answer_map_views(state: str | None, method: Any, token: Any, hide_special: Any) -> list[Any]:
    """The answer-map heatmap (the chosen row outlined) and one generated token's highlighted sources,
    redrawn from the stored result for another method, token or colour scaling (the model is not run)."""
    data = load_view_state(state)
    table = answer_map_from_view_state(data, method)
    analysis = analysis_from_view_state(data)
    if table is None or analysis is None:
        return [None, gr.update(value=None, label=answer_map_label(None, 1))]
    index = token_index(token, len(table.targets))
    exclude, template = source_exclusions(analysis, table, bool(hide_special))
    figure = answer_map_figure(table, signed=bool(data.get("answer_map_signed", {}).get(method)),
                               exclude=exclude, template=template, selected=index)
    highlight = answer_map_highlight(table, index, exclude)
    return [figure, gr.update(value=highlight, label=answer_map_label(table, index))]


def scaled_views(state: str | None, hide_special: Any, method: Any, token: Any) -> list[Any]:
    """Everything the colour scaling touches (SCALED_KEYS order: highlights, top 5s, comparison and
    answer map), redrawn from the stored result when "Leave held context out of the colour scaling"
    changes: the model is not run again."""
    data = load_view_state(state)
    analysis = analysis_from_view_state(data)
    if analysis is None:
        return [gr.update() for _key in SCALED_KEYS]
    exclude = excluded_tokens(analysis, bool(hide_special))
    values: dict[str, Any] = {}
    for name in attribution.METHODS:
        if name not in analysis.methods:
            values[f"{name}:highlight"] = values[f"{name}:top"] = gr.update()
            continue
        scores = analysis.methods[name].scores
        values[f"{name}:highlight"] = highlight_values(analysis.input_tokens, scores, exclude)
        values[f"{name}:top"] = top_table(analysis, name, exclude)
    values["compare:heatmap"] = comparison_heatmap_figure(analysis, bool(hide_special))
    values["compare:bars"] = comparison_bars_figure(analysis, bool(hide_special))
    values["answer_map:heatmap"], values["answer_map:highlight"] = answer_map_views(state, method, token, hide_special)
    return [values[key] for key in SCALED_KEYS]


def top_table(analysis: attribution.Analysis, name: str, exclude: Any) -> pd.DataFrame:
    """A method's top-5 table, leaving out the tokens left out of the colour scaling."""
    return pd.DataFrame(top_rows(analysis, name, exclude=exclude), columns=TOP_HEADERS)


def after_analysis(state: str | None, contrast_pick: Any) -> list[Any]:
    """After each analysis: the answer-map pickers (first method, first token), the contrast picker's
    choices (the picked foil kept while it is still the one in use), the recommended-IG button, the
    answer-map label and the clickable answer (the explained token marked)."""
    data = load_view_state(state)
    methods = list(data.get("answer_map", {}))
    targets = data["answer_map"][methods[0]]["targets"] if methods else []
    method_update = gr.update(choices=[(method_label(name), name) for name in methods],
                              value=methods[0] if methods else None, interactive=bool(methods))
    token_update = gr.update(
        choices=[(f"{index} · {token_label(token)}", index) for index, token in enumerate(targets, start=1)],
        value=1 if targets else None, interactive=len(targets) > 1)
    options = contrast_options(data)
    picked = contrast_pick.get("id") if isinstance(contrast_pick, dict) else None
    in_use = picked is not None and picked == data.get("foil_id")
    contrast_update = gr.update(choices=options, value=picked if in_use else "")
    ig = data.get("ig")
    recommend_update = gr.update(visible=ig is not None and ig.get("preset") != "recommended")
    table = answer_map_from_view_state(data, methods[0]) if methods else None
    label_update = gr.update(label=answer_map_label(table, 1))
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


def trust_views(analysis: attribution.Analysis, plots: dict[str, Any]) -> dict[str, Any]:
    """The trust panel's outputs: the verdict, faithfulness and agreement tables and figure, and IG's
    completeness in words."""
    report = analysis.trust
    if report is None:
        return {
            "compare:verdict": ("**Trust panel is off.** Tick *Settings → Trust panel* and analyze again to "
                                "see how far these scores can be trusted."),
            "compare:faithfulness": pd.DataFrame([], columns=FAITHFULNESS_HEADERS),
            "compare:agreement": None,
            "compare:overlap": pd.DataFrame([], columns=AGREEMENT_HEADERS),
            "compare:completeness": "",
        }
    n_content = int((~analysis.context_tokens).sum())  # the tokens agreement ranks, as the trust panel counts them
    return {
        "compare:verdict": f"**Verdict:** {report.verdict}",
        "compare:faithfulness": pd.DataFrame(faithfulness_rows(report), columns=FAITHFULNESS_HEADERS),
        "compare:agreement": plots.get("agreement_heatmap"),
        "compare:overlap": pd.DataFrame(agreement_rows(report, n_content), columns=AGREEMENT_HEADERS),
        "compare:completeness": completeness_summary(report.completeness),
    }


def render(analysis: attribution.Analysis, target_description: str, hide_special: bool = False,
           all_targets: bool = True, answer_tokens: Sequence[str] = (), explained: int | None = None,
           score: str = "logit", pad_token: str | None = None) -> list[Any]:
    """Every output of the analyze event, in OUTPUT_KEYS order. `answer_tokens` (the generated tokens'
    display strings) and `explained` (which of them is explained) go into the stored result, for the
    clickable answer; `score` (the one analyzed) and `pad_token` (`pad_token_label`) go into the notes."""
    folder = exports.new_export_dir()
    hide_special = bool(hide_special)
    plots = {key: save_png(figure, folder / f"{key}.png")
             for key, figure in analysis_figures(analysis, hide_special).items()}
    exclude = excluded_tokens(analysis, hide_special)
    values: dict[str, Any] = {
        "answer": analysis.generated_text,
        "explained": explained_line(analysis, target_description),
    }
    for name in attribution.METHODS:
        label = method_label(name)
        result = analysis.methods.get(name)
        if result is None:
            values[f"{name}:notes"] = (f"**{label}** was not computed: tick it under "
                                       "*Settings → Methods* and analyze again.")
            values[f"{name}:highlight"] = None
            values[f"{name}:bars"] = None
            values[f"{name}:top"] = pd.DataFrame([], columns=TOP_HEADERS)
        else:
            values[f"{name}:notes"] = method_notes(
                name, result, analysis.foil, analysis.chat, score=score, pad_token=pad_token,
                generated_inputs=analysis.n_tokens - (analysis.n_prompt_tokens or analysis.n_tokens))
            values[f"{name}:highlight"] = highlight_values(analysis.input_tokens, result.scores, exclude)
            values[f"{name}:bars"] = plots[f"{name}_bars"]
            values[f"{name}:top"] = top_table(analysis, name, exclude)
        if name in LAYERED_METHODS:
            values[f"{name}:layers"] = plots.get(f"{name}_layers")
    values["compare:heatmap"] = plots["comparison_heatmap"]
    values["compare:bars"] = plots["comparison_bars"]
    values.update(trust_views(analysis, plots))
    values["answer_map:notes"] = answer_map_notes(analysis, all_targets)
    values["answer_map:heatmap"] = None
    values["answer_map:highlight"] = None
    if analysis.answer_map:  # the first method and the first generated token, as the pickers start
        first = next(iter(analysis.answer_map))
        table = analysis.answer_map[first]
        source_exclude, _template = source_exclusions(analysis, table, hide_special)
        values["answer_map:heatmap"] = plots[f"answer_map_{first}"]
        values["answer_map:highlight"] = answer_map_highlight(table, 1, source_exclude)
    json_path, csv_path = exports.write_result_files(analysis, folder)
    values["export:json"] = str(json_path)
    values["export:csv"] = str(csv_path)
    values["export:png"] = [str(folder / f"{key}.png") for key in plots]
    values["state"] = dump_view_state(analysis, answer_tokens, explained)
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
    progress(0.9, desc="Drawing figures…")
    # The clickable answer shows one token per generated id: only the tokenizer can split it so.
    answer_tokens = display_tokens(loaded, analysis.generated_ids)
    return render(analysis, describe_target(target, target_k), hide_special, all_targets, answer_tokens,
                  explained_answer_token(analysis, parsed_target), score, pad_token)


def head_figure(state: str | None, name: str, layer: float | None) -> Any:
    """The per-head heatmap of one layer, redrawn from the stored result (the model is not run)."""
    data = load_view_state(state)
    per_head = data.get("per_head", {}).get(name)
    if not per_head:
        return None
    layer = min(max(int(layer or 0), 0), len(per_head) - 1)
    return head_heatmap_figure(data["tokens"], per_head, layer, data["target"], method_label(name),
                               data.get("foil"))


def head_views(state: str | None) -> list[Any]:
    """After each analysis: size every per-head slider to the model's layers and draw the last layer."""
    data = load_view_state(state)
    updates: list[Any] = []
    for name in LAYERED_METHODS:
        per_head = data.get("per_head", {}).get(name)
        if not per_head:
            updates += [gr.update(visible=False), gr.update(value=None, visible=False)]
            continue
        last = len(per_head) - 1
        updates += [
            gr.update(minimum=0, maximum=max(last, 1), value=last, visible=True, interactive=last > 0),
            gr.update(value=head_figure(state, name, last), visible=True),
        ]
    return updates


def from_query(query: dict[str, str], choices: Sequence[str]) -> list[Any]:
    """Deep link → input values (setting inputs' order); a missing or invalid parameter leaves its
    input as it is. On a Space only the listed models can be linked to."""
    settings = deep_link_settings(query, choices, any_model=not is_hosted())
    return [settings[key] if key in settings else gr.update() for key in DEEP_LINK_KEYS]


def target_fields(target: str) -> list[Any]:
    return [gr.update(visible=target == "generated"), gr.update(visible=target == "text")]


def step_fields(auto: Any) -> list[Any]:
    """IG steps is a fixed count unless Auto steps is ticked; then the target error is what counts."""
    return [gr.update(interactive=not auto), gr.update(visible=bool(auto))]


def fill_preset(name: str, fields: Sequence[str] = PRESET_FIELDS) -> list[Any]:
    """`attribution.PRESETS[name]` as values for the settings controls named in `fields` (nothing runs);
    a control the preset leaves alone (IG steps under auto) is not updated."""
    values = preset_settings(name)
    return [values[field] if field in values else gr.update() for field in fields]


SHARE_JS = """
(prompt, model, methods, maxNew, steps, baseline, aggregation, target, k, text, contrast, answerMap, trust,
 hideSpecial, chat, system, auto, targetError, score, holdContext) => {
  const d = DEFAULTS_JSON;
  const params = new URLSearchParams();
  params.set("prompt", prompt ?? "");
  const put = (key, value, fallback) => { if (String(value) !== String(fallback)) params.set(key, String(value)); };
  put("model", model ?? "", d.model);
  put("methods", (methods ?? []).join(","), d.methods.join(","));
  put("max_new_tokens", maxNew, d.max_new_tokens);
  put("steps", steps, d.ig_steps);
  put("baseline", baseline, d.ig_baseline);
  put("aggregation", aggregation, d.aggregation);
  put("target", target, d.target);
  if (target === "generated") params.set("k", String(k));
  if (target === "text") params.set("text", text ?? "");
  put("contrast", contrast ?? "", d.contrast_text);
  const flag = (key, value, fallback) => { if (Boolean(value) !== Boolean(fallback)) params.set(key, value ? "1" : "0"); };
  flag("answer_map", answerMap, d.all_targets);
  flag("trust", trust, d.trust);
  flag("hide_special", hideSpecial, d.hide_special);
  // Another model has its own chat default: say chat then, so the link opens as shared.
  if ((model ?? "") !== d.model || Boolean(chat) !== Boolean(d.chat)) params.set("chat", chat ? "1" : "0");
  put("system", system ?? "", d.system);
  flag("auto", auto, d.ig_auto);
  if (auto) put("target_error", targetError, d.target_error);
  put("score", score, d.score);
  flag("hold_context", holdContext, d.hold_context);
  const url = window.location.origin + window.location.pathname + "?" + params.toString();
  if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(url).catch(() => {});
  return url;
}
"""
# A deep link that names a prompt runs the analysis once its values are filled in.
AUTORUN_JS = """
() => {
  if (new URLSearchParams(window.location.search).has("prompt")) {
    setTimeout(() => document.querySelector("#analyze-button")?.click(), 300);
  }
}
"""


# --- layout ----------------------------------------------------------------------------------


def build_demo(default_model: str | None = None, *, cache_examples: bool = True) -> gr.Blocks:
    default_model = default_model or attribution.default_model_name()
    choices = model_choices(default_model)
    outputs: dict[str, Any] = {}
    head_controls: list[Any] = []

    # Gradio's cached copies of the downloads age out as our originals do.
    export_age = (exports.EXPORT_TTL_S, exports.EXPORT_TTL_S)
    with gr.Blocks(title="Token attribution", delete_cache=export_age) as demo:
        gr.Markdown(INTRO)
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                prompt = gr.Textbox(value=SEED_PROMPT, label="Prompt", lines=2, max_lines=8,
                                    placeholder="Type a question or sentence…", elem_id="prompt")
                with gr.Row(equal_height=True):
                    chat = gr.Checkbox(chat_default(default_model), label="Chat template", scale=1, min_width=200,
                                       info="the prompt as the user message of the model's chat template "
                                            "(ticked for chat models)", elem_id="chat")
                    system = gr.Textbox(DEFAULTS["system"], label="System prompt", lines=1, max_lines=4, scale=3,
                                        info="with the chat template; empty: the template's default",
                                        placeholder="You are a helpful assistant.", elem_id="system")
            with gr.Column(scale=2, min_width=280):
                model = gr.Dropdown(
                    choices, value=default_model, label="Model", allow_custom_value=not is_hosted(),
                    info=("models allowed on this Space" if is_hosted()
                          else "or type a hub id, a local model folder or a .gguf file"),
                    elem_id="model",
                )
                analyze_button = gr.Button("Analyze", variant="primary", elem_id="analyze-button")
        examples_slot = gr.Column()  # filled at the end, once the outputs the examples fill exist
        with gr.Accordion("Settings", open=False, elem_id="settings"):
            with gr.Row(equal_height=True):
                gr.Markdown("**Presets** fill the settings below (methods and IG's); nothing runs until you press "
                            "**Analyze**, and anything you change afterwards wins.", elem_classes=["legend-note"])
                seed_button = gr.Button("Seed settings", size="md", elem_id="preset-seed")
                recommended_button = gr.Button("Recommended (trustworthy on real models)", size="md",
                                               variant="secondary", elem_id="preset-recommended")
            with gr.Row():
                methods = gr.CheckboxGroup(
                    [(method_label(name), name) for name in attribution.METHODS],
                    value=DEFAULTS["methods"], label="Methods",
                )
                max_new_tokens = gr.Slider(0, MAX_NEW_TOKENS_LIMIT, value=DEFAULTS["max_new_tokens"], step=1,
                                           label="Max new tokens", info="greedy tokens generated for the answer")
            with gr.Row(equal_height=True):
                ig_steps = gr.Slider(1, MAX_STEPS, value=DEFAULTS["ig_steps"], step=1, label="IG steps", scale=2,
                                     info="more steps: a more exact integral, slower", elem_id="ig-steps")
                ig_auto = gr.Checkbox(DEFAULTS["ig_auto"], label="Auto steps", scale=1, min_width=160,
                                      info="refine until the completeness error is under the target",
                                      elem_id="ig-auto")
                target_error = gr.Number(DEFAULTS["target_error"], label="Target error (auto)", minimum=0,
                                         maximum=1, step=0.001, scale=1, min_width=160, visible=DEFAULTS["ig_auto"],
                                         info="a fraction: 0.01 = 1%", elem_id="target-error")
            with gr.Row():
                ig_baseline = gr.Radio(
                    [(attribution.BASELINE_LABELS.get(key, key), key) for key in attribution.BASELINES],
                    value=DEFAULTS["ig_baseline"], label="IG baseline",
                    info="pad = the EOS token's embedding (the seed sets pad = eos); the IG notes name the "
                         "model's token", elem_id="ig-baseline",
                )
                aggregation = gr.Radio(
                    [(description, key) for key, description in attribution.AGGREGATIONS.items()],
                    value=DEFAULTS["aggregation"], label="IG aggregation",
                )
            with gr.Row():
                score = gr.Radio(
                    [(description, key) for key, description in attribution.SCORES.items()],
                    value=DEFAULTS["score"], label="Score explained (gradient, input × gradient, IG)",
                    info="occlusion always uses the log-probability and faithfulness the probability",
                    elem_id="score")
                hold_context = gr.Checkbox(
                    DEFAULTS["hold_context"], label="Hold context (IG)",
                    info="the baseline keeps the first position, special and chat-template tokens at their real "
                         "embeddings (they get exactly 0). Generated tokens before the explained one are not "
                         "held: holding them made IG less complete on SmolLM2 (32% → 68% error)",
                    elem_id="hold-context")
            with gr.Row():
                target = gr.Radio(TARGET_CHOICES, value=DEFAULTS["target"], label="Explain")
                target_k = gr.Number(DEFAULTS["target_k"], precision=0, minimum=1, label="Generated token k",
                                     info="1 = the first generated token", visible=False)
                target_text = gr.Textbox(DEFAULTS["target_text"], label="Custom target text",
                                         placeholder="' Riga' (mind the leading space)", visible=False)
            with gr.Row():
                contrast_choice = gr.Dropdown(
                    [("(none)", "")], value="", label="Contrast: why the explained token rather than…",
                    info="the model's likeliest alternatives at that position, with their probabilities "
                         "(filled in after each analysis)", elem_id="contrast-choice")
                contrast_text = gr.Textbox(
                    DEFAULTS["contrast_text"], label="…or type the alternative",
                    info="its first token is the contrast; empty: no contrast",
                    placeholder="' Tallinn' (mind the leading space)", elem_id="contrast-text")
            with gr.Row():
                all_targets = gr.Checkbox(
                    DEFAULTS["all_targets"], label="Explain every generated token (answer map)",
                    info="the Answer map tab; on the demo model it adds well under a second, on large models "
                         "it costs about one attribution per method for the whole answer",
                    elem_id="all-targets")
                trust = gr.Checkbox(
                    DEFAULTS["trust"], label="Trust panel",
                    info="faithfulness, agreement and IG completeness under Compare; a few batched forward "
                         "passes, plus one IG rerun at twice the steps when IG has not converged",
                    elem_id="trust")
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
            with gr.Column(scale=3, min_width=300):  # its own column: a Row's form would squeeze it
                hide_special = gr.Checkbox(
                    DEFAULTS["hide_special"],
                    label="Leave held context (first position, special, template tokens) out of colour scaling",
                    info="the first token often soaks up attention (an attention sink): grey, out of the scaling, "
                         "the top 5 and the comparison; scores unchanged. Off: the seed's view",
                    elem_id="hide-special")
        setting_inputs = [prompt, model, methods, max_new_tokens, ig_steps, ig_baseline, aggregation, target,
                          target_k, target_text, contrast_text, all_targets, trust, hide_special, chat, system,
                          ig_auto, target_error, score, hold_context]
        preset_controls = [{"methods": methods, "ig_steps": ig_steps, "ig_auto": ig_auto, "target_error": target_error,
                            "ig_baseline": ig_baseline, "aggregation": aggregation, "score": score,
                            "hold_context": hold_context, "hide_special": hide_special}[field]
                           for field in PRESET_FIELDS]
        inputs = [*setting_inputs, contrast_pick]

        with gr.Tabs(elem_id="method-tabs"):
            for name in attribution.METHODS:
                label = method_label(name)
                with gr.Tab(label, id=name, elem_id=f"tab-{name}"):
                    outputs[f"{name}:notes"] = gr.Markdown(
                        f"**{label}.** {method_help(name)} Press **Analyze** to see it.",
                        label=f"{label}: notes", elem_classes=["legend-note"])
                    if name == "integrated_gradients":
                        recommend_button = gr.Button(
                            f"Use the recommended IG settings ({RECOMMENDED_IG_TEXT}) and analyze again",
                            size="md", visible=False, elem_id="recommended-ig")
                    outputs[f"{name}:highlight"] = gr.HighlightedText(
                        label=f"{label}: prompt tokens coloured by score", show_legend=False,
                        show_inline_category=False, combine_adjacent=False, elem_id=f"highlight-{name}",
                        elem_classes=["token-scores"])
                    with gr.Row(equal_height=False):
                        outputs[f"{name}:bars"] = gr.Plot(label=f"{label}: bar chart", show_label=False,
                                                          scale=3, elem_id=f"bars-{name}")
                        outputs[f"{name}:top"] = gr.Dataframe(
                            headers=TOP_HEADERS, label="Top 5 tokens", interactive=False,
                            column_widths=["14%", "46%", "20%", "20%"], scale=2, min_width=320,
                            elem_id=f"top-{name}")
                    if name in LAYERED_METHODS:
                        outputs[f"{name}:layers"] = gr.Plot(label=f"{label} per layer (layers × tokens)",
                                                            show_label=False, elem_id=f"layers-{name}")
                        layer = gr.Slider(0, 1, value=0, step=1, label="Layer for the per-head view",
                                          visible=False, elem_id=f"layer-{name}")
                        heads = gr.Plot(label=f"{label} per head of the chosen layer", show_label=False,
                                        visible=False, elem_id=f"heads-{name}")
                        head_controls.append((name, layer, heads))
            with gr.Tab("Answer map", id="answer_map", elem_id="tab-answer_map"):
                outputs["answer_map:notes"] = gr.Markdown(f"{ANSWER_MAP_HELP} Press **Analyze** to see it.",
                                                          label="Answer map: notes", elem_classes=["legend-note"])
                with gr.Row():
                    answer_map_method = gr.Dropdown([], value=None, label="Method", interactive=False,
                                                    elem_id="answer-map-method")
                    answer_map_token = gr.Dropdown([], value=None, label="Generated token", interactive=False,
                                                   elem_id="answer-map-token")
                outputs["answer_map:highlight"] = gr.HighlightedText(
                    label=answer_map_label(None, 1), show_legend=False, show_inline_category=False,
                    combine_adjacent=False, elem_id="answer-map-highlight", elem_classes=["token-scores"])
                outputs["answer_map:heatmap"] = gr.Plot(label="Answer map (generated tokens × sources)",
                                                        show_label=False, elem_id="answer-map-heatmap")
            with gr.Tab("Compare", id="compare", elem_id="tab-compare"):
                outputs["compare:verdict"] = gr.Markdown(
                    "**Verdict:** press **Analyze** to see how far the scores can be trusted.",
                    label="Trust verdict", elem_id="verdict")
                gr.Markdown(COMPARE_HELP)
                outputs["compare:heatmap"] = gr.Plot(label="Combined normalised heatmap (methods × tokens)",
                                                     show_label=False, elem_id="compare-heatmap")
                outputs["compare:bars"] = gr.Plot(label="Normalised scores per method", show_label=False,
                                                  elem_id="compare-bars")
                gr.Markdown("### How far to trust these scores")
                gr.Markdown(TRUST_HELP)
                outputs["compare:faithfulness"] = gr.Dataframe(
                    headers=FAITHFULNESS_HEADERS, label="Faithfulness (AOPC)", interactive=False,
                    elem_id="faithfulness")
                gr.Markdown(AGREEMENT_HELP)
                with gr.Row(equal_height=False):
                    outputs["compare:agreement"] = gr.Plot(label="Agreement (Spearman ρ, methods × methods)",
                                                           show_label=False, scale=1, elem_id="agreement-heatmap")
                    outputs["compare:overlap"] = gr.Dataframe(
                        headers=AGREEMENT_HEADERS, label="Pairs of methods", interactive=False,
                        column_widths=["56%", "20%", "24%"], scale=1, min_width=360, max_height=560,
                        elem_id="agreement-table")
                outputs["compare:completeness"] = gr.Markdown(label="Integrated Gradients completeness",
                                                              elem_id="completeness")

        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=240):
                gr.Markdown("**Downloads**")
                outputs["export:json"] = gr.DownloadButton("Full result (JSON)", size="md",
                                                           elem_id="download-json")
                outputs["export:csv"] = gr.DownloadButton("Scores table (CSV)", size="md",
                                                          elem_id="download-csv")
            outputs["export:png"] = gr.File(label="Figures (PNG)", file_count="multiple", height=150,
                                            interactive=False, scale=2, elem_id="download-png")
            with gr.Column(scale=2, min_width=320):
                gr.Markdown("**Share**")
                share_button = gr.Button("Copy a link to this prompt and settings", size="md",
                                         elem_id="share-button")
                share_url = gr.Textbox(show_label=False, buttons=["copy"], interactive=False, max_lines=1,
                                       placeholder="the link appears here", elem_id="share-url")
        outputs["state"] = gr.State(None, time_to_live=exports.EXPORT_TTL_S)

        output_components = [outputs[key] for key in OUTPUT_KEYS]
        # Progress (and an error) shows once, on the answer, instead of on every output.
        progress_on = [answer_tokens]
        # preprocess=False: the inputs are plain JSON values and `analyze` (with the library) validates
        # every one, so an API caller's bad value (text in a number, NaN, out of range) gets a message
        # naming the setting instead of gradio's "the upstream Gradio app has raised an exception".
        analyze_button.click(analyze, inputs, output_components, api_name="analyze", preprocess=False,
                             concurrency_id="model", concurrency_limit=1, show_progress_on=progress_on)
        prompt.submit(analyze, inputs, output_components, api_visibility="private", preprocess=False,
                      concurrency_id="model", concurrency_limit=1, show_progress_on=progress_on)
        target.change(target_fields, target, [target_k, target_text], queue=False,
                      api_visibility="private")
        # Only the user's pick: a deep link sets the model and its own chat setting together.
        model.input(chat_default, model, chat, queue=False, api_visibility="private")

        head_outputs = [component for _name, layer, heads in head_controls for component in (layer, heads)]
        if head_outputs:
            outputs["state"].change(head_views, outputs["state"], head_outputs, api_visibility="private",
                                    concurrency_limit=None)
        for name, layer, heads in head_controls:
            layer.input(lambda state, value, _name=name: head_figure(state, _name, value),
                        [outputs["state"], layer], heads, api_visibility="private",
                        concurrency_limit=None, trigger_mode="always_last")

        # Views redrawn from the stored result (the model is not run again).
        state = outputs["state"]
        answer_map_outputs = [outputs["answer_map:heatmap"], outputs["answer_map:highlight"]]
        scaled_inputs = [state, hide_special, answer_map_method, answer_map_token]
        scaled_outputs = [outputs[key] for key in SCALED_KEYS]
        state.change(after_analysis, [state, contrast_pick],
                     [answer_map_method, answer_map_token, contrast_choice, recommend_button,
                      outputs["answer_map:highlight"], answer_tokens], api_visibility="private",
                     concurrency_limit=None, show_progress="hidden")
        answer_tokens.select(explain_answer_token, state, [target, target_k], queue=False,
                             api_visibility="private").then(
            analyze, inputs, output_components, api_visibility="private", preprocess=False,
            concurrency_id="model", concurrency_limit=1, show_progress_on=progress_on)
        for picker in (answer_map_method, answer_map_token):
            picker.input(answer_map_views, [state, answer_map_method, answer_map_token, hide_special],
                         answer_map_outputs, api_visibility="private", concurrency_limit=None,
                         trigger_mode="always_last", show_progress="minimal")
        hide_special.input(scaled_views, scaled_inputs, scaled_outputs, api_visibility="private",
                           concurrency_limit=None, trigger_mode="always_last", show_progress="minimal")
        contrast_choice.input(pick_contrast, [contrast_choice, state], [contrast_text, contrast_pick],
                              queue=False, api_visibility="private")
        contrast_text.input(lambda: ["", None], None, [contrast_choice, contrast_pick], queue=False,
                            api_visibility="private")
        ig_auto.change(step_fields, ig_auto, [ig_steps, target_error], queue=False, api_visibility="private")
        for name, button in (("seed", seed_button), ("recommended", recommended_button)):
            # Filled, not run; the colour scaling is display only, so the current views follow it at once.
            button.click(lambda _name=name: fill_preset(_name), None, preset_controls, queue=False,
                         api_visibility="private").then(
                scaled_views, scaled_inputs, scaled_outputs, api_visibility="private", concurrency_limit=None,
                show_progress="minimal")
        # The IG tab's offer: the recommended IG settings (the methods as they are), then run.
        ig_fields = [field for field in PRESET_FIELDS if field != "methods"]
        recommend_button.click(lambda: fill_preset("recommended", ig_fields), None,
                               [preset_controls[PRESET_FIELDS.index(field)] for field in ig_fields], queue=False,
                               api_visibility="private").then(
            analyze, inputs, output_components, api_visibility="private", preprocess=False,
            concurrency_id="model", concurrency_limit=1, show_progress_on=progress_on)

        page_defaults = {**DEFAULTS, "model": default_model, "chat": chat_default(default_model)}
        share_button.click(None, setting_inputs, share_url, api_visibility="private",
                           js=SHARE_JS.replace("DEFAULTS_JSON", json.dumps(page_defaults)))

        choice_values = [value for _label, value in choices]

        def load_query(request: gr.Request) -> list[Any]:
            return from_query(dict(request.query_params), choice_values)

        demo.load(load_query, None, setting_inputs, queue=False, api_visibility="private").then(
            None, js=AUTORUN_JS, api_visibility="private")

        with examples_slot:
            gr.Examples(
                [[{**page_defaults, "prompt": text}[key] for key in SETTING_KEYS] for text in EXAMPLE_PROMPTS],
                setting_inputs, output_components, fn=analyze, cache_examples=cache_examples,
                cache_mode="lazy" if cache_examples else None, visible_columns=[0], api_visibility="private",
                label="Examples (the default settings)",
            )
    demo.queue(default_concurrency_limit=1, max_size=64)
    return demo


# --- launch ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve the token attribution app.")
    parser.add_argument("--share", action="store_true",
                        help="also create a public *.gradio.live link (or set GRADIO_SHARE=1)")
    parser.add_argument("--host", default=None,
                        help="address to bind (default: $GRADIO_SERVER_NAME, 0.0.0.0 on a Space, else 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None,
                        help="port (default: $GRADIO_SERVER_PORT, else 7860)")
    parser.add_argument("--model", default=None,
                        help="default model: hub id or folder (default: $MODEL_ID, else the demo model)")
    return parser.parse_args(argv)


def server_settings(arguments: argparse.Namespace) -> dict[str, Any]:
    """Where to serve: flags first, then gradio's environment variables, then 127.0.0.1:7860
    (0.0.0.0 on a Space, as Spaces expect); GRADIO_SHARE=1 also asks for a public link."""
    share = arguments.share or os.environ.get("GRADIO_SHARE", "").strip().lower() in {"1", "true", "yes", "on"}
    host = arguments.host or os.environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if is_hosted() else "127.0.0.1")
    port = arguments.port or int(os.environ.get("GRADIO_SERVER_PORT") or 7860)
    return {"server_name": host, "server_port": port, "share": share}


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parse_args(argv)
    default_model = arguments.model or attribution.default_model_name()
    # Lazily cached examples belong to this process's model: a retrained model must not show old ones.
    os.environ.setdefault("GRADIO_EXAMPLES_CACHE", tempfile.mkdtemp(prefix="attribution-examples-"))
    try:
        attribution.load_model(default_model)  # load once up front (on ZeroGPU, before any GPU call)
    except ValueError as error:
        print(f"warning: the default model did not load ({error}); pick another model in the page")
    demo = build_demo(default_model)
    demo.launch(**server_settings(arguments), **launch_options())


if __name__ == "__main__":
    main()
