"""Checks of user-given values, torch-free: every entry point (library, CLI, dataset mode, page) gives
the same `ValueError`, naming the setting and its valid choices."""

from __future__ import annotations

import math
import os
import unicodedata
from typing import Iterable

from .limits import MAX_PROMPT_TOKENS_ANY_MODEL, MAX_STEPS

# Newline, carriage return and tab are ordinary text; other control characters are refused.
ALLOWED_CONTROL = {"\n", "\r", "\t"}


def prompt_token_override() -> int | None:
    """`ATTRIBUTION_MAX_PROMPT_TOKENS` from the environment (an operator's cap), or None when unset."""
    raw = os.environ.get("ATTRIBUTION_MAX_PROMPT_TOKENS", "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"ATTRIBUTION_MAX_PROMPT_TOKENS must be a positive integer, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"ATTRIBUTION_MAX_PROMPT_TOKENS must be a positive integer, got {value}")
    return value


def max_prompt_tokens() -> int:
    """The prompt length limit without a model: `ATTRIBUTION_MAX_PROMPT_TOKENS`, else
    MAX_PROMPT_TOKENS_ANY_MODEL. With a model, the engine's limit also follows the model's context and
    the memory the analysis needs (`attribution.budget.check_prompt`)."""
    override = prompt_token_override()
    return MAX_PROMPT_TOKENS_ANY_MODEL if override is None else override


def validate_integer(value: object, name: str, low: int, high: int) -> int:
    """An int (or integral float, as UI number fields send) within [low, high], else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise ValueError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
        value = int(value)
    if not low <= value <= high:
        raise ValueError(f"{name} must be from {low} to {high}, got {value}")
    return int(value)


def validate_steps(value: object) -> int | str:
    """IG steps: a whole number from 1 to MAX_STEPS, or "auto"."""
    if value == "auto":
        return "auto"
    if isinstance(value, str):
        raise ValueError(f"n_steps must be a whole number from 1 to {MAX_STEPS} or 'auto', got {value!r}")
    return validate_integer(value, "n_steps", 1, MAX_STEPS)


def validate_fraction(value: object, name: str) -> float:
    """A number strictly between 0 and 1 (a relative error), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number between 0 and 1 (e.g. 0.01 for 1%), got {value!r}")
    if not 0 < value < 1:
        raise ValueError(f"{name} must be between 0 and 1 (e.g. 0.01 for 1%), got {value}")
    return float(value)


def validate_flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def validate_choice(value: object, name: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid choices: {', '.join(choices)}")
    return value


def validate_methods(methods: object, registry: Iterable[str], what: str = "method") -> tuple[str, ...]:
    """A non-empty sequence of registered method names (a comma-separated string works too)."""
    valid = list(registry)
    if isinstance(methods, str):
        methods = [part.strip() for part in methods.split(",") if part.strip()]
    if not isinstance(methods, (list, tuple)) or not methods:
        raise ValueError(f"choose at least one {what}; valid choices: {', '.join(valid)}")
    chosen: list[str] = []
    for method in methods:
        validate_choice(method, what, valid)
        if method not in chosen:
            chosen.append(method)
    return tuple(chosen)


def validate_optional_text(value: object, name: str, *, example: str, what: str, none_means: str,
                           empty_name: str | None = None) -> str | None:
    """None, or non-empty text (`name`: how errors call it, `empty_name` when it is empty; `what`: what the
    text is, for the empty case; `none_means`: what None gives instead)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text (e.g. {example}) or None {none_means}, got {type(value).__name__}")
    if value == "":
        raise ValueError(f"{empty_name or name} is empty: give {what} (e.g. {example}), or None {none_means}")
    return value


def check_control_characters(text: str, what: str) -> None:
    for position, character in enumerate(text):
        if unicodedata.category(character) == "Cc" and character not in ALLOWED_CONTROL:
            raise ValueError(
                f"{what} contains the control character U+{ord(character):04X} at position {position}; "
                "remove it (newlines and tabs are fine)"
            )


def validate_prompt(prompt: object, what: str = "prompt", limit: int | None = None) -> str:
    """Text, not empty, without control characters, and not far over `limit` tokens (default:
    `max_prompt_tokens()`) by its length in characters."""
    if not isinstance(prompt, str):
        raise ValueError(f"{what} must be text, got {type(prompt).__name__}")
    if not prompt.strip():
        raise ValueError(f"{what} is empty: type a question or sentence to explain")
    limit = max_prompt_tokens() if limit is None else limit
    # Every token covers at least one character, but a token rarely covers more than ~30: refuse giant
    # texts before spending time tokenizing them.
    if len(prompt) > limit * 64:
        raise ValueError(
            f"{what} is {len(prompt):,} characters, far over the limit of {limit:,} tokens; shorten it"
        )
    check_control_characters(prompt, what)
    return prompt
