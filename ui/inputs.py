"""The page's input values (and the same JSON values from `/analyze` API callers) → one `attribution.Settings`,
and back (presets fill the controls); the deep link's query; the model picker.

The library validates every setting itself (`Settings` raises ValueError naming it and its valid
choices); these only translate the page's shape (three target fields, a steps slider with a checkbox, a
picked foil, checkboxes that API callers may send as 0/1, an empty system prompt box). The handler turns
any ValueError into the page's error message (`ui.analysis.analyze`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import attribution
from attribution.catalog import CATALOG
from attribution.groups import GRANULARITIES
from attribution.display.labels import quoted_token
from attribution.settings import (
    AGGREGATIONS,
    ANSWER_TARGET,
    BASELINE_LABELS,
    MAX_ABLATIONS,
    MAX_NEW_TOKENS_LIMIT,
    MAX_STEPS,
    MIN_ABLATIONS,
    PRESET_FIELDS,
    REPLY_TARGET,
    SCORES,
    Settings,
    preset,
    span_from_text,
)
from attribution.validation import validate_integer

from .settings import COMBINED, SETTINGS

#: The real model the picker offers from the hub (gated: needs HF_TOKEN with the licence accepted).
HUB_MODEL = "meta-llama/Llama-3.2-1B"

#: The "Explain" radio: (label, value) pairs.
TARGET_CHOICES = [
    ("the predicted next token", "next"),
    # On a chat model the first generated token is filler ("The", "Sure"): this skips to the token that
    # starts the answer's first content word (" Riga"), what the visitor asked about.
    ("the answer's first content word", "answer"),
    ("generated token k", "generated"),
    ("custom text", "text"),
    ("a stretch of the answer (tokens k-m)", "span"),
    # The library's REPLY_TARGET: what "which passage supports this answer" asks (Documents sets it).
    ("the whole answer (a stretch of every generated token)", "reply"),
]


# --- page values → Settings -----------------------------------------------------------------------


def page_settings(values: Mapping[str, Any]) -> Settings:
    """The one `attribution.Settings` the page's inputs describe. `values`: every SETTINGS name (as
    /analyze receives them), and optionally "contrast_pick" (the foil picked from the list). Each
    setting with a `field` fills it (checkboxes parsed as flags); the COMBINED fields are made from their
    inputs here. ValueError, naming the setting, for a value that is not valid."""
    fields: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.field is None or setting.field in COMBINED:
            continue
        value = values[setting.name]
        fields[setting.field] = parse_flag(value, setting.name) if setting.kind in ("flag", "chat") else value
    fields["n_steps"] = parse_steps(values["ig_steps"], values["ig_auto"])
    fields["target"] = parse_target(values["target"], values["target_k"], values["target_text"], values["target_span"])
    fields["continuation"] = parse_continuation(fields["continuation"])
    fields["contrast"] = parse_contrast(values["contrast_text"], values.get("contrast_pick"))
    fields["system"] = parse_system(fields["system"], fields["chat"])
    fields["separator"] = None if fields["separator"] in (None, "") else fields["separator"]  # "": blank lines
    # Nothing generated, nothing to map: the answer map is skipped rather than refused.
    fields["all_targets"] = fields["all_targets"] and fields["max_new_tokens"] != 0
    with_costly = parse_flag(values["answer_map_ig"], "answer_map_ig")
    if fields["all_targets"]:
        fields["answer_map_methods"] = parse_answer_map_methods(with_costly, fields["methods"])
        # Only a costly method could map the answer and it is left out: no answer map (the tab says why).
        fields["all_targets"] = fields["answer_map_methods"] != ()
        if not fields["all_targets"]:
            fields["answer_map_methods"] = None
    try:
        return Settings(**fields)
    except ValueError as error:
        raise ValueError(named_for_the_page(str(error))) from None


#: Settings fields that page inputs of other names fill (n_steps ← ig_steps, ig_auto): field → those inputs.
_FILLED_BY = {field: tuple(setting.name for setting in SETTINGS if setting.field == field)
              for field in dict.fromkeys(setting.field for setting in SETTINGS if setting.field is not None)}
OTHER_NAMES = {field: names for field, names in _FILLED_BY.items() if field not in names}


def named_for_the_page(message: str) -> str:
    """The library's message about a Settings field, ending with the /analyze parameters that fill it:
    "n_steps must be from 1 to 1000, got 0" → "... got 0 (/analyze: ig_steps, ig_auto)"; likewise
    "unknown baseline 'x'; valid choices: ..." (ig_baseline). Other messages as they are."""
    words = message.split(" ", 2)
    field = words[1] if words[0] == "unknown" and len(words) > 1 else words[0]
    if field not in OTHER_NAMES:
        return message
    return f"{message} (/analyze: {', '.join(OTHER_NAMES[field])})"


def parse_answer_map_methods(answer_map_ig: bool, methods: Any) -> tuple[str, ...] | None:
    """The library's `answer_map_methods` from the "IG in the answer map" box: None (every chosen method that
    has an answer map) while it is ticked or when no costly method is chosen, else the chosen methods that
    have one but the costly ones (catalog `costly`: IG), () when none is left. The library validates the
    methods themselves."""
    if answer_map_ig:
        return None
    if isinstance(methods, str):
        methods = [part.strip() for part in methods.split(",")]
    names = [name for name in methods if name in CATALOG] if isinstance(methods, (list, tuple)) else []
    mapped = [name for name in dict.fromkeys(names) if CATALOG[name].answer_map is not False]
    cheap = tuple(name for name in mapped if not CATALOG[name].costly)
    return None if len(cheap) == len(mapped) else cheap


def parse_target(target: str, target_k: Any, target_text: str | None,
                 target_span: Any = "") -> None | int | str | tuple[int, int]:
    """The library's `target` from the page's four fields; the library validates the value itself."""
    if target == "next":
        return None
    if target == "answer":
        return ANSWER_TARGET
    if target == "span":
        span = span_from_text(target_span) if isinstance(target_span, str) else None
        if span is None:
            raise ValueError(f"the stretch {target_span!r} must be two generated-token numbers k-m, e.g. 2-5 "
                             "(or click its first and last token in the answer)")
        return span
    if target == "generated":
        return validate_integer(target_k, "generated token k", 1, MAX_NEW_TOKENS_LIMIT)
    if target == "text":
        return target_text if target_text is not None else ""
    if target == "reply":
        return REPLY_TARGET
    choices = ", ".join(value for _label, value in TARGET_CHOICES)
    raise ValueError(f"unknown target {target!r}; valid choices: {choices}")


def parse_continuation(value: Any) -> str | None:
    """The library's `continuation` from its box: None when empty (the library refuses any other value
    that is not text)."""
    return None if value is None or value == "" else value


def parse_flag(value: Any, name: str) -> bool:
    """A checkbox's value (true/false; API callers may send 0/1)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    raise ValueError(f"{name} must be true or false, got {value!r}")


