"""Which input tokens make which words of the prompt, from a result alone (no tokenizer): each token the
user typed is placed in the prompt by its characters, and the words are `attribution.groups`' (a run of
letters, digits and marks, a run of punctuation, an emoji, ...). Two analyses of the same prompt by
different tokenizers then share their words, and two different prompts (an edited one) share the words
they have in common (`align`).

Where a result keeps its `token_spans` (the tokenizer's own decoding, what `attribution.groups` cuts words
from), the typed tokens are placed by them, so that a word here is the page's "Scores per word" word;
a result without them (built by hand, or an old JSON file) places each token by its display string.
A token that covers parts of two words joins them into one unit, so that each unit's score is the sum of
whole tokens' scores. A token whose display string cannot be found (a multi-byte character split over
byte tokens, each shown as U+FFFD) takes the characters up to the next token that can.

`attribution.diff` reads these units; a token-for-token alignment needs none of this.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import numpy as np

from .groups import word_units as word_spans
from .results import Analysis


@dataclass(frozen=True)
class Unit:
    """One word (or several that one token joins) of a prompt: its text, its [start, stop) characters in
    the prompt, and the input positions of its tokens."""

    text: str
    start: int
    stop: int
    positions: tuple[int, ...]


def _placed(prompt: str, cursor: int, token: str, skip: int = 0) -> tuple[int, int] | None:
    """Where `token` lies at `cursor` (or after whitespace the token's display left out, as SentencePiece's
    leading space added by `display_tokens`, or up to `skip` more characters: those of unplaced tokens
    before it), or None."""
    for text in dict.fromkeys((token, token.lstrip(" "), token.strip())):
        if text and "\ufffd" not in text:
            at = cursor
            while at < len(prompt) and prompt[at].isspace() and not prompt.startswith(text, at):
                at += 1
            if prompt.startswith(text, at):
                return at, at + len(text)
            found = prompt.find(text, cursor, cursor + skip + len(text))
            if found >= 0:
                return found, found + len(text)
    return None


def _from_token_spans(analysis: Analysis, typed: list[int]) -> dict[int, tuple[int, int]] | None:
    """The typed tokens' characters in the prompt from the result's `token_spans`: the decoded text holds the
    prompt (after BOS, or inside the chat template) where the typed tokens are. None when the result keeps no
    spans or the decoded text does not hold the prompt verbatim there (a normalising tokenizer)."""
    spans, prompt = analysis.token_spans, analysis.prompt
    if spans is None or len(spans) != analysis.n_tokens or not typed or not prompt:
        return None
    first, last = spans.spans[typed[0]][0], spans.spans[typed[-1]][1]
    shift = spans.text.find(prompt)
    while shift >= 0 and not (shift < last and shift + len(prompt) > first):
        shift = spans.text.find(prompt, shift + 1)
    if shift < 0:
        return None
    return {index: (min(max(start - shift, 0), len(prompt)), min(max(stop - shift, 0), len(prompt)))
            for index, (start, stop) in ((index, spans.spans[index]) for index in typed)}


def token_spans(analysis: Analysis, positions: np.ndarray | None = None) -> dict[int, tuple[int, int]]:
    """Input position → its [start, stop) characters in `analysis.prompt`, for the tokens the user typed
    (`positions`: a bool mask of those to place; default: the typed tokens outside the held context)."""
    prompt = analysis.prompt
    if positions is None:
        positions = analysis.user_tokens & ~analysis.context_tokens
    typed = [int(index) for index in np.flatnonzero(analysis.user_tokens)]
    exact = _from_token_spans(analysis, typed)
    if exact is not None:
        return {index: span for index, span in exact.items() if positions[index]}
    spans: dict[int, tuple[int, int]] = {}
    cursor, pending = 0, []
    for index in typed:
        placed = _placed(prompt, cursor, analysis.input_tokens[index],
                         skip=sum(len(analysis.input_tokens[waiting]) for waiting in pending))
        if placed is None:
            pending.append(index)
            continue
        start, stop = placed
        for waiting in pending:  # unplaced tokens take what lies between the last placed one and this
            spans[waiting] = (cursor, start)
        pending = []
        spans[index] = (start, stop)
        cursor = stop
    for waiting in pending:
        spans[waiting] = (cursor, len(prompt))
    return {index: span for index, span in spans.items() if positions[index]}


def _words(prompt: str) -> list[tuple[int, int]]:
    return word_spans(prompt, 0, len(prompt))


def _covered(words: list[tuple[int, int]], span: tuple[int, int]) -> list[int]:
    """Indices of the words a token's characters overlap (the next word for a token of only spaces)."""
    start, stop = span
    hit = [index for index, (begin, end) in enumerate(words) if begin < stop and end > start]
    if hit or not words:
        return hit
    following = [index for index, (begin, _end) in enumerate(words) if begin >= start]
    return following[:1] or [len(words) - 1]


