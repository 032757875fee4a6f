"""Batch sizing: small models run in one batch; CPU batches are capped and split into equal parts."""

from __future__ import annotations

import math

import pytest

import attribution.budget as budget
import attribution.passes as passes


def test_internal_batch_size_is_not_one_for_small_models(tiny_loaded):
    assert passes.choose_batch_size(tiny_loaded, seq_len=10, rows=50) == 50


@pytest.mark.parametrize("rows", [7, 50, 52, 103])
@pytest.mark.parametrize("budget_rows", [1, 3, 44, 49])
def test_cpu_batches_are_capped_and_as_equal_as_the_count_allows(tiny_loaded, monkeypatch, rows, budget_rows):
    seq_len = 12
    monkeypatch.setattr(budget, "CPU_MIN_ACTIVATION_BYTES", 0)
    weight_bytes = sum(p.numel() * p.element_size() for p in tiny_loaded.model.parameters())
    per_row = budget.row_bytes(tiny_loaded, seq_len, "backward")
    # A share of the weights that buys budget_rows rows (and a half) under the estimate.
    monkeypatch.setattr(budget, "CPU_ACTIVATION_SHARE", (budget_rows + 0.5) * per_row / weight_bytes)
    batch = passes.choose_batch_size(tiny_loaded, seq_len=seq_len, rows=rows)
    cap = min(rows, budget_rows)
    assert batch <= cap  # never above what the budget allows
    assert math.ceil(rows / batch) == math.ceil(rows / cap)  # no more batches than the cap needs
    assert batch == 1 or math.ceil(rows / (batch - 1)) > math.ceil(rows / cap)  # and no larger than needed


def test_the_row_estimate_is_linear_in_length_with_sdpa(tiny_loaded):
    """sdpa keeps no seq × seq map for the backward: doubling the length doubles a row's activations
    (eager attention's seq² term is not charged)."""
    assert tiny_loaded.model.config._attn_implementation == "sdpa"
    embeddings = 2 * 4 * tiny_loaded.model.config.hidden_size  # the fp32 embeddings and their gradient
    one, two = (budget.row_bytes(tiny_loaded, n, "backward") - n * embeddings for n in (1000, 2000))
    assert two == pytest.approx(2 * one)


def test_environment_override(tiny_loaded, monkeypatch):
    monkeypatch.setenv("ATTRIBUTION_BATCH_SIZE", "3")
    assert passes.choose_batch_size(tiny_loaded, seq_len=10, rows=50) == 3