def parse_steps(ig_steps: Any, ig_auto: Any) -> Any:
    """The library's `n_steps`: "auto" when the Auto steps box is ticked (API callers may also send
    ig_steps="auto"), else the IG steps number as given (the library validates it)."""
    return "auto" if parse_flag(ig_auto, "ig_auto") else ig_steps


def parse_system(system: Any, chat: bool) -> str | None:
    """The library's `system` from the System prompt box: None (the template's default) when empty;
    typed text needs the chat template, which is where a system prompt goes."""
    if system is None or (isinstance(system, str) and not system.strip()):
        return None
    if not isinstance(system, str):
        raise ValueError(f"system must be text ('' for the chat template's default), got {system!r}")
    if not chat:
        raise ValueError("a system prompt needs the chat template: tick Chat template (API: chat=True), "
                         "or leave the system prompt empty")
    return system


def parse_contrast(contrast_text: Any, contrast_pick: Any = None) -> None | int | str:
    """The library's `contrast` from the page: the picked token's id while the text box still shows the
    picked token (byte-level display text may not round-trip), else the typed text; '' means none."""
    if contrast_text is None or contrast_text == "":
        return None
    if not isinstance(contrast_text, str):
        raise ValueError(f"contrast_text must be text such as ' Tallinn' ('' for none), got {contrast_text!r}")
    if isinstance(contrast_pick, dict) and contrast_pick.get("text") == contrast_text:
        return int(contrast_pick["id"])
    return contrast_text


def model_name(model: Any) -> Any:
    """The model to load: the page's default (`attribution.default_model_name`) when none is given; any
    other value as given (`load_model` says what is wrong with it)."""
    if model is None or (isinstance(model, str) and not model.strip()):
        return attribution.default_model_name()
    return model


