"""What is explained: the next token, the k-th generated token, or a token given as text.

The settings themselves are validated where they are built (`attribution.settings.Settings`, with the
checks in `attribution.validation`).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Iterable

import torch

from .models import LoadedModel
from .content import content_token
from .results import Span, Target
from .settings import ANSWER_TARGET, REPLY_TARGET

from .validation import (  # noqa: F401 (re-exported: the engine's validation lives there, torch-free)
    ALLOWED_CONTROL as _ALLOWED_CONTROL,
    max_prompt_tokens,
    validate_choice,
    validate_fraction,
    validate_integer,
    validate_methods,
    validate_prompt,
    validate_steps,
)


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
    span: Span | None = None  # a span target: the stretch, whose last token is `target`
    span_positions: torch.Tensor | None = None  # [S]: the input position that predicts each span token
    # The input is the prompt plus generated tokens (generation's logits apply); False for a continuation.
    from_generation: bool = True


def greedy_next_token(loaded: LoadedModel, input_ids: torch.Tensor) -> int:
    with torch.inference_mode():
        output = loaded.model(input_ids=input_ids.unsqueeze(0), logits_to_keep=1, use_cache=False)
    return int(output.logits[0, -1].argmax())


def resolve_target(
    loaded: LoadedModel, prompt_ids: torch.Tensor, generated_ids: torch.Tensor, target: object, prompt: str = "",
    continuation: str | None = None,
) -> ResolvedTarget:
    """`None`: the greedy next token; `str`: its first token at the next position; `int` k ≥ 1:
    the k-th generated token, with the prompt and the k − 1 earlier generated tokens as input;
    ANSWER_TARGET: the generated token that starts the answer's first content word (`prompt`: the
    user's text, whose words are not content); (k, m): the span of generated tokens k..m; REPLY_TARGET: the
    span of the whole reply (`reply_span`). A
    `continuation` (target None): its tokens as a span, teacher-forced right after the prompt."""
    if continuation is not None:
        return _continuation_span(loaded, prompt_ids, continuation)
    if target == REPLY_TARGET:
        target = reply_span(loaded, generated_ids)
    if isinstance(target, tuple):
        return _answer_span(loaded, prompt_ids, generated_ids, target)
    if target == ANSWER_TARGET:
        if not generated_ids.numel():
            raise ValueError("the answer's content token needs a generated answer: set max_new_tokens to 1 or more")
        target = content_token(prompt, display_tokens(loaded, generated_ids.tolist()))
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


def _span_target(loaded: LoadedModel, prompt_ids: torch.Tensor, span_ids: torch.Tensor, source: str,
                 numbers: tuple[int | None, int | None], before: torch.Tensor) -> ResolvedTarget:
    """The span `span_ids` [S] following prompt_ids + `before`: the input ends with all but its last
    token (teacher-forced), and span token i is predicted at the position just before its own."""
    input_ids = torch.cat([prompt_ids, before, span_ids[:-1]])
    start = int(prompt_ids.numel() + before.numel())  # the first span token's index in input + target
    positions = torch.arange(start - 1, start - 1 + span_ids.numel())  # [S]
    tokens = display_tokens(loaded, span_ids.tolist())
    span = Span(tokens=tuple(tokens), ids=tuple(span_ids.tolist()), start=start,
                text=loaded.tokenizer.decode(span_ids.tolist()), source=source, first=numbers[0], last=numbers[1])
    target = Target(text=tokens[-1], id=int(span_ids[-1]), position=int(input_ids.numel()))
    return ResolvedTarget(input_ids=input_ids, target=target, span=span, span_positions=positions,
                          from_generation=source == "answer")


def reply_span(loaded: LoadedModel, generated_ids: torch.Tensor) -> tuple[int, int]:
    """(1, n): the whole reply as generated tokens, its last token left out when it ends the sequence (EOS:
    its probability is about stopping, not about the answer) and the reply has others."""
    count = int(generated_ids.numel())
    if count == 0:
        raise ValueError("the whole answer needs a generated answer: set max_new_tokens to 1 or more")
    eos = loaded.tokenizer.eos_token_id
    ends = {int(value) for value in (eos if isinstance(eos, (list, tuple)) else [eos]) if value is not None}
    return (1, count - 1 if count > 1 and int(generated_ids[-1]) in ends else count)


def _answer_span(loaded: LoadedModel, prompt_ids: torch.Tensor, generated_ids: torch.Tensor,
                 span: tuple[int, int]) -> ResolvedTarget:
    first, last = span
    count = int(generated_ids.numel())
    if count == 0:
        raise ValueError(f"target {first}-{last} names generated tokens, but none were generated (max_new_tokens is 0)")
    if not 1 <= first <= last <= count:
        raise ValueError(f"span target {first}-{last} is out of range: choose generated tokens k..m with "
                         f"1 ≤ k ≤ m ≤ {count} (the tokens generated)")
    return _span_target(loaded, prompt_ids, generated_ids[first - 1 : last], "answer", (first, last),
                        generated_ids[: first - 1])


def _continuation_span(loaded: LoadedModel, prompt_ids: torch.Tensor, continuation: str) -> ResolvedTarget:
    ids = torch.tensor(token_ids_for_text(loaded, continuation, what="continuation"), dtype=prompt_ids.dtype,
                       device=prompt_ids.device)
    return _span_target(loaded, prompt_ids, ids, "continuation", (None, None), prompt_ids.new_empty(0))


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
