"""Checkpointed decoder layers (attribution/budget.py) change the memory a gradient pass keeps, never its
numbers: every gradient method gives the same scores with and without, on each architecture."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import attribution
from attribution import budget
from attribution.answer_map import compute_answer_map
from attribution.methods import METHODS
from attribution.passes import AttributionRequest, SharedWork
from attribution.settings import Settings
from helpers import build_qwen2_folder

SAME = dict(rtol=1e-6, atol=1e-9)  # the recomputed layers are the same fp32 operations


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory):
    return attribution.load_model(str(build_qwen2_folder(tmp_path_factory.mktemp("ckpt") / "qwen2")), device="cpu")


def attention_calls(loaded, run) -> tuple[object, int]:
    """run()'s result and how often the first layer's attention ran (twice per pass when checkpointed)."""
    calls = []
    handle = loaded.model.model.layers[0].self_attn.register_forward_hook(lambda *args: calls.append(1))
    try:
        return run(), len(calls)
    finally:
        handle.remove()


def with_and_without(loaded, monkeypatch, run):
    results = {}
    for flag in ("0", "1"):
        monkeypatch.setenv("ATTRIBUTION_CHECKPOINT_LAYERS", flag)
        results[flag] = attention_calls(loaded, run)
    return results


def request_for(loaded, settings: Settings, seq: int = 29, seed: int = 0) -> AttributionRequest:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, loaded.model.config.vocab_size, (seq,), generator=generator)
    ids[0] = loaded.tokenizer.bos_token_id
    return AttributionRequest(input_ids=ids, target_id=5, settings=settings, work=SharedWork())


@pytest.mark.parametrize("name", ["gradient", "input_x_gradient"])
def test_input_gradients_are_the_same_checkpointed(model_folder, qwen2, monkeypatch, name):
    for loaded in (attribution.load_model(str(model_folder), device="cpu"), qwen2):
        settings = Settings(methods=(name,))
        results = with_and_without(loaded, monkeypatch,
                                   lambda: METHODS[name](loaded, request_for(loaded, settings)).scores)
        (plain, plain_calls), (checkpointed, checkpointed_calls) = results["0"], results["1"]
        assert (plain_calls, checkpointed_calls) == (1, 2)  # the layer really was recomputed
        np.testing.assert_allclose(checkpointed, plain, **SAME)


@pytest.mark.parametrize("hold_context", [False, True])
def test_integrated_gradients_is_the_same_checkpointed(tiny_loaded, monkeypatch, hold_context):
    """With the held context the first position runs once as a prefix whose cache the rows continue:
    those forwards are not checkpointed (a recomputation would append to the cache twice)."""
    settings = Settings(methods=("integrated_gradients",), n_steps=6, hold_context=hold_context,
                        baseline="pad", aggregation="sum")

    def run():
        request = replace(request_for(tiny_loaded, settings), held=torch.arange(29) < 1 if hold_context else None)
        result = METHODS["integrated_gradients"](tiny_loaded, request)
        return result.scores, result.convergence_delta

    results = with_and_without(tiny_loaded, monkeypatch, run)
    (plain, _), (checkpointed, calls) = results["0"], results["1"]
    np.testing.assert_allclose(checkpointed[0], plain[0], **SAME)
    assert checkpointed[1] == pytest.approx(plain[1], abs=1e-6)
    # Recomputed, unless every row ran on the prefix's cache.
    assert (calls > results["0"][1]) == (not hold_context)


def test_the_answer_map_gradients_are_the_same_checkpointed(tiny_loaded, monkeypatch):
    """One forward, one backward per target on the same graph (retain_graph): recomputed each time."""
    settings = Settings(methods=("gradient",), all_targets=True, answer_map_methods=("gradient", "input_x_gradient"))
    request = request_for(tiny_loaded, settings, seq=17)
    generated = torch.tensor([7, 9, 11, 4])

    def run():
        maps = compute_answer_map(tiny_loaded, request.input_ids, generated, request)
        return {name: result.matrix for name, result in maps.items()}

    results = with_and_without(tiny_loaded, monkeypatch, run)
    (plain, _), (checkpointed, _) = results["0"], results["1"]
    assert set(plain) == {"gradient", "input_x_gradient"}
    for name in plain:
        np.testing.assert_allclose(checkpointed[name], plain[name], **SAME)


def test_layers_are_checkpointed_when_one_row_exceeds_the_budget(tiny_loaded, monkeypatch):
    monkeypatch.delenv("ATTRIBUTION_CHECKPOINT_LAYERS", raising=False)
    row = budget.row_bytes(tiny_loaded, 100, "backward")
    monkeypatch.setattr(budget, "activation_budget", lambda loaded: row * 0.5)
    # Two layers: recomputing one costs more than keeping both, so it is not done even over the budget.
    assert budget.row_bytes(tiny_loaded, 100, "backward", checkpointed=True) >= row
    assert not budget.use_checkpointing(tiny_loaded, 100)
    monkeypatch.setattr(budget, "CHECKPOINTED_LAYER_FACTOR", 0.5)  # as for a deep model: it saves
    row = budget.row_bytes(tiny_loaded, 100, "backward")
    monkeypatch.setattr(budget, "activation_budget", lambda loaded: row * 0.99)
    assert budget.use_checkpointing(tiny_loaded, 100)
    assert not budget.use_checkpointing(tiny_loaded, 100, cache_free=False)
    assert not budget.use_checkpointing(tiny_loaded, 90)
    monkeypatch.setattr(budget, "activation_budget", lambda loaded: row * 1.01)
    assert not budget.use_checkpointing(tiny_loaded, 100)
    monkeypatch.setenv("ATTRIBUTION_CHECKPOINT_LAYERS", "1")
    assert budget.use_checkpointing(tiny_loaded, 10)
