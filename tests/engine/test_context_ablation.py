"""Context attribution by ablation: the ablated scores are the model's own on the shortened prompts, the
prefix reuse changes nothing, the weights are the lasso of those scores, and a dependency planted in a
hand-built model is recovered."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import attribution
from attribution import context_ablation as ablation
from attribution.models import LoadedModel
from attribution.passes import AttributionRequest
from attribution.prompts import encode_prompt, held_context
from attribution.results import ContextAblationScores
from attribution.settings import Settings
from attribution.surrogate import DEFAULT_ALPHA, fit
from attribution.testing import tiny_tokenizer

SENTENCES = ("The capital of France is Paris.", " The capital of Spain is Madrid.",
             " Which city is the capital of Germany?")


def _sentence_ids(tokenizer):
    """BOS + the three sentences, and each sentence's positions (the groups, made by hand)."""
    ids, groups = [tokenizer.bos_token_id], []
    for sentence in SENTENCES:
        piece = tokenizer(sentence, add_special_tokens=False)["input_ids"]
        groups.append(tuple(range(len(ids), len(ids) + len(piece))))
        ids += piece
    return torch.tensor(ids), groups


def _direct(loaded, input_ids, groups, mask, target_id, foil_id=None):
    """The score computed the plain way: the shortened prompt through the model, no batching, no prefix."""
    removed = {index for group, kept in zip(groups, mask) if not kept for index in group}
    kept_ids = torch.tensor([int(token) for index, token in enumerate(input_ids) if index not in removed])
    with torch.no_grad():
        log_probabilities = torch.log_softmax(loaded.model(input_ids=kept_ids[None]).logits[0, -1].double(), dim=-1)
    value = log_probabilities[target_id]
    return float(value if foil_id is None else value - log_probabilities[foil_id])


@pytest.mark.parametrize("foil_id", [None, 7])
def test_ablated_scores_are_the_models_on_the_shortened_prompts(tiny_loaded, foil_id):
    input_ids, groups = _sentence_ids(tiny_loaded.tokenizer)
    masks = ablation.ablation_masks(12, len(groups))
    masks[0], masks[1] = True, False  # nothing and everything removed among them
    request = AttributionRequest(input_ids=input_ids, target_id=11, foil_id=foil_id, internal_batch_size=5)
    values = ablation.ablated_log_probabilities(tiny_loaded, request, groups, masks)
    expected = [_direct(tiny_loaded, input_ids, groups, mask, 11, foil_id) for mask in masks]
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_chat_loaded(chat_folder):
    return attribution.load_model(str(chat_folder), device="cpu")


def _chat_request(loaded, n_ablations=16, **fields):
    encoded = encode_prompt(loaded, " ".join(SENTENCES), chat=True)
    special = attribution.integrated_gradients.special_token_mask(loaded, encoded.ids).cpu().numpy()
    held = held_context(special, encoded.user_tokens, encoded.ids.numel(), True)
    removable = encoded.user_tokens & ~held
    positions = np.flatnonzero(removable)
    groups = [tuple(int(index) for index in chunk) for chunk in np.array_split(positions, 4)]
    request = AttributionRequest(input_ids=encoded.ids, target_id=11, settings=Settings(n_ablations=n_ablations),
                                 removable=torch.from_numpy(removable), **fields)
    return request, groups


def test_the_reused_prefix_gives_the_scores_computed_without_it(tiny_chat_loaded, monkeypatch):
    request, groups = _chat_request(tiny_chat_loaded, internal_batch_size=4)
    lengths = []
    shared_prefix = ablation.shared_prefix

    def recording(loaded, embeddings, length):
        prefix = shared_prefix(loaded, embeddings, length)
        lengths.append(None if prefix is None else prefix.length)
        return prefix

    monkeypatch.setattr(ablation, "shared_prefix", recording)
    masks = ablation.ablation_masks(16, len(groups))
    reused = ablation.ablated_log_probabilities(tiny_chat_loaded, request, groups, masks)
    plain = ablation.ablated_log_probabilities(tiny_chat_loaded, request, groups, masks, reuse_prefix=False)
    # The system prompt and the user's role marker ran once: everything before the first removable token
    # but the one before it.
    assert lengths == [min(groups[0]) - 1] and lengths[0] > 5
    np.testing.assert_allclose(reused, plain, rtol=1e-5, atol=1e-5)
    direct = [_direct(tiny_chat_loaded, request.input_ids, groups, mask, 11) for mask in masks]
    np.testing.assert_allclose(plain, direct, rtol=1e-5, atol=1e-5)


