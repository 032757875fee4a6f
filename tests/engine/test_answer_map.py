"""The answer map: each row equals a separate single-target run on the prompt + earlier tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import attribution
from conftest import SEED_PROMPT

MAP_METHODS = ["gradient", "input_x_gradient", "integrated_gradients", "attention"]


@pytest.fixture(scope="module")
def mapped(tiny_loaded):
    return attribution.analyze(
        tiny_loaded, SEED_PROMPT, methods=MAP_METHODS, max_new_tokens=4, n_steps=16,
        baseline="pad_keep_special", aggregation="sum", all_targets=True,
    )


def test_shapes_and_labels(mapped):
    n_generated = mapped.generated_ids.size
    assert set(mapped.answer_map) == set(MAP_METHODS)
    for table in mapped.answer_map.values():
        assert table.matrix.shape == (n_generated, mapped.n_tokens + n_generated - 1)
        assert table.sources[: mapped.n_tokens] == mapped.input_tokens
        assert table.n_prompt == mapped.n_tokens


@pytest.mark.parametrize("k", [1, 2, 4])
def test_row_k_equals_a_single_target_run(tiny_loaded, mapped, k):
    single = attribution.analyze(
        tiny_loaded, SEED_PROMPT, methods=MAP_METHODS, max_new_tokens=4, n_steps=16,
        baseline="pad_keep_special", aggregation="sum", target=k,
    )
    n_sources = single.n_tokens
    for name in MAP_METHODS:
        row = mapped.answer_map[name].matrix[k - 1]
        torch.testing.assert_close(
            torch.from_numpy(row[:n_sources].copy()), torch.from_numpy(single.methods[name].scores.copy()),
            rtol=1e-4, atol=1e-6,
        )
        # A causal model cannot be moved by tokens after the target's input.
        np.testing.assert_array_equal(row[n_sources:], np.zeros(row.size - n_sources))


def test_answer_map_needs_generated_tokens(tiny_loaded):
    with pytest.raises(ValueError, match="max_new_tokens to 1 or more"):
        attribution.analyze(tiny_loaded, SEED_PROMPT, methods=["gradient"], max_new_tokens=0, all_targets=True)


def test_json_answer_map(mapped):
    exported = mapped.to_dict()["answer_map"]["gradient"]
    assert set(exported) == {"targets", "sources", "matrix"}
    assert len(exported["matrix"]) == len(exported["targets"])


def test_batches_that_straddle_targets_give_the_same_map(tiny_loaded, mapped, monkeypatch):
    """Batches stop at their last target's position; 5 rows per batch mixes targets and steps."""
    monkeypatch.setenv("ATTRIBUTION_BATCH_SIZE", "5")
    small = attribution.analyze(
        tiny_loaded, SEED_PROMPT, methods=MAP_METHODS, max_new_tokens=4, n_steps=16,
        baseline="pad_keep_special", aggregation="sum", all_targets=True,
    )
    for name in MAP_METHODS:
        torch.testing.assert_close(torch.from_numpy(small.answer_map[name].matrix.copy()),
                                   torch.from_numpy(mapped.answer_map[name].matrix.copy()), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("chunk", [None, "1", "3"])
def test_gradient_map_without_integrated_gradients_equals_the_full_map(tiny_loaded, mapped, monkeypatch, chunk):
    """Without IG the gradients come from their own pass, batched vector–Jacobian products over chunks of
    targets (one at a time, 3 + 1, or all 4): the numbers of IG's per-target gradients."""
    if chunk is not None:
        monkeypatch.setenv("ATTRIBUTION_BATCH_SIZE", chunk)
    alone = attribution.analyze(tiny_loaded, SEED_PROMPT, methods=["gradient", "input_x_gradient"],
                                max_new_tokens=4, all_targets=True)
    for name in ("gradient", "input_x_gradient"):
        torch.testing.assert_close(torch.from_numpy(alone.answer_map[name].matrix.copy()),
                                   torch.from_numpy(mapped.answer_map[name].matrix.copy()), rtol=1e-5, atol=1e-7)
