"""The Gradio app (and Hugging Face Space): which prompt tokens drove the model's next token?

UI only: constants, the cached model, handlers, the Blocks layout and launch. Every number comes from
`attribution` (analysis) and `attribution.plotting` (figures, highlighted text, explanations).

    python app.py                      # http://127.0.0.1:7860 on the shipped demo model, offline
    python app.py --share              # plus a public *.gradio.live link (or GRADIO_SHARE=1)
    python app.py --host 0.0.0.0 --port 8080 --model meta-llama/Llama-3.2-1B
"""

from __future__ import annotations

import argparse
import atexit
import base64
import dataclasses
import json
import os
import shutil
import tempfile
import time
import typing
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
from attribution import plotting
from attribution.targets import MAX_NEW_TOKENS_LIMIT, MAX_STEPS, validate_prompt

# --- constants -------------------------------------------------------------------------------

SEED_PROMPT = "What is the Capital City of Latvia?"
EXAMPLE_PROMPTS = (
    SEED_PROMPT,
    "The capital of France is",
    "Which city is the capital of Germany?",
    "The Eiffel Tower is located in the city of",
)
HUB_MODEL = "meta-llama/Llama-3.2-1B"
DEFAULTS = {
    # Every registered method, so every tab has something to show. This also keeps the cached examples
    # free of empty outputs: gradio's example cache writes None as '' and cannot read it back.
    "methods": list(attribution.METHODS),
    "max_new_tokens": 20,
    "ig_steps": 50,
    "ig_baseline": "zero",
    "aggregation": "l2",
    "target": "next",
    "target_k": 1,
    "target_text": "",
}
TARGET_CHOICES = [
    ("the predicted next token", "next"),
    ("generated token k", "generated"),
    ("custom text", "text"),
]
METHOD_HELP = {
    "gradient": (
        "How sensitive the explained token's logit is to each input token: the L2 norm of the "
        "gradient with respect to that token's embedding (the seed's method A). Fast, but noisy."
    ),
    "attention": (
        "How much the last position attends to each input token, averaged over every head and layer "
        "(the seed's method B). It shows where information is read from, not how it is used; the first "
        "token often soaks up attention that means little."
    ),
    "integrated_gradients": (
        "Gradients averaged along a straight path from a baseline (an input with the information "
        "removed; see Settings) to the real prompt, times the difference (the seed's method C, with "
        "Captum's rule). Slower, but its signed scores account for the whole change in the logit: see "
        "the check below."
    ),
}
COMPARE_HELP = (
    "Each method's scores are min–max normalised as in the seed notebook: 1 is that method's most "
    "important token and 0 its least, so compare which tokens each method ranks high rather than raw "
    "values. Methods that were not run are left out."
)
INTRO = (
    "# Token attribution\n"
    "Which words in a prompt made the language model predict its next token? Type a prompt, press "
    "**Analyze**, and compare attribution methods tab by tab: the seed notebook's **gradients**, "
    "**attention weights** and **Integrated Gradients**, and more, side by side under **Compare**. "
    "Every figure, the JSON and the CSV can be downloaded below the tabs."
)
# Export files live in per-request folders under one app folder; folders older than this are swept.
EXPORT_TTL_S = 3600
GPU_DURATION_S = 120

CSS = """
.gradio-container { max-width: 1280px !important; margin: 0 auto !important; }
#analyze-button { min-height: 3rem; }
.legend-note p { margin: 0.2rem 0; }
"""


def launch_options() -> dict[str, Any]:
    """What `launch()` needs besides the address (in gradio 6, css and theme belong to launch)."""
    return {"css": CSS, "theme": gr.themes.Soft(primary_hue="orange", secondary_hue="blue")}


def is_hosted() -> bool:
    return bool(os.environ.get("SPACE_ID"))


def model_label(name: str) -> str:
    if not isinstance(name, str):
        return repr(name)
    if Path(name).expanduser().resolve() == attribution.DEMO_MODEL_PATH.resolve():
        return "demo model (assets/demo-model, offline)"
    return name


def model_choices(default_model: str) -> list[tuple[str, str]]:
    """On a Space: the default plus ALLOWED_MODELS (nothing else loads there); locally also the
    demo model and Llama-3.2-1B, and any hub id or folder can be typed in."""
    if is_hosted():
        allowed = [item.strip() for item in os.environ.get("ALLOWED_MODELS", "").split(",") if item.strip()]
        names = [default_model, *allowed]
    else:
        names = [default_model, str(attribution.DEMO_MODEL_PATH), HUB_MODEL]
    unique = list(dict.fromkeys(names))
    return [(model_label(name), name) for name in unique]


