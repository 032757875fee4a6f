"""What is explained: the next token, the k-th generated token, or a token given as text.

Also the validation of the user's settings, so every entry point (library, CLI, app) gives the same
`ValueError` with the valid choices.
"""

from __future__ import annotations

import math
import os
import unicodedata
from dataclasses import dataclass
from typing import Iterable

import torch

from .models import LoadedModel
from .results import Target

from .settings import DEFAULT_MAX_PROMPT_TOKENS, MAX_STEPS
# Newline, carriage return and tab are ordinary text; other control characters are refused.
_ALLOWED_CONTROL = {"\n", "\r", "\t"}


def max_prompt_tokens() -> int:
    """The prompt length limit: `ATTRIBUTION_MAX_PROMPT_TOKENS` from the environment, else 512."""
    raw = os.environ.get("ATTRIBUTION_MAX_PROMPT_TOKENS", "").strip()
    if not raw:
        return DEFAULT_MAX_PROMPT_TOKENS
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"ATTRIBUTION_MAX_PROMPT_TOKENS must be a positive integer, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"ATTRIBUTION_MAX_PROMPT_TOKENS must be a positive integer, got {value}")
    return value


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


def validate_choice(value: object, name: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid choices: {', '.join(choices)}")
    return value


def validate_methods(methods: object, registry: Iterable[str]) -> tuple[str, ...]:
    """A non-empty sequence of registered method names (a comma-separated string works too)."""
    valid = list(registry)
    if isinstance(methods, str):
        methods = [part.strip() for part in methods.split(",") if part.strip()]
    if not isinstance(methods, (list, tuple)) or not methods:
        raise ValueError(f"choose at least one method; valid choices: {', '.join(valid)}")
    chosen: list[str] = []
    for method in methods:
        validate_choice(method, "method", valid)
        if method not in chosen:
            chosen.append(method)
    return tuple(chosen)


def validate_prompt(prompt: object, what: str = "prompt") -> str:
    if not isinstance(prompt, str):
        raise ValueError(f"{what} must be text, got {type(prompt).__name__}")
    if not prompt.strip():
        raise ValueError(f"{what} is empty: type a question or sentence to explain")
    limit = max_prompt_tokens()
    # Every token covers at least one character, but a token rarely covers more than ~30: refuse giant
    # texts before spending time tokenizing them.
    if len(prompt) > limit * 64:
        raise ValueError(
            f"{what} is {len(prompt):,} characters, far over the limit of {limit} tokens; shorten it"
        )
    for position, character in enumerate(prompt):
        if unicodedata.category(character) == "Cc" and character not in _ALLOWED_CONTROL:
            raise ValueError(
                f"{what} contains the control character U+{ord(character):04X} at position {position}; "
                "remove it (newlines and tabs are fine)"
            )
    return prompt


def token_ids_for_text(loaded: LoadedModel, text: object, what: str = "target") -> list[int]:
    """Ids of a target/foil given as text (no special tokens). Leading spaces matter: " Riga"."""
    if not isinstance(text, str) or text == "":
        raise ValueError(f"{what} text is empty: give the word the model should produce, e.g. ' Riga'")
    for character in text:
        if unicodedata.category(character) == "Cc" and character not in _ALLOWED_CONTROL:
            raise ValueError(f"{what} text contains the control character U+{ord(character):04X}; remove it")
    ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"{what} text {text!r} tokenizes to nothing with this model's tokenizer")
    return list(ids)


def display_tokens(loaded: LoadedModel, ids: Iterable[int]) -> list[str]:
    """One display string per id, decoded alone: leading spaces kept, no raw 'Ġ' or '▁' pieces."""
    tokenizer = loaded.tokenizer
    strings = []
    for token_id in ids:
        token_id = int(token_id)
        text = tokenizer.decode([token_id])
        piece = tokenizer.convert_ids_to_tokens(token_id) or ""
        # SentencePiece tokenizers drop the word-start marker when one token is decoded alone.
        if piece.startswith("▁") and not text.startswith(" "):
            text = " " + text
        strings.append(text)
    return strings


@dataclass(frozen=True)
class ResolvedTarget:
    input_ids: torch.Tensor  # [seq]: everything that precedes the target token
    target: Target


def greedy_next_token(loaded: LoadedModel, input_ids: torch.Tensor) -> int:
    with torch.inference_mode():
        output = loaded.model(input_ids=input_ids.unsqueeze(0), logits_to_keep=1, use_cache=False)
    return int(output.logits[0, -1].argmax())


def resolve_target(
    loaded: LoadedModel, prompt_ids: torch.Tensor, generated_ids: torch.Tensor, target: object
) -> ResolvedTarget:
    """`None`: the greedy next token; `str`: its first token at the next position; `int` k ≥ 1:
    the k-th generated token, with the prompt and the k − 1 earlier generated tokens as input."""
    if target is None:
        input_ids = prompt_ids
        target_id = int(generated_ids[0]) if generated_ids.numel() else greedy_next_token(loaded, prompt_ids)
    elif isinstance(target, str):
        input_ids = prompt_ids
        target_id = token_ids_for_text(loaded, target)[0]
    elif isinstance(target, int) and not isinstance(target, bool):
        count = int(generated_ids.numel())
        if count == 0:
            raise ValueError(
                f"target {target} names a generated token, but none were generated (max_new_tokens is 0)"
            )
        if not 1 <= target <= count:
            raise ValueError(f"target {target} is out of range: choose a generated token from 1 to {count}")
        input_ids = torch.cat([prompt_ids, generated_ids[: target - 1]])
        target_id = int(generated_ids[target - 1])
    else:
        raise ValueError(
            f"target must be None (the predicted next token), text such as ' Riga', or the number "
            f"of a generated token (1 = first); got {target!r}"
        )
    text = display_tokens(loaded, [target_id])[0]
    return ResolvedTarget(
        input_ids=input_ids, target=Target(text=text, id=target_id, position=int(input_ids.numel()))
    )


def resolve_foil(loaded: LoadedModel, contrast: object, target: Target) -> Target:
    """The contrastive alternative at the target's position: the first token of `contrast` given as
    text, or a vocabulary id given as int (e.g. one of `analysis.top_predictions`, whose display text
    may not round-trip for byte-level pieces)."""
    if isinstance(contrast, int) and not isinstance(contrast, bool):
        vocabulary_size = len(loaded.tokenizer)
        if not 0 <= contrast < vocabulary_size:
            raise ValueError(f"contrast token id {contrast} is outside the vocabulary (0 to {vocabulary_size - 1})")
        foil_id = int(contrast)
    else:
        foil_id = token_ids_for_text(loaded, contrast, what="contrast")[0]
    if foil_id == target.id:
        raise ValueError(
            f"the contrast {contrast!r} starts with the target token {target.text!r} itself; "
            "pick a different alternative"
        )
    return Target(text=display_tokens(loaded, [foil_id])[0], id=foil_id, position=target.position)
