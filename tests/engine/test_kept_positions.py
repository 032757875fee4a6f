"""Removal by attention mask with only the kept positions run, each distinct kept prefix once
(`attribution.kept_positions`), gives the values of the masked rows run in full, two-sided, on
architectures with rotary (Llama, Qwen2) and learned (GPT-2) positions and on the real model's chat
template; and it is refused where it would not be exact (a sliding window shorter than the prompt, eager
attention, a model that ignores the tree's mask or positions)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

import attribution
from attribution import faithfulness as faithfulness_module
from attribution import kept_positions
from attribution.faithfulness import removal_counts, removed_log_probabilities
from attribution.integrated_gradients import special_token_mask
from attribution.passes import AttributionRequest
from attribution.prompts import encode_prompt, held_context
from conftest import SEED_PROMPT
from helpers import build_qwen2_folder


def _build_gpt2(folder):
    from transformers import GPT2Config, GPT2LMHeadModel

    from conftest import build_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(folder)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=256,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        initializer_range=0.2)
    torch.manual_seed(1)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def _build_gemma2(folder, window: int):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    from conftest import build_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(folder)
    config = Gemma2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=256, sliding_window=window,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id, initializer_range=0.2)
    torch.manual_seed(2)
    Gemma2ForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_loaded) -> dict:
    root = tmp_path_factory.mktemp("kept")
    return {
        "llama": tiny_loaded,
        "qwen2": attribution.load_model(str(build_qwen2_folder(root / "qwen2", seed=3)), device="cpu"),
        "gpt2": attribution.load_model(str(_build_gpt2(root / "gpt2")), device="cpu"),
    }


def _rows(n: int, seed: int) -> np.ndarray:
    """[rows, n] removal rows as the trust panel makes them, and the hard cases: nothing removed, position 0
    removed (no shared prefix), the explained (last) position removed, everything but the last removed."""
    rng = np.random.default_rng(seed)
    rows = [np.zeros(n, dtype=bool)]
    for k in (1, 2, n // 3, n // 2, n - 1):
        for _ in range(3):
            removed = np.zeros(n, dtype=bool)
            removed[rng.choice(n, size=k, replace=False)] = True
            rows += [removed, ~removed]
    rows.append(np.eye(n, dtype=bool)[0])
    rows.append(np.eye(n, dtype=bool)[n - 1])
    return np.stack(rows)


def _masked(loaded, request, hidden, monkeypatch) -> np.ndarray:
    with monkeypatch.context() as patch:
        patch.setattr(faithfulness_module, "runs_kept_positions_only", lambda *arguments: False)
        return removed_log_probabilities(loaded, request, hidden)


def _spied(loaded, request, hidden, monkeypatch) -> tuple[np.ndarray, list]:
    calls = []
    real = kept_positions.kept_positions_log_probabilities

    def spy(*arguments):
        values = real(*arguments)
        calls.append(values is not None)
        return values

    with monkeypatch.context() as patch:
        patch.setattr(faithfulness_module, "kept_positions_log_probabilities", spy)
        return removed_log_probabilities(loaded, request, hidden), calls


@pytest.mark.parametrize("batch_size", [1, 3, None])
@pytest.mark.parametrize("architecture", ["llama", "qwen2", "gpt2"])
def test_kept_positions_equal_the_masked_rows(models, architecture, batch_size, monkeypatch):
    loaded = models[architecture]
    ids = loaded.tokenizer(SEED_PROMPT, return_tensors="pt")["input_ids"][0]
    hidden = _rows(ids.numel(), seed=batch_size or 0)
    request = AttributionRequest(ids, 5, internal_batch_size=batch_size)
    fast, calls = _spied(loaded, request, hidden, monkeypatch)
    assert calls == [True]  # the shortcut really ran
    masked = _masked(loaded, request, hidden, monkeypatch)
    assert np.isfinite(fast).all() and np.ptp(masked) > 0.1  # rows that differ, all compared
    np.testing.assert_allclose(fast, masked, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_a_span_and_a_contrastive_target_equal_the_masked_rows(models, architecture, monkeypatch):
    loaded = models[architecture]
    ids = loaded.tokenizer(SEED_PROMPT, return_tensors="pt")["input_ids"][0]
    n = ids.numel()
    span = AttributionRequest(ids, int(ids[-1]) + 1, span_ids=torch.tensor([int(ids[-2]), int(ids[-1]) + 1]),
                              span_positions=torch.tensor([n - 2, n - 1]))
    contrastive = AttributionRequest(ids, 5, foil_id=7, internal_batch_size=4)
    hidden = _rows(n, seed=7)
    for request in (span, contrastive):
        fast, calls = _spied(loaded, request, hidden, monkeypatch)
        assert calls == [True]
        np.testing.assert_allclose(fast, _masked(loaded, request, hidden, monkeypatch), rtol=1e-5, atol=1e-5)


def test_a_sliding_window_shorter_than_the_prompt_runs_the_masked_rows(tmp_path, monkeypatch):
    """Dropped tokens would move the window over other tokens: such a model keeps the masked rows."""
    short = attribution.load_model(str(_build_gemma2(tmp_path / "short", window=4)), device="cpu")
    ids = short.tokenizer(SEED_PROMPT, return_tensors="pt")["input_ids"][0]
    hidden = torch.from_numpy(_rows(ids.numel(), seed=1))
    request = AttributionRequest(ids, 5)
    assert not kept_positions.runs_kept_positions_only(short, request, hidden)
    # A window the prompt fits in passes the first check, but its sliding layers cannot be cut back.
    wide = attribution.load_model(str(_build_gemma2(tmp_path / "wide", window=64)), device="cpu")
    assert kept_positions.runs_kept_positions_only(wide, request, hidden)
    assert kept_positions.kept_positions_log_probabilities(wide, request, hidden, 8) is None
    _, calls = _spied(wide, request, hidden.numpy(), monkeypatch)
    assert calls == [False]


def _prefix_nodes(removed: np.ndarray, rows: np.ndarray, start: int, explained: int) -> set:
    """Independently of `Chunk`: every (position, removals from `start` up to it) the rows run."""
    return {(i, removed[row, start: i + 1].tobytes()) for row in rows for i in range(start, removed.shape[1])
            if i >= explained or not removed[row, i]}


@pytest.mark.parametrize("batch_size", [1, 4, 200])
def test_chunks_hold_every_row_once_and_each_distinct_prefix_once(batch_size):
    rng = np.random.default_rng(batch_size)
    n, content = 44, np.arange(24, 43)  # the trust panel's shape on SmolLM2 chat: removals after the template
    rows = []
    for _ in range(20):  # orders' top-k removed (comprehensiveness) and kept (sufficiency)
        order = rng.permutation(content)
        for k in (1, 2, 4, 10):
            removed = np.zeros(n, dtype=bool)
            removed[order[:k]] = True
            kept_only = np.zeros(n, dtype=bool)
            kept_only[np.setdiff1d(content, order[:k])] = True
            rows += [removed, kept_only]
    removed = np.unique(np.stack(rows), axis=0)
    first_removed = removed.argmax(axis=1)
    chunks = kept_positions._chunks(removed, np.arange(len(removed)), first_removed, frozenset([n - 1]), batch_size)
    assert sorted(np.concatenate([chunk.rows for chunk in chunks]).tolist()) == list(range(len(removed)))
    kept_run = 0
    for chunk in chunks:
        assert chunk.rows.size <= batch_size
        assert chunk.start == first_removed[chunk.rows].min()
        expected = _prefix_nodes(removed, chunk.rows, chunk.start, n - 1)
        assert len(chunk.positions) == len(expected)  # every distinct prefix once, no other node
        assert len(chunk.positions) <= kept_positions.NODES_PER_FORWARD or chunk.rows.size == 1
        assert sorted(chunk.positions) == sorted(position for position, _ in expected)
        kept_run += sum(len(_prefix_nodes(removed, [row], first_removed[row], n - 1)) for row in chunk.rows)
    if batch_size > 1:
        assert sum(len(chunk.positions) for chunk in chunks) < kept_run  # shared prefixes ran once


def _forward_that(loaded, change):
    """The model's forward with its keywords changed first, keeping its signature (the shortcut reads it)."""
    forward = loaded.model.forward

    def changed(*arguments, **keywords):
        return forward(*arguments, **change(keywords))

    changed.__signature__ = inspect.signature(forward)
    return changed


