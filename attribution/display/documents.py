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
    """What the table ranks: what is explained (the token, or the stretch), the unit, the ranking method and
    what its score means; the methods still being computed (a stage of the analysis), or that context
    ablation, the method measured to find the answer's sentence, did not run."""
    unit = "passage" if granularity == "segment" else granularity
    explained = analysis.target.text if analysis.span is None else analysis.span.text
    head = (f"**Top sources** of {quoted_token(explained)}, per {unit}, ranked by **{method_label(by)}**")
    if by == PREFERRED:
        head += f": how much keeping the {unit} raises the log-probability of what is explained"
        lds = getattr(analysis.methods[by], "heldout_lds", None)
        if lds is not None:
            head += f" (its surrogate's held-out fit: LDS {lds:.2f})"
    head += (". Each method's column has its own scale: compare the orders, not the numbers. Click a token of "
             "the answer to explain it instead.")
    asked = () if analysis.settings is None else analysis.settings.methods
    pending = [name for name in asked if name not in analysis.methods]
    if pending:  # results as they come: a stage of the analysis
        head += (f"\n\n*Still computing {', '.join(method_label(name) for name in pending)}: the table is ranked "
                 "again when they are done.*")
    elif PREFERRED not in analysis.methods:
        head += (f"\n\n*{method_label(PREFERRED)} did not run (tick it in Settings → Methods): on SmolLM2 it ranked "
                 "the answer's sentence first in every measured document (README, “Which sentence answered”).*")
    return head


__all__ = ["FIXED_HEADERS", "source_headers", "source_rows", "sources_note"]
