"""attribution.method_figures: one method's bars, layers × tokens and heads × tokens figures."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.figure import Figure

from attribution.display import figure_style, labels, method_figures
from attribution.results import Analysis, MethodScores, Target
from helpers import TOKENS, make_analysis, make_chat_analysis, make_rich_analysis, tick_texts


@pytest.mark.parametrize("name", ["gradient", "attention", "integrated_gradients"])
def test_bar_figure_has_one_bar_and_one_labelled_tick_per_token(name):
    analysis = make_analysis()
    figure = method_figures.bar_figure(analysis, name)
    assert isinstance(figure, Figure)
    (ax,) = figure.axes
    assert len(ax.patches) == len(TOKENS)
    assert tick_texts(ax) == [labels.token_label(token) for token in TOKENS]
    assert all(label.get_rotation() == 45 for label in ax.get_xticklabels())
    assert '" Riga"' in ax.get_title()
    assert labels.method_label(name) in ax.get_title()
    heights = [patch.get_height() for patch in ax.patches]
    np.testing.assert_allclose(heights, analysis.methods[name].scores)


def test_signed_bars_colour_negative_scores_differently():
    analysis = make_analysis(aggregation="sum")
    ax = method_figures.bar_figure(analysis, "integrated_gradients").axes[0]
    scores = analysis.methods["integrated_gradients"].scores
    colours = {tuple(patch.get_facecolor()[:3]) for patch, value in zip(ax.patches, scores) if value < 0}
    positive = {tuple(patch.get_facecolor()[:3]) for patch, value in zip(ax.patches, scores) if value >= 0}
    assert colours and positive and colours.isdisjoint(positive)


def test_dollar_tokens_are_not_read_as_mathtext():
    tokens = ("<s>", " costs", " $", "5", " or", " $x$")
    scores = {"gradient": MethodScores("gradient", np.arange(len(tokens), dtype=float))}
    analysis = Analysis(model="m", prompt="p", input_tokens=tokens, input_ids=np.arange(len(tokens)),
                        generated_text="", generated_ids=np.array([], dtype=int),
                        target=Target("$", 3, len(tokens)), methods=scores)
    figure = method_figures.bar_figure(analysis, "gradient")
    figure.savefig(io.BytesIO(), format="png")  # mathtext would fail or swallow the dollars
    assert tick_texts(figure.axes[0])[-1] == r"␣\$x\$"


def test_long_prompts_thin_the_tick_labels():
    n = 150
    tokens = tuple(f" t{i}" for i in range(n))
    scores = {"gradient": MethodScores("gradient", np.linspace(0.0, 1.0, n))}
    analysis = Analysis(model="m", prompt="p", input_tokens=tokens, input_ids=np.arange(n), generated_text="",
                        generated_ids=np.array([], dtype=int), target=Target("x", 1, n), methods=scores)
    ax = method_figures.bar_figure(analysis, "gradient").axes[0]
    assert len(ax.patches) == n
    assert len(tick_texts(ax)) <= figure_style.MAX_TICK_LABELS


def test_layer_heatmap_is_layers_by_tokens_in_ylorrd():
    analysis = make_analysis(n_layers=3)
    figure = method_figures.layer_heatmap_figure(analysis, "attention")
    ax = figure.axes[0]
    (image,) = ax.get_images()
    assert image.get_array().shape == (3, len(TOKENS))
    assert image.get_cmap().name == "YlOrRd"
    assert [label.get_text() for label in ax.get_yticklabels()] == ["Layer 0", "Layer 1", "Layer 2"]
    assert tick_texts(ax) == [labels.token_label(token) for token in TOKENS]
    assert '" Riga"' in ax.get_title()


def test_head_heatmap_draws_every_head_of_the_chosen_layer():
    analysis = make_analysis(n_layers=3, n_heads=4)
    per_head = analysis.methods["attention"].per_head
    ax = method_figures.head_heatmap_figure(TOKENS, per_head.tolist(), 2, " Riga").axes[0]
    (image,) = ax.get_images()
    np.testing.assert_allclose(image.get_array(), per_head[2])
    assert "layer 2" in ax.get_title()
    with pytest.raises(ValueError, match="out of range"):
        method_figures.head_heatmap_figure(TOKENS, per_head, 3, " Riga")


def test_titles_name_the_contrast_and_never_split_a_quoted_token():
    analysis = make_rich_analysis()
    title = method_figures.bar_figure(analysis, "gradient").axes[0].get_title()
    assert '" Riga"' in title and 'rather than " Tallinn"' in title.replace("\n", " ")
    head = method_figures.head_heatmap_figure(TOKENS, analysis.methods["attention"].per_head, 0, " Riga", "Attention",
                                        " Tallinn")
    assert 'rather than " Tallinn"' in head.axes[0].get_title().replace("\n", " ")


def test_signed_methods_get_a_zero_line_even_when_all_scores_are_positive():
    occlusion = MethodScores("occlusion", np.linspace(0.1, 1.0, len(TOKENS)))
    base = make_analysis()
    analysis = Analysis(model="m", prompt="p", input_tokens=TOKENS, input_ids=base.input_ids, generated_text="",
                        generated_ids=np.array([], dtype=int), target=base.target, methods={"occlusion": occlusion})
    ax = method_figures.bar_figure(analysis, "occlusion").axes[0]
    assert any(list(line.get_ydata()) == [0.0, 0.0] for line in ax.get_lines())


def test_bars_keep_the_chat_templates_raw_scores_with_grey_labels():
    analysis = make_chat_analysis()
    ax = method_figures.bar_figure(analysis, "gradient").axes[0]
    np.testing.assert_allclose([patch.get_height() for patch in ax.patches], analysis.methods["gradient"].scores)
    grey = [index for index, label in enumerate(ax.get_xticklabels())
            if label.get_color() == figure_style.EXCLUDED_LABEL_COLOR]
    assert grey == list(np.flatnonzero(analysis.template_tokens)) and grey
    plain = method_figures.bar_figure(make_rich_analysis(), "gradient").axes[0]
    assert all(label.get_color() != figure_style.EXCLUDED_LABEL_COLOR for label in plain.get_xticklabels())


def test_every_methods_score_axis_label_fits_in_its_bar_figure():
    # The y label is as tall as its text is long: a long one (context ablation's names its unit and
    # score) ran off the figure's top and bottom, its ends cut off in the page.
    import dataclasses

    from attribution.catalog import CATALOG

    analysis = make_analysis()
    scores = np.linspace(-0.5, 1.0, len(TOKENS))
    extra = {name: MethodScores(name, scores) for name in CATALOG if name not in analysis.methods}
    analysis = dataclasses.replace(analysis, methods={**analysis.methods, **extra})
    for name in CATALOG:
        figure = method_figures.bar_figure(analysis, name)
        figure.canvas.draw()  # constrained layout places the label
        box = figure.axes[0].yaxis.label.get_window_extent()
        height = figure.get_figheight() * figure.dpi
        assert box.y0 >= 0 and box.y1 <= height, (name, figure.axes[0].get_ylabel(), box.y0, box.y1, height)