def describe_target(target: None | int | str | tuple[int, int], continuation: str | None = None) -> str:
    """A Settings target in words, for the "Explained token" box: 'generated token 3'."""
    if continuation is not None:
        return "the continuation, teacher-forced after the prompt: the sum of its tokens' scores"
    if isinstance(target, tuple):
        return f"generated tokens {target[0]}-{target[1]}: the sum of their scores, each after the earlier ones"
    if isinstance(target, int):
        return f"generated token {target}"
    if target == REPLY_TARGET:
        return "the whole answer: the sum of its tokens' scores, each after the earlier ones"
    if target == ANSWER_TARGET:  # a word of several tokens (SmolLM2: " Rig" + "a") is explained by its first
        return "the first token of the answer's first content word"
    if isinstance(target, str):
        return "the custom target's first token"
    return "the predicted next token"


def token_index(value: Any, count: int) -> int:
    """The generated-token selector's value as 1…count (whatever the browser sends)."""
    try:
        index = int(float(value))
    except (TypeError, ValueError):
        index = 1
    return min(max(index, 1), max(count, 1))


def pad_token_label(loaded: attribution.LoadedModel) -> str:
    """The token a pad baseline repeats for a loaded model, as `pad_line` shows it: '"<|im_end|>" (EOS,
    token id 2)'. ValueError when the tokenizer has neither EOS nor pad (no pad baseline is possible)."""
    token_id = attribution.pad_baseline_token_id(loaded)
    kind = "EOS" if token_id == loaded.tokenizer.eos_token_id else "pad"
    return f"{quoted_token(attribution.display_tokens(loaded, [token_id])[0])} ({kind}, token id {token_id})"


# --- Settings → controls (presets) ------------------------------------------------------------------

#: The settings controls a preset fills: those of the fields it decides (attribution.settings.PRESET_FIELDS),
#: and the colour scaling (PRESET_VIEWS).
PRESET_CONTROLS = tuple(setting.name for setting in SETTINGS if setting.field in PRESET_FIELDS) + ("hide_special",)
#: The colour scaling each preset shows: the seed's view puts every token in the scaling; the
#: recommended one leaves the held context out, as its IG gives those tokens exactly 0 anyway.
PRESET_VIEWS = {"seed": False, "recommended": True}


def control_values(settings: Settings, fields: Iterable[str]) -> dict[str, Any]:
    """Some fields of `settings` as the values of the controls that show them (SETTINGS names): one
    control per field, but n_steps: "auto" ticks Auto steps and leaves IG steps as it is, a count fills
    IG steps and unticks Auto steps. ValueError for target or contrast (no preset decides them)."""
    fields = set(fields)
    if fields & {"target", "contrast"}:
        raise ValueError("target and contrast are not filled from settings: no preset decides them")
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.field in fields and setting.field not in COMBINED:
            value = getattr(settings, setting.field)
            values[setting.name] = (list(value) if isinstance(value, tuple)
                                    else setting.default if value is None else value)
    if "n_steps" in fields:
        values["ig_auto"] = settings.n_steps == "auto"
        if settings.n_steps != "auto":
            values["ig_steps"] = settings.n_steps
    return values


def preset_settings(name: str) -> dict[str, Any]:
    """`attribution.PRESETS[name]` as the page's settings controls (PRESET_CONTROLS names → values): every
    one of them but IG steps under auto (left as it is); `hide_special` follows PRESET_VIEWS. ValueError
    for an unknown name."""
    return {**control_values(preset(name), PRESET_FIELDS), "hide_special": PRESET_VIEWS[name]}


# --- the deep link and the model picker -----------------------------------------------------------------


