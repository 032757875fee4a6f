"""attribution.tables: highlighted-text values, the top-tokens table and the trust tables."""

from __future__ import annotations

import numpy as np
import pytest

from attribution.display import labels, tables
from helpers import CHAT_TEMPLATE_POSITIONS, TOKENS, make_analysis, make_chat_analysis, make_rich_analysis


@pytest.mark.parametrize("aggregation", ["l2", "sum"])
def test_highlight_values_are_scaled_into_minus_one_one(aggregation):
    analysis = make_analysis(aggregation=aggregation)
    scores = analysis.methods["integrated_gradients"].scores
    values = tables.highlight_values(TOKENS, scores)
    assert [token for token, _ in values] == list(TOKENS)
    numbers = np.array([value for _, value in values])
    assert np.all(numbers >= -1.0) and np.all(numbers <= 1.0)
    assert np.max(np.abs(numbers)) == pytest.approx(1.0)
    assert np.all(np.sign(numbers[np.abs(numbers) > 1e-3]) == np.sign(scores[np.abs(numbers) > 1e-3]))
    assert all(isinstance(value, float) for _, value in values)


def test_highlight_values_of_flat_scores_are_zero():
    assert tables.highlight_values(["a", "b"], np.zeros(2)) == [("a", 0.0), ("b", 0.0)]
    with pytest.raises(ValueError):
        tables.highlight_values(["a"], np.zeros(2))


def test_top_rows_rank_the_highest_scores():
    analysis = make_analysis()
    rows = tables.top_rows(analysis, "gradient", k=5)
    scores = analysis.methods["gradient"].scores
    assert [row[0] for row in rows] == [1, 2, 3, 4, 5]
    assert [row[2] for row in rows] == list(np.argsort(-scores)[:5])
    assert rows[0][1] == labels.token_label(TOKENS[int(np.argmax(scores))])


def test_trust_tables():
    analysis = make_rich_analysis()
    rows = tables.faithfulness_rows(analysis.trust)
    assert [row[0] for row in rows] == ["Gradient", "Attention", "Integrated Gradients"]
    assert len(tables.FAITHFULNESS_HEADERS) == len(rows[0])
    assert rows[0][1:5] == ["0.600", "0.300", "0.200", "0.500"] and rows[0][5] == "yes, both"
    assert rows[1][5] == "comprehensiveness only" and rows[2][5] == "no"
    pairs = {row[0]: row for row in tables.agreement_rows(analysis.trust, n_content=9)}
    assert pairs["Gradient vs Attention"][1:] == ["0.50", "2 of 3"]
    assert pairs["Attention vs Integrated Gradients"][1:] == ["n/a", "3 of 3"]


def test_hiding_special_tokens_leaves_them_out_of_the_highlight_scaling():
    analysis = make_rich_analysis()
    scores = analysis.methods["attention"].scores.copy()
    values = tables.highlight_values(TOKENS, scores, exclude=analysis.special_tokens)
    assert values[0] == (TOKENS[0], None)
    assert max(abs(value) for _, value in values[1:]) == pytest.approx(1.0)


def test_top_rows_leave_out_the_excluded_tokens():
    analysis = make_chat_analysis()
    scores = analysis.methods["gradient"].scores
    rows = tables.top_rows(analysis, "gradient", k=5, exclude=analysis.template_tokens)
    positions = [row[2] for row in rows]
    assert not set(positions) & set(CHAT_TEMPLATE_POSITIONS)
    kept = [index for index in np.argsort(-scores, kind="stable") if index not in CHAT_TEMPLATE_POSITIONS]
    assert positions == kept[:5]
