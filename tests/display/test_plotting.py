"""attribution.plotting: every figure of an analysis, by key."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from attribution.display import plotting
from helpers import make_analysis, make_rich_analysis


def test_analysis_figures_names_every_figure():
    figures = plotting.analysis_figures(make_analysis())
    assert set(figures) == {"gradient:bars", "attention:bars", "attention:layers", "integrated_gradients:bars",
                            "compare:heatmap", "compare:bars"}
    assert all(isinstance(figure, Figure) for figure in figures.values())


def test_analysis_figures_add_the_answer_map_and_agreement_heatmaps():
    figures = plotting.analysis_figures(make_rich_analysis(), exclude_special=True)
    assert {"answer_map:input_x_gradient", "compare:agreement"} <= set(figures)
    answer_map = figures["answer_map:input_x_gradient"].axes[0]
    assert np.ma.getmaskarray(answer_map.get_images()[0].get_array())[:, 0].all()  # BOS left out


def test_figure_keys_are_file_names_once_the_colon_is_replaced():
    assert plotting.file_name("compare:heatmap") == "compare_heatmap.png"
    assert plotting.file_name("answer_map:input_x_gradient") == "answer_map_input_x_gradient.png"
