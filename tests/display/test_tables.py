"""attribution.tables: highlighted-text values, the top-tokens table and the trust tables."""

from __future__ import annotations

import numpy as np
import pytest

from attribution.display import labels, tables
from attribution.reports import Faithfulness
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
    report = analysis.trust
    rows = tables.faithfulness_rows(report)
    assert [row[0] for row in rows] == ["Gradient", "Attention", "Integrated Gradients"]
    assert len(tables.FAITHFULNESS_HEADERS) == len(rows[0])
    gradient = report.faithfulness["gradient"]
    assert rows[0][1] == f"{gradient.comprehensiveness:.3f}" and rows[0][3] == f"{gradient.sufficiency:.3f}"
    # The sample's reports carry no random interval, so the engine says none beats random, although
    # Gradient beats the random mean on both measures and Attention on comprehensiveness.
    assert gradient.comprehensiveness > gradient.random_comprehensiveness and not gradient.comprehensiveness_beats_random
    assert rows[0][2] == f"{gradient.random_comprehensiveness:.3f} [no interval]"
    assert [row[5:] for row in rows] == [["no", item.evidence, item.measured] for item in report.faithfulness.values()]
    pairs = {row[0]: row for row in tables.agreement_rows(report, n_content=9)}
    assert pairs["Gradient vs Attention"][1:] == ["0.50", "2 of 3"]
    assert pairs["Attention vs Integrated Gradients"][1:] == ["n/a", "3 of 3"]


@pytest.mark.parametrize("comprehensive, sufficient, words", [
    (True, True, "yes, both"), (True, False, "comprehensiveness only"), (False, True, "sufficiency only"),
    (False, False, "no")])
def test_beats_random_says_what_the_engine_decides(comprehensive, sufficient, words):
    # Each measure's result against a tight interval around the random mean: beyond it or inside it.
    item = Faithfulness(0.6 if comprehensive else 0.31, 0.2 if sufficient else 0.49, 0.3, 0.5,
                        random_comprehensiveness_interval=(0.29, 0.32), random_sufficiency_interval=(0.48, 0.51))
    assert (item.comprehensiveness_beats_random, item.sufficiency_beats_random) == (comprehensive, sufficient)
    assert tables.beats_random_text(item) == words
    assert tables.interval_text(-0.25, (-0.5, 0.125)) == "-0.250 [-0.500, 0.125]"


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
