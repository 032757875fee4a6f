"""Documents on the page: the passages and question fill the analysis's inputs (`ui.documents.compose`), the
page's analyze handler runs on the demo model per sentence or per passage (and through a chat template), and
the top sources table is read from the stored result: its rows are the passages' sentences (never the
question), in the order of context ablation's own weights, its columns each method's grouped score."""

from __future__ import annotations

import sys

import gradio as gr
import pytest

import attribution
from attribution.display.labels import method_label
from conftest import REPO_ROOT
from ui import analysis as ui_analysis
from ui import documents, store

PASSAGES = "Anna lives in Paris. Anna works as a doctor.\n\nOmar has a pet dog. Omar plays the piano."
QUESTION = "Which instrument does Omar play?"
SENTENCES = ["Anna lives in Paris.", "Anna works as a doctor.", "Omar has a pet dog.", "Omar plays the piano."]
RUN = dict(methods=["gradient", "occlusion", "context_ablation"], max_new_tokens=4, all_targets=False,
           n_ablations=16)


def _ask(model: str, passages: str = PASSAGES, sources: str = "sentence", **settings) -> dict:
    """The Ask button: compose, then the page's analyze with what it filled in."""
    prompt, granularity, separator, target = documents.compose(passages, QUESTION, sources)
    outputs = ui_analysis.analyze(prompt, model, granularity=granularity, separator=separator, target=target,
                                  **{**RUN, **settings})
    return dict(zip(ui_analysis.OUTPUT_KEYS, outputs))


@pytest.fixture(scope="module")
def per_sentence() -> dict:
    return _ask(str(attribution.DEMO_MODEL_PATH))


def test_compose_fills_the_prompt_scores_per_and_the_whole_answer():
    prompt, granularity, separator, target = documents.compose(PASSAGES, QUESTION, "segment")
    assert prompt == f"{PASSAGES}\n\n{QUESTION}" and (granularity, separator, target) == ("segment", "", "reply")
    with pytest.raises(gr.Error, match="needs passages"):
        documents.compose(" \n\n ", QUESTION, "sentence")
    with pytest.raises(gr.Error, match="needs a question"):
        documents.compose(PASSAGES, "", "sentence")
    with pytest.raises(gr.Error, match="valid choices: sentence, segment"):
        documents.compose(PASSAGES, QUESTION, "word")


def test_the_example_is_the_measured_document():
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    try:
        from documents import document
    finally:
        sys.path.remove(str(REPO_ROOT / "scripts"))
    item = document(8)
    passages, question, sources = documents.example()
    assert (passages, question, sources) == (item.text, item.question, "sentence")


def test_per_sentence_groups_the_trust_panel_and_the_top_sources(per_sentence):
    values = per_sentence
    analysis = store.lookup(values["state"]).analysis
    assert "the whole answer" in values["explained"]
    assert analysis.span is not None and analysis.span.first == 1
    assert analysis.span.text.strip() and analysis.span.text in analysis.generated_text
    texts = [token.strip() for token, _score in values["gradient:highlight"]]
    # BOS, one highlight per sentence, then the answer's tokens before the last (teacher-forced: the stretch).
    assert texts[1:6] == [*SENTENCES, QUESTION]
    assert "".join(texts[6:]) == "".join(analysis.span.tokens[:-1]).replace(" ", "")
    assert "Computed per sentence" in values["compare:verdict"] and analysis.trust.granularity == "sentence"
    rank_by, note, table = documents.sources_view(values["state"])
    assert rank_by["value"] == "context_ablation" and "ranked by **Context ablation**" in note
    assert list(table.columns) == ["rank", "passage", "source", *(method_label(name) for name in
                                                                  ("context_ablation", "gradient", "occlusion"))]
    # The rows: the passages' sentences, in the order of context ablation's own weights, in their passages.
    ablation = analysis.methods["context_ablation"]
    weights = dict(zip(ablation.group_labels, ablation.group_weights))
    assert sorted(table["source"]) == sorted(SENTENCES)
    assert list(table["source"]) == sorted(SENTENCES, key=lambda text: -weights[text])
    assert list(table["passage"]) == [1 if text.startswith("Anna") else 2 for text in table["source"]]
    assert list(table["rank"]) == [1, 2, 3, 4]
    grouped = analysis.grouped_scores("sentence")
    labels = analysis.grouping("sentence").labels
    for _index, row in table.iterrows():
        number = labels.index(row["source"])
        assert float(row["Gradient"]) == pytest.approx(grouped["gradient"][number], rel=1e-2)
        assert float(row["Context ablation"]) == pytest.approx(weights[row["source"]], rel=1e-2, abs=1e-3)
    # Ranked by another method: that method's column in decreasing order.
    _choices, _note, by_gradient = documents.sources_view(values["state"], "gradient")
    column = [float(value) for value in by_gradient["Gradient"]]
    assert column == sorted(column, reverse=True)