def test_the_weights_are_the_lasso_of_the_directly_computed_scores(tiny_chat_loaded):
    request, groups = _chat_request(tiny_chat_loaded, n_ablations=24)
    labels = [f"part {index}" for index in range(len(groups))]
    result = ablation.context_ablation_scores(tiny_chat_loaded, request, groups, labels, "segment")
    masks = ablation.ablation_masks(24, len(groups))
    direct = np.array([_direct(tiny_chat_loaded, request.input_ids, groups, mask, 11) for mask in masks])
    expected = fit(masks, direct)
    np.testing.assert_array_equal(result.masks, masks)
    np.testing.assert_allclose(result.ablation_scores, direct, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.group_weights, expected.weights, rtol=1e-3, atol=1e-4)
    assert result.intercept == pytest.approx(expected.intercept, rel=1e-3, abs=1e-4)
    assert result.heldout_lds == pytest.approx(expected.heldout_lds, abs=1e-6)
    everything = np.ones(len(groups), dtype=bool)
    assert result.full_score == pytest.approx(_direct(tiny_chat_loaded, request.input_ids, groups, everything, 11),
                                              abs=1e-5)
    assert result.empty_score == pytest.approx(_direct(tiny_chat_loaded, request.input_ids, groups, ~everything, 11),
                                               abs=1e-5)
    # Each token scores its group's weight; the held context (and nothing else) scores 0.
    for group, weight in zip(result.groups, result.group_weights):
        assert np.all(result.scores[list(group)] == weight)
    outside = np.ones(request.input_ids.numel(), dtype=bool)
    outside[[index for group in groups for index in group]] = False
    assert not result.scores[outside].any()
    assert result.group_labels == tuple(labels) and result.n_ablations == 24


