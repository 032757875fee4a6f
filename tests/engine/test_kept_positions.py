"""Removal by attention mask with only the kept positions run (`attribution.kept_positions`) gives the
values of the masked rows run in full, two-sided, on architectures with rotary (Llama, Qwen2) and learned
(GPT-2) positions; and it is refused where it would not be exact (a sliding window shorter than the prompt)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import attribution
from attribution import faithfulness as faithfulness_module
from attribution import kept_positions
from attribution.faithfulness import removed_log_probabilities
from attribution.passes import AttributionRequest
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


@pytest.mark.parametrize("batch_size", [1, 4, 50])
def test_batches_hold_every_row_once_and_cost_no_more_than_plain_batches(batch_size):
    rng = np.random.default_rng(batch_size)
    first_removed = rng.integers(0, 40, size=120)
    runs = first_removed + rng.integers(1, 20, size=120)  # a row's last computed column, n − removed
    batches = kept_positions._batches(first_removed, runs, batch_size)
    assert sorted(np.concatenate(batches).tolist()) == list(range(120))
    assert max(len(batch) for batch in batches) <= batch_size

    def cost(groups):
        return sum(kept_positions.FORWARD_COST_IN_POSITIONS
                   + len(group) * (runs[group].max() - first_removed[group].min()) for group in groups)

    order = np.lexsort((first_removed, runs))
    plain = [order[start:start + batch_size] for start in range(0, 120, batch_size)]
    assert cost(batches) <= cost(plain)