def deep_link_settings(query: Mapping[str, str], models: Sequence[str], any_model: bool) -> dict[str, Any]:
    """Deep link → the settings it gives validly, by DEEP_LINK_KEYS name; a missing or invalid parameter
    is left out, so its input stays as it is. Values only ever fill inputs.

    Parameters: prompt, model (one of `models`, or any with `any_model`), methods (comma-separated),
    max_new_tokens, steps (a number, or "auto" = auto=1), baseline, aggregation, target (next |
    answer | generated | text | span | reply), k, text, span (k-m), contrast (text), answer_map, trust, hide_special and chat (0 or 1),
    system (text), auto (0 or 1: IG steps to a target error), target_error (between 0 and 1), score,
    hold_context and answer_map_ig (0 or 1), continuation (text), ablations (context ablation's count),
    granularity (token | word | sentence | segment), separator (text). A link that names a model but not chat
    gets that model's `chat_default`, as picking the model in the page would.
    """
    settings: dict[str, Any] = {}
    for key in ("prompt", "text", "contrast", "system", "span", "continuation", "separator"):  # free text: validated when it runs
        if key in query:
            settings[key] = query[key]
    model = query.get("model", "").strip()
    if model and (model in models or any_model):
        settings["model"] = model
    methods = [item for item in query.get("methods", "").split(",") if item in CATALOG]
    if methods:
        settings["methods"] = methods
    settings |= _link_numbers(query)
    for key, valid in (("baseline", list(BASELINE_LABELS)), ("aggregation", list(AGGREGATIONS)),
                       ("target", [value for _label, value in TARGET_CHOICES]), ("score", list(SCORES)),
                       ("granularity", list(GRANULARITIES))):
        if query.get(key) in valid:
            settings[key] = query[key]
    if query.get("steps") == "auto":  # the library's spelling: the same as auto=1
        settings["auto"] = True
    for key in ("answer_map", "trust", "hide_special", "chat", "auto", "hold_context", "answer_map_ig"):
        flag = {"1": True, "0": False}.get(query.get(key, ""))
        if flag is not None:
            settings[key] = flag
    if "model" in settings and "chat" not in settings:
        settings["chat"] = chat_default(settings["model"])
    return settings


def _link_numbers(query: Mapping[str, str]) -> dict[str, Any]:
    """A deep link's numbers that are in range: max_new_tokens, steps, k and target_error."""
    numbers: dict[str, Any] = {}
    for key, low, high in (("max_new_tokens", 0, MAX_NEW_TOKENS_LIMIT), ("steps", 1, MAX_STEPS),
                           ("k", 1, MAX_NEW_TOKENS_LIMIT), ("ablations", MIN_ABLATIONS, MAX_ABLATIONS)):
        try:
            value = int(query[key])
        except (KeyError, ValueError):
            continue
        if low <= value <= high:
            numbers[key] = value
    try:
        target_error = float(query["target_error"])
    except (KeyError, ValueError):
        target_error = None
    if target_error is not None and 0 < target_error < 1:  # NaN fails both comparisons
        numbers["target_error"] = target_error
    return numbers


def model_label(name: Any) -> str:
    """How the model picker shows a model: the demo model and the built-in real models by what they
    are (a built-in whose package is missing says how to install it), anything else by its name."""
    if not isinstance(name, str):
        return repr(name)
    try:
        if Path(name).expanduser().resolve() == attribution.DEMO_MODEL_PATH.resolve():
            return "demo model (assets/demo-model, offline)"
    except (OSError, ValueError, RuntimeError):  # no file system can hold the name: load_model says why
        pass
    packaged = attribution.PACKAGED_MODELS.get(name)
    if packaged is None:
        return name
    kind = "chat model" if packaged.chat else "model"
    try:
        attribution.packaged_gguf(name)
    except ValueError:  # offline it cannot load: say how to make it loadable
        return f"{name} (built-in {kind}; offline it needs: {packaged.install})"
    return f"{name} (built-in {kind}, offline)"


def model_choices(default_model: str, *, hosted: bool, allowed: Sequence[str] = ()) -> list[tuple[str, str]]:
    """The model picker's (label, name) pairs. Hosted: the default, the `allowed` hub ids and the
    built-in real models (nothing else loads there); locally also the demo model and Llama-3.2-1B."""
    if hosted:
        names = [default_model, *allowed, *attribution.PACKAGED_MODELS]
    else:
        names = [default_model, str(attribution.DEMO_MODEL_PATH), HUB_MODEL, *attribution.PACKAGED_MODELS]
    return [(model_label(name), name) for name in dict.fromkeys(names)]


def chat_default(model: Any) -> bool:
    """Whether the Chat template box starts ticked for a model, decided from its name without loading
    it (`attribution.is_chat_model_name`: a built-in model by its entry, any other by an
    instruction-tuned name such as -Instruct, -chat, -it). The demo model and base models: off."""
    if not isinstance(model, str) or not model.strip():
        return False
    return attribution.is_chat_model_name(model.strip())
