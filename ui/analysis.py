"""The analyze event (the API's /analyze): the page's inputs become one `attribution.Settings`, the engine
runs, the result is stored for the session (`ui.store`) and turned into every tab's outputs; and the views
read from the stored result after it (the model is not run again).

Results as they come: the event (`analyze_stream`) runs the engine in a worker thread and yields the page's
outputs each time something is done — the answer as it is generated, each method's tab (the cheap methods
first, IG last), the answer map, the trust panel —, each stage stored as the session's result so that its
figures are drawn at once; its last yield is the whole result, exactly what `analyze` returns. Stop cancels the
event: the engine stops within one batch (`attribution.Cancelled`) and frees the model for the next request,
and what was done stays on the page.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import threading
import time
from dataclasses import dataclass
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
from .timing import Clock, costly, seconds_text
from .view import View, answer_view, contrast_options, explained_answer_token, explained_through, result_settings

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
            stage: Callable[[attribution.Progress], None] | None = None,
            partial: Callable[[attribution.Analysis], None] | None = None,
            answer: Callable[[str], None] | None = None,
            cancel: threading.Event | None = None) -> attribution.Analysis:
    """Generation and every attribution method: the only GPU work. Returns CPU numpy data, which
    pickles back from the ZeroGPU worker process (where no callback reaches: there they are None)."""
    loaded = attribution.load_model(model)
    return attribution.analyze(loaded, prompt, settings, progress=stage, partial=partial, answer=answer,
                               cancel=cancel)


def render(analysis: attribution.Analysis, view: View, *, running: bool = False,
           replaces: str | None = None, display_change: bool = False) -> list[Any]:
    """Stores the result for the session and returns every output of the analyze event, in OUTPUT_KEYS
    order (the state: the stored result's id). The figures are cleared, not drawn: the page draws the open
    tab's once the rest is shown, and another tab's when it is opened (`ui.figures`). `running`: the
    analysis so far (results as they come): what is still to come says it is being computed, and the
    downloads wait for the whole result; `replaces`: the stored id of its previous stage (or, with
    `display_change`, of the result shown before "Scores per" changed)."""
    changed = None if display_change else store.changed_view(replaces)
    if changed is not None:  # "Scores per" changed while the analysis ran: its later stages keep the choice
        view = view.grouped(changed.granularity).scaled(changed.hide_special)
    settings = result_settings(analysis)
    shown = analysis.regrouped(view.granularity)  # the method tabs and the comparison: per the view's groups
    values: dict[str, Any] = {key: None for key in OUTPUT_KEYS
                              if key in figures.FIGURE_KEYS or key.startswith("export:")}
    values |= {
        "answer": analysis.generated_text,
        "explained": explained_line(analysis, describe_target(settings.target, settings.continuation))
                     + empty_answer_hint(analysis),
    }
    for name in CATALOG:
        waiting = running and name in settings.methods and name not in analysis.methods
        values.update(method.pending(name) if waiting else method.render(shown, name, view))
    waiting = running and settings.trust and analysis.trust is None
    # The trust panel's counts are of what it ranked: groups at the granularity it was computed per.
    ranked = shown if analysis.trust is None else analysis.regrouped(analysis.trust.granularity)
    values.update(compare.pending() if waiting else compare.render(ranked, view))
    waiting = running and settings.all_targets and not analysis.answer_map
    values.update(answer_map.pending() if waiting else answer_map.render(analysis, view))
    if not running:  # the downloads are the whole result's
        json_path, csv_path = exports.write_result_files(exported(analysis, view), exports.new_export_dir())
        values["export:json"], values["export:csv"] = str(json_path), str(csv_path)
    values["export:png"] = None  # drawn when asked for (`figures.export_pngs`)
    values["state"] = store.remember(analysis, view, replaces=replaces, shown=shown, display_change=display_change)
    return [values[key] for key in OUTPUT_KEYS]


def empty_answer_hint(analysis: attribution.Analysis) -> str:
    """A chat model sent the raw prompt (the API's default) often ends its turn at once: SmolLM2-Instruct
    generates nothing for the seed prompt and explains its end-of-turn token. Say why, and what to change."""
    settings = result_settings(analysis)
    if settings.chat or settings.max_new_tokens == 0 or analysis.generated_text.strip():  # (its EOS shows no text)
        return ""
    if not attribution.is_chat_model_name(analysis.model):
        return ""
    return (" — nothing was generated: this is a chat model and the prompt went in raw; tick Chat template "
            "(the API's chat=True) to send it as the user's message")


def exported(analysis: attribution.Analysis, view: View) -> attribution.Analysis:
    """The result as the downloads write it: per the granularity shown (its groups in the JSON and the CSV).
    Only the settings' granularity changes; a trust panel says what it was computed per (`trust_granularity`)."""
    if analysis.settings is None or analysis.settings.granularity == view.granularity:
        return analysis
    return dataclasses.replace(analysis, settings=analysis.settings.replace(granularity=view.granularity))


def regroup(state: str | None, granularity: Any, hide_special: Any) -> list[Any]:
    """"Scores per" changed after an analysis: every output (OUTPUT_KEYS) redrawn from the stored result per
    the new granularity — the model is not run (occlusion has hidden every granularity's groups already) —,
    stored as the session's result, whose figures the page then draws. Nothing before the first analysis;
    gr.Error when the text has no such groups (a separator it lacks)."""
    if store.lookup(state) is None:
        return [gr.update() for _key in OUTPUT_KEYS]
    # Made in its turn against the analysis's next stage, from its newest stage (`store.display_turn`).
    with store.display_turn(state) as stored:
        if stored is None:
            gr.Warning(store.EXPIRED)
            return [gr.update() for _key in OUTPUT_KEYS]
        try:
            return render(stored.analysis, stored.view.grouped(granularity).scaled(hide_special),
                          running=store.running(stored) and not complete(stored.analysis), replaces=stored.id,
                          display_change=True)
        except ValueError as error:
            raise gr.Error(str(error)) from None


def follow_display(state: str | None, granularity: Any, hide_special: Any) -> list[Any]:
    """Each result or stage shown (the state's change): redrawn, as `regroup` does, when it was made with
    another "Scores per" or colour scaling than the page now shows — one changed after Analyze was pressed but
    before the analysis had a stage to change (while its answer was generated) is otherwise never applied, and
    the page would say sentence over highlights per token. Nothing changes when they agree (every OUTPUT_KEYS
    output left as it is)."""
    stored = store.lookup(state, warn=False)
    if stored is None or (stored.view.granularity == granularity and stored.view.hide_special == bool(hide_special)):
        return [gr.update() for _key in OUTPUT_KEYS]
    return regroup(state, granularity, hide_special)


def render_waiting(settings: Settings, answer_text: str) -> list[Any]:
    """Every output while the answer is being generated (nothing else is done yet): the answer so far, and
    each asked-for tab computing; no stored result (the state None)."""
    values: dict[str, Any] = {key: None for key in OUTPUT_KEYS}
    values |= {"answer": answer_text, "explained": ""}
    for name in CATALOG:
        values.update(method.pending(name) if name in settings.methods else method.not_computed(name))
    values.update(compare.pending() if settings.trust else compare.off())
    values.update(answer_map.pending() if settings.all_targets else answer_map.not_asked())
    return [values[key] for key in OUTPUT_KEYS]


def complete(analysis: attribution.Analysis) -> bool:
    """Whether every stage of the analysis is done (the engine's last partial result is its result)."""
    settings = result_settings(analysis)
    return (set(analysis.methods) == set(settings.methods) and (bool(analysis.answer_map) or not settings.all_targets)
            and (analysis.trust is not None or not settings.trust))


def left_out_of_map(analysis: attribution.Analysis, all_targets: bool) -> tuple[str, ...]:
    """The costly methods (IG) that ran but were left out of the answer map that was asked for."""
    settings = result_settings(analysis)
    if not all_targets or not len(analysis.generated_ids):
        return ()
    mapped = settings.mapped_methods if settings.all_targets else ()
    return tuple(name for name in analysis.methods
                 if costly(name) and CATALOG[name].answer_map is not False and name not in mapped)


def page_view(loaded: attribution.LoadedModel, analysis: attribution.Analysis, hide_special: bool,
              all_targets: bool, clock: Clock | None = None) -> View:
    """How the page shows a fresh result: its display choices, and what only the loaded model knows (and,
    with the `clock` that timed it, what adding the costly methods left out of its answer map would cost)."""
    # Which token a pad baseline repeats depends on the model's tokenizer: the notes name it.
    pad = result_settings(analysis).baseline.startswith("pad")
    left_out = left_out_of_map(analysis, all_targets)
    rerun = None
    if left_out and clock is not None:
        settings = result_settings(analysis)
        mapped = settings.mapped_methods if settings.all_targets else ()
        whole_map = clock.map_estimate((*mapped, *left_out))
        if whole_map is not None:
            rerun = clock.elapsed() - clock.measured.get("answer_map", 0.0) + whole_map
    return View(
        hide_special=hide_special, all_targets=all_targets, pad_token=pad_token_label(loaded) if pad else None,
        # The clickable answer shows one token per generated id: only the tokenizer can split it so.
        answer_tokens=tuple(attribution.display_tokens(loaded, analysis.generated_ids)),
        explained=explained_answer_token(analysis), left_out_of_map=left_out, map_rerun_s=rerun,
        explained_through=explained_through(analysis),
        granularity=result_settings(analysis).granularity,
    )


def progress_line(clock: Clock, now: float | None = None) -> tuple[float, str]:
    """The progress bar's fraction and line: the running stage and the time left, estimated from this
    model's measured speed (`ui.timing`), or said not to be known yet."""
    now = time.monotonic() if now is None else now
    step = clock.step
    if step is None:
        return 0.15, "Starting the analysis…"
    text = stage_text(step, clock.settings.n_steps)
    left = clock.left(now)
    if left is None and step.kind == "generate":  # the sizes the estimates need come with the answer
        return 0.15, f"{text} ({clock.tokens_so_far} of up to {clock.settings.max_new_tokens} tokens)"
    if left is None:
        return 0.15 + 0.8 * step.fraction, f"{text} (time left: not known yet for this model)"
    elapsed = clock.elapsed(now)
    fraction = elapsed / (elapsed + left) if elapsed + left > 0 else step.fraction
    late = " (longer than estimated)" if clock.overrun(now) else ""
    return 0.15 + 0.8 * fraction, f"{text} about {seconds_text(left)} left{late}"


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


@dataclass(frozen=True)
class AnalyzeCall:
    """One /analyze call, validated: what to run and how to show it."""

    prompt: str
    model: Any
    settings: Settings
    hide_special: bool
    all_targets: bool  # the answer map was asked for (the View's)


def read_request(arguments: tuple[Any, ...], keywords: dict[str, Any]) -> tuple[AnalyzeCall, Any]:
    """/analyze's arguments → the validated request and the progress tracker. ValueError, naming the
    setting, for a value that is not valid."""
    bound = ANALYZE_SIGNATURE.bind(*arguments, **keywords)
    bound.apply_defaults()
    values = dict(bound.arguments)
    progress = values.pop("progress")
    if values["methods"] is None:  # a list cannot be a parameter's default
        values["methods"] = DEFAULTS["methods"]
    prompt, model = values["prompt"], model_name(values["model"])
    validate_prompt(prompt)  # fail fast, before a large model is loaded
    settings = page_settings(values)
    request = AnalyzeCall(prompt, model, settings, parse_flag(values["hide_special"], "hide_special"),
                      parse_flag(values["all_targets"], "all_targets"))
    return request, progress


def clock_for(loaded: attribution.LoadedModel, settings: Settings) -> Clock:
    """The analysis's clock: its speeds are kept per model and device."""
    return Clock(f"{loaded.name} on {loaded.device}", settings)


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
    baseline keeps the held context at its real embeddings. `n_ablations`: context ablation's random
    ablations (8..1024). (`contrast_pick`, the UI's picked foil id, is
    not part of the API.)

    Returns the generated answer, the explained token, then per method its notes, highlighted tokens
    (scores scaled into [-1, 1]), bar chart and top-5 table (attention also its layers × tokens
    heatmap), the answer map's notes, heatmap and first generated token's highlighted sources, the
    trust verdict, the comparison heatmap and bars, the faithfulness table, the agreement heatmap and
    top-3 overlap table, IG's completeness, and the JSON, CSV and PNG exports.
    """
    try:
        request, progress = read_request(arguments, keywords)
        progress(0.05, desc=f"Loading {model_label(request.model)}…")
        loaded = attribution.load_model(request.model)  # cached after the first call; a ValueError names the problem
        settings = request.settings
        progress(0.15, desc=f"Generating up to {display_number(settings.max_new_tokens)} tokens and computing "
                            "the attributions…")
        clock = clock_for(loaded, settings)

        def stage(step: attribution.Progress) -> None:
            clock.stage(step)
            progress(*progress_line(clock))

        # The ZeroGPU worker is another process: progress stages only here.
        if spaces is None:
            analysis = compute(request.model, request.prompt, settings, stage, partial=clock.partial)
        else:
            analysis = compute(request.model, request.prompt, settings)
        clock.finish(analysis)
        view = page_view(loaded, analysis, request.hide_special, request.all_targets, clock)
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
    if store.lookup(state, warn=False) is None:
        return [gr.update() for _key in SCALED_KEYS]
    # In its turn against the analysis's next stage, which is then shown with this scaling too.
    with store.display_turn(state) as stored:
        if stored is None:
            return [gr.update() for _key in SCALED_KEYS]
        view = stored.view.scaled(hide_special)
        store.keep_display(stored.id, view)
        return scaled_values(stored, view, method_name, token)


def scaled_values(stored: store.Stored, view: View, method_name: Any, token: Any) -> list[Any]:
    """`scaled_views`'s outputs of one stored result with the scaling of `view`."""
    shown = stored.shown or stored.analysis
    exclude = view.exclude(shown)
    values: dict[str, Any] = {}
    for name in CATALOG:
        values.update(method.scaled(shown, name, exclude))
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


def explain_answer_token(state: str | None, target: Any, target_span: Any, event: gr.SelectData) -> list[Any]:
    """A generated token clicked in the answer: explain that token (Explain → generated token k); the
    analysis then runs again. With Explain → a stretch, two clicks pick it: the first marks its start
    ("k-" in the stretch box, nothing runs: `analyze_unless_pending`), the second its end ("k-m", then it
    runs). Nothing changes before the first analysis. Outputs: Explain, k, the stretch box."""
    stored = store.lookup(state)
    count = 0 if stored is None else len(stored.view.answer_tokens)
    if not count or not isinstance(event.index, int):
        return [gr.update(), gr.update(), gr.update()]
    clicked = token_index(event.index + 1, count)
    if target != "span":
        return ["generated", clicked, gr.update()]
    start = pending_start(target_span)
    if start is None:
        return [gr.update(), gr.update(), f"{clicked}-"]
    start = min(start, count)
    return [gr.update(), gr.update(), f"{min(start, clicked)}-{max(start, clicked)}"]


def pending_start(target_span: Any) -> int | None:
    """The stretch's first token while only it has been clicked ("k-"), else None."""
    if isinstance(target_span, str) and target_span.strip().endswith("-"):
        start = target_span.strip()[:-1].strip()
        if start.isascii() and start.isdigit() and int(start) >= 1:
            return int(start)
    return None


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
