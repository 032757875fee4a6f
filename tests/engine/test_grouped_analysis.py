"""Scores per word, sentence and segment from a real analysis (the tiny model): each method's group scores
against an independent computation — Captum's IG summed over the group (and grouped IG still complete:
Σ groups = F(x) − F(x′), F from plain forwards), the gradient's norm over the group's embeddings from
autograd, occlusion by rerunning the model with the whole group masked —, the exports, the refusals."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients

import attribution
from attribution.catalog import CATALOG, combine_rule
from attribution.groups import GRANULARITIES
from attribution.settings import COMPLETENESS_TOLERANCE, Settings

PROMPT = "The capital of France is Paris. Which city is the capital of Germany?\n\nBerlin is the answer. What is"
STEPS = 64


@pytest.fixture(scope="module")
def grouped(tiny_loaded):
    # Context ablation's weights exist only for the groups it removed (one granularity, never regrouped);
    # tests/engine/test_context_ablation.py checks them.
    methods = tuple(name for name in CATALOG if name != "context_ablation")
    settings = Settings(methods=methods, n_steps=STEPS, baseline="pad", aggregation="sum",
                        max_new_tokens=2, granularity="sentence")
    return attribution.analyze(tiny_loaded, PROMPT, settings)


def _embeddings(loaded, ids):
    return loaded.model.get_input_embeddings().weight[torch.as_tensor(ids)][None].detach()


def test_every_granularity_groups_every_token(grouped):
    for granularity in GRANULARITIES:
        grouping = grouped.grouping(granularity)
        assert [token for group in grouping.groups for token in group.tokens] == list(range(grouped.n_tokens))
        for name, scores in grouped.grouped_scores(granularity).items():
            assert scores.shape == (len(grouping),), (granularity, name)
    assert grouped.grouping("sentence").labels[1:] == (
        "The capital of France is Paris.", "Which city is the capital of Germany?", "Berlin is the answer.", "What is")
    assert grouped.grouping("segment").labels[1:] == (
        "The capital of France is Paris. Which city is the capital of Germany?", "Berlin is the answer. What is")
    # BOS (held, special) stays a group of its own at every granularity.
    assert all(grouped.grouping(granularity).groups[0].tokens == (0,) for granularity in GRANULARITIES)


def test_grouped_ig_equals_captum_summed_over_each_group_and_is_complete(tiny_loaded, grouped):
    ids = grouped.input_ids
    embeddings = _embeddings(tiny_loaded, ids)
    pad = torch.full((len(ids),), tiny_loaded.tokenizer.pad_token_id)
    baselines = _embeddings(tiny_loaded, pad)
    captum = IntegratedGradients(lambda x: tiny_loaded.model(inputs_embeds=x).logits[:, -1, :])
    expected = captum.attribute(embeddings, baselines=baselines, target=grouped.target.id, n_steps=STEPS)[0]
    with torch.no_grad():
        forward = lambda x: float(tiny_loaded.model(inputs_embeds=x).logits[0, -1, grouped.target.id].double())
        difference = forward(embeddings) - forward(baselines)  # F(x) − F(x′), plain forwards
    for granularity in GRANULARITIES:
        grouping = grouped.grouping(granularity)
        ours = grouped.grouped_scores(granularity)["integrated_gradients"]
        direct = np.array([float(expected[list(group.tokens)].double().sum()) for group in grouping.groups])
        np.testing.assert_allclose(ours, direct, rtol=1e-3, atol=1e-4)
        error = abs(ours.sum() - difference) / abs(difference)
        assert error <= COMPLETENESS_TOLERANCE, (granularity, error)
        assert error == pytest.approx(grouped.methods["integrated_gradients"].relative_completeness_error, abs=1e-6)


def test_grouped_l2_ig_is_the_norm_of_captums_attributions_over_the_group(tiny_loaded):
    analysis = attribution.analyze(tiny_loaded, PROMPT, methods=("integrated_gradients",), n_steps=16,
                                   aggregation="l2", max_new_tokens=1, granularity="word")
    embeddings = _embeddings(tiny_loaded, analysis.input_ids)
    captum = IntegratedGradients(lambda x: tiny_loaded.model(inputs_embeds=x).logits[:, -1, :])
    expected = captum.attribute(embeddings, baselines=torch.zeros_like(embeddings), target=analysis.target.id,
                                n_steps=16)[0].double()
    direct = [float(expected[list(group.tokens)].flatten().norm()) for group in analysis.grouping().groups]
    np.testing.assert_allclose(analysis.grouped_scores()["integrated_gradients"], direct, rtol=1e-3, atol=1e-5)


def test_grouped_gradient_is_the_norm_over_the_groups_embeddings(tiny_loaded, grouped):
    embeddings = _embeddings(tiny_loaded, grouped.input_ids).clone().requires_grad_(True)
    tiny_loaded.model(inputs_embeds=embeddings).logits[0, -1, grouped.target.id].backward()
    gradient = embeddings.grad[0].double()  # [seq, d_model]
    assert combine_rule("gradient") == "l2"
    for granularity in ("word", "sentence", "segment"):
        grouping = grouped.grouping(granularity)
        direct = [float(gradient[list(group.tokens)].flatten().norm()) for group in grouping.groups]
        np.testing.assert_allclose(grouped.grouped_scores(granularity)["gradient"], direct, rtol=1e-4, atol=1e-6)


def test_grouped_occlusion_hides_the_whole_group(tiny_loaded, grouped):
    ids = torch.as_tensor(grouped.input_ids)

    def log_probability(mask):
        with torch.no_grad():
            logits = tiny_loaded.model(input_ids=ids[None], attention_mask=mask[None]).logits
        return float(torch.log_softmax(logits[0, -1].double(), -1)[grouped.target.id])

    full = log_probability(torch.ones(len(ids), dtype=torch.long))
    for granularity in ("word", "sentence", "segment"):
        grouping = grouped.grouping(granularity)
        expected = []
        for group in grouping.groups:
            mask = torch.ones(len(ids), dtype=torch.long)
            mask[list(group.tokens)] = 0
            expected.append(full - log_probability(mask))
        np.testing.assert_allclose(grouped.grouped_scores(granularity)["occlusion"], expected, rtol=1e-4, atol=1e-5)
        # Hiding a sentence is not the sum of hiding its tokens one by one.
    sentences = grouped.grouping("sentence")
    summed = sentences.combine(grouped.methods["occlusion"].scores, "sum")
    assert not np.allclose(summed, grouped.grouped_scores("sentence")["occlusion"])


def test_attention_shares_add(grouped):
    for granularity in ("word", "sentence"):
        assert grouped.grouped_scores(granularity)["attention"].sum() == pytest.approx(
            grouped.methods["attention"].scores.sum())


def test_json_and_csv_exports_are_grouped(grouped):
    data = json.loads(grouped.to_json())
    groups = data["groups"]
    assert groups["granularity"] == "sentence" and groups["separator"] is None
    assert [group["label"] for group in groups["groups"]] == list(grouped.grouping().labels)
    assert [group["tokens"] for group in groups["groups"]] == [list(group.tokens) for group in grouped.grouping().groups]
    for name, scores in grouped.grouped_scores().items():
        np.testing.assert_allclose(groups["scores"][name], scores)
    assert data["methods"]["gradient"]["scores"] == [float(value) for value in grouped.methods["gradient"].scores]
    rows = list(csv.reader(io.StringIO(grouped.to_csv())))
    assert rows[0][:5] == ["sentence", "text", "first_token", "last_token", "kind"]
    assert [row[1] for row in rows[1:]] == list(grouped.grouping().labels)
    column = rows[0].index("input_x_gradient")
    np.testing.assert_allclose([float(row[column]) for row in rows[1:]], grouped.grouped_scores()["input_x_gradient"])


def test_token_granularity_exports_as_before(tiny_loaded):
    analysis = attribution.analyze(tiny_loaded, PROMPT, methods=("gradient",), max_new_tokens=1)
    assert "groups" not in analysis.to_dict()
    assert analysis.to_csv().splitlines()[0] == "position,token,token_id,gradient"
    assert analysis.grouping().labels == analysis.input_tokens


def test_segments_by_a_separator_and_its_refusals(tiny_loaded):
    prompt = "Paris is in France. ### Berlin is in Germany. ### The capital of"
    analysis = attribution.analyze(tiny_loaded, prompt, methods=("occlusion",), max_new_tokens=1,
                                   granularity="segment", separator="###")
    assert analysis.grouping().labels[1:] == ("Paris is in France.", "Berlin is in Germany.", "The capital of")
    with pytest.raises(ValueError, match="separator '@@' does not occur"):
        attribution.analyze(tiny_loaded, prompt, methods=("gradient",), granularity="segment", separator="@@")
    with pytest.raises(ValueError, match="separator is empty"):
        attribution.analyze(tiny_loaded, prompt, granularity="segment", separator="")
    with pytest.raises(ValueError, match="valid choices: token, word, sentence, segment"):
        attribution.analyze(tiny_loaded, prompt, granularity="passage")
    # Not asked for segments: a separator the text lacks only makes segments unavailable.
    words = attribution.analyze(tiny_loaded, prompt, methods=("occlusion",), max_new_tokens=1,
                                granularity="word", separator="@@")
    assert len(words.grouped_scores("word")["occlusion"]) == len(words.grouping("word"))
    with pytest.raises(ValueError, match="does not occur"):
        words.grouped_scores("segment")


def test_a_result_without_spans_refuses_groups():
    from helpers import make_analysis

    analysis = make_analysis()
    assert analysis.grouping("token").labels == analysis.input_tokens
    with pytest.raises(ValueError, match="keeps no token spans"):
        analysis.grouped_scores("word")
