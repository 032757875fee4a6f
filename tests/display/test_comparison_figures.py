"""attribution.comparison_figures: every method side by side, and how far they agree."""

from __future__ import annotations

import numpy as np
import pytest

import attribution
from attribution.display import comparison_figures, figure_style, labels
from helpers import (
    CHAT_TEMPLATE_POSITIONS,
    TOKENS,
    make_analysis,
    make_chat_analysis,
    make_rich_analysis,
    tick_texts,
)


def test_comparison_heatmap_is_min_max_normalised_and_annotated():
    analysis = make_analysis()
    ax = comparison_figures.comparison_heatmap_figure(analysis).axes[0]
    (image,) = ax.get_images()
    matrix = np.asarray(image.get_array())
    assert matrix.shape == (3, len(TOKENS))
    assert image.get_cmap().name == "RdYlGn"
    np.testing.assert_allclose(matrix[0], attribution.normalize_min_max(analysis.methods["gradient"].scores))
    assert len(ax.texts) == matrix.size
    assert ax.texts[0].get_text() == f"{matrix[0, 0]:.2f}"
    assert [label.get_text() for label in ax.get_yticklabels()] == [
        "Gradient", "Attention", "Integrated Gradients"]
    assert '" Riga"' in ax.get_title()


def test_comparison_bars_have_one_panel_per_method():
    analysis = make_analysis()
    figure = comparison_figures.comparison_bars_figure(analysis)
    assert len(figure.axes) == 3
    for ax in figure.axes:
        assert len(ax.patches) == len(TOKENS)
        assert max(patch.get_height() for patch in ax.patches) == pytest.approx(1.0)
    assert tick_texts(figure.axes[-1]) == [labels.token_label(token) for token in TOKENS]
    assert '" Riga"' in figure.get_suptitle()


def test_hiding_special_tokens_rescales_the_comparison():
    analysis = make_rich_analysis()
    scores = analysis.methods["attention"].scores.copy()
    names, matrix = comparison_figures.normalized_matrix(analysis, exclude_special=True)
    np.testing.assert_allclose(matrix[1], attribution.normalize_min_max(scores, exclude=analysis.special_tokens))
    assert np.all(matrix[:, 0] == 0) and np.allclose(matrix[:, 1:].max(axis=1), 1.0)
    ax = comparison_figures.comparison_heatmap_figure(analysis, exclude_special=True).axes[0]
    image = ax.get_images()[0]
    assert np.ma.getmaskarray(image.get_array())[:, 0].all()
    assert ax.get_xticklabels()[0].get_color() == figure_style.EXCLUDED_LABEL_COLOR
    assert "special tokens left out" in ax.get_title().replace("\n", " ")
    seed_view = comparison_figures.comparison_heatmap_figure(analysis).axes[0].get_images()[0]
    assert not np.ma.getmaskarray(seed_view.get_array()).any()  # the seed's view stays the default
    bars = comparison_figures.comparison_bars_figure(analysis, exclude_special=True)
    assert all(ax.patches[0].get_height() == 0 for ax in bars.axes)


def test_agreement_heatmap_is_a_symmetric_methods_by_methods_matrix():
    analysis = make_rich_analysis()
    names = list(analysis.methods)
    figure = comparison_figures.agreement_figure(names, analysis.trust.spearman, "predicting \" Riga\"")
    ax = figure.axes[0]
    shown = ax.get_images()[0].get_array()
    assert shown.shape == (3, 3)
    matrix = comparison_figures.agreement_matrix(names, analysis.trust.spearman)
    np.testing.assert_allclose(np.diag(matrix), 1.0)
    assert matrix[0, 1] == matrix[1, 0] == 0.5 and matrix[0, 2] == -0.25
    assert np.isnan(matrix[1, 2]) and np.ma.getmaskarray(shown)[1, 2]
    assert "n/a" in [text.get_text() for text in ax.texts]
    assert [label.get_text() for label in ax.get_yticklabels()] == ["Gradient", "Attention", "Integrated Gradients"]


def test_chat_template_tokens_stay_out_of_the_comparison_by_default():
    analysis = make_chat_analysis()
    template = list(CHAT_TEMPLATE_POSITIONS)
    names, matrix = comparison_figures.normalized_matrix(analysis)
    scores = analysis.methods["gradient"].scores
    np.testing.assert_allclose(matrix[0], attribution.normalize_min_max(scores, exclude=analysis.template_tokens))
    assert np.all(matrix[:, template] == 0)
    ax = comparison_figures.comparison_heatmap_figure(analysis).axes[0]
    masked = np.ma.getmaskarray(ax.get_images()[0].get_array())
    assert list(np.flatnonzero(masked[0])) == template  # BOS stays in: the seed's view of special tokens
    assert [ax.get_xticklabels()[index].get_color() for index in template] == [figure_style.EXCLUDED_LABEL_COLOR] * 3
    title = ax.get_title().replace("\n", " ")
    assert "(chat-template tokens left out" in title
    hidden = comparison_figures.comparison_heatmap_figure(analysis, exclude_special=True).axes[0]
    assert list(np.flatnonzero(np.ma.getmaskarray(hidden.get_images()[0].get_array())[0])) == [0, *template]
    assert "special and chat-template tokens left out" in hidden.get_title().replace("\n", " ")
