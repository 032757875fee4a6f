"""One method's figures: its bar chart, and for attention-like methods the layers × tokens heatmap and
the heads × tokens heatmap of one layer (the seed notebook's per-method charts)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from .figure_style import (
    NEGATIVE_COLOR,
    analysis_target_phrase,
    bold_title,
    draw_heatmap,
    figure_width,
    grey_excluded_ticks,
    method_color,
    method_signed,
    plain_text,
    set_token_ticks,
    wrap_title,
)
from .labels import method_label, target_phrase
from ..catalog import CATALOG
from ..results import Analysis, IntegratedGradientsScores, MethodScores


#: How an aggregation is named on an axis.
AGGREGATION_WORDS = {"sum": "signed sum", "l2": "L2 norm"}


def score_axis_label(name: str, result: MethodScores) -> str:
    """The y-axis label of a method's bar chart, naming what the number is (as the seed's labels do):
    the catalog's `axis_label`, with the method's label and its result's aggregation filled in."""
    template = CATALOG[name].axis_label
    words = AGGREGATION_WORDS.get(result.aggregation) if isinstance(result, IntegratedGradientsScores) else None
    if words is None:  # a result without an aggregation: the label alone
        template = template.replace(" ({aggregation})", "")
    return template.format(label=method_label(name), aggregation=words)


def bar_figure(analysis: Analysis, name: str) -> Figure:
    """One method's raw scores as bars, tokens on the x axis (the seed's per-method chart); a chat
    template's tokens keep their bars, with grey labels."""
    result = analysis.methods[name]
    tokens = analysis.input_tokens
    scores = result.scores
    figure = Figure(figsize=(figure_width(len(tokens)), 4.8), layout="constrained")
    ax = figure.add_subplot()
    color = method_color(name)
    colors = [color if value >= 0 else NEGATIVE_COLOR for value in scores]
    ax.bar(np.arange(len(tokens)), scores, color=colors, alpha=0.8)
    if method_signed(analysis, name):
        ax.axhline(0.0, color="0.35", linewidth=0.8)
    set_token_ticks(ax, tokens)
    grey_excluded_ticks(ax, analysis.template_tokens)  # the template's raw scores stay visible here
    ax.set_xlim(-0.6, len(tokens) - 0.4)
    ax.set_xlabel("Input token", fontsize=11)
    # Wrapped to the axes' height (about 0.7 of the figure's): a long label ran off the figure.
    ax.set_ylabel(wrap_title(score_axis_label(name, result), 0.7 * figure.get_figheight(), 11), fontsize=11)
    bold_title(ax, f"{method_label(name)} attribution: {analysis_target_phrase(analysis)}")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return figure


def layer_heatmap_figure(analysis: Analysis, name: str = "attention") -> Figure:
    """Attention of the explained position per layer (mean over heads): layers × tokens, YlOrRd."""
    result = analysis.methods[name]
    per_layer = np.asarray(result.per_layer)  # [n_layers, n_tokens]
    n_layers = per_layer.shape[0]
    tokens = analysis.input_tokens
    figure = Figure(figsize=(figure_width(len(tokens)), float(np.clip(0.32 * n_layers + 2.6, 3.6, 11.0))),
                    layout="constrained")
    ax = figure.add_subplot()
    image = draw_heatmap(ax, per_layer, "YlOrRd")  # colour range from the data, as seaborn
    set_token_ticks(ax, tokens)
    grey_excluded_ticks(ax, analysis.template_tokens)
    ax.set_yticks(np.arange(n_layers))
    ax.set_yticklabels([f"Layer {layer}" for layer in range(n_layers)], fontsize=9)
    ax.set_xlabel("Input tokens", fontsize=11)
    ax.set_ylabel("Transformer layers", fontsize=11)
    bold_title(ax, f"{method_label(name)} across layers (last position, mean of heads): "
                   f"{analysis_target_phrase(analysis)}")
    figure.colorbar(image, ax=ax, label="Attention weight", pad=0.01)
    return figure


def head_heatmap_figure(
    tokens: Sequence[str],
    per_head: np.ndarray,
    layer: int,
    target_text: str,
    label: str = "Attention",
    foil_text: str | None = None,
) -> Figure:
    """Every head of one layer: heads × tokens, YlOrRd. Takes plain arrays so the app can redraw it
    from its stored result for another layer without running the model again."""
    per_head = np.asarray(per_head, dtype=np.float64)  # [n_layers, n_heads, n_tokens]
    if per_head.ndim != 3 or per_head.shape[2] != len(tokens):
        raise ValueError(f"per_head must be [layers, heads, {len(tokens)} tokens], got {per_head.shape}")
    if not 0 <= layer < per_head.shape[0]:
        raise ValueError(f"layer {layer} is out of range: choose 0 to {per_head.shape[0] - 1}")
    heads = per_head[layer]  # [n_heads, n_tokens]
    n_heads = heads.shape[0]
    figure = Figure(figsize=(figure_width(len(tokens)), float(np.clip(0.28 * n_heads + 2.6, 3.6, 12.0))),
                    layout="constrained")
    ax = figure.add_subplot()
    image = draw_heatmap(ax, heads, "YlOrRd")
    set_token_ticks(ax, tokens)
    step = max(1, int(np.ceil(n_heads / 32)))
    ax.set_yticks(np.arange(0, n_heads, step))
    ax.set_yticklabels([f"Head {head}" for head in range(0, n_heads, step)], fontsize=9)
    ax.set_xlabel("Input tokens", fontsize=11)
    ax.set_ylabel(f"Heads of layer {layer}", fontsize=11)
    bold_title(ax, plain_text(f"{label}, layer {layer}, every head (last position): "
                              f"{target_phrase(target_text, foil_text)}"))
    figure.colorbar(image, ax=ax, label="Attention weight", pad=0.01)
    return figure