def _returns_layers(name: str) -> bool:
    """Whether a registered method's result type carries per-layer and per-head attention."""
    try:
        result_type = typing.get_type_hints(attribution.METHODS[name]).get("return")
    except (NameError, TypeError):
        return False
    if not dataclasses.is_dataclass(result_type):
        return False
    field_names = {field.name for field in dataclasses.fields(result_type)}
    return {"per_layer", "per_head"} <= field_names


#: Methods whose tab also shows the layers × tokens heatmap and a per-head view.
LAYERED_METHODS = tuple(name for name in attribution.METHODS if _returns_layers(name))
METHOD_PARTS = ("notes", "highlight", "bars", "top")

#: The outputs of the `analyze` event (and of `/analyze` in the API), in this order.
OUTPUT_KEYS = (
    ["answer", "explained"]
    + [
        f"{name}:{part}"
        for name in attribution.METHODS
        for part in METHOD_PARTS + (("layers",) if name in LAYERED_METHODS else ())
    ]
    + ["compare:heatmap", "compare:bars", "export:json", "export:csv", "export:png", "state"]
)


# --- ZeroGPU ---------------------------------------------------------------------------------


def gpu(function: Callable) -> Callable:
    """`@spaces.GPU` on a ZeroGPU Space (the `spaces` package imported there); a no-op elsewhere."""
    if spaces is None:
        return function
    return spaces.GPU(duration=GPU_DURATION_S)(function)


@gpu
def compute(model_name: str, prompt: str, settings: dict[str, Any],
            stage: Callable[[float, str], None] | None = None) -> attribution.Analysis:
    """Generation and every attribution method: the only GPU work. Returns CPU numpy data, which
    pickles back from the ZeroGPU worker process."""
    loaded = attribution.load_model(model_name)
    return attribution.analyze(loaded, prompt, progress=stage, **settings)


# --- exports ---------------------------------------------------------------------------------

_export_root: Path | None = None


def new_export_dir() -> Path:
    """A fresh folder for one request's files (fixed names inside; no user input reaches a path).

    Gradio copies returned files into its own cache (swept by `delete_cache`); our originals are
    removed here once they are older than EXPORT_TTL_S, and all of them when the process exits.
    """
    global _export_root
    if _export_root is None or not _export_root.exists():
        _export_root = Path(tempfile.mkdtemp(prefix="attribution-exports-"))
        atexit.register(shutil.rmtree, _export_root, True)
    cutoff = time.time() - EXPORT_TTL_S
    for child in _export_root.iterdir():
        if child.stat().st_mtime < cutoff:
            shutil.rmtree(child, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=_export_root))


def save_png(figure: Any, path: Path) -> PlotData:
    """Write the figure as a PNG download and hand the same bytes to gr.Plot (rendered once, not twice)."""
    figure.savefig(path, format="png", dpi=100)
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return PlotData(type="matplotlib", plot=f"data:image/png;base64,{encoded}")


# --- handlers --------------------------------------------------------------------------------


def _count(value: Any) -> Any:
    """A whole number as UI sliders send it (50.0 → 50), anything else unchanged, for messages."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def parse_target(target: str, target_k: Any, target_text: str | None) -> None | int | str:
    """The library's `target` from the UI's three fields; the library validates the value itself."""
    if target == "next":
        return None
    if target == "generated":
        if isinstance(target_k, float) and target_k.is_integer():
            return int(target_k)
        return target_k
    if target == "text":
        return target_text if target_text is not None else ""
    choices = ", ".join(value for _label, value in TARGET_CHOICES)
    raise ValueError(f"unknown target {target!r}; valid choices: {choices}")


def stage_text(description: str, ig_steps: Any) -> str:
    """The engine's stage ("computing integrated_gradients") as a progress line a reader follows."""
    if description.startswith("computing "):
        name = description.removeprefix("computing ")
        steps = f" ({_count(ig_steps)} steps)" if name == "integrated_gradients" else ""
        return f"Computing {plotting.method_label(name)}{steps}…"
    return description[:1].upper() + description[1:] + "…"


def describe_target(target: str, target_k: Any) -> str:
    if target == "generated":
        return f"generated token {parse_target(target, target_k, None)}"
    if target == "text":
        return "the custom target's first token"
    return "the predicted next token"


