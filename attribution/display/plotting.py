"""Every figure of one analysis, by a file-name-safe key: what the app shows and offers as PNGs.

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
from .method_figures import bar_figure, layer_heatmap_figure
from ..results import Analysis


def analysis_figures(analysis: Analysis, exclude_special: bool = False) -> Mapping[str, Figure]:
    """Every figure of an analysis by a file-name-safe key: '<method>_bars', '<method>_layers' (for
    results with per-layer data), 'comparison_heatmap', 'comparison_bars', 'answer_map_<method>' (with
    an answer map) and 'agreement_heatmap' (with a trust report on two or more methods)."""
    figures: dict[str, Figure] = {}
    for name, result in analysis.methods.items():
        figures[f"{name}_bars"] = bar_figure(analysis, name)
        if np.asarray(getattr(result, "per_layer", np.zeros((0, 0)))).size:
            figures[f"{name}_layers"] = layer_heatmap_figure(analysis, name)
    figures["comparison_heatmap"] = comparison_heatmap_figure(analysis, exclude_special)
    figures["comparison_bars"] = comparison_bars_figure(analysis, exclude_special)
    for name, table in analysis.answer_map.items():
        exclude, template = source_exclusions(analysis, table, exclude_special)
        figures[f"answer_map_{name}"] = answer_map_figure(
            table, signed=answer_map_signed(analysis, name), exclude=exclude, template=template, selected=1)
    if analysis.trust is not None and len(analysis.methods) >= 2:
        foil = None if analysis.foil is None else analysis.foil.text
        figures["agreement_heatmap"] = agreement_figure(list(analysis.methods), analysis.trust.spearman,
                                                        target_phrase(analysis.target.text, foil))
    return figures
