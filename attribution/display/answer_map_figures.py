"""The answer map as the app shows it: every generated token (rows) × the tokens it could see (the
prompt, then the tokens generated before it) as a heatmap, and one generated token's row as
highlighted text."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .figure_style import (
    DIVERGING_CMAP,
    MAX_TICK_LABELS,
    UNSIGNED_CMAP,
    analysis_aggregation,
    bold_title,
    cell_text,
    draw_heatmap,
    excluded_tokens,
    figure_width,
    grey_excluded_ticks,
    plain_text,
    scaling_note,
    set_token_ticks,
    with_masked_color,
)
from .labels import method_label, token_label
from ..catalog import is_signed
from ..results import Analysis, AnswerMap
from .tables import highlight_values

MAX_ANNOTATED_CELLS = 200  # the answer map writes its values only for small maps (text is slow to draw)


def source_flags(token_flags: np.ndarray, n_sources: int) -> np.ndarray:
    """Per-token flags of the explained input (special tokens, chat-template tokens, tokens left out
    of the scaling) for an answer map's sources (prompt + generated tokens): the explained input is
    always a prefix of them, so its flags carry over; the generated rest is content."""
    given = np.asarray(token_flags, dtype=bool)
    flags = np.zeros(n_sources, dtype=bool)
    count = min(n_sources, given.shape[0])
    flags[:count] = given[:count]
    return flags


def source_exclusions(analysis: Analysis, table: AnswerMap, exclude_special: bool) -> tuple[np.ndarray, np.ndarray]:
    """An answer map's sources left out of the scaling (`excluded_tokens`), and those the chat template
    added. Only the prompt's flags carry over: an explained input that ends in generated tokens
    (target k) flags those as not typed by the user, but on the map they are the answer's own tokens."""
    n_prompt, n_sources = table.n_prompt, len(table.sources)
    return (source_flags(excluded_tokens(analysis, exclude_special)[:n_prompt], n_sources),
            source_flags(analysis.template_tokens[:n_prompt], n_sources))


def answer_map_signed(analysis: Analysis, name: str) -> bool:
    """Whether an answer map's method is signed: the catalog decides, with the analysis's IG aggregation
    (the answer map is built with the analysis's settings, so it is signed exactly when the method's tab is)."""
    return is_signed(name, analysis_aggregation(analysis))


def answer_map_row(table: AnswerMap, index: int) -> tuple[tuple[str, ...], np.ndarray]:
    """Generated token `index` (1 = first)'s sources — the prompt and the tokens generated before
    it — and their raw scores."""
    if not 1 <= index <= len(table.targets):
        raise ValueError(f"generated token {index} is out of range: choose 1 to {len(table.targets)}")
    count = table.n_prompt + index - 1
    return table.sources[:count], np.asarray(table.matrix[index - 1, :count])


def answer_map_highlight(
    table: AnswerMap, index: int, exclude: np.ndarray | None = None
) -> list[tuple[str, float | None]]:
    """One generated token's attributions as highlighted text over its sources (scaled into [−1, 1])."""
    sources, scores = answer_map_row(table, index)
    hidden = None if exclude is None else np.asarray(exclude, dtype=bool)[: len(sources)]
    return highlight_values(sources, scores, exclude=hidden)


def answer_map_matrix(table: AnswerMap, exclude: np.ndarray | None = None) -> np.ndarray:
    """The answer map as drawn: each row divided by its largest magnitude over the sources that
    row can see; NaN where a source comes after the explained token (or is excluded)."""
    n_targets, n_sources = table.matrix.shape
    visible = np.arange(n_sources)[None, :] < (table.n_prompt + np.arange(n_targets))[:, None]
    if exclude is not None:
        visible &= ~np.asarray(exclude, dtype=bool)[None, :]
    scaled = np.full((n_targets, n_sources), np.nan)
    for row in range(n_targets):
        values = table.matrix[row][visible[row]]
        largest = float(np.max(np.abs(values))) if values.size else 0.0
        scaled[row, visible[row]] = values / largest if largest > 0 else 0.0
    return scaled


