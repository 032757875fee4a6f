"""What-if edits (`attribution.whatif`): prompts edited and run again, top/random picks, deletion curves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import attribution
from attribution import testing
from attribution.alignment import word_units
from attribution.whatif import deletion_curve, edit, edited_prompt, remove_random, remove_top
from conftest import SEED_PROMPT

COPIED = " Latvia"


@pytest.fixture(scope="module")
def copy_loaded(tmp_path_factory):
    """A one-layer model that certainly copies " Latvia": attention is uniform (no queries), values and
    output pass each token's normalised embedding on, the MLP is off, and " Latvia" alone has a (large)
    embedding along dimension 0, which no other token has. With " Latvia" anywhere in the prompt the last
    position's state points along dimension 0 and the tied head predicts " Latvia" by a wide margin;
    without it the state has nothing there and " Latvia"'s logit is 0 while other tokens' are not."""
    tokenizer = testing.tiny_tokenizer()
    model = testing.random_llama(tokenizer, seed=0, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True,
                                 max_position_embeddings=256)
    copied = tokenizer(COPIED, add_special_tokens=False)["input_ids"]
    assert len(copied) == 1
    with torch.no_grad():
        embeddings = model.get_input_embeddings().weight
        embeddings[:, 0] = 0.0
        embeddings[copied[0]] = 0.0
        embeddings[copied[0], 0] = 50.0
        layer = model.model.layers[0]
        layer.self_attn.q_proj.weight.zero_()
        layer.self_attn.v_proj.weight.copy_(torch.eye(32))
        layer.self_attn.o_proj.weight.copy_(10 * torch.eye(32))
        layer.mlp.down_proj.weight.zero_()
    folder = tmp_path_factory.mktemp("copy") / "copy"
    tokenizer.save_pretrained(folder)
    model.save_pretrained(folder)
    return attribution.load_model(str(folder), device="cpu")


@pytest.fixture(scope="module")
def copy_analysis(copy_loaded):
    return attribution.analyze(copy_loaded, SEED_PROMPT, max_new_tokens=3, n_steps=16,
                               methods=("gradient", "attention", "integrated_gradients"))


def _position(analysis, text):
    return analysis.input_tokens.index(text)


def test_removing_the_copied_token_changes_the_answer(copy_loaded, copy_analysis):
    assert copy_analysis.target.text == COPIED
    result = edit(copy_loaded, copy_analysis, remove=[_position(copy_analysis, COPIED)])
    assert result.prompt_after == "What is the Capital City of?" and result.removed == (COPIED,)
    assert result.answer_changed and COPIED not in result.answer_after and not result.still_predicted
    assert result.probability_before > 0.99 and result.probability_after < 0.01
    # The same probabilities by a forward of our own.
    ids = copy_loaded.tokenizer(result.prompt_after, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        direct = torch.softmax(copy_loaded.model(input_ids=ids).logits[0, -1], dim=-1)[copy_analysis.target.id]
    assert result.probability_after == pytest.approx(float(direct), rel=1e-5, abs=1e-9)
    # Removing another word leaves the copy alone.
    other = edit(copy_loaded, copy_analysis, remove=[1], unit="word")
    assert other.prompt_after == "What the Capital City of Latvia?" and not other.answer_changed and other.still_predicted


def test_replacing_a_word(copy_loaded, copy_analysis):
    latvia = [unit.text for unit in word_units(copy_analysis)].index("Latvia")
    result = edit(copy_loaded, copy_analysis, replace={latvia: "Estonia"}, unit="word")
    assert result.prompt_after == "What is the Capital City of Estonia?" and result.replaced == (("Latvia", "Estonia"),)
    assert result.answer_changed and result.probability_after < 0.01


def test_edits_tidy_spaces_and_refuse_bad_keys(copy_analysis):
    words = [unit.text for unit in word_units(copy_analysis)]
    assert edited_prompt(copy_analysis, "word", [0])[0] == "is the Capital City of Latvia?"
    assert edited_prompt(copy_analysis, "word", [words.index("Capital"), words.index("City")])[0] == "What is the of Latvia?"
    with pytest.raises(ValueError, match="valid: 0, 1"):
        edited_prompt(copy_analysis, "word", [99])
    with pytest.raises(ValueError, match="valid: 1, 2"):
        edited_prompt(copy_analysis, "token", [0])  # BOS is not the user's
    with pytest.raises(ValueError, match="nothing to edit"):
        edited_prompt(copy_analysis, "word", [])
    with pytest.raises(ValueError, match="unknown unit"):
        edited_prompt(copy_analysis, "letter", [1])


def test_remove_top_and_random(copy_analysis):
    scores = copy_analysis.methods["gradient"].scores
    content = ~copy_analysis.context_tokens
    best = int(np.flatnonzero(content)[np.argmax(scores[content])])
    assert remove_top(copy_analysis, "gradient", 1, unit="token") == (best,)
    words = word_units(copy_analysis)
    top_words = remove_top(copy_analysis, "gradient", 3)
    sums = [scores[list(unit.positions)].sum() for unit in words]
    assert list(top_words) == list(np.argsort(sums, kind="stable")[::-1][:3])
    picked = remove_random(copy_analysis, 3, seed=1)
    assert len(set(picked)) == 3 and picked == remove_random(copy_analysis, 3, seed=1)
    with pytest.raises(ValueError, match="was not run"):
        remove_top(copy_analysis, "lime", 1)


def test_deletion_curve(copy_loaded, copy_analysis):
    curve = deletion_curve(copy_loaded, copy_analysis, "gradient", n_random=5)
    n = int((~copy_analysis.context_tokens).sum())
    assert curve.method_values.shape == (n + 1,) and curve.random_values.shape == (5, n + 1)
    # Row 0 is the full input, every row the same: log p(target) by a forward of our own.
    ids = torch.as_tensor(copy_analysis.input_ids)[None]
    with torch.no_grad():
        full = torch.log_softmax(copy_loaded.model(input_ids=ids).logits[0, -1], dim=-1)[copy_analysis.target.id]
    np.testing.assert_allclose(curve.random_values[:, 0], float(full), atol=1e-5)
    assert curve.method_values[0] == pytest.approx(float(full), abs=1e-5)
    # Once " Latvia" is gone (wherever it comes in the order) the copy is gone.
    for order_values, order_units in [(curve.method_values, curve.units)]:
        k = list(order_units).index(COPIED) + 1
        assert order_values[k] < order_values[k - 1] - 5
    assert curve.area >= 0 and "method_values" in curve.to_dict()
    mean, low, high = curve.random_band()
    assert np.all(low <= mean) and np.all(mean <= high)


def test_word_removal_ranks_occlusion_by_hiding_whole_words(tiny_loaded):
    """Occlusion's top words are those whose removal (all their tokens hidden at once) costs most: the drops
    measured here by forwards of our own, not the mean of the words' one-token drops."""
    from attribution.diff import unit_scores

    analysis = attribution.analyze(tiny_loaded, "Don't you know Latvia's capital? It's e-mail.", max_new_tokens=1,
                                   methods=("occlusion",))
    units = word_units(analysis)
    assert any(len(unit.positions) > 1 for unit in units)
    ids = torch.as_tensor(analysis.input_ids)[None]

    def log_probability(hidden):
        mask = torch.ones_like(ids)
        mask[0, list(hidden)] = 0
        with torch.no_grad():
            logits = tiny_loaded.model(input_ids=ids, attention_mask=mask).logits[0, -1].double()
        return float(torch.log_softmax(logits, -1)[analysis.target.id])

    drops = np.array([log_probability(()) - log_probability(unit.positions) for unit in units])
    np.testing.assert_allclose(unit_scores(analysis, "occlusion", tuple(units)), drops, rtol=1e-4, atol=1e-5)
    expected = sorted(range(len(units)), key=lambda index: -drops[index])
    assert list(remove_top(analysis, "occlusion", len(units))) == expected


