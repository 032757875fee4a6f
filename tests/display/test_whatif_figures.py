"""The what-if tab's figure and tables (`attribution.display.whatif_figures`), from hand-made results."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from attribution.diff import diff
from attribution.display.whatif_figures import DIFF_HEADERS, deletion_curve_figure, diff_rows, diff_summary, edit_summary
from attribution.results import MethodScores
from attribution.whatif_results import DeletionCurve, Edit
from helpers import make_rich_analysis


def test_deletion_curve_figure_draws_the_method_and_the_random_band():
    rng = np.random.default_rng(0)
    curve = DeletionCurve("gradient", "word", ("Latvia", "Capital", "City"), [-0.1, -3.0, -3.5, -4.0],
                          rng.normal(-1.0, 0.5, size=(6, 4)), "attention_mask")
    figure = deletion_curve_figure(curve)
    ax = figure.axes[0]
    lines = {line.get_label(): line for line in ax.lines}
    np.testing.assert_array_equal(lines["Gradient's order"].get_ydata(), curve.method_values)
    np.testing.assert_allclose(lines["random orders: mean"].get_ydata(), curve.random_values.mean(axis=0))
    assert ax.get_xlabel() == "words removed (most important first)" and "log p" in ax.get_ylabel()
    assert curve.area == pytest.approx(np.mean([2.9, 3.4, 3.9]))
    with pytest.raises(ValueError, match="shapes disagree"):
        DeletionCurve("gradient", "word", ("a",), [0.0, 1.0, 2.0], np.zeros((2, 3)), "attention_mask")


def test_diff_table_and_summary():
    a = make_rich_analysis()
    b = dataclasses.replace(a, generated_text=" Tallinn",
                            methods={**a.methods, "gradient": MethodScores("gradient", a.methods["gradient"].scores[::-1])})
    result = diff(a, b)
    rows = diff_rows(result)
    assert len(rows) == len(result.units) * len(result.methods) and len(rows[0]) == len(DIFF_HEADERS)
    gradient = [row for row in rows if row[1] == "Gradient"]
    np.testing.assert_allclose([row[4] for row in gradient], np.round(100 * result.methods["gradient"].difference, 1),
                               atol=0.051)
    summary = diff_summary(result)
    assert "`  Tallinn`" not in summary and "` Tallinn`" in summary and result.sentence in summary
    assert "answer changed" in result.sentence


def test_edit_summary_says_what_changed():
    edit = Edit("What is the capital of Latvia?", "What is the capital of?", (" Latvia",), (), " Riga", " Paris",
                " Riga", 0.9, 0.01, " Paris", False)
    text = edit_summary(edit)
    assert text.startswith("Removed “Latvia”. **The answer changed.**")
    assert "| 0.9 | 0.01 |" in text and "now predicts ` Paris`" in text
    with pytest.raises(ValueError, match="must be a probability"):
        dataclasses.replace(edit, probability_after=1.5)
