"""Scores per word, sentence or segment: which tokens make up each unit of the text, and how a method's
token scores combine into one score per group.

Torch-free: the engine builds a `Grouping` from the tokenizer (`grouping_for`), and a stored `Analysis`
regroups from the `TokenSpans` it keeps (no tokenizer, no model), so the page can switch granularity
without running anything.

Where each token sits in the text is read from the tokenizer's own decoding, one token at a time against
a few tokens of context (`token_spans`): that works the same for SentencePiece (`▁` word starts, byte
fallback) and byte-level BPE (`Ġ`, one character's UTF-8 bytes split over several tokens, emoji), and the
pieces are checked to spell the whole decoded text. Tokens that carry parts of one character's bytes are
all given that character, so they land in the same word.

Units are found in the text, then each token joins the unit(s) its characters overlap; a token that
overlaps two units (a SentencePiece piece such as "s." across a sentence end) merges them, so a group is
always a whole number of tokens. A token of only whitespace (or of a separator) joins the next unit, else
the previous one. Template and held tokens (the chat template's, BOS, the first position) are never
merged with the text: each stays a group of its own.

- word: a run of letters, digits and marks; an apostrophe, hyphen or period between two letters or
  digits stays inside it ("don't", "3.14", "e.g"), as does a comma between digits ("1,000"). A run of
  punctuation is one word ("?!"); a symbol with its marks and joiners is one (an emoji: "👩‍💻", "👍🏽", a
  flag "🇱🇻"). A CJK ideograph is a word of its own (as BERT's tokenizer splits Chinese), since no spaces mark the words there.
- sentence: ends after `.`, `!`, `?` or `…` (and any closing quotes or brackets) followed by whitespace or
  the end, after `。！？` at once, and at every newline. A period after a known abbreviation ("Dr.",
  "e.g.") or a single letter (an initial: "J. Smith") does not end one; a decimal point is never followed
  by a space, so "3.14" stays whole.
- segment: passages separated by blank lines, or by a separator string the user gives (its characters
  belong to no passage).
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

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

_REPLACEMENT = "\ufffd"  # what a decoder writes for a character whose UTF-8 bytes are not all there yet
_WINDOW = 8  # tokens of context (at least) before each token when decoding it


def validate_granularity(value: object) -> str:
    if not isinstance(value, str) or value not in GRANULARITIES:
        raise ValueError(f"unknown granularity {value!r}; valid choices: {', '.join(GRANULARITIES)}")
    return value


def validate_separator(value: object) -> str | None:
    """None (segments split at blank lines) or a non-empty string that separates the segments."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"separator must be text (e.g. '###') or None for blank lines, got {type(value).__name__}")
    if value == "":
        raise ValueError("separator is empty: give the text that separates the segments (e.g. '###'), "
                         "or None to split at blank lines")
    return value


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


# --- units of text ------------------------------------------------------------------------------------

_WORD_JOINERS = {"'": "letter", "\u2019": "letter", "-": "letter", ".": "letter", ",": "digit"}
_ABBREVIATIONS = frozenset("""
mr mrs ms dr prof sr jr st mt vs etc e.g i.e cf al fig figs no nos vol vols approx dept est inc ltd co corp
jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun p pp ed eds rev gen col lt sgt
""".split())
_SENTENCE_END = ".!?\u2026"
_CJK_SENTENCE_END = "\u3002\uff01\uff1f"
_CLOSERS = "\"')]}\u201d\u2019\u00bb"
_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")


def _is_ideograph(character: str) -> bool:
    code = ord(character)
    return (0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0x20000 <= code <= 0x2FA1F
            or 0xF900 <= code <= 0xFAFF)