def answer_map_figure(
    table: AnswerMap,
    *,
    signed: bool,
    exclude: np.ndarray | None = None,
    template: np.ndarray | None = None,
    selected: int | None = None,
) -> Figure:
    """Generated tokens (rows) × sources (columns: the prompt, then the earlier generated tokens),
    each row scaled by its largest magnitude; a dark line separates prompt from generated sources.
    Signed methods use a diverging purple–white–red scale centred on 0. Grey: a source after the
    explained token (a causal model cannot see it) or one left out of the scaling (`exclude`; `template`
    flags which of those the chat template added, for the title)."""
    matrix = answer_map_matrix(table, exclude)
    n_targets, n_sources = matrix.shape
    n_prompt = table.n_prompt
    figure = Figure(figsize=(figure_width(n_sources), float(np.clip(0.42 * n_targets + 3.0, 3.6, 14.0))),
                    layout="constrained")
    ax = figure.add_subplot()
    shown = np.ma.masked_invalid(matrix)
    if signed:
        image = draw_heatmap(ax, shown, with_masked_color(DIVERGING_CMAP), vmin=-1.0, vmax=1.0)
    else:
        image = draw_heatmap(ax, shown, with_masked_color(UNSIGNED_CMAP), vmin=0.0, vmax=1.0)
    if n_sources * n_targets <= MAX_ANNOTATED_CELLS:
        for row in range(n_targets):
            for column in range(n_sources):
                value = matrix[row, column]
                if math.isfinite(value):
                    ax.text(column, row, cell_text(value), ha="center", va="center", fontsize=8,
                            color="white" if abs(value) > 0.7 else "black")
    ax.axvline(n_prompt - 0.5, color="0.1", linewidth=2.5)
    if selected is not None and 1 <= selected <= n_targets:
        ax.add_patch(_row_box(selected - 1, n_sources))
    set_token_ticks(ax, table.sources)
    if exclude is not None:
        grey_excluded_ticks(ax, np.asarray(exclude, dtype=bool))
    step = max(1, int(np.ceil(n_targets / MAX_TICK_LABELS)))
    ax.set_yticks(np.arange(0, n_targets, step))
    ax.set_yticklabels([plain_text(f"{row + 1}: {token_label(table.targets[row])}")
                        for row in range(0, n_targets, step)], fontsize=10)
    # "prompt | generated" above the columns, on either side of the separator.
    ax.text((n_prompt - 1) / 2, -0.62, "prompt", ha="center", va="bottom", fontsize=10, color="0.25",
            fontstyle="italic", clip_on=False)
    if n_sources > n_prompt:
        ax.text((n_prompt + n_sources - 1) / 2, -0.62, "generated", ha="center", va="bottom", fontsize=10,
                color="0.25", fontstyle="italic", clip_on=False)
    ax.set_xlabel("Source tokens (what each generated token could see)", fontsize=11)
    ax.set_ylabel("Generated token (explained)", fontsize=11)
    excluded = np.zeros(0, dtype=bool) if exclude is None else np.asarray(exclude, dtype=bool)
    bold_title(ax, f"Answer map, {method_label(table.method)}: every generated token explained by the "
                   f"tokens before it{scaling_note(excluded, template)}", pad=22)
    scale = "score ÷ the row's largest |score|" if signed else "score ÷ the row's largest score"
    figure.colorbar(image, ax=ax, label=scale, pad=0.01)
    return figure


def _row_box(row: int, n_columns: int) -> Any:
    """The outline of the selected row (the generated token shown as highlighted text)."""
    from matplotlib.patches import Rectangle

    return Rectangle((-0.5, row - 0.5), n_columns, 1.0, fill=False, edgecolor="0.1", linewidth=2.0)
