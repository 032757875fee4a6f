"""Documents and a question: the prompt `document_prompt` composes (passages in order, the refusals), and the
top sources of a real analysis (the tiny model, raw and through a chat template) against what is known by
construction (the sentences and passages written here) and against independent computations of their scores
(the gradient's norm over the sentence's token scores, context ablation's own group weights)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import attribution
from attribution.documents import PREFERRED, document_prompt, source_methods, split_passages, top_sources
from attribution.settings import Settings
from conftest import REPO_ROOT

PASSAGES = ["Anna lives in Paris. Anna works as a doctor.", "Omar has a pet dog. Omar plays the piano.",
            "Lena's favourite colour is green."]
QUESTION = "Which instrument does Omar play?"
SENTENCES = [("Anna lives in Paris.", 1), ("Anna works as a doctor.", 1), ("Omar has a pet dog.", 2),
             ("Omar plays the piano.", 2), ("Lena's favourite colour is green.", 3)]
METHODS = ("gradient", "attention", "occlusion", "context_ablation")


# --- the prompt --------------------------------------------------------------------------------------


def test_the_prompt_is_the_passages_in_order_then_the_question():
    prompt = document_prompt(PASSAGES, QUESTION)
    assert prompt.split("\n\n") == [*PASSAGES, QUESTION]
    positions = [prompt.index(passage) for passage in PASSAGES]
    assert positions == sorted(positions) and prompt.endswith(QUESTION)
    # Stripped, and a passage may hold single line breaks.
    assert document_prompt(["  one\ntwo  ", "three"], " why? ") == "one\ntwo\n\nthree\n\nwhy?"
    # The text box's passages: split at blank lines (with spaces on them too), empty ones dropped.
    assert split_passages("\n\n  a b.\n \nc\nd\n\n\n\ne  \n") == ["a b.", "c\nd", "e"]
    assert document_prompt(split_passages("\n\n".join(PASSAGES)), QUESTION) == prompt


def test_the_prompt_of_one_document_is_the_measured_one():
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    try:
        from documents import documents
    finally:
        sys.path.remove(str(REPO_ROOT / "scripts"))
    for item in documents(6):
        assert document_prompt([item.text], item.question) == item.prompt


@pytest.mark.parametrize("passages, question, message", [
    ([], QUESTION, r"needs passages \(give at least one\)$"),
    (PASSAGES, "  ", "needs a question$"),
    ([], "", "needs passages .* and a question"),
    (["Anna.", " \n "], QUESTION, "passage 2 is empty"),
    (["Anna.\n\nOmar."], QUESTION, "passage 1 holds a blank line"),
    (PASSAGES, "Why?\n\nReally?", "the question holds a blank line"),
    ("Anna lives in Paris.", QUESTION, "must be a list of texts"),
    ([3], QUESTION, "passage 1 must be text"),
    (PASSAGES, None, "the question must be text"),
])
def test_missing_or_malformed_input_is_refused_by_name(passages, question, message):
    with pytest.raises(ValueError, match=message):
        document_prompt(passages, question)


# --- the top sources ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw(tiny_loaded):
    settings = Settings(methods=METHODS, max_new_tokens=2, granularity="sentence", n_ablations=16)
    return attribution.analyze(tiny_loaded, document_prompt(PASSAGES, QUESTION), settings)


@pytest.fixture(scope="module")
def chat(chat_folder):
    loaded = attribution.load_model(str(chat_folder), device="cpu")
    settings = Settings(methods=METHODS, max_new_tokens=2, granularity="segment", chat=True, n_ablations=16)
    return attribution.analyze(loaded, document_prompt(PASSAGES, QUESTION), settings)


def _l2(analysis, tokens):
    return float(np.sqrt(np.square(analysis.methods["gradient"].scores[list(tokens)]).sum()))


def test_sources_are_the_passages_sentences_ranked_by_context_ablation(raw):
    sources = top_sources(raw)
    assert sorted((source.text, source.passage) for source in sources) == sorted(SENTENCES)  # no question, no BOS
    assert [source.rank for source in sources] == list(range(1, len(SENTENCES) + 1))
    assert source_methods(raw)[0] == PREFERRED and tuple(sources[0].scores) == source_methods(raw)
    ablation = raw.methods["context_ablation"]
    weights = dict(zip(ablation.group_labels, ablation.group_weights))
    for source in sources:
        # Its tokens decode to its text; its scores are those of an independent computation.
        assert "".join(raw.input_tokens[index] for index in source.tokens).strip() == source.text
        assert source.scores["context_ablation"] == pytest.approx(weights[source.text])
        assert source.scores["gradient"] == pytest.approx(_l2(raw, source.tokens), rel=1e-6)
    ranked = [source.scores["context_ablation"] for source in sources]
    assert ranked == sorted(ranked, reverse=True)


def test_any_method_ranks_and_the_scores_are_grouped_scores(raw):
    grouping = raw.grouping("sentence")
    grouped = raw.grouped_scores("sentence")
    by_gradient = top_sources(raw, by="gradient")
    expected = sorted(SENTENCES, key=lambda item: -_l2(raw, grouping.groups[grouping.labels.index(item[0])].tokens))
    assert [source.text for source in by_gradient] == [text for text, _passage in expected]
    for source in by_gradient:
        number = grouping.labels.index(source.text)
        assert source.scores == {name: pytest.approx(float(grouped[name][number])) for name in source_methods(raw)}
    assert len(top_sources(raw, count=2)) == 2 and top_sources(raw, count=2) == top_sources(raw)[:2]


def test_per_passage_through_the_chat_template(chat):
    sources = top_sources(chat)
    assert sorted((source.passage, source.text) for source in sources) == list(enumerate(PASSAGES, start=1))
    template = chat.template_tokens
    assert template.sum() > 5 and not any(template[list(source.tokens)].any() for source in sources)
    # Per sentence from the same result (no model run): the sentences, each in its passage.
    assert sorted((source.text, source.passage) for source in top_sources(chat, "sentence")) == sorted(SENTENCES)


def test_refusals_name_the_choices(raw, tiny_loaded):
    with pytest.raises(ValueError, match="did not run; valid choices: context_ablation, gradient, attention, occlusion"):
        top_sources(raw, by="integrated_gradients")
    with pytest.raises(ValueError, match="count must be"):
        top_sources(raw, count=0)
    with pytest.raises(ValueError, match="valid choices: token, word, sentence, segment"):
        top_sources(raw, "paragraph")
    plain = attribution.analyze(tiny_loaded, "Anna lives in Paris.", Settings(methods=("gradient",), max_new_tokens=1))
    with pytest.raises(ValueError, match="not passages and a question"):
        top_sources(plain, "sentence")


# --- the whole answer explained (REPLY_TARGET) ---------------------------------------------------------


def test_the_whole_reply_is_the_span_of_every_generated_token_but_a_last_eos(tiny_loaded, raw):
    from attribution.settings import REPLY_TARGET

    prompt = document_prompt(PASSAGES, QUESTION)
    settings = Settings(methods=("gradient", "context_ablation"), max_new_tokens=3, granularity="sentence",
                        n_ablations=16, target=REPLY_TARGET, trust=True)
    reply = attribution.analyze(tiny_loaded, prompt, settings)
    generated = [int(value) for value in reply.generated_ids]
    last = len(generated) - (len(generated) > 1 and generated[-1] == tiny_loaded.tokenizer.eos_token_id)
    assert (reply.span.first, reply.span.last) == (1, last) and list(reply.span.ids) == generated[:last]
    # The same scores as the stretch 1..last named by hand.
    named = attribution.analyze(tiny_loaded, prompt, settings.replace(target=(1, last)))
    np.testing.assert_allclose(reply.methods["gradient"].scores, named.methods["gradient"].scores, rtol=1e-6)
    # Per sentence with the trust panel, the stretch kept on the regrouped view; the sources as before.
    assert reply.trust.granularity == "sentence" and reply.regrouped().span == reply.span
    assert sorted(source.text for source in top_sources(reply)) == sorted(text for text, _ in SENTENCES)
    with pytest.raises(ValueError, match="cannot go with a span target"):
        Settings(target=REPLY_TARGET, contrast=" Paris")
    with pytest.raises(ValueError, match="needs a generated answer"):
        attribution.analyze(tiny_loaded, prompt, Settings(methods=("gradient",), max_new_tokens=0, target=REPLY_TARGET))


def test_whitespace_generated_before_the_target_is_one_group_per_segment(chat_folder):
    # The tiny chat model generates blank lines: the teacher-forced part of the stretch has no segment of its
    # own, and is one group rather than a refusal of the whole prompt.
    from attribution.settings import REPLY_TARGET

    loaded = attribution.load_model(str(chat_folder), device="cpu")
    analysis = attribution.analyze(loaded, document_prompt(PASSAGES, QUESTION), Settings(
        methods=("gradient",), max_new_tokens=3, chat=True, granularity="segment", target=REPLY_TARGET))
    generated_text = "".join(analysis.input_tokens[analysis.n_prompt_tokens:])
    assert generated_text and not generated_text.strip()  # this model's reply: whitespace
    grouping = analysis.grouping()
    tail = [group for group in grouping.groups if group.tokens[0] >= analysis.n_prompt_tokens]
    assert len(tail) == 1 and tail[0].tokens == tuple(range(analysis.n_prompt_tokens, analysis.n_tokens))


def test_the_command_line_explains_the_whole_reply(run_main, tiny_folder, tmp_path):
    import json

    out = tmp_path / "reply.json"
    status, stdout, _stderr = run_main(document_prompt(PASSAGES, QUESTION), "--model", str(tiny_folder), "--methods",
                                       "gradient", "--max-new-tokens", "3", "--target", "reply", "--json", str(out))
    data = json.loads(out.read_text())
    assert status == 0 and data["settings"]["target"] == attribution.REPLY_TARGET
    assert data["span"]["first"] == 1 and data["span"]["last"] == len(data["span"]["ids"]) and "stretch:" in stdout