def _groups(n_words: int, links: list[list[int]]) -> list[int]:
    """Union of words linked by one token: each word's group id (the group's first word)."""
    parent = list(range(n_words))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    for linked in links:
        for other in linked[1:]:
            parent[root(other)] = root(linked[0])
    return [root(index) for index in range(n_words)]


def word_units(analysis: Analysis, *, joined_with: tuple[Analysis, ...] = ()) -> list[Unit]:
    """The prompt's words as units, each with the input positions of its tokens (the held context left
    out). `joined_with`: analyses of the same prompt whose tokens also join words, so that every analysis
    gets the same units."""
    prompt = analysis.prompt
    words = _words(prompt)
    own = token_spans(analysis)
    links = [_covered(words, span) for span in own.values()]
    for other in joined_with:
        if other.prompt != prompt:
            raise ValueError("word units can only be joined across analyses of the same prompt")
        links += [_covered(words, span) for span in token_spans(other).values()]
    group = _groups(len(words), [linked for linked in links if linked])
    members: dict[int, list[int]] = {}
    for index, root in enumerate(group):
        members.setdefault(root, []).append(index)
    positions: dict[int, list[int]] = {root: [] for root in members}
    for token, linked in zip(own, links[: len(own)]):
        if linked:
            positions[group[linked[0]]].append(token)
    units = []
    for root, indices in members.items():
        start, stop = words[indices[0]][0], words[indices[-1]][1]
        units.append(Unit(prompt[start:stop], start, stop, tuple(sorted(positions[root]))))
    return sorted(units, key=lambda unit: unit.start)


def token_units(analysis: Analysis) -> list[Unit]:
    """Each input token outside the held context as its own unit (no characters: start = stop = −1)."""
    content = ~analysis.context_tokens
    return [Unit(analysis.input_tokens[index], -1, -1, (int(index),)) for index in np.flatnonzero(content)]


def same_tokens(a: Analysis, b: Analysis) -> bool:
    """Whether the two analyses explain over the same tokens (then they align token for token)."""
    return (a.n_tokens == b.n_tokens and bool(np.array_equal(a.input_ids, b.input_ids))
            and a.input_tokens == b.input_tokens and bool(np.array_equal(a.context_tokens, b.context_tokens)))


@dataclass(frozen=True)
class Alignment:
    """The units of each analysis and which of them match: `pairs` (index in a's units, index in b's), only
    units that both analyses scored (a word in one's held context, as a raw prompt's first word on a model
    without BOS, is no pair). `only_a`/`only_b`: the scored units of each left without a match."""

    by: str  # "token" or "word"
    units_a: tuple[Unit, ...]
    units_b: tuple[Unit, ...]
    pairs: tuple[tuple[int, int], ...]

    @property
    def only_a(self) -> tuple[Unit, ...]:
        matched = {first for first, _second in self.pairs}
        return tuple(unit for index, unit in enumerate(self.units_a) if index not in matched and unit.positions)

    @property
    def only_b(self) -> tuple[Unit, ...]:
        matched = {second for _first, second in self.pairs}
        return tuple(unit for index, unit in enumerate(self.units_b) if index not in matched and unit.positions)


def align(a: Analysis, b: Analysis) -> Alignment:
    """Token for token when both give the same tokens; else word for word: the same prompt's words
    (joined where either tokenizer's tokens join them), or, for different prompts, the words the two
    have in common in order (difflib's matching blocks over the word texts)."""
    if same_tokens(a, b):
        units = token_units(a)
        return Alignment("token", tuple(units), tuple(token_units(b)), tuple((index, index) for index in range(len(units))))
    if a.prompt == b.prompt:
        units_a, units_b = word_units(a, joined_with=(b,)), word_units(b, joined_with=(a,))
        pairs = [(index, index) for index in range(len(units_a))]
    else:
        units_a, units_b = word_units(a), word_units(b)
        matcher = difflib.SequenceMatcher(a=[unit.text for unit in units_a], b=[unit.text for unit in units_b],
                                          autojunk=False)
        pairs = [(block.a + offset, block.b + offset) for block in matcher.get_matching_blocks()
                 for offset in range(block.size)]
    scored = tuple((first, second) for first, second in pairs if units_a[first].positions and units_b[second].positions)
    return Alignment("word", tuple(units_a), tuple(units_b), scored)
