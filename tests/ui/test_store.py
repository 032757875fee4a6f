"""ui.store and ui.view: one stored result per session (the full Analysis and how it is shown), and the
small views read from it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from attribution.settings import Settings
from ui import exports, store, view
from helpers import make_rich_analysis


def test_the_store_keeps_the_full_result_and_its_view_under_a_random_id():
    analysis, shown = make_rich_analysis(), view.View(hide_special=False, answer_tokens=(" Riga",), explained=1)
    first, second = store.remember(analysis, shown), store.remember(analysis, shown)
    assert first != second and len(first) == 32
    stored = store.recall(first)
    assert stored.analysis is analysis and stored.view == shown and stored.id == first
    assert store.recall("0" * 32) is None and store.recall(None) is None and store.recall(["list"]) is None
    assert store.lookup(None) is None and store.lookup("") is None  # before the first analysis: nothing, silently


def test_an_expired_result_is_gone_and_the_view_asking_for_it_is_warned(monkeypatch):
    warnings = []
    monkeypatch.setattr(store.gr, "Warning", warnings.append)
    result_id = store.remember(make_rich_analysis(), view.View())
    monkeypatch.setattr(exports, "EXPORT_TTL_S", -1)  # every stored result is now older than its age
    assert store.lookup(result_id, warn=False) is None and warnings == []
    assert store.lookup(result_id) is None and warnings == [store.EXPIRED]


def test_pinned_results_outlive_the_age_and_the_count_and_a_slot_holds_one(monkeypatch):
    pinned = store.remember(make_rich_analysis(), view.View())
    store.pin(pinned, slot="example 1")
    monkeypatch.setattr(store, "MAX_RESULTS", 2)
    others = [store.remember(make_rich_analysis(), view.View()) for _index in range(3)]
    assert store.recall(others[0]) is None and store.recall(others[-1]) is not None  # the oldest went
    replacement = store.remember(make_rich_analysis(), view.View())
    monkeypatch.setattr(exports, "EXPORT_TTL_S", -1)  # every result is now past its age
    assert store.recall(pinned) is not None and store.recall(others[-1]) is None
    store.pin(replacement, slot="example 1")
    assert store.recall(replacement) is not None and store.recall(pinned) is None  # unpinned: past its age


def test_pngs_are_rendered_once_per_result_key_and_scaling():
    stored = store.recall(store.remember(make_rich_analysis(), view.View()))
    first = store.png_bytes(stored, "compare:heatmap", True)
    assert first.startswith(b"\x89PNG") and store.png_bytes(stored, "compare:heatmap", True) is first
    assert store.png_bytes(stored, "compare:heatmap", False) != first
    with pytest.raises(KeyError, match="no figure 'compare_heatmap'"):
        store.png_bytes(stored, "compare_heatmap", True)


def test_contrast_options_leave_out_the_explained_token_and_keep_the_current_foil():
    analysis = make_rich_analysis()
    assert view.contrast_options(analysis) == [("(none)", ""), ('" Tallinn" (3.1%)', 98)]
    without = dataclasses.replace(analysis, top_predictions=())
    assert view.contrast_options(without)[-1] == ('" Tallinn" (the current contrast)', 98)


def test_the_clickable_answer_marks_the_explained_token():
    shown = view.View(answer_tokens=(" Riga", ".", "<|end_of_text|>"), explained=2)
    assert view.answer_view(shown) == [(" Riga", None), (".", view.EXPLAINED), ("<|end_of_text|>", None)]
    assert view.answer_view(view.View()) == []
    assert view.View(hide_special=True).scaled(0) == view.View(hide_special=False)
    analysis = make_rich_analysis()
    np.testing.assert_array_equal(view.View(hide_special=True).exclude(analysis), analysis.context_tokens)


def test_the_explained_answer_token_follows_the_results_settings():
    analysis = make_rich_analysis()  # explains " Riga" (id 99), the first generated token; no settings: the defaults
    assert view.explained_answer_token(analysis) == 1
    riga = dataclasses.replace(analysis, settings=Settings(target=" Riga"))
    assert view.explained_answer_token(riga) == 1  # a text whose token the model generated
    assert view.explained_answer_token(dataclasses.replace(analysis, settings=Settings(target=3))) == 3
    other = dataclasses.replace(riga, generated_ids=np.array([5, 99]))
    assert view.explained_answer_token(other) is None  # not what the model generated there
    assert view.explained_answer_token(dataclasses.replace(analysis, generated_ids=np.array([], dtype=int))) is None
    # The content word's token: the analysis's input is the prompt and the generated tokens before it.
    from attribution.settings import ANSWER_TARGET

    n_input = len(analysis.input_ids)
    content = dataclasses.replace(analysis, settings=Settings(target=ANSWER_TARGET), n_prompt_tokens=n_input - 1,
                                  generated_ids=np.array([5, 99, 7]))
    assert view.explained_answer_token(content) == 2
    assert view.explained_answer_token(dataclasses.replace(content, generated_ids=np.array([5, 6, 7]))) is None


def test_an_analysis_stored_stage_by_stage_keeps_an_earlier_stage_only_a_while(monkeypatch):
    # Results as they come: each stage is stored and shown; the one before stays for the views already asked
    # for it, then goes.
    generated = store.remember(make_rich_analysis(), view.View())
    methods = store.remember(make_rich_analysis(), view.View(), replaces=generated)
    assert store.recall(generated) is not None  # a draw queued for it still finds it
    monkeypatch.setattr(store, "SUPERSEDED_KEEP_S", -1)
    whole = store.remember(make_rich_analysis(), view.View(), replaces=methods)
    assert store.recall(generated) is None and store.recall(methods) is None
    assert store.recall(whole) is not None


def test_a_methods_figure_is_rendered_once_for_every_stage_of_its_analysis(monkeypatch):
    from attribution.display import plotting

    drawn = []
    monkeypatch.setattr(store, "draw_figure", lambda *arguments: drawn.append(arguments[1]) or plotting.draw_figure(
        *arguments))
    analysis = make_rich_analysis()
    first = store.remember(analysis, view.View())
    later = store.remember(analysis, view.View(), replaces=first)
    for result_id in (first, later):
        store.png_bytes(store.recall(result_id), "gradient:bars", True)
        store.png_bytes(store.recall(result_id), "compare:heatmap", True)
    assert drawn == ["gradient:bars", "compare:heatmap", "compare:heatmap"]  # the comparison grows stage by stage


def test_a_chat_model_that_generated_nothing_from_the_raw_prompt_says_to_tick_chat_template():
    from ui import analysis as ui_analysis

    analysis = dataclasses.replace(make_rich_analysis(), model="HuggingFaceTB/SmolLM2-135M-Instruct",
                                   generated_ids=np.array([2]), generated_text="",  # its end-of-turn only
                                   settings=Settings(chat=False, max_new_tokens=20))
    assert "tick Chat template" in ui_analysis.empty_answer_hint(analysis)
    # Not when something was generated, the template was used, nothing was asked for, or a base model.
    for quiet in (dataclasses.replace(analysis, generated_ids=np.array([5]), generated_text=" Riga"),
                  dataclasses.replace(analysis, settings=Settings(chat=True, max_new_tokens=20)),
                  dataclasses.replace(analysis, settings=Settings(chat=False, max_new_tokens=0)),
                  dataclasses.replace(analysis, model="meta-llama/Llama-3.2-1B")):
        assert ui_analysis.empty_answer_hint(quiet) == ""