def test_scores_per_word_afterwards_lists_words(per_sentence):
    words = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.regroup(per_sentence["state"], "word", True)))
    _choices, note, table = documents.sources_view(words["state"])
    assert "per word" in note
    expected = [word for sentence in SENTENCES for word in sentence.replace(".", " .").split()]
    assert sorted(table["source"]) == sorted(expected)


def test_per_passage_through_the_chat_template(chat_folder):
    values = _ask(str(chat_folder), sources="segment", chat=True, trust=False)
    analysis = store.lookup(values["state"]).analysis
    assert analysis.chat and analysis.template_tokens.sum() > 5
    _choices, _note, table = documents.sources_view(values["state"])
    assert sorted(zip(table["passage"], table["source"])) == list(enumerate(PASSAGES.split("\n\n"), start=1))
    ablation = analysis.methods["context_ablation"]
    assert list(ablation.group_labels) == [*PASSAGES.split("\n\n"), QUESTION]  # the template's tokens: never removed


def test_a_prompt_that_is_not_documents_says_so(tiny_folder):
    assert documents.sources_view(None)[1] == documents.WAITING
    values = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.analyze(
        "Anna lives in Paris.", str(tiny_folder), methods=["gradient"], max_new_tokens=1, all_targets=False,
        trust=False)))
    _choices, note, table = documents.sources_view(values["state"])
    assert "not passages and a question" in note and table.empty


def test_the_page_has_the_documents_controls():
    import app

    demo = app.build_demo(str(attribution.DEMO_MODEL_PATH), cache_examples=False)
    ids = {getattr(block, "elem_id", None) for block in demo.blocks.values()}
    assert {"documents", "doc-passages", "doc-question", "doc-sources", "doc-ask", "doc-example", "doc-table"} <= ids
    # Ask composes into the analysis's own inputs, then (only when that succeeded) runs the page's analyze event.
    fns = list(demo.fns.values())
    compose = next(index for index, item in enumerate(fns) if item.fn is documents.compose)
    assert [getattr(output, "elem_id", None) for output in fns[compose].outputs][:3] == ["prompt", "granularity",
                                                                                         "separator"]
    after = [item for item in fns if item.trigger_after == compose]
    assert len(after) == 1 and after[0].trigger_only_on_success and after[0].fn is ui_analysis_stream()
    assert any(item.fn is documents.sources_view and item.targets[0][1] == "change" for item in fns)


def ui_analysis_stream():
    from ui.streaming import analyze_stream

    return analyze_stream


def test_the_note_says_what_is_still_computing_and_what_did_not_run(per_sentence):
    import dataclasses

    from attribution.display.documents import sources_note

    analysis = store.lookup(per_sentence["state"]).analysis
    stage = dataclasses.replace(analysis, methods={"gradient": analysis.methods["gradient"]})  # a stage
    assert "Still computing Occlusion, Context ablation" in sources_note(stage, "sentence", "gradient")
    without = dataclasses.replace(stage, settings=analysis.settings.replace(methods=("gradient",)))
    note = sources_note(without, "sentence", "gradient")
    assert "Context ablation did not run" in note and "Still computing" not in note
    assert analysis.span.text in sources_note(analysis, "segment", "context_ablation")
    assert "per passage" in sources_note(analysis, "segment", "context_ablation")


@pytest.mark.slow
def test_smollm2_rests_the_examples_whole_answer_on_its_sentence(real_model):
    # The page's Example (scripts/documents.py's document 8) as the Ask button runs it, context ablation alone.
    from attribution.documents import document_prompt, top_sources
    from attribution.settings import REPLY_TARGET, Settings
    from ui.documents import EXAMPLE_PASSAGES, EXAMPLE_QUESTION

    settings = Settings(methods=("context_ablation",), chat=True, granularity="sentence", target=REPLY_TARGET,
                        max_new_tokens=20)
    analysis = attribution.analyze(real_model.cached, document_prompt([EXAMPLE_PASSAGES], EXAMPLE_QUESTION), settings)
    assert "trumpet" in analysis.span.text
    sources = top_sources(analysis)
    assert [source.text for source in sources][0] == "Nadia plays the trumpet."
    assert sorted(source.text for source in sources) == sorted(f"{text}." for text in EXAMPLE_PASSAGES[:-1].split(". "))