def _kind(character: str) -> str:
    """"space", "ideograph", "word", "punct", "mark" (attaches to what precedes), "joiner" (ZWJ:
    attaches both ways) or "symbol"."""
    if character.isspace():
        return "space"
    if character == "\u200d":
        return "joiner"
    if _is_ideograph(character):
        return "ideograph"
    category = unicodedata.category(character)
    if category[0] in "LN" or category == "Pc":
        return "word"
    if category[0] == "M" or category == "Sk" and 0x1F3FB <= ord(character) <= 0x1F3FF or "\ufe00" <= character <= "\ufe0f":
        return "mark"  # combining marks, emoji skin tones and variation selectors belong to what precedes
    if category[0] == "P":
        return "punct"
    return "symbol"


def _is_regional_indicator(character: str) -> bool:
    return 0x1F1E6 <= ord(character) <= 0x1F1FF


def _pairs_flag(text: str, unit: list[int], index: int) -> bool:
    """Whether text[index] is the second regional indicator of a flag ("🇱🇻") begun by `unit`."""
    return (_is_regional_indicator(text[index]) and unit[1] - unit[0] == 1
            and _is_regional_indicator(text[unit[0]]))


def _joins_word(text: str, index: int, stop: int) -> bool:
    """Whether text[index] (a joiner character) sits inside a word: a letter or digit on both sides."""
    need = _WORD_JOINERS.get(text[index])
    if need is None or index + 1 >= stop or index == 0:
        return False
    before, after = text[index - 1], text[index + 1]
    if need == "digit":
        return before.isdigit() and after.isdigit()
    return _kind(before) == "word" and _kind(after) == "word"


def word_units(text: str, start: int, stop: int) -> list[tuple[int, int]]:
    """[start, stop) character ranges of the words in text[start:stop] (see the module's docstring)."""
    units: list[list[int]] = []
    current, joined = None, False  # the kind of the unit being built (None after a space); after a ZWJ
    for index in range(start, stop):
        kind = _kind(text[index])
        if kind == "space":
            current, joined = None, False
            continue
        extend = current is not None and (
            joined or kind in ("mark", "joiner")
            or (kind == current and kind in ("word", "punct"))
            or (kind == current == "symbol" and _pairs_flag(text, units[-1], index))
            or (current == "word" and kind == "punct" and _joins_word(text, index, stop)))
        if extend:
            units[-1][1] = index + 1
            if joined and kind not in ("mark", "joiner"):
                current = kind if kind in ("word", "punct", "symbol") else "symbol"
            joined = kind == "joiner"
            continue
        units.append([index, index + 1])
        current = kind if kind in ("word", "punct", "ideograph") else "symbol"
        joined = kind == "joiner"
    return [(begin, end) for begin, end in units]


def _previous_word(text: str, index: int, start: int) -> str:
    """The non-space characters right before text[index], lower-cased (the word a period ends)."""
    begin = index
    while begin > start and not text[begin - 1].isspace():
        begin -= 1
    return text[begin:index].lower().lstrip("\"'([{\u201c\u2018")


def _ends_sentence(text: str, index: int, start: int, stop: int) -> int | None:
    """If a sentence ends at the terminator text[index], the index after it (and its closers)."""
    character = text[index]
    if character in _CJK_SENTENCE_END:
        end = index + 1
        while end < stop and text[end] in _CLOSERS:
            end += 1
        return end
    if character not in _SENTENCE_END:
        return None
    end = index + 1
    while end < stop and text[end] in _SENTENCE_END:
        end += 1
    while end < stop and text[end] in _CLOSERS:
        end += 1
    if end < stop and not text[end].isspace():
        return None  # "3.14", "e.g.x", "?!" inside a token run: no space, no end
    if character == "." and end == index + 1:
        word = _previous_word(text, index, start)
        if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
            return None
    return end


def sentence_units(text: str, start: int, stop: int) -> list[tuple[int, int]]:
    """[start, stop) character ranges of the sentences in text[start:stop], without their surrounding
    whitespace."""
    pieces, begin, index = [], start, start
    while index < stop:
        if text[index] == "\n":
            pieces.append((begin, index))
            begin = index + 1
            index += 1
            continue
        end = _ends_sentence(text, index, start, stop)
        if end is not None:
            pieces.append((begin, end))
            begin = index = end
            continue
        index += 1
    pieces.append((begin, stop))
    return _trimmed(text, pieces)