def test_replacing_a_token_keeps_its_space_and_a_stretch_of_words(copy_loaded, copy_analysis):
    position = _position(copy_analysis, COPIED)
    assert edited_prompt(copy_analysis, "token", replace={position: "Estonia"})[0] == "What is the Capital City of Estonia?"
    result = edit(copy_loaded, copy_analysis, replace={position: "Estonia"}, unit="token")
    assert result.replaced == ((COPIED, "Estonia"),) and result.answer_changed and not result.still_predicted
    # Several words replaced by one text: the first replaced, the rest removed.
    words = [unit.text for unit in word_units(copy_analysis)]
    prompt, removed, replaced = edited_prompt(copy_analysis, "word", remove=[words.index("City")],
                                              replace={words.index("Capital"): "largest town"})
    assert prompt == "What is the largest town of Latvia?" and removed == ("City",)
    assert replaced == (("Capital", "largest town"),)


def test_a_span_target_is_measured_as_its_whole_stretch(tiny_loaded):
    """From an analysis that explains a stretch of the answer (target (1, 2)): the edit's probability and
    the deletion curve's full-input value are the stretch's (its tokens teacher-forced), by our own forwards."""
    analysis = attribution.analyze(tiny_loaded, SEED_PROMPT, max_new_tokens=3, target=(1, 2),
                                   methods=("gradient",))
    assert analysis.span is not None and len(analysis.span.ids) == 2
    n_prompt = analysis.n_prompt_tokens

    def stretch_log_probability(prompt_ids):
        ids = torch.tensor(list(prompt_ids) + list(analysis.span.ids[:-1]))[None]
        with torch.no_grad():
            logits = torch.log_softmax(tiny_loaded.model(input_ids=ids).logits[0].double(), dim=-1)
        return sum(float(logits[ids.shape[1] - len(analysis.span.ids) + index, token]) for index, token in enumerate(analysis.span.ids))

    before = stretch_log_probability(analysis.input_ids[:n_prompt])
    result = edit(tiny_loaded, analysis, remove=[0], unit="word")
    edited_ids = tiny_loaded.tokenizer(result.prompt_after)["input_ids"]
    assert result.target == analysis.span.text
    assert result.probability_before == pytest.approx(np.exp(before), rel=1e-6)
    assert result.probability_after == pytest.approx(np.exp(stretch_log_probability(edited_ids)), rel=1e-6)
    curve = deletion_curve(tiny_loaded, analysis, "gradient", n_random=2)
    assert curve.method_values[0] == pytest.approx(before, abs=1e-4)
