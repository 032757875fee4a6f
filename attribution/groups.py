"""Scores per word, sentence or segment: which tokens make up each unit of the text, and how a method's
token scores combine into one score per group.

Torch-free: the engine builds a `Grouping` from the tokenizer (`grouping_for`), and a stored `Analysis`
regroups from the `TokenSpans` it keeps (no tokenizer, no model), so the page can switch granularity
without running anything. Where each token sits in the text: `attribution.spans`; what a word, a sentence
and a segment are: `attribution.text_units`.

Units are found in the text, then each token joins the unit(s) its characters overlap; a token that
overlaps two units (a SentencePiece piece such as "s." across a sentence end) merges them, so a group is
always a whole number of tokens. A token of only whitespace (or of a separator) joins the next unit, else
the previous one. Template and held tokens (the chat template's, BOS, the first position) are never
merged with the text: each stays a group of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from .spans import TokenSpans, token_spans
from .text_units import segment_units, sentence_units, word_units
from .validation import validate_optional_text

__all__ = [
    "COMBINE_RULES", "GRANULARITIES", "GROUP_KINDS", "Group", "Grouping", "TokenSpans", "grouping_for",
    "groups_from_spans", "segment_units", "sentence_units", "token_spans", "validate_granularity",
    "validate_separator", "word_units",
]

#: The units scores can be shown per; "token" is the tokenizer's own pieces (no grouping).
GRANULARITIES = ("token", "word", "sentence", "segment")

#: How a method's token scores become one score per group (catalog `combine`). "remove" is not a rule of
#: this module: a perturbation method is run on the groups themselves (the engine hides whole groups).
COMBINE_RULES = {
    "sum": "the group's token scores added (signed shares and first-order terms add; IG with sum stays complete)",
    "l2": "the L2 norm of the group's token scores, √Σ s² (a norm over the tokens' embeddings is the norm "
          "of their concatenation)",
}

#: What a group is made of: the user's text, the chat template's or special tokens, or other held context.
GROUP_KINDS = ("text", "template", "held")


def validate_granularity(value: object) -> str:
    if not isinstance(value, str) or value not in GRANULARITIES:
        raise ValueError(f"unknown granularity {value!r}; valid choices: {', '.join(GRANULARITIES)}")
    return value


def validate_separator(value: object) -> str | None:
    """None (segments split at blank lines) or a non-empty string that separates the segments."""
    return validate_optional_text(value, "separator", example="'###'", what="the text that separates the segments",
                                  none_means="to split at blank lines")


# --- groups -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """Some consecutive input tokens shown as one: `label` is their text (stripped of the whitespace
    around it, and of a separator), `tokens` their positions, `kind` one of GROUP_KINDS, `text` everything
    its tokens decode to (leading spaces kept, as a token's display string: what a highlight shows)."""

    label: str
    tokens: tuple[int, ...]
    kind: str = "text"
    text: str = ""

    def __post_init__(self) -> None:
        tokens = tuple(int(token) for token in self.tokens)
        object.__setattr__(self, "tokens", tokens)
        if not tokens:
            raise ValueError(f"group {self.label!r} has no tokens")
        if list(tokens) != list(range(tokens[0], tokens[0] + len(tokens))):
            raise ValueError(f"group {self.label!r}'s tokens {tokens} are not consecutive")
        if self.kind not in GROUP_KINDS:
            raise ValueError(f"unknown group kind {self.kind!r}; valid choices: {', '.join(GROUP_KINDS)}")

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "tokens": list(self.tokens), "kind": self.kind}


