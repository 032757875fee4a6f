"""Documents and a question (a RAG answer attributed to its sources): the prompt they make, and which of
their sentences or passages the answer depends on, ranked. Torch-free.

`document_prompt(passages, question)` is the one format: the passages in order, then the question, each
separated by a blank line — for a single passage exactly the prompt `scripts/measure_documents.py`
measured (README, "Which sentence answered"). The blank lines are what `granularity="segment"` splits at,
so per segment each passage is one group and the question another; per sentence, sentences never cross
them.

`top_sources(analysis)` reads an analysis of such a prompt (`Analysis.grouped_scores` at its granularity)
and ranks its sources — the sentences or passages of the passages, never the question, the chat template
or the held context — by one method's scores: context ablation's weights when it ran (the method that
ranked the answer's sentence first in every measured document), else the first method in catalog order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from .catalog import CATALOG
from .results import Analysis
from .text_units import segment_units

#: The method sources are ranked by when it ran (see the module's docstring).
PREFERRED = "context_ablation"


def split_passages(text: str) -> list[str]:
    """The passages of a text box: its blocks between blank lines, stripped, empty ones dropped (the same
    blank lines `granularity="segment"` splits at)."""
    if not isinstance(text, str):
        raise ValueError(f"passages must be text, got {type(text).__name__}")
    return [text[start:stop] for start, stop in segment_units(text, 0, len(text), None)]


def document_prompt(passages: Sequence[str], question: str) -> str:
    """The prompt for `passages` (in order) and a `question`: each passage, then the question, separated by
    blank lines. ValueError naming what is missing (no passages, an empty passage, no question) or a passage
    or question holding a blank line (it would read as two)."""
    if isinstance(passages, str) or not isinstance(passages, Sequence):
        raise ValueError("passages must be a list of texts (split a text box with split_passages)")
    if not isinstance(question, str):
        raise ValueError(f"the question must be text, got {type(question).__name__}")
    missing = []
    if not passages:
        missing.append("passages (give at least one)")
    if not question.strip():
        missing.append("a question")
    if missing:
        raise ValueError(f"the documents prompt needs {' and '.join(missing)}")
    cleaned = []
    for number, passage in enumerate(passages, start=1):
        if not isinstance(passage, str):
            raise ValueError(f"passage {number} must be text, got {type(passage).__name__}")
        if not passage.strip():
            raise ValueError(f"passage {number} is empty: remove it or give its text")
        if len(split_passages(passage)) > 1:
            raise ValueError(f"passage {number} holds a blank line, which separates passages: "
                             "give it as two passages, or join its lines")
        cleaned.append(passage.strip())
    if len(split_passages(question)) > 1:
        raise ValueError("the question holds a blank line, which separates passages: write it as one block")
    return "\n\n".join([*cleaned, question.strip()])


@dataclass(frozen=True)
class Source:
    """One source of a documents prompt: its rank (1 = the highest score of the ranking method), which
    passage it is in (1-based), its text, its input token positions, and each method's score for it."""

    rank: int
    passage: int
    text: str
    tokens: tuple[int, ...]
    scores: dict[str, float] = field(default_factory=dict)  # method → the group's score (grouped_scores)


def source_methods(analysis: Analysis) -> tuple[str, ...]:
    """The methods that ran, in the order sources show them: context ablation first, then catalog order."""
    ordered = [name for name in CATALOG if name in analysis.methods]
    ordered += [name for name in analysis.methods if name not in CATALOG]
    if PREFERRED in ordered:
        ordered.remove(PREFERRED)
        ordered.insert(0, PREFERRED)
    return tuple(ordered)


def top_sources(analysis: Analysis, granularity: str | None = None, by: str | None = None,
                count: int | None = None) -> tuple[Source, ...]:
    """The sources of a documents prompt (`document_prompt`: passages, then the question after the last blank
    line) per `granularity` (default: the analysis's), ranked by `by`'s scores, highest first (default: the
    first of `source_methods`), at most `count`. Scores are `analysis.grouped_scores(granularity)`.
    ValueError when no method ran, `by` did not run (naming those that did), the prompt has no question after
    its passages, or the granularity has no groups (`Analysis.grouping`)."""
    methods = source_methods(analysis)
    if not methods:
        raise ValueError("the analysis has no method's scores to rank sources by")
    by = methods[0] if by is None else by
    if by not in methods:
        raise ValueError(f"sources cannot be ranked by {by!r}: it did not run; valid choices: {', '.join(methods)}")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ValueError(f"count must be a whole number of sources, 1 or more, or None for all; got {count!r}")
    grouping = analysis.grouping(granularity)
    scores = analysis.grouped_scores(grouping.granularity)
    blocks = _prompt_blocks(analysis)
    found = []
    for number, group in enumerate(grouping.groups):
        passage = _passage_of(analysis, blocks, group.tokens)
        if group.kind == "text" and passage is not None:
            found.append((number, group, passage))
    ranked = sorted(found, key=lambda item: -float(scores[by][item[0]]))  # stable: ties keep text order
    sources = tuple(Source(rank, passage, group.label, group.tokens,
                           {name: float(scores[name][number]) for name in methods})
                    for rank, (number, group, passage) in enumerate(ranked, start=1))
    return sources if count is None else sources[:count]


def _passage_of(analysis: Analysis, blocks: list[tuple[int, int]], tokens: tuple[int, ...]) -> int | None:
    """Which passage (1-based) a group of tokens starts in; None for the question, the chat template, held
    context and generated tokens. The passages are the prompt's blank-line blocks but its last (the
    question: `_prompt_blocks`)."""
    spans = analysis.token_spans
    text = spans.text
    start = next((spans.spans[index][0] for index in tokens if spans.spans[index][1] > spans.spans[index][0]
                  and text[spans.spans[index][0]:spans.spans[index][1]].strip()), None)
    if start is None:
        return None
    while text[start].isspace():  # the group's first character that is not a leading space
        start += 1
    for number, (begin, stop) in enumerate(blocks[:-1], start=1):
        if begin <= start < stop:
            return number
    return None


def _prompt_blocks(analysis: Analysis) -> list[tuple[int, int]]:
    """[start, stop) characters of the prompt's blank-line blocks in the decoded text (the last: the
    question). ValueError when there is no question after passages or no decoded text is kept."""
    spans = analysis.token_spans
    if spans is None:
        raise ValueError("this result keeps no token spans (built by hand), so its sources cannot be found")
    prompt_end = analysis.n_tokens if analysis.n_prompt_tokens is None else analysis.n_prompt_tokens
    typed = [index for index in range(prompt_end) if analysis.user_tokens[index]]
    if not typed:
        raise ValueError("the prompt has no text of the user's, so it has no sources")
    blocks = segment_units(spans.text, spans.spans[typed[0]][0], spans.spans[typed[-1]][1], None)
    if len(blocks) < 2:
        raise ValueError("the prompt is not passages and a question: it has no blank line before a question "
                         "(compose it with document_prompt)")
    return blocks


__all__ = ["PREFERRED", "Source", "document_prompt", "source_methods", "split_passages", "top_sources"]
