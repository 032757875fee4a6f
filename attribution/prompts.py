"""From the user's text to token ids: the raw prompt as the seed tokenizes it, or the prompt as the
user message of the model's chat template — and, either way, exactly which tokens the user typed.

Which tokens are the user's is read from the tokenizer's character offsets against the span the
template gave the prompt (found by rendering the template around a placeholder), never by searching
for the prompt's text, which could also occur in a system prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jinja2.exceptions import TemplateError

from .models import LoadedModel
from .targets import max_prompt_tokens

# A private-use character no tokenizer's template alters and no user prompt is likely to hold: the
# template is rendered once around it to learn what comes before and after the user's message.
_PLACEHOLDER = "\ue000\ue001\ue002"


@dataclass(frozen=True)
class EncodedPrompt:
    ids: torch.Tensor  # [seq] on the model's input device
    user_tokens: np.ndarray  # [seq] bool: the token covers characters the user typed
    text: str  # what the tokenizer saw (the rendered template when chat)


def has_chat_template(loaded: LoadedModel) -> bool:
    return bool(getattr(loaded.tokenizer, "chat_template", None))


def _render(loaded: LoadedModel, content: str, system: str | None) -> str:
    messages = [{"role": "user", "content": content}]
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    try:
        text = loaded.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    except (TemplateError, ValueError, TypeError, KeyError) as error:  # templates may raise_exception()
        if system is not None:
            raise ValueError(
                f"the chat template of {loaded.name!r} refused a system prompt ({error}); leave the system prompt empty"
            ) from None
        raise ValueError(f"the chat template of {loaded.name!r} failed: {error}") from None
    if not isinstance(text, str):
        raise ValueError(f"the chat template of {loaded.name!r} did not render to text")
    return text


def user_span(loaded: LoadedModel, prompt: str, system: str | None) -> tuple[str, int, int]:
    """The rendered chat text and the [start, stop) characters of the user's message in it."""
    around = _render(loaded, _PLACEHOLDER, system)
    if around.count(_PLACEHOLDER) != 1:
        raise ValueError(
            f"the chat template of {loaded.name!r} does not place the user's message once, as is; "
            "use the raw prompt (chat off)"
        )
    before, after = around.split(_PLACEHOLDER)
    text = _render(loaded, prompt, system)
    if not (text.startswith(before) and text.endswith(after)) or len(before) + len(after) > len(text):
        raise ValueError(
            f"the chat template of {loaded.name!r} changes the text around the user's message with its "
            "content, so the typed tokens cannot be told apart; use the raw prompt (chat off)"
        )
    return text, len(before), len(text) - len(after)


def _encode(loaded: LoadedModel, text: str, add_special_tokens: bool, span: tuple[int, int]):
    """Token ids of `text` and, per token, whether its characters overlap `span`."""
    tokenizer = loaded.tokenizer
    if getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
        start, stop = span
        # Added special tokens (BOS) have the empty span (0, 0) and so are never the user's.
        user = [begin < stop and end > start and end > begin for begin, end in encoded["offset_mapping"]]
        return list(encoded["input_ids"]), user
    # Slow tokenizers have no offsets: encode the three pieces apart (the boundaries are then exact,
    # at the price of never merging a token across them).
    start, stop = span
    pieces = [text[:start], text[start:stop], text[stop:]]
    ids, user = [], []
    if add_special_tokens:
        with_special = tokenizer(text[start:stop], add_special_tokens=True)["input_ids"]
        plain = tokenizer(text[start:stop], add_special_tokens=False)["input_ids"]
        # The specials the tokenizer adds around plain text (BOS) come first, as a fast tokenizer adds them.
        prefix = with_special[: len(with_special) - len(plain)] if with_special[-len(plain) :] == plain else []
        ids += prefix
        user += [False] * len(prefix)
    for index, piece in enumerate(pieces):
        piece_ids = tokenizer(piece, add_special_tokens=False)["input_ids"] if piece else []
        ids += piece_ids
        user += [index == 1] * len(piece_ids)
    return ids, user


def encode_prompt(loaded: LoadedModel, prompt: str, *, chat: bool = False, system: str | None = None) -> EncodedPrompt:
    """The raw prompt with the tokenizer's special tokens (BOS for Llama, as the seed), or with
    `chat=True` the prompt as the user message of the chat template with the generation prompt added
    (the model's default system prompt applies unless `system` is given)."""
    if system is not None and not chat:
        raise ValueError("a system prompt needs the chat template: pass chat=True (CLI: --chat)")
    if chat:
        if not has_chat_template(loaded):
            raise ValueError(
                f"model {loaded.name!r} has no chat template (its tokenizer defines none); "
                "use the raw prompt (chat off)"
            )
        text, start, stop = user_span(loaded, prompt, system)
        # The template writes its own special tokens (BOS among them) as text, as apply_chat_template's
        # own tokenisation does.
        ids, user = _encode(loaded, text, add_special_tokens=False, span=(start, stop))
    else:
        text = prompt
        ids, user = _encode(loaded, text, add_special_tokens=True, span=(0, len(prompt)))
    limit = max_prompt_tokens()
    what = "prompt with its chat template" if chat else "prompt"
    if len(ids) > limit:
        raise ValueError(f"{what} is {len(ids)} tokens long; the limit is {limit} tokens, shorten it")
    if not ids:
        raise ValueError("prompt tokenizes to no tokens at all")
    return EncodedPrompt(
        ids=torch.tensor(ids, dtype=torch.long, device=loaded.input_device),
        user_tokens=np.array(user, dtype=bool),
        text=text,
    )


def held_context(special: np.ndarray, user_tokens: np.ndarray, n_prompt: int, chat: bool) -> np.ndarray:
    """[seq] bool: the context an explanation holds fixed — the first position (the attention sink:
    moving it switches the sink on and off, so IG's path jumps), special tokens, and with a chat
    template the template's own tokens. Generated tokens before the target (`target=k`) are not held."""
    held = np.array(special, dtype=bool, copy=True)
    held[0] = True
    if chat:
        held[:n_prompt] |= ~np.asarray(user_tokens[:n_prompt], dtype=bool)
    return held
