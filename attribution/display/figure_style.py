"""The look every figure shares: colours and colour maps, sizes, token ticks, heatmap cells, titles.

The figure modules (`method_figures`, `comparison_figures`, `answer_map_figures`) draw with these so
that a method has one colour, a signed score one colour scale and a token one tick label everywhere.
Nothing here makes a figure; every helper draws on an axes it is given.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np
from matplotlib.colors import LinearSegmentedColormap

from ..catalog import METHOD_COLORS, METHOD_LABELS, is_signed
from .labels import target_phrase, token_label
from ..results import Analysis, IntegratedGradientsScores, MethodScores

# Method colours come from the catalog; a method missing there gets a FALLBACK_COLORS one.
# No purple: negative scores are drawn in purple.
FALLBACK_COLORS = ("darkkhaki", "sienna", "cadetblue", "darkolivegreen", "rosybrown", "darkcyan")
NEGATIVE_COLOR = "#8a63d2"  # the purple the app's highlighted text uses for negative scores
POSITIVE_COLOR = "#d7263d"  # the red it uses for positive ones
#: Signed scores on a heatmap: purple (negative) → white (0) → red (positive), as the highlighted text.
DIVERGING_CMAP = LinearSegmentedColormap.from_list("attribution_diverging",
                                                   [NEGATIVE_COLOR, "#ffffff", POSITIVE_COLOR])
UNSIGNED_CMAP = "YlOrRd"
MASKED_COLOR = "0.88"  # cells left out: special tokens hidden from the scaling, tokens after the target
EXCLUDED_LABEL_COLOR = "0.6"  # tick labels of tokens left out of the scaling
MAX_TICK_LABELS = 60  # more tokens than this: label every k-th tick so the labels stay legible


def method_color(name: str) -> str:
    if name in METHOD_COLORS:
        return METHOD_COLORS[name]
    others = sorted(set(METHOD_LABELS) - set(METHOD_COLORS))
    index = others.index(name) if name in others else sum(map(ord, name))
    return FALLBACK_COLORS[index % len(FALLBACK_COLORS)]


def result_aggregation(result: MethodScores) -> str | None:
    """The IG aggregation a result records (None for the other methods, whose sign does not depend on it)."""
    return result.aggregation if isinstance(result, IntegratedGradientsScores) else None


def analysis_aggregation(analysis: Analysis) -> str | None:
    """The IG aggregation an analysis was computed with: its settings', else (a result built by hand,
    without settings) what its IG result records; None when neither says."""
    if analysis.settings is not None:
        return analysis.settings.aggregation
    result = analysis.methods.get("integrated_gradients")
    return None if result is None else result_aggregation(result)


def method_signed(analysis: Analysis, name: str) -> bool:
    """Whether a method's scores in this analysis are signed (diverging colours, a zero line, the signed
    legend): the catalog decides (`attribution.catalog.is_signed`), with the analysis's aggregation. Never
    read from the scores: a signed method whose scores all happen to be ≥ 0 is still drawn signed."""
    return is_signed(name, analysis_aggregation(analysis))


def plain_text(text: str) -> str:
    """Text for matplotlib: '$' escaped so that a token like '$x$' is never read as mathtext."""
    return text.replace("$", r"\$")


def explained_text(analysis: Analysis) -> str:
    """What the analysis explains, as text: the target token, or a span's whole stretch."""
    return analysis.target.text if analysis.span is None else analysis.span.text


def analysis_target_phrase(analysis: Analysis) -> str:
    """The analysis's target (and foil) as a title ends: 'predicting " Riga"', mathtext-safe."""
    return plain_text(target_phrase(explained_text(analysis), None if analysis.foil is None else analysis.foil.text))


def wrap_title(text: str, width_inches: float, fontsize: float) -> str:
    """A title (or an axis label) broken into lines that fit `width_inches`, only at ': ', ' rather than '
    and ' (' so that a quoted token is never split."""
    limit = max(30, int(width_inches * 72 / (fontsize * 0.62)))
    if len(text) <= limit:
        return text
    lines = [""]
    for piece in re.split(r"(?<=: )|(?= rather than )|(?= \()", text):
        if lines[-1].strip() and len(lines[-1]) + len(piece) > limit:
            lines.append(piece.lstrip())
        else:
            lines[-1] += piece
    return "\n".join(line.rstrip() for line in lines)


