"""The page's "Scores per" choice: an analysis per token redrawn per word, sentence or segment from the stored
result without running the model — highlights, top 5, notes, figures and downloads per group —; the trust
panel per the granularity chosen at Analyze; a separator the prompt lacks refused as the page's error."""

from __future__ import annotations

import csv
import dataclasses
import threading

import gradio as gr
import numpy as np
import pytest

import attribution
from attribution.display.labels import token_label
from ui import analysis as ui_analysis
from ui import figures, store

PROMPT = "Paris is in France. Berlin is in Germany.\n\nThe capital of"


@pytest.fixture(scope="module")
def by_token(tiny_folder) -> dict:
    return dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.analyze(PROMPT, str(tiny_folder), max_new_tokens=2,
                                                                 ig_steps=8)))


def _no_model(monkeypatch):
    """Any model call from here on fails the test."""
    def refuse(*arguments, **keywords):
        raise AssertionError("the model ran")
    monkeypatch.setattr(attribution, "analyze", refuse)
    monkeypatch.setattr(attribution, "load_model", refuse)
    monkeypatch.setattr(ui_analysis, "compute", refuse)


def test_switching_redraws_per_sentence_without_the_model(by_token, monkeypatch, tiny_folder):
    _no_model(monkeypatch)
    stored = store.lookup(by_token["state"])
    sentences = stored.analysis.grouping("sentence")
    values = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.regroup(by_token["state"], "sentence", True)))
    assert values["state"] != by_token["state"]
    texts = [token for token, _score in values["gradient:highlight"]]
    assert [text.strip() for text in texts] == list(sentences.labels)
    assert "".join(texts) == "".join(token for token, _score in by_token["gradient:highlight"])  # reads as the prompt
    # The highlight's colours are the grouped scores, scaled (BOS, held, uncoloured).
    grouped = stored.analysis.grouped_scores("sentence")["occlusion"]
    shown = [score for _token, score in values["occlusion:highlight"]]
    assert shown[0] is None
    np.testing.assert_allclose(shown[1:], grouped[1:] / np.abs(grouped[1:]).max(), atol=1e-4)
    top = values["occlusion:top"]
    order = np.argsort(-grouped[1:], kind="stable") + 1
    assert list(top.iloc[:, 1]) == [token_label(texts[i]) for i in order][:5]
    assert "Scores per sentence" in values["gradient:notes"] and "removing whole sentences" in values["occlusion:notes"]
    # The downloads per sentence; the figures drawn per sentence too.
    rows = list(csv.reader(open(values["export:csv"], encoding="utf-8")))
    assert rows[0][0] == "sentence" and [row[1] for row in rows[1:]] == list(sentences.labels)
    drawn = dict(zip(figures.FIGURE_KEYS, figures.draw_tab("gradient", True, None, 1, values["state"])))
    assert drawn["gradient:bars"] is not None
    regrouped = store.lookup(values["state"])
    assert regrouped.shown.input_tokens == tuple(texts) and regrouped.analysis is stored.analysis
    # And back per token: the first result's outputs again.
    back = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.regroup(values["state"], "token", True)))
    assert back["gradient:highlight"] == by_token["gradient:highlight"]
    assert back["occlusion:top"].equals(by_token["occlusion:top"])


def test_the_trust_panel_per_the_granularity_at_analyze(tiny_folder):
    values = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.analyze(
        PROMPT, str(tiny_folder), max_new_tokens=1, ig_steps=8, all_targets=False, granularity="segment")))
    assert "Computed per segment" in values["compare:verdict"]
    assert store.lookup(values["state"]).analysis.trust.granularity == "segment"
    assert [token.strip() for token, _ in values["gradient:highlight"]][1:] == [
        "Paris is in France. Berlin is in Germany.", "The capital of"]
    words = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.regroup(values["state"], "word", True)))
    assert "shown per word" in words["compare:verdict"]


def test_a_separator_the_prompt_lacks_is_the_pages_error(tiny_folder, by_token):
    with pytest.raises(gr.Error, match="separator '###' does not occur"):
        ui_analysis.analyze(PROMPT, str(tiny_folder), max_new_tokens=1, granularity="segment", separator="###")
    with pytest.raises(gr.Error, match="valid choices: token, word, sentence, segment"):
        ui_analysis.regroup(by_token["state"], "paragraph", True)


