"""The What-if / compare tab, through its handler functions on the stored result of an analysis."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import pandas as pd
import pytest

import attribution
from attribution.alignment import word_units
from attribution.diff import diff
from attribution.whatif import edit, remove_top
from ui import store
from ui.tabs import whatif


@pytest.fixture(scope="module")
def stored(analyzed):
    return store.lookup(analyzed["state"])


def test_the_prompt_is_shown_by_word_and_by_token(analyzed, stored):
    analysis = stored.analysis
    highlight, indices, methods, prompt = whatif.show_prompt(analyzed["state"], "word")
    assert [text.strip() for text, _mark in highlight] == [unit.text for unit in word_units(analysis)]
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


def test_compare_with_a_second_model(analyzed, stored, model_folders):
    second = str(model_folders["narrow-untied"])
    note, summary, table, plot = whatif.compare(analyzed["state"], second, stored.analysis.prompt, "gradient")
    assert note.startswith("Both models in memory")  # two tiny models always fit
    again = attribution.analyze(attribution.load_model(second), stored.analysis.prompt,
                                stored.analysis.settings.replace(all_targets=False, trust=False))
    expected = diff(stored.analysis, again)
    assert expected.sentence in summary and isinstance(table, pd.DataFrame)
    assert len(table) == len(expected.units) * len(expected.methods)
    assert plot is not None


def test_compare_an_edited_prompt_and_refuse_the_same_run(analyzed, stored, tiny_folder):
    edited = stored.analysis.prompt.replace("Capital ", "")
    note, summary, _table, _plot = whatif.compare(analyzed["state"], str(tiny_folder), edited, "attention")
    assert note.startswith("Same model") and "the prompt" in summary
    with pytest.raises(gr.Error, match="pick another model or edit the prompt"):
        whatif.compare(analyzed["state"], str(tiny_folder), stored.analysis.prompt, "gradient")
    with pytest.raises(gr.Error, match="pick a method"):
        whatif.compare(analyzed["state"], str(tiny_folder), edited, "nothing")


def test_compare_one_model_at_a_time_when_both_do_not_fit(analyzed, stored, model_folders, monkeypatch):
    from attribution import memory
    from attribution.models import loaded_models

    second = str(model_folders["mha-rope-scaled"])
    monkeypatch.setattr(memory, "_available_memory_bytes", lambda device: 1)
    note, summary, _table, _plot = whatif.compare(analyzed["state"], second, stored.analysis.prompt, "gradient")
    assert note.startswith("One model at a time") and stored.analysis.model in note
    assert second not in {model.name for model in loaded_models()}  # released after its run
    assert "the model" in summary
