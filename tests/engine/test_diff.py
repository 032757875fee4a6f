"""Diffing two analyses (`attribution.diff`): aligned units, shares, rank correlation, settings, sentence."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

import attribution
from attribution import testing
from attribution.alignment import align, word_units
from attribution.diff import diff, shares, unit_scores
from attribution.ranks import spearman
from attribution.results import MethodScores
from helpers import make_rich_analysis
from conftest import SEED_PROMPT

METHODS = ("gradient", "input_x_gradient", "attention", "integrated_gradients")


@pytest.fixture(scope="module")
def seed_analysis(tiny_loaded):
    return attribution.analyze(tiny_loaded, SEED_PROMPT, max_new_tokens=3, n_steps=8, methods=METHODS)


@pytest.fixture(scope="module")
def other_tokenizer_loaded(tmp_path_factory):
    """A tiny model whose tokenizer splits the seed prompt quite differently (300 ids from other text)."""
    tokenizer = testing.byte_level_bpe(["hello world what is this"] * 4 + list(testing.CORPUS[3:]), 300)
    folder = testing.build_model_folder(tmp_path_factory.mktemp("other") / "other", tokenizer, seed=3,
                                        hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return attribution.load_model(str(folder), device="cpu")


def test_an_analysis_diffed_with_itself_is_zero_with_correlation_one(seed_analysis):
    result = diff(seed_analysis, seed_analysis)
    assert result.alignment.by == "token" and not result.settings and not result.answer_changed
    assert set(result.methods) == set(METHODS) and result.is_zero
    for item in result.methods.values():
        np.testing.assert_array_equal(item.difference, 0.0)
        assert item.spearman == pytest.approx(1.0) and item.interval == pytest.approx((1.0, 1.0))
    assert result.sentence.startswith("Nothing differs")


def test_shares_make_scales_compare_and_follow_the_scores():
    a = make_rich_analysis()
    scaled = {name: dataclasses.replace(item, scores=item.scores * 10.0) if type(item) is MethodScores else item
              for name, item in a.methods.items()}
    b = dataclasses.replace(a, methods=scaled)
    result = diff(a, b)
    np.testing.assert_allclose(result.methods["gradient"].difference, 0.0, atol=1e-15)
    # A share is the unit's score over the sum of |scores| of the content tokens (BOS is held).
    content = ~a.context_tokens
    scores = a.methods["gradient"].scores[content]
    np.testing.assert_allclose(result.methods["gradient"].shares_a, scores / np.abs(scores).sum())
    # A changed ranking: reversed gradient scores give ρ = −1 on the content tokens.
    reversed_scores = a.methods["gradient"].scores.copy()
    reversed_scores[content] = -reversed_scores[content]
    c = dataclasses.replace(a, methods={**a.methods, "gradient": MethodScores("gradient", reversed_scores)})
    item = diff(a, c).methods["gradient"]
    assert item.spearman == pytest.approx(spearman(scores, -scores)) == pytest.approx(-1.0)
    assert item.interval[1] == pytest.approx(-1.0)
    assert "gradient" in diff(a, c).to_dict()["methods"]


def test_words_align_across_two_different_tokenizers(seed_analysis, other_tokenizer_loaded):
    other = attribution.analyze(other_tokenizer_loaded, SEED_PROMPT, max_new_tokens=3, n_steps=8, methods=METHODS)
    assert other.n_tokens != seed_analysis.n_tokens  # really different tokens
    result = diff(seed_analysis, other)
    assert result.alignment.by == "word"
    assert result.units == ("What", "is", "the", "Capital", "City", "of", "Latvia", "?")
    # Independently of the alignment: each word's tokens, from the tokenizer's own character offsets.
    for analysis, loaded, units in ((seed_analysis, None, result.alignment.units_a),
                                    (other, other_tokenizer_loaded, result.alignment.units_b)):
        tokenizer = (loaded or attribution.load_model(analysis.model, device="cpu")).tokenizer
        offsets = tokenizer(SEED_PROMPT, return_offsets_mapping=True)["offset_mapping"]
        for unit in units:
            text = [SEED_PROMPT[begin:end] for begin, end in offsets]
            expected = [index for index, (begin, end) in enumerate(offsets)
                        if text[index].strip() and begin < unit.stop and end > unit.start]
            # A token of spaces alone belongs to the word after it.
            expected += [index for index, (begin, end) in enumerate(offsets)
                         if end > begin and not text[index].strip() and end == unit.start]
            assert sorted(unit.positions) == sorted(expected), unit
        # Word scores as the analysis's own word grouping combines them (from the tokenizer's spans, by the
        # catalog's rule per method: IG's L2 view by the L2 norm), for the same words.
        grouping = analysis.grouping("word")
        for name, grouped in analysis.grouped_scores("word").items():
            by_tokens = {group.tokens: value for group, value in zip(grouping.groups, grouped) if group.kind == "text"}
            assert sorted(by_tokens) == sorted(unit.positions for unit in units)
            np.testing.assert_allclose(unit_scores(analysis, name, units), [by_tokens[unit.positions] for unit in units],
                                       rtol=1e-12)
        # For a method whose scores add up (attention: the rule "sum"), word shares are sums of token shares.
        token_shares = shares(analysis.methods["attention"].scores * ~analysis.context_tokens)
        np.testing.assert_allclose(shares(unit_scores(analysis, "attention", units)),
                                   [token_shares[list(unit.positions)].sum() for unit in units], atol=1e-12)
    assert set(result.settings) == set() and result.models[0] != result.models[1]
    assert "the model" in result.sentence


def test_an_edited_prompt_aligns_the_words_it_keeps(tiny_loaded, seed_analysis):
    edited = attribution.analyze(tiny_loaded, "What is the City of Latvia?", max_new_tokens=3, n_steps=8,
                                 methods=METHODS)
    result = diff(seed_analysis, edited)
    assert result.alignment.by == "word"
    assert result.units == ("What", "is", "the", "City", "of", "Latvia", "?")
    assert [unit.text for unit in result.alignment.only_a] == ["Capital"] and not result.alignment.only_b
    assert "the prompt" in result.sentence


def test_different_settings_are_named(tiny_loaded, seed_analysis):
    other = attribution.analyze(tiny_loaded, SEED_PROMPT, max_new_tokens=3, n_steps=16, baseline="mean",
                                methods=METHODS)
    result = diff(seed_analysis, other)
    assert result.settings == {"n_steps": (8, 16), "baseline": ("zero", "mean")}
    assert result.to_dict()["settings"] == {"n_steps": [8, 16], "baseline": ["zero", "mean"]}
    assert "the settings n_steps, baseline" in result.sentence
    # The methods that do not depend on IG's settings are unchanged.
    np.testing.assert_allclose(result.methods["gradient"].difference, 0.0, atol=1e-12)
    assert np.abs(result.methods["integrated_gradients"].difference).max() > 0


def test_word_units_join_words_one_token_covers():
    analysis = make_rich_analysis()  # its tokens are the words, but "?" and "\n" are tokens of their own
    units = word_units(analysis)
    assert [unit.text for unit in units] == ["What", "is", "the", "Capital", "City", "of", "Latvia", "?"]
    joined = dataclasses.replace(analysis, input_tokens=analysis.input_tokens[:7] + (" Latvia?", "") + analysis.input_tokens[9:])
    assert [unit.text for unit in word_units(joined)][-1] == "Latvia?"
    assert align(analysis, analysis).by == "token"


TRICKY_PROMPTS = ("Don't you know Latvia's capital?  It's e-mail: a@b.com 3.14!!",
                  "Émile's café — naïve “quotes” 😀 ok", "  Leading spaces and\ttabs\nnew lines")


@pytest.mark.parametrize("chat", [False, True])
def test_word_units_are_the_groupings_words(tiny_loaded, chat_folder, chat):
    """The what-if and diff words are `attribution.groups`' words (the page's "Scores per word"), from the
    result's token spans and, for a result without them, from the tokens' display strings alone."""
    loaded = attribution.load_model(str(chat_folder), device="cpu") if chat else tiny_loaded
    for prompt in TRICKY_PROMPTS:
        analysis = attribution.analyze(loaded, prompt, max_new_tokens=1, methods=("gradient",), chat=chat,
                                       **({"system": "Be brief."} if chat else {}))
        assert any("\ufffd" in analysis.input_tokens[index] for index in np.flatnonzero(analysis.user_tokens)) \
            or prompt.isascii()
        words = [(group.label, group.tokens) for group in analysis.grouping("word").groups
                 if group.kind == "text" and analysis.user_tokens[list(group.tokens)].all()]
        for result in (analysis, dataclasses.replace(analysis, token_spans=None)):
            units = word_units(result)
            assert [unit.positions for unit in units] == [tokens for _label, tokens in words], prompt
            assert [unit.text for unit in units] == [label for label, _tokens in words]
            assert all(prompt[unit.start:unit.stop] == unit.text for unit in units)


def test_a_word_held_in_one_analysis_is_not_compared(seed_analysis):
    """A raw prompt's first word is held context on a model without BOS: it has no score there, so it is no
    pair (it would show as a share lost) and is listed as scored only in the other."""
    units = word_units(seed_analysis)
    held = seed_analysis.held_tokens.copy()
    held[list(units[0].positions)] = True
    other = dataclasses.replace(seed_analysis, held_tokens=held)
    result = diff(seed_analysis, other)
    assert result.alignment.by == "word" and result.units == tuple(unit.text for unit in units[1:])
    assert [unit.text for unit in result.alignment.only_a] == [units[0].text] and not result.alignment.only_b


def test_the_sentence_names_the_biggest_shift_with_both_shares(tiny_loaded, seed_analysis):
    edited = attribution.analyze(tiny_loaded, "What is the City of Latvia?", max_new_tokens=3, n_steps=8,
                                 methods=METHODS)
    result = diff(seed_analysis, edited)
    name, index = max(((name, int(np.argmax(np.abs(item.difference)))) for name, item in result.methods.items()),
                      key=lambda pair: abs(result.methods[pair[0]].difference[pair[1]]))
    item = result.methods[name]
    assert (f"“{result.units[index]}”'s share of {attribution.METHOD_LABELS[name]}'s total went from "
            f"{item.shares_a[index]:.0%} to {item.shares_b[index]:.0%}") in result.sentence
    low = min(result.methods, key=lambda method: result.methods[method].spearman)
    assert f"{result.methods[low].spearman:.2f}" in result.sentence and result.sentence.count(".") >= 1


def test_the_library_call_is_attribution_diff(seed_analysis):
    """`attribution.diff(a, b)`: the module is callable as its function, in a fresh interpreter too (the
    package's lazy names)."""
    import subprocess
    import sys

    assert attribution.diff(seed_analysis, seed_analysis).to_dict() == diff(seed_analysis, seed_analysis).to_dict()
    assert attribution.diff.Diff is type(diff(seed_analysis, seed_analysis))
    code = ("import sys, attribution; from helpers import make_rich_analysis; a = make_rich_analysis(); "
            "print(callable(attribution.diff), attribution.diff(a, a).is_zero)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(Path(__file__).resolve().parents[1]),
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert run.stdout.split() == ["True", "True"], run.stderr