@pytest.mark.parametrize("ignored", ["attention_mask", "position_ids"])
def test_a_model_that_ignores_the_trees_mask_or_positions_runs_the_masked_rows(models, ignored, monkeypatch):
    loaded = models["llama"]
    ids = loaded.tokenizer(SEED_PROMPT, return_tensors="pt")["input_ids"][0]
    hidden = _rows(ids.numel(), seed=3)
    request = AttributionRequest(ids, 5)
    masked = _masked(loaded, request, hidden, monkeypatch)

    def drop_custom_masks(keywords):
        mask = keywords.get("attention_mask")
        if ignored == "attention_mask" and mask is not None and mask.dim() == 4:
            keywords["attention_mask"] = None  # plain causal attention over the chunk's nodes
        if ignored == "position_ids" and keywords.get("attention_mask") is not None and keywords["attention_mask"].dim() == 4:
            keywords.pop("position_ids", None)  # positions counted along the chunk's sequence
        return keywords

    monkeypatch.setattr(loaded.model, "forward", _forward_that(loaded, drop_custom_masks))
    assert kept_positions.kept_positions_log_probabilities(loaded, request, torch.from_numpy(hidden), 8) is None
    values, calls = _spied(loaded, request, hidden, monkeypatch)
    assert calls == [False]
    np.testing.assert_allclose(values, masked, rtol=1e-5, atol=1e-5)