class CopyModel(torch.nn.Module):
    """A hand-built causal 'model' that copies: its logit for a token is 6 if the token occurred so far, else 0
    (one-hot embeddings, summed causally and clipped). The answer token occurs in one sentence only, so its
    log-probability depends on that sentence for certain: about 6 higher with it."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab_size, vocab_size)
        self.embed.weight.data = torch.eye(vocab_size)
        self.config = SimpleNamespace(hidden_size=vocab_size, num_attention_heads=1, num_hidden_layers=1)

    def get_input_embeddings(self):
        return self.embed

    def forward(self, input_ids=None, inputs_embeds=None, logits_to_keep=0, **_ignored):
        embeddings = self.embed(input_ids) if inputs_embeds is None else inputs_embeds  # [batch, seq, vocab]
        logits = 6.0 * embeddings.cumsum(dim=1).clamp(max=1.0)
        kept = logits[:, logits_to_keep] if isinstance(logits_to_keep, torch.Tensor) else logits[:, -1:]
        return SimpleNamespace(logits=kept, cache=None)


def test_a_planted_dependency_is_recovered():
    tokenizer = tiny_tokenizer()
    loaded = LoadedModel(name="copy", model=CopyModel(len(tokenizer)), tokenizer=tokenizer,
                         device=torch.device("cpu"), dtype=torch.float32)
    input_ids, groups = _sentence_ids(tokenizer)
    madrid = tokenizer.convert_tokens_to_ids("ĠMadrid")
    assert [index for index, token in enumerate(input_ids.tolist()) if token == madrid] == [groups[1][-2]]
    request = AttributionRequest(input_ids=input_ids, target_id=madrid, settings=Settings(n_ablations=32))
    result = ablation.context_ablation_scores(loaded, request, groups, SENTENCES, "sentence")
    assert int(np.argmax(result.group_weights)) == 1 and result.group_weights[1] > 4
    assert np.all(np.abs(np.delete(result.group_weights, 1)) < 1)
    assert result.heldout_lds > 0.5
    assert result.full_score > result.empty_score


def test_nothing_to_remove_is_refused(tiny_loaded):
    input_ids, groups = _sentence_ids(tiny_loaded.tokenizer)
    request = AttributionRequest(input_ids=input_ids, target_id=11,
                                 removable=torch.zeros(input_ids.numel(), dtype=torch.bool))
    with pytest.raises(ValueError, match="nothing to remove"):
        ablation.context_ablation_scores(tiny_loaded, request, groups, SENTENCES, "sentence")
    # Without a removable mask every token but the first and special ones may go: a group holding BOS stays.
    whole = [tuple(range(input_ids.numel()))]
    with pytest.raises(ValueError, match="nothing to remove"):
        ablation.context_ablation_scores(tiny_loaded, AttributionRequest(input_ids=input_ids, target_id=11),
                                         whole, ["all"], "segment")


def test_the_first_masks_do_not_depend_on_how_many_are_drawn():
    np.testing.assert_array_equal(ablation.ablation_masks(128, 5)[:16], ablation.ablation_masks(16, 5))
    assert 0.4 < ablation.ablation_masks(1024, 6).mean() < 0.6


def test_the_result_checks_its_shapes():
    good = dict(method="context_ablation", scores=[0.0, 2.0, 2.0, -1.0], group_labels=("a", "b"),
                groups=((1, 2), (3,)), group_weights=[2.0, -1.0], masks=np.ones((8, 2), dtype=bool),
                ablation_scores=np.zeros(8))
    result = ContextAblationScores(**good)
    data = result.to_dict()
    assert data["groups"] == [{"label": "a", "tokens": [1, 2], "weight": 2.0}, {"label": "b", "tokens": [3], "weight": -1.0}]
    assert data["n_ablations"] == 8 and len(data["masks"]) == 8 and data["heldout_lds"] is None
    for change in (dict(group_weights=[2.0]), dict(masks=np.ones((8, 3), dtype=bool)), dict(ablation_scores=np.zeros(7)),
                   dict(groups=((1, 2), (2,))), dict(groups=((1, 2), (9,))), dict(scores=[0.0, 2.0, 1.0, -1.0])):
        with pytest.raises(ValueError):
            ContextAblationScores(**{**good, **change})


def test_analyze_runs_it_over_the_prompts_sentences(tiny_chat_loaded):
    prompt = "".join(SENTENCES)
    analysis = attribution.analyze(tiny_chat_loaded, prompt, methods=("gradient", "context_ablation"), chat=True,
                                   max_new_tokens=2, target=2, n_ablations=16, trust=True)
    result = analysis.methods["context_ablation"]
    assert isinstance(result, ContextAblationScores) and result.granularity == "sentence"
    assert result.group_labels == tuple(sentence.strip() for sentence in SENTENCES) and result.n_ablations == 16
    # The groups are the user's sentences: never the template, the system prompt or the generated token.
    in_groups = np.zeros(analysis.n_tokens, dtype=bool)
    in_groups[[index for group in result.groups for index in group]] = True
    np.testing.assert_array_equal(in_groups, analysis.user_tokens & ~analysis.held_tokens)
    assert not result.scores[analysis.context_tokens].any()
    # The same as the method on those groups, called directly.
    request = AttributionRequest(input_ids=torch.tensor(analysis.input_ids), target_id=analysis.target.id,
                                 settings=analysis.settings, removable=torch.from_numpy(in_groups))
    direct = ablation.context_ablation_scores(tiny_chat_loaded, request, result.groups, result.group_labels, "sentence")
    np.testing.assert_allclose(result.group_weights, direct.group_weights, atol=1e-6)
    data = analysis.to_dict()["methods"]["context_ablation"]
    assert [group["label"] for group in data["groups"]] == list(result.group_labels)
    assert data["heldout_lds"] == result.heldout_lds and data["n_ablations"] == 16
    assert "context_ablation" in analysis.trust.faithfulness


def test_a_raw_prompt_of_one_sentence_has_one_group(tiny_loaded):
    analysis = attribution.analyze(tiny_loaded, "What is the Capital City of Latvia?", methods=("context_ablation",),
                                   max_new_tokens=1, n_ablations=8)
    result = analysis.methods["context_ablation"]
    assert result.groups == (tuple(range(1, analysis.n_tokens)),)  # all but BOS
    # One group: every kept row scores the full prompt's value, every removed row the empty one's, so the
    # lasso's weight is their difference shrunk by alpha over the mask's standard deviation.
    kept = result.masks[:, 0]
    np.testing.assert_allclose(result.ablation_scores[kept], result.full_score, atol=1e-5)
    np.testing.assert_allclose(result.ablation_scores[~kept], result.empty_score, atol=1e-5)
    difference = result.full_score - result.empty_score
    expected = np.sign(difference) * max(abs(difference) - DEFAULT_ALPHA / kept.std(), 0.0)
    assert result.group_weights[0] == pytest.approx(expected, abs=1e-5)
