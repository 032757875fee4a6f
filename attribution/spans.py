"""Where each token sits in the decoded text (`token_spans` → `TokenSpans`), read from the tokenizer's own
decoding; torch-free.

Each token is decoded after a few tokens of context and what it adds is its text: that works the same for
SentencePiece (`▁` word starts, byte fallback) and byte-level BPE (`Ġ`, one character's UTF-8 bytes split over
several tokens, emoji), and the pieces are checked to spell the whole decoded text. Tokens that carry parts
of one character's bytes are all given that character, so they land in the same word
(`attribution.groups`).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

_REPLACEMENT = "\ufffd"  # what a decoder writes for a character whose UTF-8 bytes are not all there yet
_WINDOW = 8  # tokens of context (at least) before each token when decoding it


@dataclass(frozen=True)
class TokenSpans:
    """Where each token sits in the decoded text: `spans[i]` is token i's [start, stop) characters of
    `text` (the ids decoded with their special tokens). Tokens that share a character (its UTF-8 bytes
    split between them) share that character's span; `special[i]` marks the tokenizer's special tokens."""

    text: str
    spans: tuple[tuple[int, int], ...]  # [n_tokens]
    special: tuple[bool, ...]  # [n_tokens]

    def __post_init__(self) -> None:
        spans = tuple((int(start), int(stop)) for start, stop in self.spans)
        object.__setattr__(self, "spans", spans)
        object.__setattr__(self, "special", tuple(bool(flag) for flag in self.special))
        if len(self.special) != len(spans):
            raise ValueError(f"{len(self.special)} special-token flags for {len(spans)} token spans")
        previous = 0
        for index, (start, stop) in enumerate(spans):
            if not 0 <= start <= stop <= len(self.text) or start > previous:
                raise ValueError(f"token {index}'s span ({start}, {stop}) does not follow the one before it "
                                 f"in a text of {len(self.text)} characters")
            previous = max(previous, stop)
        if spans and previous != len(self.text):
            raise ValueError(f"the token spans cover {previous} of the text's {len(self.text)} characters")

    def __len__(self) -> int:
        return len(self.spans)

    def piece(self, index: int) -> str:
        start, stop = self.spans[index]
        return self.text[start:stop]

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "spans": [list(span) for span in self.spans], "special": list(self.special)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TokenSpans":
        return cls(data["text"], tuple(tuple(span) for span in data["spans"]), tuple(data["special"]))


def _decode(tokenizer: Any, ids: Sequence[int]) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _special_ids(tokenizer: Any) -> set[int]:
    special = {int(token_id) for token_id in getattr(tokenizer, "all_special_ids", ()) or ()}
    for token_id, added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if getattr(added, "special", False):
            special.add(int(token_id))
    return special


def _atoms(tokenizer: Any, ids: list[int], window: int | None) -> list[tuple[int, int, str]] | None:
    """The ids cut into atoms — the fewest consecutive tokens that decode to whole characters — as
    (first token, last token, their text), each decoded after the atoms of at least `window` tokens
    before it (None: all of them). None when the atoms do not spell the whole decoding."""
    atoms, boundaries, first = [], [0], 0
    while first < len(ids):
        begin = 0
        if window is not None:  # the last atom boundary at least `window` tokens back
            begin = boundaries[max(0, bisect.bisect_right(boundaries, first - window) - 1)]
        before = _decode(tokenizer, ids[begin:first])
        last = first
        while True:
            after = _decode(tokenizer, ids[begin:last + 1])
            whole = not after.endswith(_REPLACEMENT) and after.startswith(before)
            # A character is at most 4 bytes; a decoder that still has no whole text after that many more
            # tokens writes the replacement character itself.
            if whole or last + 1 >= len(ids) or last - first >= 8:
                break
            last += 1
        if not after.startswith(before):
            return None
        atoms.append((first, last, after[len(before):]))
        first = last + 1
        boundaries.append(first)
    return atoms


def token_spans(tokenizer: Any, ids: Iterable[int]) -> TokenSpans:
    """Each token's characters in `tokenizer.decode(ids)` (special tokens kept).

    The ids are cut into atoms, the fewest consecutive tokens that decode to whole characters (one token,
    except where a character's UTF-8 bytes are split between tokens), each decoded after a few atoms of
    context (which keeps a SentencePiece word-start space, and gives byte fallback whole runs of bytes):
    its text is what it adds to the context's. Every token of an atom gets the atom's characters. The atoms
    must spell the whole decoded text; when a decoder looks further back than the context, each atom is
    decoded after every token before it instead, and a decoder that still does not spell its own text
    is refused.
    """
    ids = [int(token_id) for token_id in ids]
    text = _decode(tokenizer, ids)
    atoms = _atoms(tokenizer, ids, _WINDOW)
    if atoms is None or "".join(piece for _, _, piece in atoms) != text:
        atoms = _atoms(tokenizer, ids, None)
    if atoms is None or "".join(piece for _, _, piece in atoms) != text:
        raise ValueError("this tokenizer's decoding of the ids one after another does not spell their decoding, "
                         "so its tokens cannot be placed in the text; use granularity 'token'")
    spans, position = [], 0
    for first, last, piece in atoms:
        spans += [(position, position + len(piece))] * (last - first + 1)
        position += len(piece)
    special = _special_ids(tokenizer)
    return TokenSpans(text, tuple(spans), tuple(token_id in special for token_id in ids))
