"""The app's form values (and the same JSON values from `/analyze` API callers) → the library's arguments.

The library validates every value itself; these only translate the UI's shape (three target fields,
a checkbox, a picked foil, a selector, a deep link's query) and raise ValueError with the setting's name, which the app
shows as its error message.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from .integrated_gradients import BASELINES
from .methods import AGGREGATIONS, METHODS
from .targets import MAX_NEW_TOKENS_LIMIT, MAX_STEPS, validate_integer

#: The "Explain" radio: (label, value) pairs.
TARGET_CHOICES = [
    ("the predicted next token", "next"),
    ("generated token k", "generated"),
    ("custom text", "text"),
]


def parse_target(target: str, target_k: Any, target_text: str | None) -> None | int | str:
    """The library's `target` from the UI's three fields; the library validates the value itself."""
    if target == "next":
        return None
    if target == "generated":
        return validate_integer(target_k, "generated token k", 1, MAX_NEW_TOKENS_LIMIT)
    if target == "text":
        return target_text if target_text is not None else ""
    choices = ", ".join(value for _label, value in TARGET_CHOICES)
    raise ValueError(f"unknown target {target!r}; valid choices: {choices}")


def parse_flag(value: Any, name: str) -> bool:
    """A checkbox's value (true/false; API callers may send 0/1)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    raise ValueError(f"{name} must be true or false, got {value!r}")


def parse_contrast(contrast_text: Any, contrast_pick: Any = None) -> None | int | str:
    """The library's `contrast` from the UI: the picked token's id while the text box still shows the
    picked token (byte-level display text may not round-trip), else the typed text; '' means none."""
    if contrast_text is None or contrast_text == "":
        return None
    if not isinstance(contrast_text, str):
        raise ValueError(f"contrast_text must be text such as ' Tallinn' ('' for none), got {contrast_text!r}")
    if isinstance(contrast_pick, dict) and contrast_pick.get("text") == contrast_text:
        return int(contrast_pick["id"])
    return contrast_text


def token_index(value: Any, count: int) -> int:
    """The generated-token selector's value as 1…count (whatever the browser sends)."""
    try:
        index = int(float(value))
    except (TypeError, ValueError):
        index = 1
    return min(max(index, 1), max(count, 1))


#: A deep link's parameters, in the order of the app's setting inputs they fill.
DEEP_LINK_KEYS = ("prompt", "model", "methods", "max_new_tokens", "steps", "baseline", "aggregation", "target",
                  "k", "text", "contrast", "answer_map", "trust", "hide_special")


def deep_link_settings(query: Mapping[str, str], models: Sequence[str], any_model: bool) -> dict[str, Any]:
    """Deep link → the settings it gives validly, by DEEP_LINK_KEYS name; a missing or invalid parameter
    is left out, so its input stays as it is. Values only ever fill inputs.

    Parameters: prompt, model (one of `models`, or any with `any_model`), methods (comma-separated),
    max_new_tokens, steps, baseline, aggregation, target (next | generated | text), k, text, contrast
    (text), answer_map, trust and hide_special (0 or 1).
    """
    settings: dict[str, Any] = {}
    for key in ("prompt", "text", "contrast"):  # free text: the analysis validates it when it runs
        if key in query:
            settings[key] = query[key]
    model = query.get("model", "").strip()
    if model and (model in models or any_model):
        settings["model"] = model
    methods = [item for item in query.get("methods", "").split(",") if item in METHODS]
    if methods:
        settings["methods"] = methods
    for key, low, high in (("max_new_tokens", 0, MAX_NEW_TOKENS_LIMIT), ("steps", 1, MAX_STEPS),
                           ("k", 1, MAX_NEW_TOKENS_LIMIT)):
        try:
            value = int(query[key])
        except (KeyError, ValueError):
            continue
        if low <= value <= high:
            settings[key] = value
    for key, valid in (("baseline", list(BASELINES)), ("aggregation", list(AGGREGATIONS)),
                       ("target", [value for _label, value in TARGET_CHOICES])):
        if query.get(key) in valid:
            settings[key] = query[key]
    for key in ("answer_map", "trust", "hide_special"):
        flag = {"1": True, "0": False}.get(query.get(key, ""))
        if flag is not None:
            settings[key] = flag
    return settings
