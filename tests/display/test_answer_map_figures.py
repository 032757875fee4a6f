"""attribution.answer_map_figures: the answer map's heatmap and one row as highlighted text."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from attribution.catalog import is_signed
from attribution.display import answer_map_figures, labels
from attribution.results import Analysis, Target
from attribution.settings import Settings
from helpers import CHAT_TEMPLATE_POSITIONS, GENERATED, TOKENS, make_answer_map, make_chat_analysis, tick_texts


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
    bos_hidden = answer_map_figures.source_flags([True] + [False] * 9, 11)
    hidden = answer_map_figures.answer_map_highlight(table, 1, bos_hidden)
    assert hidden[0] == (TOKENS[0], None)
    with pytest.raises(ValueError, match="out of range"):
        answer_map_figures.answer_map_highlight(table, 4)


def test_answer_map_sources_carry_the_prompts_chat_template_flags_only():
    analysis = make_chat_analysis()
    table = analysis.answer_map["input_x_gradient"]
    exclude, template = answer_map_figures.source_exclusions(analysis, table, exclude_special=False)
    assert len(exclude) == len(table.sources)
    assert list(np.flatnonzero(exclude)) == list(np.flatnonzero(template)) == list(CHAT_TEMPLATE_POSITIONS)
    hidden, _template = answer_map_figures.source_exclusions(analysis, table, exclude_special=True)
    assert list(np.flatnonzero(hidden)) == [0, *CHAT_TEMPLATE_POSITIONS]
    # Explaining generated token 2: the input ends in the generated " Riga", which the user did not type;
    # on the map it is an answer token, never a template one.
    later = Analysis(model="tiny", prompt="", input_tokens=TOKENS + (" Riga",), input_ids=np.arange(len(TOKENS) + 1),
                     generated_text="", generated_ids=[], target=Target(".", 7, len(TOKENS) + 1), methods={},
                     special_tokens=np.append(analysis.special_tokens, False),
                     user_tokens=np.append(analysis.user_tokens, False), chat=True)
    exclude, template = answer_map_figures.source_exclusions(later, table, exclude_special=False)
    assert list(np.flatnonzero(exclude)) == list(np.flatnonzero(template)) == list(CHAT_TEMPLATE_POSITIONS)
    figure = answer_map_figures.answer_map_figure(table, signed=True, exclude=exclude, template=template)
    assert "chat-template tokens left out" in figure.axes[0].get_title().replace("\n", " ")


@pytest.mark.parametrize("aggregation", ["l2", "sum"])
def test_answer_map_sign_is_the_catalogs_with_the_analysis_aggregation(aggregation):
    # The maps hold negative numbers whatever the method: the sign comes from the catalog, not the data.
    analysis = dataclasses.replace(make_chat_analysis(), settings=Settings(aggregation=aggregation), answer_map={
        name: make_answer_map(name) for name in ("gradient", "input_x_gradient", "integrated_gradients")})
    assert all((table.matrix < 0).any() for table in analysis.answer_map.values())
    signed = {name: answer_map_figures.answer_map_signed(analysis, name) for name in analysis.answer_map}
    assert signed == {name: is_signed(name, aggregation) for name in analysis.answer_map}
    assert signed["integrated_gradients"] == (aggregation == "sum") and not signed["gradient"]