def segment_units(text: str, start: int, stop: int, separator: str | None) -> list[tuple[int, int]]:
    """Passages of text[start:stop] split at blank lines, or at every occurrence of `separator`."""
    pieces, begin = [], start
    if separator is None:
        for match in _BLANK_LINE.finditer(text, start, stop):
            pieces.append((begin, match.start()))
            begin = match.end()
    else:
        found = text.find(separator, start, stop)
        while found != -1 and found + len(separator) <= stop:
            pieces.append((begin, found))
            begin = found + len(separator)
            found = text.find(separator, begin, stop)
    pieces.append((begin, stop))
    return _trimmed(text, pieces)


def _trimmed(text: str, pieces: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The pieces without leading and trailing whitespace; empty ones dropped."""
    units = []
    for begin, end in pieces:
        while begin < end and text[begin].isspace():
            begin += 1
        while end > begin and text[end - 1].isspace():
            end -= 1
        if end > begin:
            units.append((begin, end))
    return units


# --- groups -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """Some consecutive input tokens shown as one: `label` is their text (stripped of the whitespace
    around it), `tokens` their positions, `kind` one of GROUP_KINDS."""

    label: str
    tokens: tuple[int, ...]
    kind: str = "text"

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
) -> Grouping:
    """The grouping of the tokens whose places `spans` gives. `held` [n_tokens] bool: context kept as
    groups of their own (the first position); `template` [n_tokens] bool: the chat template's tokens;
    special tokens are held. ValueError for a separator the text does not contain, or
    text with no segment in it."""
    granularity = validate_granularity(granularity)
    separator = validate_separator(separator)
    n_tokens = len(spans)
    kinds = _token_kinds(spans, _mask(held, n_tokens, "held"), _mask(template, n_tokens, "template"))
    runs: list[list[int]] = []  # consecutive text tokens
    for index, kind in enumerate(kinds):
        if kind == "text" and granularity != "token":
            if runs and runs[-1][-1] == index - 1:
                runs[-1].append(index)
            else:
                runs.append([index])
    if granularity == "segment" and separator is not None and runs and not any(
            separator in spans.text[spans.spans[run[0]][0]:spans.spans[run[-1]][1]] for run in runs):
        raise ValueError(f"the separator {separator!r} does not occur in the prompt's text; give one that "
                         "separates its segments, or none to split at blank lines")
    grouped: dict[int, tuple[tuple[int, ...], tuple[int, int] | None]] = {}
    for run in runs:
        start, stop = spans.spans[run[0]][0], spans.spans[run[-1]][1]
        units = _units(spans, granularity, start, stop, separator)
        if not units:
            if granularity == "segment":
                raise ValueError("the prompt's text has no segment in it (only whitespace or separators); "
                                 "give text between the separators")
            units = [(start, stop)]
        for tokens, characters in _group_run(spans, run, units):
            grouped[tokens[0]] = (tokens, characters)
    groups, index = [], 0
    while index < n_tokens:
        tokens, characters = grouped.get(index, ((index,), None))
        start, stop = characters or (spans.spans[tokens[0]][0], spans.spans[tokens[-1]][1])
        groups.append(Group(_label(spans.text[start:stop]), tokens, kinds[index]))
        index = tokens[-1] + 1
    return Grouping(granularity, tuple(groups))


def grouping_for(
    tokenizer: Any, ids: Iterable[int], granularity: str, separator: str | None = None, *,
    held: Sequence[bool] | np.ndarray | None = None, template: Sequence[bool] | np.ndarray | None = None,
) -> Grouping:
    """The tokens `ids` grouped at `granularity` (a value of GRANULARITIES); see `groups_from_spans`."""
    return groups_from_spans(token_spans(tokenizer, ids), granularity, separator=separator, held=held,
                             template=template)
