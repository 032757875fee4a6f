"""Every method side by side: the seed's min–max normalised comparison (a methods × tokens heatmap
and one row of bars per method) and the trust panel's agreement heatmap (Spearman ρ, methods × methods)."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from .figure_style import (
    DIVERGING_CMAP,
    analysis_target_phrase,
    bold_title,
    cell_text,
    draw_heatmap,
    excluded_tokens,
    figure_width,
    grey_excluded_ticks,
    method_color,
    plain_text,
    scaling_note,
    set_token_ticks,
    with_masked_color,
    wrap_title,
)
from .labels import method_label
from ..results import Analysis, normalize_min_max

MAX_ANNOTATED_TOKENS = 40  # the comparison heatmap writes its values only while they still fit


def normalized_matrix(analysis: Analysis, exclude_special: bool = False) -> tuple[list[str], np.ndarray]:
    """Method names and their scores min–max normalised per method (the seed's comparison).

    A chat template's tokens, and with `exclude_special` BOS and other special tokens (attention
    sinks), are left out of each method's min and max and set to 0, so they do not flatten every
    other score.
    """
    names = list(analysis.methods)
    if not names:
        return names, np.zeros((0, analysis.n_tokens))
    exclude = excluded_tokens(analysis, exclude_special)
    return names, np.vstack([normalize_min_max(analysis.methods[name].scores, exclude=exclude) for name in names])


def comparison_heatmap_figure(analysis: Analysis, exclude_special: bool = False) -> Figure:
    """Methods × tokens, each row min–max normalised, values annotated (.2f), RdYlGn as the seed.
    Tokens left out of the normalisation (`excluded_tokens`) are drawn grey."""
    names, matrix = normalized_matrix(analysis, exclude_special)
    excluded = excluded_tokens(analysis, exclude_special)
    tokens = analysis.input_tokens
    figure = Figure(figsize=(figure_width(len(tokens)), float(np.clip(0.6 * len(names) + 2.8, 3.8, 9.0))),
                    layout="constrained")
    ax = figure.add_subplot()
    shown = np.ma.masked_array(matrix, mask=np.broadcast_to(excluded, matrix.shape))
    image = draw_heatmap(ax, shown, with_masked_color("RdYlGn"), vmin=0.0, vmax=1.0)
    if len(tokens) <= MAX_ANNOTATED_TOKENS:
        for row in range(matrix.shape[0]):
            for column in range(matrix.shape[1]):
                value = matrix[row, column]
                if excluded[column]:
                    ax.text(column, row, "–", ha="center", va="center", fontsize=9, color="0.45")
                    continue
                ax.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=9,
                        color="white" if value < 0.15 or value > 0.85 else "black")
    set_token_ticks(ax, tokens)
    grey_excluded_ticks(ax, excluded)
    ax.set_yticks(np.arange(len(names)))
    ax.set_yticklabels([method_label(name) for name in names], fontsize=11)
    ax.set_xlabel("Input tokens", fontsize=11)
    ax.set_ylabel("Attribution method", fontsize=11)
    note = scaling_note(excluded, analysis.template_tokens)
    bold_title(ax, f"Combined attribution heatmap: {analysis_target_phrase(analysis)}{note}")
    figure.colorbar(image, ax=ax, label="Normalized attribution score", pad=0.01)
    return figure


def comparison_bars_figure(analysis: Analysis, exclude_special: bool = False) -> Figure:
    """One row of min–max normalised bars per method, sharing the token axis (the seed's comparison)."""
    names, matrix = normalized_matrix(analysis, exclude_special)
    excluded = excluded_tokens(analysis, exclude_special)
    tokens = analysis.input_tokens
    rows = max(1, len(names))
    figure = Figure(figsize=(figure_width(len(tokens)), (2.3 if rows <= 3 else 1.6) * rows + 1.6),
                    layout="constrained")
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    for index, (name, ax) in enumerate(zip(names, axes)):
        ax.bar(np.arange(len(tokens)), matrix[index], color=method_color(name), alpha=0.8)
        ax.set_ylim(0.0, 1.05)
        ax.set_ylabel("Normalized score", fontsize=10)
        ax.set_title(f"{chr(ord('A') + index % 26)}) {method_label(name)}", fontsize=12,
                     fontweight="bold", loc="left")
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    set_token_ticks(axes[-1], tokens)
    grey_excluded_ticks(axes[-1], excluded)
    axes[-1].set_xlim(-0.6, len(tokens) - 0.4)
    axes[-1].set_xlabel("Input token", fontsize=11)
    figure.suptitle(wrap_title(f"Comparison of token attribution methods: {analysis_target_phrase(analysis)}"
                               f"{scaling_note(excluded, analysis.template_tokens)}", figure.get_figwidth(), 14),
                    fontsize=14, fontweight="bold")
    return figure


def agreement_matrix(names: Sequence[str], spearman: Mapping[str, float]) -> np.ndarray:
    """Methods × methods Spearman ρ from the trust report's "a|b" pairs; 1 on the diagonal, NaN where
    ρ is undefined (a method gave every content token the same score)."""
    index = {name: position for position, name in enumerate(names)}
    matrix = np.full((len(names), len(names)), np.nan)
    np.fill_diagonal(matrix, 1.0)
    for key, rho in spearman.items():
        first, _, second = key.partition("|")
        if first in index and second in index:
            matrix[index[first], index[second]] = matrix[index[second], index[first]] = float(rho)
    return matrix


def agreement_figure(names: Sequence[str], spearman: Mapping[str, float], subtitle: str = "") -> Figure:
    """How alike the methods rank the tokens: Spearman ρ for every pair, −1 (opposite) to 1 (same)."""
    names = list(names)
    matrix = agreement_matrix(names, spearman)
    size = float(np.clip(0.75 * len(names) + 2.4, 4.0, 8.0))
    figure = Figure(figsize=(size + 1.2, size), layout="constrained")
    ax = figure.add_subplot()
    image = draw_heatmap(ax, np.ma.masked_invalid(matrix), with_masked_color(DIVERGING_CMAP), vmin=-1.0, vmax=1.0)
    for row in range(len(names)):
        for column in range(len(names)):
            value = matrix[row, column]
            text = cell_text(value) if math.isfinite(value) else "n/a"
            ax.text(column, row, text, ha="center", va="center", fontsize=10,
                    color="white" if math.isfinite(value) and abs(value) > 0.7 else "black")
    labels = [method_label(name) for name in names]
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels(labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=10)
    ax.set_yticks(np.arange(len(names)))
    ax.set_yticklabels(labels, fontsize=10)
    title = "Do the methods agree? Spearman rank correlation"
    ax.set_title(plain_text(f"{title}\n{subtitle}" if subtitle else title), fontsize=12, fontweight="bold")
    figure.colorbar(image, ax=ax, label="Spearman ρ (content tokens)", pad=0.02)
    return figure
