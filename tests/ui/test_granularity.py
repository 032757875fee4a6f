"""The page's "Scores per" choice: an analysis per token redrawn per word, sentence or segment from the stored
result without running the model — highlights, top 5, notes, figures and downloads per group —; the trust
panel per the granularity chosen at Analyze; a separator the prompt lacks refused as the page's error."""

from __future__ import annotations

import csv

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
