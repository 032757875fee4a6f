"""The top sources of a documents prompt as a table and a note (torch-free): each source's rank, passage and
text, and each method's score for it (`attribution.documents.top_sources` ranks them; nothing is recomputed
here)."""

from __future__ import annotations

from typing import Any, Sequence

from ..catalog import CATALOG, is_signed
from ..documents import PREFERRED, Source, source_methods
from ..results import Analysis
from .labels import method_label, quoted_token

FIXED_HEADERS = ["rank", "passage", "source"]


def source_headers(analysis: Analysis) -> list[str]:
    """The table's columns: rank, passage, the source's text, then one per method (`source_methods` order)."""
    return [*FIXED_HEADERS, *(method_label(name) for name in source_methods(analysis))]


def _score_text(analysis: Analysis, name: str, value: float) -> str:
    aggregation = getattr(analysis.methods[name], "aggregation", None)
    signed = name in CATALOG and is_signed(name, aggregation)
    return f"{value:+.3g}" if signed else f"{value:.3g}"


def source_rows(analysis: Analysis, sources: Sequence[Source]) -> list[list[Any]]:
    """One row per source (in rank order), its scores as text (signed methods with their sign)."""
    methods = source_methods(analysis)
    return [[source.rank, source.passage, source.text,
             *(_score_text(analysis, name, source.scores[name]) for name in methods)] for source in sources]


def sources_note(analysis: Analysis, granularity: str, by: str) -> str:
    """What the table ranks: the explained token, the unit, the ranking method and what its score means; and
    that context ablation, the method measured to find the answer's sentence, did not run when it did not."""
    unit = "passage" if granularity == "segment" else granularity
    head = (f"**Top sources** of {quoted_token(analysis.target.text)}, per {unit}, ranked by "
            f"**{method_label(by)}**")
    if by == PREFERRED:
        head += f": the log-probability the explained token gains by keeping the {unit}"
        lds = getattr(analysis.methods[by], "heldout_lds", None)
        if lds is not None:
            head += f" (its surrogate's held-out fit: LDS {lds:.2f})"
    head += (". Each method's column has its own scale: compare the orders, not the numbers. Click a token of "
             "the answer to explain it instead.")
    if PREFERRED not in analysis.methods:
        head += (f"\n\n*{method_label(PREFERRED)} did not run (tick it in Settings → Methods): on SmolLM2 it ranked "
                 "the answer's sentence first in every measured document (README, “Which sentence answered”).*")
    return head


__all__ = ["FIXED_HEADERS", "source_headers", "source_rows", "sources_note"]
