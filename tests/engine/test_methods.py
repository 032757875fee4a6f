"""The package's methods against independent computations: the seed notebook's own code, Captum
called directly, finite differences, completeness, and attention rows summing to one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients
from transformers import AutoModelForCausalLM, AutoTokenizer

import attribution
from attribution.methods import integrated_gradients
from attribution.passes import AttributionRequest
from attribution.passes import SharedWork, input_gradient_pass, target_logit
from attribution.settings import Settings
from attribution.shared import input_gradients
from attribution.models import LoadedModel
from benchmarks import notebook_reference as notebook
from conftest import SEED_PROMPT


def relative_error(actual, expected) -> float:
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def load_notebook_model(folder):
    """The model exactly as the notebook uses it: eager attention (so weights come back), not frozen."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    return model, tokenizer


@pytest.mark.parametrize("baseline", ["zero", "pad"])
def test_default_scores_equal_the_notebooks(model_folder, baseline):
    loaded = attribution.load_model(str(model_folder), device="cpu")
    analysis = attribution.analyze(loaded, SEED_PROMPT, baseline=baseline, max_new_tokens=5)
    model, tokenizer = load_notebook_model(model_folder)
    input_ids = tokenizer(SEED_PROMPT, return_tensors="pt")["input_ids"]

    gradient_scores, predicted_id = notebook.gradient_based_attribution(model, input_ids)
    attention_scores, all_attention = notebook.extract_attention_weights(model, input_ids)
    ig_scores, ig_predicted_id = notebook.compute_integrated_gradients(model, tokenizer, input_ids, baseline)
    outputs, _answer = notebook.generate_answer(model, tokenizer, input_ids, max_new_tokens=5)

    assert analysis.target.id == predicted_id == ig_predicted_id
    np.testing.assert_array_equal(analysis.input_ids, input_ids[0].numpy())
    np.testing.assert_array_equal(analysis.generated_ids, outputs[0, input_ids.shape[1]:].numpy())
    assert relative_error(analysis.methods["gradient"].scores, gradient_scores) <= 1e-4
    assert relative_error(analysis.methods["attention"].scores, attention_scores) <= 1e-4
    assert relative_error(analysis.methods["attention"].per_layer, notebook.layer_attention(all_attention)) <= 1e-4
    assert relative_error(analysis.methods["integrated_gradients"].scores, ig_scores) <= 1e-3
    torch.testing.assert_close(
        torch.from_numpy(analysis.methods["gradient"].scores), torch.from_numpy(gradient_scores).double(),
        rtol=1e-4, atol=1e-6,
    )


def _request(loaded, prompt=SEED_PROMPT, **settings) -> AttributionRequest:
    input_ids = loaded.tokenizer(prompt, return_tensors="pt")["input_ids"][0]
    with torch.inference_mode():
        target_id = int(loaded.model(input_ids=input_ids[None]).logits[0, -1].argmax())
    batch_size = settings.pop("internal_batch_size", None)
    return AttributionRequest(input_ids=input_ids, target_id=target_id, settings=Settings(**settings),
                              internal_batch_size=batch_size)


def _independent_logit(model, embeddings, target_id) -> float:
    """F(x) with the plain full forward, no logits_to_keep."""
    with torch.no_grad():
        return float(model(inputs_embeds=embeddings).logits[0, -1, target_id].double())


