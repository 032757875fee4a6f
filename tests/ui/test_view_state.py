"""attribution.view_state: the app's stored result survives the round trip through JSON text."""

from __future__ import annotations

import dataclasses

import numpy as np

from ui import view_state
from helpers import TOKENS, make_rich_analysis


def test_view_state_round_trip_keeps_what_the_views_redraw_from():
    analysis = make_rich_analysis()
    data = view_state.load_view_state(view_state.dump_view_state(analysis))
    assert data["tokens"] == list(TOKENS) and data["foil"] == " Tallinn"
    assert np.asarray(data["per_head"]["attention"]).shape == analysis.methods["attention"].per_head.shape
    assert data["answer_map_signed"] == {"input_x_gradient": True}
    restored = view_state.analysis_from_view_state(data)
    for name, result in analysis.methods.items():
        np.testing.assert_allclose(restored.methods[name].scores, result.scores)
    np.testing.assert_array_equal(restored.special_tokens, analysis.special_tokens)
    assert restored.target.text == " Riga" and restored.foil.text == " Tallinn"
    table = view_state.answer_map_from_view_state(data, "input_x_gradient")
    np.testing.assert_allclose(table.matrix, analysis.answer_map["input_x_gradient"].matrix)
    assert view_state.answer_map_from_view_state(data, "gradient") is None
    assert view_state.load_view_state(None) == {} and view_state.analysis_from_view_state({}) is None
    assert data["ig"] == {"preset": "seed"}  # 50 steps, zero baseline, L2: the seed's IG settings


def test_contrast_options_leave_out_the_explained_token_and_keep_the_current_foil():
    data = view_state.load_view_state(view_state.dump_view_state(make_rich_analysis()))
    assert view_state.contrast_options(data) == [("(none)", ""), ('" Tallinn" (3.1%)', 98)]
    data["predictions"] = []
    assert view_state.contrast_options(data)[-1] == ('" Tallinn" (the current contrast)', 98)


def test_view_state_keeps_the_chat_flags_and_the_clickable_answer():
    base = make_rich_analysis()
    user = ~base.special_tokens
    user[1:3] = False  # "What is" stands in for tokens a chat template added
    analysis = dataclasses.replace(base, user_tokens=user, chat=True)
    data = view_state.load_view_state(view_state.dump_view_state(analysis, (" Riga", ".", "<|end_of_text|>"), 2))
    restored = view_state.analysis_from_view_state(data)
    assert restored.chat is True
    np.testing.assert_array_equal(restored.template_tokens, analysis.template_tokens)
    np.testing.assert_array_equal(restored.context_tokens, analysis.context_tokens)
    assert list(np.flatnonzero(restored.template_tokens)) == [1, 2]
    assert view_state.answer_view(data) == [(" Riga", None), (".", view_state.EXPLAINED), ("<|end_of_text|>", None)]
    assert view_state.answer_view({}) == []


def test_the_explained_answer_token():
    analysis = make_rich_analysis()  # explains " Riga" (id 99), the first generated token
    assert view_state.explained_answer_token(analysis, None) == 1
    assert view_state.explained_answer_token(analysis, " Riga") == 1  # a text whose token the model generated
    assert view_state.explained_answer_token(analysis, 3) == 3
    other = dataclasses.replace(analysis, generated_ids=np.array([5, 99]))
    assert view_state.explained_answer_token(other, " Riga") is None  # not what the model generated there
    assert view_state.explained_answer_token(dataclasses.replace(analysis, generated_ids=[]), None) is None
