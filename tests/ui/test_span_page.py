"""The page's stretch of the answer (Explain → a stretch, tokens k-m, or two clicks in the answer) and its
continuation box: through the /analyze handler, the clickable answer and the deep link."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import gradio as gr
import pytest

from attribution.display.figure_style import analysis_target_phrase
from conftest import SEED_PROMPT
from helpers import QUICK
from ui import analysis as ui_analysis
from ui import controls, store
from ui import inputs as ui_inputs
from ui import settings as ui_settings
from ui.streaming import analyze_unless_pending


def run(tiny_folder, **values) -> dict:
    return dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.analyze(SEED_PROMPT, str(tiny_folder), **{**QUICK, **values})))


def test_analyze_explains_a_stretch_of_the_answer(tiny_folder):
    values = run(tiny_folder, target="span", target_span="2-3", score="log_probability",
                 methods=["gradient", "integrated_gradients", "occlusion"], ig_steps=4, trust=True)
    analysis = store.recall(values["state"]).analysis
    assert analysis.settings.target == (2, 3) and analysis.span.first == 2 and analysis.span.last == 3
    assert "generated tokens 2-3" in values["explained"] and "token ids" in values["explained"]
    data = json.loads(Path(values["export:json"]).read_text(encoding="utf-8"))
    assert data["span"]["ids"] == [int(token) for token in analysis.generated_ids[1:3]]
    *_, answer = ui_analysis.after_analysis(values["state"], None)
    assert [category for _token, category in answer] == [None, "explained", "explained"]  # the stretch marked
    ig = analysis.methods["integrated_gradients"]
    assert ig.score == "log_probability" and ig.input_output < 0  # log p of two tokens


def test_analyze_explains_a_continuation(tiny_folder):
    values = run(tiny_folder, continuation=" Riga is")
    analysis = store.recall(values["state"]).analysis
    assert analysis.span.source == "continuation" and analysis.span.text == " Riga is"
    assert "the continuation" in values["explained"]
    assert analysis_target_phrase(analysis) == 'predicting " Riga is"'  # the figures' titles name the stretch
    *_, answer = ui_analysis.after_analysis(values["state"], None)
    assert all(category is None for _token, category in answer)  # the answer itself is not what is explained


@pytest.mark.parametrize("values, words", [
    (dict(target="span", target_span="3"), "must be two generated-token numbers"),
    (dict(target="span", target_span="3-1"), "1 ≤ k ≤ m"),
    (dict(target="span", target_span="2-9"), r"1 ≤ k ≤ m ≤ 3 \(the tokens generated\)"),
    (dict(target="generated", target_k=2, continuation=" Riga"), "either a target or a continuation"),
])
def test_bad_stretches_are_clear_errors(tiny_folder, values, words):
    with pytest.raises(gr.Error, match=words):
        run(tiny_folder, **values)


def test_page_settings_make_the_span_and_leave_an_empty_continuation_out():
    values = {**ui_settings.DEFAULTS, "prompt": SEED_PROMPT, "model": None, "target": "span", "target_span": " 2 - 5 "}
    settings = ui_inputs.page_settings(values)
    assert settings.target == (2, 5) and settings.continuation is None
    settings = ui_inputs.page_settings({**values, "target": "next", "continuation": " Riga"})
    assert settings.target is None and settings.continuation == " Riga"


def test_two_clicks_in_the_answer_pick_a_stretch(tiny_folder):
    first = run(tiny_folder)
    state = first["state"]
    click = lambda index: gr.SelectData(None, {"index": index, "value": ["x", None]})  # noqa: E731
    # Explain → a stretch: the first click marks its start, and nothing runs for it.
    assert ui_analysis.explain_answer_token(state, "span", "", click(2)) == [gr.update(), gr.update(), "3-"]
    # The second click, before or after it, closes it.
    assert ui_analysis.explain_answer_token(state, "span", "3-", click(0)) == [gr.update(), gr.update(), "1-3"]
    assert ui_analysis.explain_answer_token(state, "span", "2-", click(2)) == [gr.update(), gr.update(), "2-3"]
    # A complete stretch in the box: a click starts a new one.
    assert ui_analysis.explain_answer_token(state, "span", "1-3", click(1)) == [gr.update(), gr.update(), "2-"]


def test_the_first_click_of_a_stretch_runs_nothing(tiny_folder):
    arguments = {**ui_settings.DEFAULTS, "prompt": SEED_PROMPT, "model": str(tiny_folder), "target": "span",
                 "target_span": "2-"}

    async def collect() -> list:
        return [value async for value in analyze_unless_pending(**arguments)]

    assert asyncio.run(collect()) == [[gr.update()] * len(ui_analysis.OUTPUT_KEYS)]


def test_the_deep_link_and_share_link_carry_the_stretch_and_the_continuation():
    keys = list(ui_settings.DEEP_LINK_KEYS)
    linked = dict(zip(keys, controls.from_query({"target": "span", "span": "2-4", "continuation": " Riga"}, [])))
    assert linked["target"] == "span" and linked["span"] == "2-4" and linked["continuation"] == " Riga"
    script = ui_settings.share_js(ui_settings.DEFAULTS)
    assert '"span"' in script and '"continuation"' in script
