"""The attention-rows pass (attribution/attention_rows.py) against the eager pass's full maps.

The reference is transformers' own eager forward with `output_attentions=True` (every layer's
[heads, seq, seq] map), computed here independently of the module under test."""

from __future__ import annotations

import sys

import pytest
import torch

import attribution
from attribution import attention_rows as rows_module
from attribution.attention_rows import IMPLEMENTATION, rollout_last_row, row_attention
from attribution.methods import METHODS, rollout
from attribution.models import eager_attention
from attribution.passes import AttributionRequest
from attribution.settings import Settings
from helpers import build_qwen2_folder, write_gguf

TOLERANCE = dict(rtol=1e-5, atol=1e-6)  # fp32: the same values reached by a different order of sums
SEQ = 37


def eager_maps(loaded, input_ids: torch.Tensor) -> torch.Tensor:
    """[layers, heads, seq, seq] from the model's eager forward (fp32, CPU)."""
    with torch.inference_mode(), eager_attention(loaded):
        output = loaded.model(input_ids=input_ids.unsqueeze(0), output_attentions=True, use_cache=False)
    return torch.stack([layer[0].float() for layer in output.attentions])


def random_ids(loaded, seq: int = SEQ, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, loaded.model.config.vocab_size, (seq,), generator=generator)