@dataclass(frozen=True)
class Grouping:
    """The input tokens cut into groups at one granularity: every token in exactly one group, in order."""

    granularity: str
    groups: tuple[Group, ...]

    def __post_init__(self) -> None:
        validate_granularity(self.granularity)
        object.__setattr__(self, "groups", tuple(self.groups))
        covered = [token for group in self.groups for token in group.tokens]
        if covered != list(range(len(covered))):
            raise ValueError("a grouping must cover every token once, in order")

    def __len__(self) -> int:
        return len(self.groups)

    @property
    def n_tokens(self) -> int:
        return sum(len(group.tokens) for group in self.groups)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(group.label for group in self.groups)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(group.kind for group in self.groups)

    @property
    def token_group(self) -> np.ndarray:
        """[n_tokens] int: the group each token belongs to."""
        index = np.empty(self.n_tokens, dtype=np.int64)
        for number, group in enumerate(self.groups):
            index[list(group.tokens)] = number
        return index

    def any_of(self, mask: Sequence[bool] | np.ndarray) -> np.ndarray:
        """[n_groups] bool: the groups with at least one token flagged in `mask` [n_tokens]."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (self.n_tokens,):
            raise ValueError(f"mask of shape {mask.shape} for {self.n_tokens} tokens")
        return np.array([bool(mask[list(group.tokens)].any()) for group in self.groups], dtype=bool)

    def combine(self, scores: Sequence[float] | np.ndarray, rule: str) -> np.ndarray:
        """[n_tokens] token scores → [n_groups] group scores by `rule` (a key of COMBINE_RULES)."""
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (self.n_tokens,):
            raise ValueError(f"{scores.shape} scores for a grouping of {self.n_tokens} tokens")
        if rule == "sum":
            return np.array([scores[list(group.tokens)].sum() for group in self.groups])
        if rule == "l2":
            return np.array([np.sqrt(np.square(scores[list(group.tokens)]).sum()) for group in self.groups])
        if rule == "remove":
            raise ValueError("a perturbation method's scores do not combine: it is run on the groups themselves "
                             "(the engine hides whole groups)")
        raise ValueError(f"unknown combine rule {rule!r}; valid choices: {', '.join(COMBINE_RULES)}")

    def to_dict(self) -> dict[str, Any]:
        return {"granularity": self.granularity, "groups": [group.to_dict() for group in self.groups]}


def _token_kinds(spans: TokenSpans, held: np.ndarray | None, template: np.ndarray | None) -> list[str]:
    """Per token: "template" (flagged in `template`), "held" (flagged in `held`, or a special token such
    as BOS) or "text"."""
    kinds = []
    for index in range(len(spans)):
        if template is not None and template[index]:
            kinds.append("template")
        elif spans.special[index] or (held is not None and held[index]):
            kinds.append("held")
        else:
            kinds.append("text")
    return kinds


def _mask(values: Sequence[bool] | np.ndarray | None, n_tokens: int, name: str) -> np.ndarray | None:
    if values is None:
        return None
    mask = np.asarray(values, dtype=bool).reshape(-1)
    if mask.shape[0] != n_tokens:
        raise ValueError(f"{mask.shape[0]} {name} flags for {n_tokens} tokens")
    return mask


def _label(text: str) -> str:
    stripped = text.strip()
    return stripped if stripped else text


def _units(spans: TokenSpans, granularity: str, start: int, stop: int, separator: str | None) -> list[tuple[int, int]]:
    if granularity == "word":
        return word_units(spans.text, start, stop)
    if granularity == "sentence":
        return sentence_units(spans.text, start, stop)
    return segment_units(spans.text, start, stop, separator)


def _group_run(spans: TokenSpans, run: list[int], units: list[tuple[int, int]]
               ) -> list[tuple[tuple[int, ...], tuple[int, int] | None]]:
    """The tokens of one run of text tokens, cut at the units' boundaries (a token overlapping two units
    merges them; a token overlapping none joins the next unit in the run, else the previous), each
    group with the characters of its units (None: it has none, only whitespace)."""
    owner: dict[int, int] = {}  # character → its unit
    for number, (begin, end) in enumerate(units):
        for character in range(begin, end):
            owner[character] = number
    touched = []  # per token of the run: the units it overlaps (first, last), or None
    for token in run:
        start, stop = spans.spans[token]
        numbers = [owner[character] for character in range(start, stop) if character in owner]
        touched.append((min(numbers), max(numbers)) if numbers else None)
    # Whitespace-only tokens: the next token's unit in the run, else the previous one's.
    following = None
    for position in range(len(run) - 1, -1, -1):
        if touched[position] is None:
            touched[position] = following
        else:
            following = touched[position]
    preceding = None
    for position in range(len(run)):
        if touched[position] is None:
            touched[position] = preceding
        else:
            preceding = touched[position]
    groups: list[list[int]] = []
    labels: list[list[int]] = []  # per group: its first and last unit (-1: none)
    reach = -1  # the last unit the current group covers
    for token, unit in zip(run, touched):
        first, last = unit if unit is not None else (reach, reach)
        if groups and first <= reach:
            groups[-1].append(token)
            labels[-1][1] = max(labels[-1][1], last)
        else:
            groups.append([token])
            labels.append([first, last])
        reach = max(reach, last)
    return [(tuple(group), None if first < 0 else (units[first][0], units[last][1]))
            for group, (first, last) in zip(groups, labels)]


def groups_from_spans(
    spans: TokenSpans, granularity: str, *, separator: str | None = None,
    held: Sequence[bool] | np.ndarray | None = None, template: Sequence[bool] | np.ndarray | None = None,
    breaks: Iterable[int] = (),
) -> Grouping:
    """The grouping of the tokens whose places `spans` gives. `breaks`: token positions no group crosses
    (where the prompt ends and the generated tokens before a later target begin). `held` [n_tokens] bool: context kept as
    groups of their own (the first position); `template` [n_tokens] bool: the chat template's tokens;
    special tokens are held. ValueError for a separator the text does not contain, or
    text with no segment in it."""
    granularity = validate_granularity(granularity)
    separator = validate_separator(separator)
    n_tokens = len(spans)
    kinds = _token_kinds(spans, _mask(held, n_tokens, "held"), _mask(template, n_tokens, "template"))
    runs: list[list[int]] = []  # consecutive text tokens
    breaks = set(int(position) for position in breaks)
    for index, kind in enumerate(kinds):
        if kind == "text" and granularity != "token":
            if runs and runs[-1][-1] == index - 1 and index not in breaks:
                runs[-1].append(index)
            else:
                runs.append([index])
    if granularity == "segment" and separator is not None and runs and not any(
            separator in spans.text[spans.spans[run[0]][0]:spans.spans[run[-1]][1]] for run in runs):
        raise ValueError(f"the separator {separator!r} does not occur in the prompt's text; give one that "
                         "separates its segments, or none to split at blank lines")
    grouped: dict[int, tuple[tuple[int, ...], tuple[int, int] | None]] = {}
    all_units = [_units(spans, granularity, spans.spans[run[0]][0], spans.spans[run[-1]][1], separator)
                 for run in runs]
    if granularity == "segment" and runs and not any(all_units):
        raise ValueError("the prompt's text has no segment in it (only whitespace or separators); "
                         "give text between the separators")
    for run, units in zip(runs, all_units):
        start, stop = spans.spans[run[0]][0], spans.spans[run[-1]][1]
        if not units:  # a run of whitespace only (generated tokens before a later target): one group
            units = [(start, stop)]
        for tokens, characters in _group_run(spans, run, units):
            grouped[tokens[0]] = (tokens, characters)
    groups, index = [], 0
    while index < n_tokens:
        tokens, characters = grouped.get(index, ((index,), None))
        whole = spans.text[spans.spans[tokens[0]][0]:spans.spans[tokens[-1]][1]]
        start, stop = characters or (spans.spans[tokens[0]][0], spans.spans[tokens[-1]][1])
        groups.append(Group(_label(spans.text[start:stop]), tokens, kinds[index], whole))
        index = tokens[-1] + 1
    return Grouping(granularity, tuple(groups))


def grouping_for(
    tokenizer: Any, ids: Iterable[int], granularity: str, separator: str | None = None, *,
    held: Sequence[bool] | np.ndarray | None = None, template: Sequence[bool] | np.ndarray | None = None,
) -> Grouping:
    """The tokens `ids` grouped at `granularity` (a value of GRANULARITIES); see `groups_from_spans`."""
    return groups_from_spans(token_spans(tokenizer, ids), granularity, separator=separator, held=held,
                             template=template)
