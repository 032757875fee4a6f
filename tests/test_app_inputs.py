"""attribution.app_inputs: the app's form values and deep links → the library's arguments."""

from __future__ import annotations

import pytest

from attribution import app_inputs


def test_targets_from_the_settings():
    assert app_inputs.parse_target("next", 1, "") is None
    assert app_inputs.parse_target("generated", 3.0, "") == 3
    assert app_inputs.parse_target("text", 1, " Riga") == " Riga"
    with pytest.raises(ValueError, match="valid choices"):
        app_inputs.parse_target("sideways", 1, "")


def test_contrast_is_the_picked_id_while_the_box_shows_the_picked_text():
    pick = {"id": 98, "text": " Tallinn"}
    assert app_inputs.parse_contrast(" Tallinn", pick) == 98
    assert app_inputs.parse_contrast(" Vilnius", pick) == " Vilnius"  # typed over the pick: the text
    assert app_inputs.parse_contrast("", pick) is None
    with pytest.raises(ValueError, match="contrast_text"):
        app_inputs.parse_contrast(3, None)


def test_flags_and_the_token_selector():
    assert app_inputs.parse_flag(True, "trust") is True and app_inputs.parse_flag(0, "trust") is False
    with pytest.raises(ValueError, match="trust must be true or false"):
        app_inputs.parse_flag("yes", "trust")
    assert [app_inputs.token_index(value, 3) for value in (2, "3.0", 9, -1, None, "x")] == [2, 3, 3, 1, 1, 1]


def test_deep_link_keeps_only_valid_settings():
    query = {"prompt": "Hello", "model": "someone/model", "methods": "gradient,bogus", "steps": "120",
             "max_new_tokens": "9999", "baseline": "pad", "aggregation": "nonsense", "target": "text",
             "k": "x", "answer_map": "0", "hide_special": "yes"}
    settings = app_inputs.deep_link_settings(query, ["m"], any_model=True)
    assert settings == {"prompt": "Hello", "model": "someone/model", "methods": ["gradient"], "steps": 120,
                        "baseline": "pad", "target": "text", "answer_map": False}
    assert "model" not in app_inputs.deep_link_settings(query, ["m"], any_model=False)  # a Space: listed only
    assert set(settings) <= set(app_inputs.DEEP_LINK_KEYS)
