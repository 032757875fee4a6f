"""Units of text, as character ranges: words, sentences and segments (passages), each found by a documented
heuristic that is the same for every tokenizer (`attribution.groups` cuts the tokens along them).

- word: a run of letters, digits and marks; an apostrophe, hyphen or period between two letters or
  digits stays inside it ("don't", "3.14", "e.g"), as does a comma between digits ("1,000"). A run of
  punctuation is one word ("?!"); a symbol with its marks and joiners is one (an emoji: "👩‍💻", "👍🏽", a
  flag "🇱🇻"). A CJK ideograph is a word of its own (as BERT's tokenizer splits Chinese), since no spaces
  mark the words there.
- sentence: ends after `.`, `!`, `?` or `…` (and any closing quotes or brackets) followed by whitespace or
  the end, after `。！？` at once, and at every newline. A period after a known abbreviation ("Dr.",
  "e.g.") or a single letter (an initial: "J. Smith") does not end one; a decimal point is never followed
  by a space, so "3.14" stays whole.
- segment: passages separated by blank lines, or by a separator string the user gives (its characters
  belong to no passage).
"""

from __future__ import annotations

import re
import unicodedata

_WORD_JOINERS = {"'": "letter", "\u2019": "letter", "-": "letter", ".": "letter", ",": "digit"}
# Words that are also abbreviations ("no", "sat", "sun", "co") are left out: a period after them ends a sentence
# more often than not.
_ABBREVIATIONS = frozenset("""
mr mrs ms dr prof sr jr st mt vs etc e.g i.e cf al fig figs vol vols approx dept inc ltd corp
jan feb apr jun jul aug sep sept oct nov dec mon tue thu fri pp eds rev lt sgt
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
