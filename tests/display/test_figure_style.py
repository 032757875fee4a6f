"""attribution.figure_style: what every figure shares (signed colour scales, wrapped titles)."""

from __future__ import annotations

import numpy as np

from attribution.display import figure_style, labels
from attribution.results import MethodScores
from helpers import TOKENS, make_chat_analysis, make_rich_analysis


def test_signed_methods_are_signed_even_when_all_scores_are_positive():
    occlusion = MethodScores("occlusion", np.linspace(0.1, 1.0, len(TOKENS)))
    assert figure_style.is_signed("occlusion", occlusion) and figure_style.is_signed("input_x_gradient", occlusion)
    assert not figure_style.is_signed("gradient", MethodScores("gradient", np.ones(3)))


def test_titles_never_split_a_quoted_token():
    assert labels.target_phrase(" Riga", " Tallinn") == 'predicting " Riga" rather than " Tallinn"'
    wrapped = figure_style.wrap_title("A long title: " + labels.target_phrase(" Riga", " Tallinn") + " (a note)", 3.0, 13)
    assert "\n" in wrapped and '" Riga"' in wrapped and '" Tallinn"' in wrapped


def test_excluded_tokens_are_the_chat_template_and_special_tokens_on_request():
    chat = make_chat_analysis()
    assert list(np.flatnonzero(figure_style.excluded_tokens(chat))) == [1, 2, 9]
    assert list(np.flatnonzero(figure_style.excluded_tokens(chat, exclude_special=True))) == [0, 1, 2, 9]
    raw = make_rich_analysis()
    assert not figure_style.excluded_tokens(raw).any()  # the seed's view: nothing left out
    assert list(np.flatnonzero(figure_style.excluded_tokens(raw, exclude_special=True))) == [0]
    assert figure_style.scaling_note(np.zeros(3, dtype=bool)) == ""
    assert figure_style.scaling_note(np.array([True, False])) == " (start/special tokens left out of the scaling)"
    assert figure_style.scaling_note(np.array([False, True]), np.array([False, True])) == (
        " (chat-template tokens left out of the scaling)")