def method_help(name: str) -> str:
    fallback = f"Scores from the {plotting.method_label(name)} method."
    return METHOD_HELP.get(name) or attribution.METHOD_DESCRIPTIONS.get(name, fallback)


def method_notes(name: str, result: attribution.MethodScores) -> str:
    label = plotting.method_label(name)
    parts = [f"**{label}.** {method_help(name)}",
             plotting.highlight_legend(result)]
    if hasattr(result, "convergence_delta"):
        parts.append(plotting.convergence_summary(result))
    return "\n\n".join(parts)


def view_state(analysis: attribution.Analysis) -> str:
    """What the per-head view redraws from, as JSON text (survives example caching, which stores text)."""
    per_head = {
        name: [[[round(float(value), 6) for value in head] for head in layer] for layer in result.per_head]
        for name, result in analysis.methods.items()
        if name in LAYERED_METHODS and getattr(result, "per_head", None) is not None
    }
    return json.dumps({"tokens": list(analysis.input_tokens), "target": analysis.target.text,
                       "per_head": per_head})


def render(analysis: attribution.Analysis, target_description: str) -> list[Any]:
    """Every output of the analyze event, in OUTPUT_KEYS order."""
    folder = new_export_dir()
    plots = {key: save_png(figure, folder / f"{key}.png")
             for key, figure in plotting.analysis_figures(analysis).items()}
    values: dict[str, Any] = {
        "answer": analysis.generated_text,
        "explained": f"{plotting.quoted_token(analysis.target.text)}: {target_description} "
                     f"(token id {analysis.target.id})",
    }
    for name in attribution.METHODS:
        label = plotting.method_label(name)
        result = analysis.methods.get(name)
        if result is None:
            values[f"{name}:notes"] = (f"**{label}** was not computed: tick it under "
                                       "*Settings → Methods* and analyze again.")
            values[f"{name}:highlight"] = None
            values[f"{name}:bars"] = None
            values[f"{name}:top"] = pd.DataFrame([], columns=plotting.TOP_HEADERS)
        else:
            values[f"{name}:notes"] = method_notes(name, result)
            values[f"{name}:highlight"] = plotting.highlight_values(analysis.input_tokens, result.scores)
            values[f"{name}:bars"] = plots[f"{name}_bars"]
            values[f"{name}:top"] = pd.DataFrame(plotting.top_rows(analysis, name),
                                                 columns=plotting.TOP_HEADERS)
        if name in LAYERED_METHODS:
            values[f"{name}:layers"] = plots.get(f"{name}_layers")
    values["compare:heatmap"] = plots["comparison_heatmap"]
    values["compare:bars"] = plots["comparison_bars"]
    json_path = folder / "attribution.json"
    json_path.write_text(json.dumps(analysis.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    csv_path = folder / "attribution.csv"
    csv_path.write_text(analysis.to_csv(), encoding="utf-8")
    values["export:json"] = str(json_path)
    values["export:csv"] = str(csv_path)
    values["export:png"] = [str(folder / f"{key}.png") for key in plots]
    values["state"] = view_state(analysis)
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
    progress: gr.Progress = gr.Progress(),
) -> list[Any]:
    """Explain which prompt tokens drove the model's next token, with every attribution method.

    Returns the generated answer, the explained token, then per method its notes, highlighted tokens
    (scores scaled into [-1, 1]), bar chart and top-5 table (attention also its layers × tokens
    heatmap), the comparison heatmap and bars, and the JSON, CSV and PNG exports.
    """
    if model is None or (isinstance(model, str) and not model.strip()):
        model = attribution.default_model_name()
    if methods is None:
        methods = DEFAULTS["methods"]
    try:
        validate_prompt(prompt)  # fail fast, before a large model is loaded
        parsed_target = parse_target(target, target_k, target_text)
        progress(0.05, desc=f"Loading {model_label(model)}…")
        attribution.load_model(model)  # cached after the first call; a ValueError names the problem
        progress(0.15, desc=f"Generating up to {_count(max_new_tokens)} tokens and computing the "
                            "attributions…")

        def stage(fraction: float, description: str) -> None:
            progress(0.15 + 0.75 * fraction, desc=stage_text(description, ig_steps))

        analysis = compute(model, prompt, {
            "methods": methods,
            "max_new_tokens": max_new_tokens,
            "n_steps": ig_steps,
            "baseline": ig_baseline,
            "aggregation": aggregation,
            "target": parsed_target,
        }, stage if spaces is None else None)  # the ZeroGPU worker is another process: stages only here
    except ValueError as error:
        raise gr.Error(str(error)) from None
    progress(0.9, desc="Drawing figures…")
    return render(analysis, describe_target(target, target_k))


def head_figure(state: str | None, name: str, layer: float | None) -> Any:
    """The per-head heatmap of one layer, redrawn from the stored result (the model is not run)."""
    data = json.loads(state) if state else {}
    per_head = data.get("per_head", {}).get(name)
    if not per_head:
        return None
    layer = min(max(int(layer or 0), 0), len(per_head) - 1)
    return plotting.head_heatmap_figure(data["tokens"], per_head, layer, data["target"],
                                        plotting.method_label(name))


def head_views(state: str | None) -> list[Any]:
    """After each analysis: size every per-head slider to the model's layers and draw the last layer."""
    data = json.loads(state) if state else {}
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
    """Deep link → input values; a missing or invalid parameter leaves its input as it is.

    Parameters: prompt, model, methods (comma-separated), max_new_tokens, steps, baseline,
    aggregation, target (next | generated | text), k, text. Values only ever fill inputs.
    """
    keep = gr.update()

    def number(key: str, low: int, high: int) -> Any:
        try:
            value = int(query[key])
        except (KeyError, ValueError):
            return keep
        return value if low <= value <= high else keep

    def choice(key: str, valid: Sequence[str]) -> Any:
        return query[key] if query.get(key) in valid else keep

    methods = [item for item in query.get("methods", "").split(",") if item in attribution.METHODS]
    model = query.get("model", "").strip()
    return [
        query["prompt"] if "prompt" in query else keep,
        model if model and (model in choices or not is_hosted()) else keep,
        methods if methods else keep,
        number("max_new_tokens", 0, MAX_NEW_TOKENS_LIMIT),
        number("steps", 1, MAX_STEPS),
        choice("baseline", list(attribution.BASELINES)),
        choice("aggregation", list(attribution.AGGREGATIONS)),
        choice("target", [value for _label, value in TARGET_CHOICES]),
        number("k", 1, MAX_NEW_TOKENS_LIMIT),
        query["text"] if "text" in query else keep,
    ]


def target_fields(target: str) -> list[Any]:
    return [gr.update(visible=target == "generated"), gr.update(visible=target == "text")]


SHARE_JS = """
(prompt, model, methods, maxNew, steps, baseline, aggregation, target, k, text) => {
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

    with gr.Blocks(title="Token attribution", delete_cache=(EXPORT_TTL_S, EXPORT_TTL_S)) as demo:
        gr.Markdown(INTRO)
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                prompt = gr.Textbox(value=SEED_PROMPT, label="Prompt", lines=2, max_lines=8,
                                    placeholder="Type a question or sentence…", elem_id="prompt")
            with gr.Column(scale=2, min_width=280):
                model = gr.Dropdown(
                    choices, value=default_model, label="Model", allow_custom_value=not is_hosted(),
                    info=("models allowed on this Space" if is_hosted()
                          else "or type a hub id or a local model folder"),
                    elem_id="model",
                )
                analyze_button = gr.Button("Analyze", variant="primary", elem_id="analyze-button")
        examples_slot = gr.Column()  # filled at the end, once the outputs the examples fill exist
        with gr.Accordion("Settings", open=False, elem_id="settings"):
            with gr.Row():
                methods = gr.CheckboxGroup(
                    [(plotting.method_label(name), name) for name in attribution.METHODS],
                    value=DEFAULTS["methods"], label="Methods",
                )
                max_new_tokens = gr.Slider(0, MAX_NEW_TOKENS_LIMIT, value=DEFAULTS["max_new_tokens"], step=1,
                                           label="Max new tokens", info="greedy tokens generated for the answer")
                ig_steps = gr.Slider(1, MAX_STEPS, value=DEFAULTS["ig_steps"], step=1, label="IG steps",
                                     info="more steps: a more exact integral, slower")
            with gr.Row():
                ig_baseline = gr.Radio(
                    [(attribution.BASELINE_LABELS.get(key, key), key) for key in attribution.BASELINES],
                    value=DEFAULTS["ig_baseline"], label="IG baseline",
                )
                aggregation = gr.Radio(
                    [(description, key) for key, description in attribution.AGGREGATIONS.items()],
                    value=DEFAULTS["aggregation"], label="IG aggregation",
                )
            with gr.Row():
                target = gr.Radio(TARGET_CHOICES, value=DEFAULTS["target"], label="Explain")
                target_k = gr.Number(DEFAULTS["target_k"], precision=0, minimum=1, label="Generated token k",
                                     info="1 = the first generated token", visible=False)
                target_text = gr.Textbox(DEFAULTS["target_text"], label="Custom target text",
                                         placeholder="' Riga' (mind the leading space)", visible=False)
        inputs = [prompt, model, methods, max_new_tokens, ig_steps, ig_baseline, aggregation, target,
                  target_k, target_text]

        with gr.Row():
            outputs["answer"] = gr.Textbox(label="Generated answer", interactive=False, scale=3,
                                           elem_id="answer")
            outputs["explained"] = gr.Textbox(label="Explained token", interactive=False, scale=2,
                                              elem_id="explained")

        with gr.Tabs(elem_id="method-tabs"):
            for name in attribution.METHODS:
                label = plotting.method_label(name)
                with gr.Tab(label, id=name, elem_id=f"tab-{name}"):
                    outputs[f"{name}:notes"] = gr.Markdown(
                        f"**{label}.** {method_help(name)} Press **Analyze** to see it.",
                        elem_classes=["legend-note"])
                    outputs[f"{name}:highlight"] = gr.HighlightedText(
                        label=f"{label}: prompt tokens coloured by score", show_legend=False,
                        show_inline_category=False, combine_adjacent=False, elem_id=f"highlight-{name}")
                    with gr.Row(equal_height=False):
                        outputs[f"{name}:bars"] = gr.Plot(label=f"{label}: bar chart", show_label=False,
                                                          scale=3, elem_id=f"bars-{name}")
                        outputs[f"{name}:top"] = gr.Dataframe(
                            headers=plotting.TOP_HEADERS, label="Top 5 tokens", interactive=False,
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
            with gr.Tab("Compare", id="compare", elem_id="tab-compare"):
                gr.Markdown(COMPARE_HELP)
                outputs["compare:heatmap"] = gr.Plot(label="Combined normalised heatmap (methods × tokens)",
                                                     show_label=False, elem_id="compare-heatmap")
                outputs["compare:bars"] = gr.Plot(label="Normalised scores per method", show_label=False,
                                                  elem_id="compare-bars")

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
        outputs["state"] = gr.State(None, time_to_live=EXPORT_TTL_S)

        output_components = [outputs[key] for key in OUTPUT_KEYS]
        # Progress (and an error) shows once, on the answer, instead of on every output.
        progress_on = [outputs["answer"]]
        analyze_button.click(analyze, inputs, output_components, api_name="analyze",
                             concurrency_id="model", concurrency_limit=1, show_progress_on=progress_on)
        prompt.submit(analyze, inputs, output_components, api_visibility="private",
                      concurrency_id="model", concurrency_limit=1, show_progress_on=progress_on)
        target.change(target_fields, target, [target_k, target_text], queue=False,
                      api_visibility="private")

        head_outputs = [component for _name, layer, heads in head_controls for component in (layer, heads)]
        if head_outputs:
            outputs["state"].change(head_views, outputs["state"], head_outputs, api_visibility="private",
                                    concurrency_limit=None)
        for name, layer, heads in head_controls:
            layer.input(lambda state, value, _name=name: head_figure(state, _name, value),
                        [outputs["state"], layer], heads, api_visibility="private",
                        concurrency_limit=None, trigger_mode="always_last")

        share_button.click(None, inputs, share_url, api_visibility="private",
                           js=SHARE_JS.replace("DEFAULTS_JSON", json.dumps({**DEFAULTS, "model": default_model})))

        choice_values = [value for _label, value in choices]

        def load_query(request: gr.Request) -> list[Any]:
            return from_query(dict(request.query_params), choice_values)

        demo.load(load_query, None, inputs, queue=False, api_visibility="private").then(
            None, js=AUTORUN_JS, api_visibility="private")

        with examples_slot:
            gr.Examples(
                [[text, default_model, DEFAULTS["methods"], DEFAULTS["max_new_tokens"], DEFAULTS["ig_steps"],
                  DEFAULTS["ig_baseline"], DEFAULTS["aggregation"], DEFAULTS["target"], DEFAULTS["target_k"],
                  DEFAULTS["target_text"]] for text in EXAMPLE_PROMPTS],
                inputs, output_components, fn=analyze, cache_examples=cache_examples,
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
