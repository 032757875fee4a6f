"""attribution.answer_map_figures: the answer map's heatmap and one row as highlighted text."""

from __future__ import annotations

import numpy as np
import pytest

from attribution import answer_map_figures, labels
from sample_analyses import GENERATED, TOKENS, make_answer_map, tick_texts


def test_answer_map_heatmap_is_targets_by_sources_with_a_prompt_separator():
    table = make_answer_map()
    figure = answer_map_figures.answer_map_figure(table, signed=True, selected=2)
    ax = figure.axes[0]
    (image,) = ax.get_images()
    shown = image.get_array()
    assert shown.shape == (len(GENERATED), len(TOKENS) + len(GENERATED) - 1)
    assert image.get_cmap().name == "attribution_diverging" and image.get_clim() == (-1.0, 1.0)
    assert tick_texts(ax) == [labels.token_label(token) for token in table.sources]
    assert [label.get_text() for label in ax.get_yticklabels()] == ["1: ␣Riga", "2: .", "3: <|end_of_text|>"]
    separators = [line for line in ax.get_lines() if list(line.get_xdata()) == [len(TOKENS) - 0.5] * 2]
    assert len(separators) == 1
    assert {text.get_text() for text in ax.texts} >= {"prompt", "generated"}
    # Causal: row t sees the prompt and the t − 1 tokens generated before it; later cells are masked.
    mask = np.ma.getmaskarray(shown)
    for row in range(len(GENERATED)):
        assert not mask[row, : len(TOKENS) + row].any() and mask[row, len(TOKENS) + row:].all()
        assert np.max(np.abs(shown[row].compressed())) == pytest.approx(1.0)
    assert any(patch.get_y() == pytest.approx(0.5) for patch in ax.patches)  # the selected row's outline
    unsigned = answer_map_figures.answer_map_figure(make_answer_map("gradient"), signed=False).axes[0].get_images()[0]
    assert unsigned.get_cmap().name == "YlOrRd" and unsigned.get_clim() == (0.0, 1.0)


def test_answer_map_row_as_highlighted_text():
    table = make_answer_map()
    values = answer_map_figures.answer_map_highlight(table, 2)
    assert [token for token, _ in values] == list(TOKENS) + [" Riga"]
    scores = table.matrix[1, : len(TOKENS) + 1]
    assert [value for _, value in values] == pytest.approx(list(scores / np.max(np.abs(scores))), abs=1e-4)
    hidden = answer_map_figures.answer_map_highlight(table, 1, answer_map_figures.source_special_tokens([True] + [False] * 9, 11))
    assert hidden[0] == (TOKENS[0], None)
    with pytest.raises(ValueError, match="out of range"):
        answer_map_figures.answer_map_highlight(table, 4)
