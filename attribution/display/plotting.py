"""Every figure of one analysis, by key: what the app shows and offers as PNGs.

A key is "<tab>:<part>", the scheme of the page's outputs: "<method>:bars", "<method>:layers",
"compare:heatmap", "compare:bars", "compare:agreement", and "answer_map:<method>" (the page's
"answer_map:heatmap" shows the picked method's). `file_name` turns a key into a PNG file name.

The figures themselves live in `method_figures` (one method's bars, layers and heads),
`comparison_figures` (every method side by side, and their agreement) and `answer_map_figures`; their
shared look in `figure_style`. Every figure is a `matplotlib.figure.Figure` owned by the caller: nothing
here uses pyplot's global state, touches the model or imports gradio.

The figures follow the seed notebook: a bar chart per method with the tokens on the x axis rotated
45°, the attention heatmap of layers × tokens in YlOrRd, and the combined min–max normalised heatmap of
methods × tokens in RdYlGn with the values annotated to two decimals.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from matplotlib.figure import Figure

from .answer_map_figures import answer_map_figure, answer_map_signed, source_exclusions
from .comparison_figures import agreement_figure, comparison_bars_figure, comparison_heatmap_figure
from .labels import target_phrase
from .figure_style import explained_text
from .method_figures import bar_figure, layer_heatmap_figure
from ..results import Analysis


def figure_keys(analysis: Analysis) -> list[str]:
    """The keys of every figure the analysis has, in order: '<method>:bars', '<method>:layers' (for results
    with per-layer data), 'compare:heatmap', 'compare:bars', 'answer_map:<method>' (with an answer
    map) and 'compare:agreement' (with a trust report on two or more methods)."""
    keys: list[str] = []
    for name, result in analysis.methods.items():
        keys.append(f"{name}:bars")
        if np.asarray(getattr(result, "per_layer", np.zeros((0, 0)))).size:
            keys.append(f"{name}:layers")
    keys += ["compare:heatmap", "compare:bars"]
    keys += [f"answer_map:{name}" for name in analysis.answer_map]
    if analysis.trust is not None and len(analysis.methods) >= 2:
        keys.append("compare:agreement")
    return keys


def file_name(key: str) -> str:
    """A figure key as a PNG file name ('compare:heatmap' → 'compare_heatmap.png'): a colon is not a
    file name character everywhere."""
    return f"{key.replace(':', '_')}.png"


def draw_figure(analysis: Analysis, key: str, exclude_special: bool = False, selected: int = 1) -> Figure:
    """One figure by its `figure_keys` key (`selected`: the answer map's outlined row, 1 = the first
    generated token); KeyError for a key the analysis has no figure for."""
    if key not in figure_keys(analysis):
        raise KeyError(f"no figure {key!r} for this analysis; it has: {', '.join(figure_keys(analysis))}")
    owner, part = key.split(":", 1)
    if key == "compare:heatmap":
        return comparison_heatmap_figure(analysis, exclude_special)
    if key == "compare:bars":
        return comparison_bars_figure(analysis, exclude_special)
    if key == "compare:agreement":
        foil = None if analysis.foil is None else analysis.foil.text
        return agreement_figure(list(analysis.methods), analysis.trust.spearman,
                                target_phrase(explained_text(analysis), foil))
    if owner == "answer_map":
        table = analysis.answer_map[part]
        exclude, template = source_exclusions(analysis, table, exclude_special)
        return answer_map_figure(table, signed=answer_map_signed(analysis, part), exclude=exclude,
                                 template=template, selected=selected)
    if part == "layers":
        return layer_heatmap_figure(analysis, owner)
    return bar_figure(analysis, owner)


def analysis_figures(analysis: Analysis, exclude_special: bool = False) -> Mapping[str, Figure]:
    """Every figure of an analysis by its `figure_keys` key (the answer maps with their first row outlined)."""
    return {key: draw_figure(analysis, key, exclude_special) for key in figure_keys(analysis)}