def build_gemma2_folder(folder):
    """A tiny random Gemma2: attention logit softcapping and sliding-window layers (eager-only features)."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    from conftest import build_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(folder)
    config = Gemma2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=256, sliding_window=8,
        attn_logit_softcapping=5.0, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id, initializer_range=0.2,
    )
    torch.manual_seed(0)
    Gemma2ForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def other_models(tmp_path_factory, tiny_folder) -> dict:
    """Architectures beyond the Llama shapes: Qwen2 (q/k/v biases), Gemma2 (softcap, sliding window),
    and the tiny Llama written to and read back from a GGUF file."""
    root = tmp_path_factory.mktemp("rows-models")
    return {
        "qwen2": attribution.load_model(str(build_qwen2_folder(root / "qwen2")), device="cpu"),
        "gemma2": attribution.load_model(str(build_gemma2_folder(root / "gemma2")), device="cpu"),
        "gguf": attribution.load_model(str(write_gguf(tiny_folder, root / "tiny.gguf")), device="cpu"),
    }


def loaded_models(model_folder, other_models):
    return [attribution.load_model(str(model_folder), device="cpu"), *other_models.values()]


def test_rows_equal_the_eager_maps_rows(model_folder, other_models):
    for loaded in loaded_models(model_folder, other_models):
        ids = random_ids(loaded)
        full = eager_maps(loaded, ids)
        rows = torch.tensor([0, 5, SEQ - 9, SEQ - 1])
        result = row_attention(loaded, ids, rows=rows)
        assert result.weights.shape == (loaded.n_layers, loaded.n_heads, rows.numel(), SEQ)
        torch.testing.assert_close(result.weights, full[:, :, rows], **TOLERANCE)
        torch.testing.assert_close(result.last_rows, full[:, :, -1], **TOLERANCE)
        # Head means only (the answer map's many rows): the same rows averaged over heads.
        means = row_attention(loaded, ids, rows=rows, head_mean=True).weights
        torch.testing.assert_close(means, full[:, :, rows].mean(dim=1, keepdim=True), **TOLERANCE)
        # The default row is the last position.
        torch.testing.assert_close(row_attention(loaded, ids).last_rows, full[:, :, -1], **TOLERANCE)


def test_the_forward_is_unchanged_and_no_full_map_is_formed(model_folder, other_models, monkeypatch):
    """The pass's logits are the ordinary forward's, and the model's eager function only ever sees the
    asked query rows (so no layer's [heads, seq, seq] map exists)."""
    for loaded in loaded_models(model_folder, other_models):
        ids = random_ids(loaded, seed=1)
        with torch.inference_mode():
            expected = loaded.model(input_ids=ids.unsqueeze(0), use_cache=False).logits
        module = sys.modules[type(loaded.model.model.layers[0].self_attn).__module__]
        eager, query_rows = module.eager_attention_forward, []

        def spy(attention, query, *args, **kwargs):
            query_rows.append(query.shape[2])
            return eager(attention, query, *args, **kwargs)

        monkeypatch.setattr(module, "eager_attention_forward", spy)
        seen = {}

        def keep_logits(model, inputs, output):
            seen["logits"] = output.logits

        handle = loaded.model.register_forward_hook(keep_logits)
        try:
            row_attention(loaded, ids, rows=torch.tensor([3, SEQ - 1]))
        finally:
            handle.remove()
            monkeypatch.undo()
        torch.testing.assert_close(seen["logits"][0, -1], expected[0, -1], **TOLERANCE)
        # Softcapped Gemma2 computes its outputs in eager row blocks; the rows' weights take 2 rows.
        assert 2 in query_rows and all(rows < SEQ or rows == SEQ and loaded.model.config.model_type == "gemma2"
                                       for rows in query_rows)
        if loaded.model.config.model_type != "gemma2":
            assert query_rows == [2] * loaded.n_layers
        assert loaded.model.config._attn_implementation != IMPLEMENTATION  # restored


def test_rollout_row_equals_rollout_of_the_eager_maps(model_folder, other_models):
    for loaded in loaded_models(model_folder, other_models):
        ids = random_ids(loaded, seed=2)
        expected = rollout(eager_maps(loaded, ids).mean(dim=1).double())[-1]
        torch.testing.assert_close(rollout_last_row(row_attention(loaded, ids, keep_inputs=True)), expected,
                                   rtol=1e-6, atol=1e-8)


def test_rollout_blocks_of_one_row_give_the_same_row(tiny_loaded, monkeypatch):
    ids = random_ids(tiny_loaded, seed=3)
    whole = rollout_last_row(row_attention(tiny_loaded, ids, keep_inputs=True))
    monkeypatch.setattr(rows_module, "BLOCK_VALUES", 1)  # one query row per block
    torch.testing.assert_close(rollout_last_row(row_attention(tiny_loaded, ids, keep_inputs=True)), whole,
                               rtol=1e-6, atol=1e-8)  # fp32 weights, other matmul shapes


@pytest.mark.parametrize("methods", [("attention",), ("attention_rollout",), ("attention", "attention_rollout")])
def test_the_methods_read_the_rows(tiny_loaded, methods):
    ids = random_ids(tiny_loaded, seed=4)
    full = eager_maps(tiny_loaded, ids).double()  # the results hold float64
    request = AttributionRequest(input_ids=ids, target_id=1, settings=Settings(methods=methods))
    if "attention" in methods:
        result = METHODS["attention"](tiny_loaded, request)
        torch.testing.assert_close(torch.from_numpy(result.per_head), full[:, :, -1], **TOLERANCE)
        torch.testing.assert_close(torch.from_numpy(result.scores), full[:, :, -1].mean((0, 1)), **TOLERANCE)
    expected = rollout(full.mean(dim=1).double())[-1]
    scores = METHODS["attention_rollout"](tiny_loaded, request).scores
    torch.testing.assert_close(torch.from_numpy(scores), expected, rtol=1e-6, atol=1e-8)


def test_bad_rows_and_stray_use_are_refused(tiny_loaded):
    ids = random_ids(tiny_loaded)
    for rows in ([SEQ], [-1], []):
        with pytest.raises(ValueError, match="attention rows must be positions"):
            row_attention(tiny_loaded, ids, rows=torch.tensor(rows, dtype=torch.long))
    with pytest.raises(ValueError, match="keep_inputs=True"):
        rollout_last_row(row_attention(tiny_loaded, ids))
    previous = tiny_loaded.model.config._attn_implementation
    tiny_loaded.model.set_attn_implementation(IMPLEMENTATION)
    try:
        with pytest.raises(RuntimeError, match="only inside"), torch.inference_mode():
            tiny_loaded.model(input_ids=ids.unsqueeze(0))
    finally:
        tiny_loaded.model.set_attn_implementation(previous)


def _build_own_attention_folder(folder, architecture: str):
    """A tiny random Bloom or Falcon: attention code of their own, which never calls the AttentionInterface."""
    import transformers

    from conftest import build_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(folder)
    ids = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.eos_token_id, initializer_range=0.2)
    if architecture == "bloom":
        config, model = transformers.BloomConfig(hidden_size=32, n_layer=2, n_head=4, **ids), transformers.BloomForCausalLM
    else:
        config = transformers.FalconConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                           new_decoder_architecture=True, num_kv_heads=2, **ids)
        model = transformers.FalconForCausalLM
    torch.manual_seed(4)
    model(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def own_attention_models(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("own-attention")
    return {name: attribution.load_model(str(_build_own_attention_folder(root / name, name)), device="cpu")
            for name in ("bloom", "falcon")}


def test_a_model_with_attention_of_its_own_gives_its_eager_rows_and_rollout(own_attention_models):
    """Bloom and Falcon never call the interface: rows, head means and rollout then come from the model's
    own output_attentions maps, and equal the rows and the rollout of its eager maps."""
    for loaded in own_attention_models.values():
        ids = random_ids(loaded, seed=5)
        full = eager_maps(loaded, ids)  # [layers, heads, seq, seq]
        rows = torch.tensor([0, 7, SEQ - 1])
        torch.testing.assert_close(row_attention(loaded, ids, rows=rows).weights, full[:, :, rows], **TOLERANCE)
        torch.testing.assert_close(row_attention(loaded, ids, rows=rows, head_mean=True).weights,
                                   full[:, :, rows].mean(dim=1, keepdim=True), **TOLERANCE)
        expected = rollout(full.mean(dim=1).double())[-1]
        torch.testing.assert_close(rollout_last_row(row_attention(loaded, ids, keep_inputs=True)), expected,
                                   rtol=1e-6, atol=1e-8)


def test_the_output_attentions_pass_equals_the_recorded_rows(model_folder, other_models):
    """The fallback on models the recorder serves: the same rows and the same rollout row."""
    for loaded in loaded_models(model_folder, other_models):
        ids = random_ids(loaded, seed=6)
        rows = torch.tensor([2, SEQ - 1])
        recorded = row_attention(loaded, ids, rows=rows, keep_inputs=True)
        fallback = rows_module._output_attentions_rows(loaded, ids, rows, keep_inputs=True, head_mean=False)
        torch.testing.assert_close(fallback.weights, recorded.weights, **TOLERANCE)
        torch.testing.assert_close(rollout_last_row(fallback), rollout_last_row(recorded), rtol=1e-6, atol=1e-8)


def test_the_page_defaults_run_on_a_model_with_attention_of_its_own(own_attention_models):
    """Every method, the answer map and the trust panel on Bloom and Falcon; attention is the seed's mean
    over layers and heads of the last row of the eager maps."""
    for name, loaded in own_attention_models.items():
        analysis = attribution.analyze(loaded, "What is the Capital City of Latvia?", max_new_tokens=4,
                                       methods=list(attribution.METHODS), n_steps="auto", baseline="mean",
                                       hold_context=True, aggregation="sum", all_targets=True, trust=True)
        ids = torch.as_tensor(analysis.input_ids)
        expected = eager_maps(loaded, ids)[:, :, -1].mean(dim=(0, 1))
        torch.testing.assert_close(torch.from_numpy(analysis.methods["attention"].scores).float(), expected,
                                   **TOLERANCE)
        assert set(analysis.answer_map) >= {"gradient", "attention"}, name
        assert analysis.trust is not None, name


def test_an_output_attentions_pass_too_large_for_memory_is_refused(own_attention_models, monkeypatch):
    loaded = own_attention_models["bloom"]
    monkeypatch.setattr(rows_module, "available_memory_bytes", lambda device: 1024)
    with pytest.raises(ValueError, match="holds every layer's full map.*leave attention and attention_rollout out"):
        row_attention(loaded, random_ids(loaded))