def test_a_switch_while_the_analysis_runs_holds_for_its_later_stages(by_token, monkeypatch):
    # Results as they come: a stage is shown per token, "Scores per" switches to sentence, then the next
    # stage arrives (the stream renders it with the view it started with, per token, replacing its stage).
    _no_model(monkeypatch)
    stored = store.lookup(by_token["state"])
    stage = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.render(stored.analysis, stored.view, running=True)))
    switched = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.regroup(stage["state"], "sentence", True)))
    later = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.render(stored.analysis, stored.view,
                                                                 replaces=stage["state"])))
    sentences = stored.analysis.grouping("sentence").labels
    for values in (switched, later):
        assert [text.strip() for text, _score in values["gradient:highlight"]] == list(sentences)
    assert store.lookup(later["state"]).view.granularity == "sentence"
    # Another analysis (not a stage of that one) is shown as it was asked for.
    fresh = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.render(stored.analysis, stored.view)))
    assert len(fresh["gradient:highlight"]) == len(stored.analysis.input_tokens)


def _stage_without_ig(stored) -> dict:
    """The analysis as a stage shows it while IG is still being computed (results as they come)."""
    analysis = stored.analysis
    partial = dataclasses.replace(analysis, methods={name: scores for name, scores in analysis.methods.items()
                                                     if name != "integrated_gradients"})
    return dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.render(partial, stored.view, running=True)))


def test_a_switch_waits_for_the_stage_being_sent_and_shows_the_newest_stage(by_token, monkeypatch):
    # The stream holds the turn from rendering a stage until it has been sent; a switch made meanwhile from
    # the page's older stage id comes after it, drawn from that newest stage — never a stage the page had
    # already replaced, and never before it (the stage, drawn per token, would then undo the switch).
    _no_model(monkeypatch)
    stored = store.lookup(by_token["state"])
    stage = _stage_without_ig(stored)
    turn = store.turn(stage["state"])
    assert turn.acquire(blocking=False)  # the stream renders and sends its next stage
    newest = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.render(stored.analysis, stored.view,
                                                                  replaces=stage["state"])))
    switched: list[list] = []
    worker = threading.Thread(target=lambda: switched.append(ui_analysis.regroup(stage["state"], "sentence", True)))
    worker.start()
    worker.join(0.3)
    assert worker.is_alive() and not switched  # waiting for the stage to be sent
    turn.release()
    worker.join(10)
    values = dict(zip(ui_analysis.OUTPUT_KEYS, switched[0]))
    sentences = list(stored.analysis.grouping("sentence").labels)
    assert [text.strip() for text, _score in values["integrated_gradients:highlight"]] == sentences
    assert store.lookup(values["state"]).analysis is store.lookup(newest["state"]).analysis


def test_a_switch_while_ig_runs_says_it_is_being_computed_and_after_a_stop_that_it_was_not(by_token, monkeypatch):
    _no_model(monkeypatch)
    stage = _stage_without_ig(store.lookup(by_token["state"]))
    switched = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.regroup(stage["state"], "sentence", True)))
    assert switched["integrated_gradients:notes"] == stage["integrated_gradients:notes"]
    assert "is being computed" in switched["integrated_gradients:notes"]
    assert switched["export:json"] is None  # the downloads wait for the whole result
    store.end_run(stage["state"])  # stopped there
    after = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.regroup(switched["state"], "word", True)))
    assert "is being computed" not in after["integrated_gradients:notes"]


def test_the_colour_scaling_changed_while_the_analysis_runs_holds_for_its_later_stages(by_token, monkeypatch):
    _no_model(monkeypatch)
    stored = store.lookup(by_token["state"])
    assert stored.view.hide_special
    stage = _stage_without_ig(stored)
    ui_analysis.scaled_views(stage["state"], False, None, None)
    later = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.render(stored.analysis, stored.view,
                                                                 replaces=stage["state"])))
    assert store.lookup(later["state"]).view.hide_special is False
    # The held BOS is coloured again, as the unticked box says: the next stage does not tick it back.
    assert later["gradient:highlight"][0][1] is not None
    assert dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.render(stored.analysis, stored.view))
                )["gradient:highlight"][0][1] is None


def test_a_result_shown_with_another_choice_than_the_pages_is_redrawn_per_the_page(by_token, monkeypatch):
    # "Scores per" changed after Analyze but before the analysis had a stage (its answer was being generated):
    # the first stage comes per token, and the page's choice is applied when it is shown.
    _no_model(monkeypatch)
    stored = store.lookup(by_token["state"])
    stage = _stage_without_ig(stored)
    unchanged = ui_analysis.follow_display(stage["state"], "token", True)
    assert unchanged == [gr.update() for _key in ui_analysis.OUTPUT_KEYS]
    followed = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.follow_display(stage["state"], "sentence", True)))
    sentences = list(stored.analysis.grouping("sentence").labels)
    assert [text.strip() for text, _score in followed["gradient:highlight"]] == sentences
    assert "is being computed" in followed["integrated_gradients:notes"]
    later = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.render(stored.analysis, stored.view,
                                                                 replaces=stage["state"])))
    assert [text.strip() for text, _score in later["gradient:highlight"]] == sentences  # and its later stages
    scaled = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.follow_display(later["state"], "sentence", False)))
    assert store.lookup(scaled["state"]).view.hide_special is False
