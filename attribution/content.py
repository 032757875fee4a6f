"""Which generated token carries the answer: the first word of the reply that is neither a copy of the
prompt nor a function word ("The capital of Latvia is Riga." → " Riga"), what a visitor asks about when
they ask why the model said what it said. Its first generated token is explained (`Settings.target =
ANSWER_TARGET`); a reply with no such word explains its first token.

Words are read from the decoded tokens (a word starts at a token that begins with a space or follows
punctuation), so it works for any tokenizer; the function-word list is English, the language of the
models this page ships with, and words of other scripts count as content.
"""

from __future__ import annotations

import re
from typing import Sequence

from .settings import ANSWER_TARGET  # noqa: F401 (re-exported)

FUNCTION_WORDS = frozenset("""
a an the this that these those it its it's is are was were be been being am do does did done have has had
of in on at to from by for with about as into onto over under between through during before after above
below up down out off than then so and or but nor not no yes if because while when where which who whom
whose what why how there here i you he she we they me him her us them my your his our their mine yours
can could will would shall should may might must also very just only really sure certainly well okay ok
called named known located city capital country answer correct hello hi thanks thank please
""".split())
_LETTERS = re.compile(r"\w+", re.UNICODE)


def words_of(text: str) -> set[str]:
    return {word.lower() for word in _LETTERS.findall(text)}


def reply_words(generated: Sequence[str]) -> list[tuple[int, str]]:
    """(1-based index of its first token, its letters) for each word of the reply. A word starts at a
    token that begins with a space, or after one that ended in something other than a letter or digit."""
    words: list[tuple[int, str]] = []
    joined = True  # whether the next token continues the current word
    for index, piece in enumerate(generated, start=1):
        letters = "".join(_LETTERS.findall(piece))
        if not letters:
            joined = False
            continue
        if joined and words and not piece[:1].isspace() and piece[:1].isalnum():
            words[-1] = (words[-1][0], words[-1][1] + letters)
        else:
            words.append((index, letters))
        joined = piece[-1:].isalnum()
    return words


def content_token(prompt: str, generated: Sequence[str]) -> int:
    """1-based index of the generated token that starts the reply's first content word (not
    in the prompt, not a function word; numbers count); 1 when there is none. `generated`: the display strings."""
    seen = words_of(prompt)
    for index, word in reply_words(generated):
        text = word.lower()
        if text not in seen and text not in FUNCTION_WORDS:
            return index
    return 1
