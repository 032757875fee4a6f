"""The answer's content token: the first word of the reply that is neither in the prompt nor a function
word, found from decoded tokens of any tokenizer, and explained when `target=ANSWER_TARGET`."""

from __future__ import annotations

import pytest

import attribution
from attribution.content import content_token, reply_words
from attribution.settings import ANSWER_TARGET, Settings
from conftest import SEED_PROMPT


@pytest.mark.parametrize(("pieces", "words"), [
    # byte-level BPE: a leading space starts a word, pieces without one continue it
    ([" The", " capital", " is", " R", "iga", "."], [(1, "The"), (2, "capital"), (3, "is"), (4, "Riga")]),
    # SentencePiece pieces as display_tokens shows them (the word-start marker as a space)
    ([" Tok", "yo", ",", " Japan"], [(1, "Tokyo"), (4, "Japan")]),
    # punctuation and digits: a word after punctuation starts anew; digits are part of a word
    (["Paris", "!", "Yes", " 19", "89"], [(1, "Paris"), (3, "Yes"), (4, "1989")]),
    # non-Latin scripts and an emoji (no letters: ends the word)
    ([" Ри", "га", " 🙂", " 東京"], [(1, "Рига"), (4, "東京")]),
])
def test_reply_words_spell_the_words(pieces, words):
    assert reply_words(pieces) == words


def test_the_content_token_skips_filler_and_words_of_the_prompt():
    prompt = "What is the Capital City of Latvia?"
    reply = [" The", " capital", " city", " of", " Lat", "via", " is", " R", "iga", "."]
    assert content_token(prompt, reply) == 8  # " R" starts "Riga"
    assert content_token(prompt, [" The", " capital", "."]) == 1  # nothing else: the first token
    assert content_token("Name a number", [" It", " is", " 42", "."]) == 3  # a number is content


def test_analyze_explains_the_content_token_of_the_generated_answer(tiny_loaded):
    analysis = attribution.analyze(tiny_loaded, SEED_PROMPT, Settings(target=ANSWER_TARGET, max_new_tokens=6,
                                                                    methods=("gradient",)))
    generated = attribution.display_tokens(tiny_loaded, analysis.generated_ids.tolist())
    k = content_token(SEED_PROMPT, generated)
    assert analysis.target.position == analysis.n_prompt_tokens + k - 1
    assert analysis.target.id == int(analysis.generated_ids[k - 1])
    assert analysis.settings.target == ANSWER_TARGET


def test_the_content_token_needs_an_answer(tiny_loaded):
    with pytest.raises(ValueError, match="needs a generated answer"):
        attribution.analyze(tiny_loaded, SEED_PROMPT, Settings(target=ANSWER_TARGET, max_new_tokens=0))


@pytest.mark.slow
def test_on_the_real_model_the_capital_is_explained(smollm2):
    analysis = attribution.analyze(smollm2, "What is the capital of Japan?",
                                   Settings(target=ANSWER_TARGET, chat=True, max_new_tokens=12, methods=("gradient",)))
    assert "Tokyo".startswith(analysis.target.text.strip()) and analysis.target.text.strip()
