"""attribution.figure_style: what every figure shares (signed colour scales, wrapped titles)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from attribution import catalog
from attribution.display import figure_style, labels
from attribution.results import MethodScores
from attribution.settings import Settings
from helpers import TOKENS, make_analysis, make_chat_analysis, make_rich_analysis


def test_signed_methods_are_signed_even_when_all_scores_are_positive():
    # Signedness is the catalog's (method × aggregation), never read from the scores' signs.
    analysis = make_analysis()
    positive = {"occlusion": MethodScores("occlusion", np.linspace(0.1, 1.0, len(TOKENS))),
                "gradient": MethodScores("gradient", -np.linspace(0.1, 1.0, len(TOKENS)))}  # negative, yet unsigned
    analysis = dataclasses.replace(analysis, methods={**analysis.methods, **positive})
    for name in analysis.methods:
        assert figure_style.method_signed(analysis, name) == catalog.is_signed(name, "l2")
    assert figure_style.method_signed(analysis, "occlusion") and not figure_style.method_signed(analysis, "gradient")


@pytest.mark.parametrize("aggregation", ["l2", "sum"])
def test_ig_is_signed_by_the_analysis_aggregation(aggregation):
    # Hand-made (no settings): the IG result's record; computed: the settings', which win.
    hand_made = make_analysis(aggregation=aggregation)
    assert figure_style.analysis_aggregation(hand_made) == aggregation
    assert figure_style.method_signed(hand_made, "integrated_gradients") == catalog.is_signed(
        "integrated_gradients", aggregation)
    other = "sum" if aggregation == "l2" else "l2"
    computed = dataclasses.replace(hand_made, settings=Settings(aggregation=other))
    assert figure_style.analysis_aggregation(computed) == other
    assert figure_style.method_signed(computed, "integrated_gradients") == (other == "sum")
    without_ig = dataclasses.replace(hand_made, methods={"gradient": hand_made.methods["gradient"]})
    assert figure_style.analysis_aggregation(without_ig) is None
    with pytest.raises(ValueError, match="valid choices"):
        figure_style.method_signed(hand_made, "shap")


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


def _hue_degrees(color: str) -> tuple[float, float]:
    """A matplotlib colour's hue in degrees and its saturation (HSV)."""
    import colorsys

    from matplotlib.colors import to_rgb

    hue, saturation, _ = colorsys.rgb_to_hsv(*to_rgb(color))
    return hue * 360.0, saturation


def test_no_method_draws_its_bars_in_the_purple_that_means_negative():
    # A bar's colour is its method's when the score is >= 0 and NEGATIVE_COLOR when < 0 (the highlighted
    # text's purple, "pushes away"): a purplish method colour would draw a positive weight as a negative one.
    negative, _ = _hue_degrees(figure_style.NEGATIVE_COLOR)
    for name, color in [*catalog.METHOD_COLORS.items(), *((f"fallback {c}", c) for c in figure_style.FALLBACK_COLORS)]:
        hue, saturation = _hue_degrees(color)
        distance = min(abs(hue - negative), 360.0 - abs(hue - negative))
        assert saturation < 0.25 or distance >= 40.0, (name, color, round(hue), round(distance))