def bold_title(ax: Any, text: str, fontsize: float = 13, **kwargs: Any) -> None:
    """The axes' title in bold, wrapped to the figure's width."""
    width = ax.figure.get_figwidth()
    ax.set_title(wrap_title(text, width, fontsize), fontsize=fontsize, fontweight="bold", **kwargs)


def cell_text(value: float) -> str:
    """A heatmap annotation to two decimals, without a '-0.00'."""
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def figure_width(n_tokens: int) -> float:
    """Inches: wide enough for one legible tick per token, within a page."""
    return float(np.clip(0.42 * n_tokens + 3.0, 8.0, 20.0))


def set_token_ticks(ax: Any, tokens: Sequence[str], *, axis: str = "x") -> None:
    """One tick per token (every k-th when there are too many), rotated 45° as the seed does."""
    step = max(1, int(np.ceil(len(tokens) / MAX_TICK_LABELS)))
    positions = list(range(0, len(tokens), step))
    labels = [plain_text(token_label(tokens[index])) for index in positions]
    if axis == "x":
        ax.set_xticks(positions)
        ax.set_xticklabels(labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=10)
    else:
        ax.set_yticks(positions)
        ax.set_yticklabels(labels, fontsize=10)


def grey_excluded_ticks(ax: Any, excluded: np.ndarray, *, axis: str = "x") -> None:
    """Greys the tick labels of tokens left out of the scaling (`excluded`: bool per token)."""
    labels = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    positions = ax.get_xticks() if axis == "x" else ax.get_yticks()
    for label, position in zip(labels, positions):
        index = int(round(position))
        if 0 <= index < len(excluded) and excluded[index]:
            label.set_color(EXCLUDED_LABEL_COLOR)


def excluded_tokens(analysis: Analysis, exclude_special: bool = False) -> np.ndarray:
    """[n_tokens] bool: the tokens the views leave out of the colour scaling and the top 5, drawn grey.
    A chat template's own tokens always (they are the same for every prompt, and the role markers soak
    up attention); special tokens such as BOS only when asked (off is the seed notebook's view)."""
    return analysis.context_tokens if exclude_special else analysis.template_tokens


def scaling_note(excluded: np.ndarray, template: np.ndarray | None = None) -> str:
    """What a title adds when tokens were left out of the scaling, naming which kind (`template`: bool
    per token, the chat template's tokens; the other excluded tokens are the held start — the first
    position, the attention sink, which is a typed word when the model adds no BOS — and special ones)."""
    excluded = np.asarray(excluded, dtype=bool)
    chat = np.zeros_like(excluded) if template is None else np.asarray(template, dtype=bool)
    kinds = [kind for kind, flags in (("start/special", excluded & ~chat), ("chat-template", excluded & chat)) if flags.any()]
    return f" ({' and '.join(kinds)} tokens left out of the scaling)" if kinds else ""


def draw_heatmap(ax: Any, matrix: np.ndarray, cmap: Any, vmin: float | None = None,
                 vmax: float | None = None) -> Any:
    """`matrix` ([rows, columns]) as cells with white lines between them; returns the image."""
    image = ax.imshow(matrix, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    # White lines between cells, as seaborn's linewidths draws them.
    ax.set_xticks(np.arange(-0.5, matrix.shape[1], 1), minor=True)
    ax.set_yticks(np.arange(-0.5, matrix.shape[0], 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=0.5)
    ax.tick_params(which="minor", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return image


def with_masked_color(cmap: Any) -> Any:
    """A copy of a colormap that draws masked cells in MASKED_COLOR."""
    from matplotlib import colormaps

    colormap = colormaps[cmap] if isinstance(cmap, str) else cmap
    return colormap.with_extremes(bad=MASKED_COLOR)