@pytest.mark.parametrize("baseline", ["zero", "pad"])
def test_integrated_gradients_equals_captum_called_directly(model_folder, baseline):
    loaded = attribution.load_model(str(model_folder), device="cpu")
    request = _request(loaded, n_steps=32, baseline=baseline, aggregation="sum", internal_batch_size=7)
    ours = integrated_gradients(loaded, request)

    embeddings = loaded.model.get_input_embeddings().weight[request.input_ids][None].detach()
    if baseline == "zero":
        baselines = torch.zeros_like(embeddings)
    else:
        pad = torch.full_like(request.input_ids, loaded.tokenizer.pad_token_id)
        baselines = loaded.model.get_input_embeddings().weight[pad][None].detach()
    captum = IntegratedGradients(lambda x: loaded.model(inputs_embeds=x).logits[:, -1, :])
    expected, delta = captum.attribute(
        embeddings, baselines=baselines, target=request.target_id, n_steps=32, return_convergence_delta=True
    )
    torch.testing.assert_close(
        torch.from_numpy(ours.scores).float(), expected[0].sum(-1), rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(ours.convergence_delta, float(delta), rtol=1e-3, atol=1e-4)


def test_ig_batch_size_does_not_change_the_numbers(tiny_loaded):
    one = integrated_gradients(tiny_loaded, _request(tiny_loaded, n_steps=20, internal_batch_size=1))
    many = integrated_gradients(tiny_loaded, _request(tiny_loaded, n_steps=20, internal_batch_size=20))
    torch.testing.assert_close(torch.from_numpy(one.scores), torch.from_numpy(many.scores), rtol=1e-5, atol=1e-6)


def test_signed_ig_with_pad_baseline_is_complete(model_folder):
    loaded = attribution.load_model(str(model_folder), device="cpu")
    request = _request(loaded, n_steps=300, baseline="pad", aggregation="sum")
    result = integrated_gradients(loaded, request)

    model, tokenizer = load_notebook_model(model_folder)
    weight = model.get_input_embeddings().weight
    inputs = weight[request.input_ids][None]
    baseline = weight[torch.full_like(request.input_ids, tokenizer.pad_token_id)][None]
    difference = _independent_logit(model, inputs, request.target_id) - _independent_logit(
        model, baseline, request.target_id
    )
    assert abs(difference) > 1e-3, "the test needs a target whose logit moves"
    assert abs(result.scores.sum() - difference) <= 0.01 * abs(difference)


@pytest.mark.parametrize("aggregation", ["sum", "l2"])
def test_convergence_delta_is_the_truth_even_when_ig_does_not_converge(tiny_loaded, aggregation):
    request = _request(tiny_loaded, n_steps=4, baseline="zero", aggregation=aggregation)
    result = integrated_gradients(tiny_loaded, request)
    signed = integrated_gradients(tiny_loaded, _request(tiny_loaded, n_steps=4, baseline="zero", aggregation="sum"))

    weight = tiny_loaded.model.get_input_embeddings().weight
    inputs = weight[request.input_ids][None]
    difference = _independent_logit(tiny_loaded.model, inputs, request.target_id) - _independent_logit(
        tiny_loaded.model, torch.zeros_like(inputs), request.target_id
    )
    torch.testing.assert_close(result.convergence_delta, float(signed.scores.sum()) - difference, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(result.output_difference, difference, rtol=1e-5, atol=1e-5)


def test_gradient_agrees_with_finite_differences(tiny_folder):
    tokenizer = AutoTokenizer.from_pretrained(tiny_folder)
    tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(tiny_folder, dtype=torch.float64).eval().requires_grad_(False)
    loaded = LoadedModel(name="fp64", model=model, tokenizer=tokenizer, device=torch.device("cpu"), dtype=torch.float64)
    request = _request(loaded)
    gradients = input_gradients(loaded, request).double()  # [seq, d_model]

    generator = torch.Generator().manual_seed(0)
    embeddings = model.get_input_embeddings().weight[request.input_ids][None]
    for _ in range(3):
        # Steps on the embeddings' own scale: Llama embeddings are ~0.02 and RMSNorm rescales them.
        direction = torch.randn(embeddings.shape, generator=generator, dtype=torch.float64) * embeddings.std()
        step = 3e-3  # balances O(step²) truncation against RMSNorm's fp32 rounding
        plus = float(target_logit(loaded, embeddings + step * direction, request.target_id)[0])
        minus = float(target_logit(loaded, embeddings - step * direction, request.target_id)[0])
        finite_difference = (plus - minus) / (2 * step)
        # Cancellation can make one directional derivative small: scale atol by |g|·|v| (Cauchy–Schwarz).
        scale = float(gradients.norm() * direction.norm())
        torch.testing.assert_close(
            float((gradients * direction[0]).sum()), finite_difference, rtol=2e-4, atol=2e-4 * scale
        )

    scores = attribution.methods.gradient(loaded, request).scores
    torch.testing.assert_close(torch.from_numpy(scores), gradients.norm(dim=-1), rtol=1e-6, atol=1e-9)


def test_attention_rows_sum_to_one(model_folder):
    loaded = attribution.load_model(str(model_folder), device="cpu")
    result = attribution.methods.attention(loaded, _request(loaded))
    n_layers, n_heads = loaded.n_layers, loaded.n_heads
    assert result.per_head.shape == (n_layers, n_heads, result.n_tokens)
    torch.testing.assert_close(torch.from_numpy(result.per_head.sum(-1)), torch.ones(n_layers, n_heads, dtype=torch.float64))
    torch.testing.assert_close(float(result.scores.sum()), 1.0)
    # The attention pass must not leave the model on eager attention.
    assert loaded.model.config._attn_implementation != "eager"


@pytest.mark.parametrize("foil", [False, True])
@pytest.mark.parametrize("batch_size", [None, 3])  # 3: the input and baseline rows land in other batches
def test_ig_input_row_gives_the_plain_gradient_and_forward(tiny_loaded, foil, batch_size):
    """IG's batches also hold the input itself: its gradient (reused by the gradient methods) and its
    score must equal a forward and backward of their own."""
    base = _request(tiny_loaded)
    request = AttributionRequest(input_ids=base.input_ids, target_id=base.target_id, foil_id=7 if foil else None,
                                 settings=Settings(n_steps=8, baseline="pad"), internal_batch_size=batch_size,
                                 work=SharedWork(with_integration=True))
    result = integrated_gradients(tiny_loaded, request)
    standalone = AttributionRequest(input_ids=request.input_ids, target_id=request.target_id, foil_id=request.foil_id)
    # With IG in the request, the gradient methods' input gradient comes from IG's input row.
    torch.testing.assert_close(input_gradients(tiny_loaded, request), input_gradient_pass(tiny_loaded, standalone),
                               rtol=1e-5, atol=1e-7)
    embeddings = tiny_loaded.model.get_input_embeddings()(request.input_ids[None])
    with torch.no_grad():
        own_forward = float(target_logit(tiny_loaded, embeddings, request.target_id, request.foil_id)[0])
    torch.testing.assert_close(result.input_output, own_forward, rtol=1e-5, atol=1e-6)


def test_registry_lists_the_seed_methods():
    assert list(attribution.METHODS)[:3] == ["gradient", "attention", "integrated_gradients"]
    assert set(attribution.METHOD_LABELS) == set(attribution.METHODS)


def test_contrastive_gradients_are_the_difference_of_single_target_gradients(tiny_loaded):
    from attribution.methods import input_x_gradient

    base = _request(tiny_loaded)
    foil_id = (base.target_id + 7) % len(tiny_loaded.tokenizer)
    contrast = AttributionRequest(input_ids=base.input_ids, target_id=base.target_id, foil_id=foil_id)
    foil_only = AttributionRequest(input_ids=base.input_ids, target_id=foil_id)
    torch.testing.assert_close(
        input_gradients(tiny_loaded, contrast),
        input_gradients(tiny_loaded, base) - input_gradients(tiny_loaded, foil_only), rtol=1e-4, atol=1e-6,
    )
    torch.testing.assert_close(
        torch.from_numpy(input_x_gradient(tiny_loaded, contrast).scores.copy()),
        torch.from_numpy(input_x_gradient(tiny_loaded, base).scores - input_x_gradient(tiny_loaded, foil_only).scores),
        rtol=1e-4, atol=1e-6,
    )


def test_input_x_gradient_is_embedding_times_gradient(tiny_loaded):
    from attribution.methods import input_x_gradient

    request = _request(tiny_loaded)
    embeddings = tiny_loaded.model.get_input_embeddings().weight[request.input_ids]
    expected = (embeddings * input_gradients(tiny_loaded, _request(tiny_loaded))).sum(-1)
    torch.testing.assert_close(torch.from_numpy(input_x_gradient(tiny_loaded, request).scores.copy()), expected.double())


def test_occlusion_equals_rerunning_with_each_token_masked(tiny_loaded):
    from attribution.methods import occlusion

    request = _request(tiny_loaded)
    ids = request.input_ids
    n = ids.numel()

    def log_probability(mask):
        with torch.no_grad():
            logits = tiny_loaded.model(input_ids=ids[None], attention_mask=mask[None]).logits
        return float(torch.log_softmax(logits[0, -1].double(), -1)[request.target_id])

    full = log_probability(torch.ones(n, dtype=torch.long))
    expected = []
    for position in range(n):
        mask = torch.ones(n, dtype=torch.long)
        mask[position] = 0
        expected.append(full - log_probability(mask))
    torch.testing.assert_close(torch.from_numpy(occlusion(tiny_loaded, request).scores.copy()), torch.tensor(expected, dtype=torch.float64), rtol=1e-4, atol=1e-5)


def test_rollout_on_a_hand_made_two_layer_stack_equals_the_formula():
    from attribution.methods import rollout

    first = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]], dtype=torch.float64)
    second = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.6, 0.2, 0.2]], dtype=torch.float64)
    identity = torch.eye(3, dtype=torch.float64)
    # Rows of 0.5·A + 0.5·I already sum to one, so the formula is (0.5·A2 + 0.5·I)(0.5·A1 + 0.5·I).
    expected = (0.5 * second + 0.5 * identity) @ (0.5 * first + 0.5 * identity)
    torch.testing.assert_close(rollout(torch.stack([first, second])), expected)
    torch.testing.assert_close(rollout(torch.stack([first, second])).sum(-1), torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("baseline", ["pad_keep_special", "mean_keep_special"])
def test_keep_special_baselines_give_special_tokens_zero_and_stay_complete(tiny_loaded, baseline):
    request = _request(tiny_loaded, n_steps=200, baseline=baseline, aggregation="sum")
    result = integrated_gradients(tiny_loaded, request)
    assert result.scores[0] == 0.0  # BOS is held at its real embedding
    assert result.relative_completeness_error <= 0.01


def test_bf16_weights_accumulate_in_fp32_and_stay_close_to_fp32(tiny_folder):
    """The GPU setting (bf16 weights, fp32 sums), run on the CPU: results are fp32 or wider and agree
    with the fp32 model's to bf16's precision."""
    full = attribution.load_model(str(tiny_folder), device="cpu", dtype="float32")
    half = attribution.load_model(str(tiny_folder), device="cpu", dtype="bfloat16")
    assert half.model.get_input_embeddings().weight.dtype == torch.bfloat16
    settings = dict(methods=["gradient", "input_x_gradient", "attention", "integrated_gradients"],
                    max_new_tokens=0, n_steps=16, baseline="pad", aggregation="sum")
    expected = attribution.analyze(full, SEED_PROMPT, **settings)
    actual = attribution.analyze(half, SEED_PROMPT, **settings)
    assert actual.target.id == expected.target.id
    for name, result in actual.methods.items():
        assert result.scores.dtype in (np.float32, np.float64), name
        assert relative_error(result.scores, expected.methods[name].scores) <= 0.02, name  # measured ~1e-3
    ig = actual.methods["integrated_gradients"]
    torch.testing.assert_close(ig.output_difference, expected.methods["integrated_gradients"].output_difference,
                               rtol=0.05, atol=0.05)


@pytest.fixture(scope="module")
def scaled_logits_loaded(tmp_path_factory, tiny_folder):
    """A tiny Granite: its forward divides the logits by `logits_scaling`, which a hand-rolled head would miss."""
    from transformers import GraniteConfig, GraniteForCausalLM

    folder = tmp_path_factory.mktemp("granite")
    tokenizer = AutoTokenizer.from_pretrained(tiny_folder)
    tokenizer.save_pretrained(folder)
    config = GraniteConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, logits_scaling=8.0,
                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    GraniteForCausalLM(config).save_pretrained(folder)
    return attribution.load_model(str(folder), device="cpu")


def test_scores_follow_the_models_own_logits_when_its_head_rescales_them(scaled_logits_loaded):
    loaded = scaled_logits_loaded
    settings = dict(max_new_tokens=0, n_steps=8, baseline="pad", aggregation="sum")
    alone = attribution.analyze(loaded, SEED_PROMPT, methods=["gradient"], **settings)
    with_ig = attribution.analyze(loaded, SEED_PROMPT, methods=["gradient", "integrated_gradients"], **settings)
    torch.testing.assert_close(torch.from_numpy(with_ig.methods["gradient"].scores),
                               torch.from_numpy(alone.methods["gradient"].scores), rtol=1e-5, atol=1e-7)
    input_ids = torch.from_numpy(with_ig.input_ids)
    with torch.no_grad():
        own_logit = float(loaded.model(input_ids=input_ids[None]).logits[0, -1, with_ig.target.id])
    torch.testing.assert_close(with_ig.methods["integrated_gradients"].input_output, own_logit, rtol=1e-5, atol=1e-6)