def test_eager_attention_runs_the_masked_rows(models, monkeypatch):
    """The tree's mask is boolean, which sdpa reads and eager attention would add to its scores."""
    loaded = models["llama"]
    ids = loaded.tokenizer(SEED_PROMPT, return_tensors="pt")["input_ids"][0]
    monkeypatch.setattr(loaded.model.config, "_attn_implementation", "eager")
    assert kept_positions.kept_positions_log_probabilities(
        loaded, AttributionRequest(ids, 5), torch.from_numpy(_rows(ids.numel(), seed=4)), 8) is None


@pytest.mark.slow
def test_the_real_models_trust_rows_equal_the_masked_rows(smollm2, monkeypatch):
    """SmolLM2 with its chat template: the trust panel's removal rows after the system prompt (content
    positions only, as `faithfulness.aopc` builds them), tree against masked rows."""
    encoded = encode_prompt(smollm2, SEED_PROMPT, chat=True)
    ids = encoded.ids
    special = special_token_mask(smollm2, ids).cpu().numpy()
    content = ~held_context(special, encoded.user_tokens, ids.numel(), True)
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(6):
        order = rng.permutation(np.flatnonzero(content))
        for k in removal_counts(int(content.sum())):
            removed = np.zeros(ids.numel(), dtype=bool)
            removed[order[:k]] = True
            rows += [removed, content & ~removed]
    hidden = np.stack(rows)
    request = AttributionRequest(ids, int(ids[-1]))
    fast, calls = _spied(smollm2, request, hidden, monkeypatch)
    assert calls == [True]
    masked = _masked(smollm2, request, hidden, monkeypatch)
    assert np.ptp(masked) > 1.0
    np.testing.assert_allclose(fast, masked, rtol=1e-4, atol=1e-4)
