"""The What-if / compare tab, through its handler functions on the stored result of an analysis."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import pandas as pd
import pytest

import attribution
from attribution.alignment import word_units
from attribution.diff import diff, spearman_text
from attribution.display.whatif_figures import deletion_curve_figure
from attribution.whatif import edit, remove_top
from conftest import SEED_PROMPT
from ui import store
from ui.tabs import whatif


@pytest.fixture(scope="module")
def stored(analyzed):
    return store.lookup(analyzed["state"])


def test_the_prompt_is_shown_by_word_and_by_token(analyzed, stored):
    analysis = stored.analysis
    highlight, indices, methods, prompt = whatif.show_prompt(analyzed["state"], "word")
    assert [text.strip() for text, _mark in highlight] == [unit.text for unit in word_units(analysis)]
    assert "".join(text for text, _mark in highlight) == analysis.prompt  # as typed: "Latvia?", not "Latvia ?"
    assert indices == "" and prompt == analysis.prompt and all(mark is None for _text, mark in highlight)
    assert [value for _label, value in methods["choices"]] == list(analysis.methods)
    tokens, *_rest = whatif.show_prompt(analyzed["state"], "token")
    assert [text for text, _mark in tokens] == [analysis.input_tokens[index]
                                                for index in range(analysis.n_tokens) if analysis.user_tokens[index]]


def test_clicks_and_picks_mark_units(analyzed, stored):
    state = analyzed["state"]
    highlight, indices = whatif.toggle(state, "word", "", SimpleNamespace(index=2))
    assert indices == "2" and [mark for _text, mark in highlight].count(whatif.REMOVED) == 1 and highlight[2][1]
    _highlight, indices = whatif.toggle(state, "word", "2, 4", SimpleNamespace(index=2))
    assert indices == "4"
    _highlight, indices = whatif.pick_top(state, "word", "gradient", 2)
    assert indices == ", ".join(map(str, sorted(remove_top(stored.analysis, "gradient", 2, unit="word"))))
    _highlight, indices = whatif.pick_random(state, "word", 3)
    assert len(indices.split(", ")) == 3
    with pytest.raises(gr.Error, match="not the number"):
        whatif.typed(state, "word", "99")


def test_regenerate_shows_the_edit(analyzed, stored, tiny_folder):
    text = whatif.regenerate(analyzed["state"], "word", "0")
    expected = edit(attribution.load_model(str(tiny_folder)), stored.analysis, remove=[0], unit="word")
    assert text.startswith(f"Removed “{expected.removed[0]}”")
    assert f"| {expected.probability_before:.3g} | {expected.probability_after:.3g} |" in text
    with pytest.raises(gr.Error, match="mark at least one"):
        whatif.regenerate(analyzed["state"], "word", "")
    with pytest.raises(gr.Error, match="Analyze"):
        whatif.regenerate(None, "word", "0")


def test_regenerate_replaces_the_marked(analyzed, stored, tiny_folder):
    loaded = attribution.load_model(str(tiny_folder))
    words = [unit.text for unit in word_units(stored.analysis)]
    latvia, capital = words.index("Latvia"), words.index("Capital")
    text = whatif.regenerate(analyzed["state"], "word", str(latvia), " Estonia ")
    expected = edit(loaded, stored.analysis, replace={latvia: "Estonia"}, unit="word")
    assert expected.prompt_after == stored.analysis.prompt.replace("Latvia", "Estonia")
    assert text.startswith("Replaced “Latvia” by “Estonia”.") and f"`{expected.prompt_after}`" in text
    assert f"| {expected.probability_before:.3g} | {expected.probability_after:.3g} |" in text
    # A stretch of adjacent words by one text; words apart by one text each.
    text = whatif.regenerate(analyzed["state"], "word", f"{capital}, {capital + 1}", "largest town")
    assert "`What is the largest town of Latvia?`" in text
    text = whatif.regenerate(analyzed["state"], "word", f"{capital}, {latvia}", "largest | Estonia")
    assert "`What is the largest City of Estonia?`" in text
    with pytest.raises(gr.Error, match="one text per marked unit"):
        whatif.regenerate(analyzed["state"], "word", f"{capital}, {latvia}", "Estonia")
    # By token: the token's leading space stays.
    position = stored.analysis.input_tokens.index(" Latvia")
    tokens = list(whatif.editable_units(stored.analysis, "token"))
    text = whatif.regenerate(analyzed["state"], "token", str(tokens.index(position)), "Estonia")
    assert f"`{expected.prompt_after}`" in text


def test_plan_edit():
    assert whatif.plan_edit([3, 1], "") == ([1, 3], {})
    assert whatif.plan_edit([2, 3, 4], "x") == ([3, 4], {2: "x"})
    assert whatif.plan_edit([4, 1], "a | ") == ([4], {1: "a"})
    with pytest.raises(ValueError, match="not one stretch"):
        whatif.plan_edit([1, 3], "x")


def test_the_deletion_curve_for_one_prompt(analyzed, stored, tiny_folder):
    from attribution.whatif import deletion_curve

    loaded = attribution.load_model(str(tiny_folder))
    for unit in ("word", "token"):
        plot = whatif.curve(analyzed["state"], unit, "gradient")
        expected = deletion_curve(loaded, stored.analysis, "gradient", n_random=whatif.CURVE_RANDOM_ORDERS, unit=unit)
        assert plot.plot.startswith("data:image/png;base64,")
        # The figure drawn from the library's curve (the random orders are seeded), so the same PNG bytes.
        assert plot.plot == whatif._png(deletion_curve_figure(expected)).plot
    assert len(expected.units) == int((stored.analysis.user_tokens & ~stored.analysis.context_tokens).sum())
    with pytest.raises(gr.Error, match="pick a method"):
        whatif.curve(analyzed["state"], "word", "nothing")


def test_compare_with_a_second_model(analyzed, stored, model_folders):
    second = str(model_folders["narrow-untied"])
    note, summary, table = whatif.compare(analyzed["state"], second, stored.analysis.prompt)
    assert note.startswith("Both models in memory")  # two tiny models always fit
    again = attribution.analyze(attribution.load_model(second), stored.analysis.prompt,
                                stored.analysis.settings.replace(all_targets=False, trust=False))
    expected = diff(stored.analysis, again)
    assert isinstance(table, pd.DataFrame) and len(table) == len(expected.units) * len(expected.methods)
    # The answer map and the trust panel, which the compare run skips, are not reported as the user's changes.
    assert set(expected.settings) == {"all_targets", "trust"} and "setting" not in summary
    assert "the settings" not in summary and "the model" in summary
    for name, item in expected.methods.items():
        assert spearman_text(item) in summary


def test_compare_an_edited_prompt_and_refuse_the_same_run(analyzed, stored, tiny_folder):
    edited = stored.analysis.prompt.replace("Capital ", "")
    note, summary, _table = whatif.compare(analyzed["state"], str(tiny_folder), edited)
    assert note.startswith("Same model") and "Changing the prompt, " in summary
    with pytest.raises(gr.Error, match="pick another model or edit the prompt"):
        whatif.compare(analyzed["state"], str(tiny_folder), stored.analysis.prompt)


def test_compare_one_model_at_a_time_when_both_do_not_fit(analyzed, stored, model_folders, monkeypatch):
    from attribution import memory
    from attribution.models import loaded_models

    second = str(model_folders["mha-rope-scaled"])
    monkeypatch.setattr(memory, "_available_memory_bytes", lambda device: 1)
    note, summary, _table = whatif.compare(analyzed["state"], second, stored.analysis.prompt)
    assert note.startswith("One model at a time") and stored.analysis.model in note
    assert second not in {model.name for model in loaded_models()}  # released after its run
    assert "the model" in summary


def test_a_chat_analysis_compares_with_a_model_without_a_chat_template(chat_folder, tiny_folder):
    """The demo model against SmolLM2's chat, in small: the model without a template runs the raw prompt,
    and the note and the diff say the setting chat differs."""
    from ui import analysis as ui_analysis
    from ui.analysis import OUTPUT_KEYS

    values = dict(zip(OUTPUT_KEYS, ui_analysis.analyze(SEED_PROMPT, str(chat_folder), max_new_tokens=2, chat=True,
                                                       system="Be brief.", all_targets=False, trust=False)))
    chat_analysis = store.lookup(values["state"]).analysis
    assert chat_analysis.chat
    note, summary, table = whatif.compare(values["state"], str(tiny_folder), SEED_PROMPT)
    assert "has no chat template: it ran on the raw prompt" in note
    raw = attribution.analyze(attribution.load_model(str(tiny_folder)), SEED_PROMPT,
                              chat_analysis.settings.replace(chat=False, system=None))
    expected = diff(chat_analysis, raw)
    assert set(expected.settings) == {"chat", "system"} and expected.sentence in summary
    assert len(table) == len(expected.units) * len(expected.methods) and expected.alignment.by == "word"
