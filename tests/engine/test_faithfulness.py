"""Faithfulness: every removal against independent forwards, the held context never removed, and the
bootstrap intervals the trust panel compares against."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attribution import faithfulness as faithfulness_module
from attribution.bootstrap import mean_interval
from attribution.faithfulness import (
    REMOVALS,
    SCALES,
    Faithfulness,
    faithfulness,
    removal_counts,
    removed_log_probabilities,
)
from attribution.passes import AttributionRequest
from attribution.results import MethodScores
from conftest import SEED_PROMPT

TARGET = 5


def seed_ids(loaded) -> torch.Tensor:
    return loaded.tokenizer(SEED_PROMPT, return_tensors="pt")["input_ids"][0]


def independent_log_probability(loaded, ids: torch.Tensor, removed: np.ndarray, removal: str) -> float:
    """One plain forward of the whole sequence (no cached prefix, no batching) with `removed` taken out.
    "soft" is checked with every dimension dropped (SOFT_KEEP = 0): the zero embedding."""
    removed = torch.from_numpy(removed)
    table = loaded.model.get_input_embeddings()
    with torch.no_grad():
        if removal == "attention_mask":
            logits = loaded.model(input_ids=ids[None], attention_mask=(~removed).long()[None]).logits
        elif removal == "pad_token":
            logits = loaded.model(input_ids=torch.where(removed, loaded.tokenizer.pad_token_id, ids)[None]).logits
        else:
            embeddings = table(ids[None]).clone()
            embeddings[0, removed] = table.weight.mean(dim=0) if removal == "mean_embedding" else 0.0
            logits = loaded.model(inputs_embeds=embeddings).logits
    return float(torch.log_softmax(logits[0, -1].double(), -1)[TARGET])


@pytest.mark.parametrize("scale", list(SCALES))
@pytest.mark.parametrize("removal", list(REMOVALS))
def test_aopc_equals_independent_forwards(tiny_loaded, removal, scale, monkeypatch):
    monkeypatch.setattr(faithfulness_module, "SOFT_KEEP", 0.0)  # "soft" then removes every dimension
    ids = seed_ids(tiny_loaded)
    n = ids.numel()
    content = np.ones(n, dtype=bool)
    content[[0, 3]] = False  # a held token after content ones: the cached prefix stops before position 1
    scores = np.arange(n, dtype=np.float64)  # ranks the last tokens first
    request = AttributionRequest(input_ids=ids, target_id=TARGET, internal_batch_size=3)
    report, ks = faithfulness(tiny_loaded, request, {"ordered": MethodScores("ordered", scores)}, content,
                              removal=removal, scale=scale, n_random=2)
    assert ks == removal_counts(int(content.sum()))

    def probability(removed):  # the explained value on `scale`
        value = independent_log_probability(tiny_loaded, ids, removed, removal)
        return math.exp(value) if scale == "probability" else value

    full = probability(np.zeros(n, dtype=bool))
    order = [index for index in range(n - 1, -1, -1) if content[index]]
    comprehensiveness, sufficiency = [], []
    for k in ks:
        top = np.isin(np.arange(n), order[:k])
        comprehensiveness.append(full - probability(top))
        sufficiency.append(full - probability(content & ~top))
    item = report["ordered"]
    assert item.removal == removal and item.scale == scale
    torch.testing.assert_close(item.comprehensiveness, float(np.mean(comprehensiveness)), rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(item.sufficiency, float(np.mean(sufficiency)), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("removal", ["attention_mask", "pad_token", "mean_embedding"])
def test_repeated_rows_run_once_and_give_each_row_its_own_removal(tiny_loaded, monkeypatch, removal):
    ids = seed_ids(tiny_loaded)
    rng = np.random.default_rng(3)
    distinct = rng.random((4, ids.numel())) < 0.3
    distinct[:, 0] = False
    hidden = distinct[[0, 1, 0, 2, 3, 1, 0]]  # [7, seq]: rows 0, 1 repeated
    seen = []
    inner = faithfulness_module._removed_log_probabilities
    monkeypatch.setattr(faithfulness_module, "_removed_log_probabilities",
                        lambda loaded, request, rows, how: seen.append(len(rows)) or inner(loaded, request, rows, how))
    values = removed_log_probabilities(tiny_loaded, AttributionRequest(ids, TARGET), hidden, removal)
    assert seen == [len(np.unique(hidden, axis=0))]
    expected = [independent_log_probability(tiny_loaded, ids, row, removal) for row in hidden]
    torch.testing.assert_close(values, np.array(expected), rtol=1e-4, atol=1e-5)


def test_soft_removal_that_keeps_every_dimension_changes_nothing(tiny_loaded, monkeypatch):
    monkeypatch.setattr(faithfulness_module, "SOFT_KEEP", 1.0)
    ids = seed_ids(tiny_loaded)
    hidden = np.zeros((3, ids.numel()), dtype=bool)
    hidden[1, 2:5] = hidden[2, 1:] = True
    values = removed_log_probabilities(tiny_loaded, AttributionRequest(ids, TARGET), hidden, "soft")
    expected = independent_log_probability(tiny_loaded, ids, np.zeros(ids.numel(), dtype=bool), "attention_mask")
    torch.testing.assert_close(values, np.full(3, expected), rtol=1e-5, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    held_pattern=st.lists(st.booleans(), min_size=12, max_size=12),
    removal=st.sampled_from(list(REMOVALS)),
    seed=st.integers(0, 2**16),
)
def test_held_positions_are_never_removed(tiny_loaded, held_pattern, removal, seed):
    """Whatever is held (the first position always is), no row removes it; each comprehensiveness row
    removes exactly k content tokens and each sufficiency row keeps exactly k."""
    ids = torch.arange(12)  # no forward runs: any ids will do
    held = np.array(held_pattern, dtype=bool)
    held[0] = True
    content = ~held
    recorded = []

    def record(loaded, request, hidden, removal=removal):
        recorded.append(np.asarray(hidden, dtype=bool).copy())
        return np.zeros(len(hidden))  # no forward: only which positions would be removed is checked

    scores = np.random.default_rng(seed).normal(size=12)
    methods = {"a": MethodScores("a", scores), "b": MethodScores("b", -scores)}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(faithfulness_module, "removed_log_probabilities", record)
        report, ks = faithfulness(tiny_loaded, AttributionRequest(ids, TARGET), methods, content, removal=removal,
                                  n_random=3)
    if not content.any():
        assert report == {} and ks == () and not recorded
        return
    (hidden,) = recorded
    assert not (hidden[:, held]).any()
    assert not hidden[0].any()  # the full input
    n_content = int(content.sum())
    removed_counts = hidden[1:].sum(axis=1).reshape(len(methods) + 3, len(ks), 2)
    np.testing.assert_array_equal(removed_counts[:, :, 0], np.broadcast_to(ks, removed_counts.shape[:2]))
    np.testing.assert_array_equal(removed_counts[:, :, 1], n_content - np.broadcast_to(ks, removed_counts.shape[:2]))
    assert set(report) == set(methods)


def test_faithfulness_refuses_bad_settings(tiny_loaded):
    ids = seed_ids(tiny_loaded)
    content = np.ones(ids.numel(), dtype=bool)
    methods = {"a": MethodScores("a", np.arange(ids.numel(), dtype=float))}
    with pytest.raises(ValueError, match="valid choices: attention_mask, pad_token, mean_embedding, soft"):
        faithfulness(tiny_loaded, AttributionRequest(ids, TARGET), methods, content, removal="delete")
    with pytest.raises(ValueError, match="valid choices: log_probability, probability"):
        faithfulness(tiny_loaded, AttributionRequest(ids, TARGET), methods, content, scale="logit")
    with pytest.raises(ValueError, match="n_random"):
        faithfulness(tiny_loaded, AttributionRequest(ids, TARGET), methods, content, n_random=1)
    with pytest.raises(ValueError, match="removal flags"):
        removed_log_probabilities(tiny_loaded, AttributionRequest(ids, TARGET), np.zeros((1, 2), dtype=bool))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=60))
def test_bootstrap_interval_contains_the_mean(values):
    interval = mean_interval(values)
    assert interval.n == len(values)
    torch.testing.assert_close(interval.mean, float(np.mean(values)))
    spread = 1e-9 * max(1.0, max(abs(value) for value in values))  # float rounding of equal values
    assert interval.low - spread <= interval.mean <= interval.high + spread
    assert min(values) - spread <= interval.low and interval.high <= max(values) + spread


def test_bootstrap_interval_shrinks_with_more_samples():
    """The width falls like 1/√n: 16× the samples, about a quarter of the width."""
    rng = np.random.default_rng(1)
    widths = {}
    for n in (25, 400):
        interval = mean_interval(rng.normal(size=n))
        widths[n] = interval.high - interval.low
        standard_error = 1 / math.sqrt(n)
        # Two-sided: close to the normal interval's 2·1.96·σ/√n for a unit normal.
        assert 0.6 * 3.92 * standard_error <= widths[n] <= 1.4 * 3.92 * standard_error
    assert 2 <= widths[25] / widths[400] <= 8


def test_faithfulness_decides_against_the_random_interval():
    base = dict(random_comprehensiveness=0.2, random_sufficiency=0.3, random_comprehensiveness_interval=(0.15, 0.25),
                random_sufficiency_interval=(0.25, 0.35), random_orders=16)
    inside = Faithfulness(comprehensiveness=0.24, sufficiency=0.26, **base)
    assert not inside.beats_random and inside.evidence == "none"
    above = Faithfulness(comprehensiveness=0.26, sufficiency=0.26, **base)
    assert above.comprehensiveness_beats_random and not above.beats_random and above.evidence == "weak"
    both = Faithfulness(comprehensiveness=0.26, sufficiency=0.24, **base)
    assert both.beats_random and both.evidence == "clear"
    record = both.to_dict()
    # The original keys keep their names and float values; everything else was added beside them.
    assert {key: record[key] for key in ("comprehensiveness", "sufficiency", "random_comprehensiveness",
                                         "random_sufficiency")} == {"comprehensiveness": 0.26, "sufficiency": 0.24,
                                                                    "random_comprehensiveness": 0.2,
                                                                    "random_sufficiency": 0.3}
    assert record["random_comprehensiveness_interval"] == [0.15, 0.25]
    assert record["beats_random"] is True and record["removal"] in REMOVALS


def test_random_reference_lies_in_its_interval(tiny_loaded):
    ids = seed_ids(tiny_loaded)
    content = np.ones(ids.numel(), dtype=bool)
    content[0] = False
    methods = {"a": MethodScores("a", np.arange(ids.numel(), dtype=float))}
    report, _ = faithfulness(tiny_loaded, AttributionRequest(ids, TARGET), methods, content, n_random=12)
    item = report["a"]
    assert item.random_orders == 12 and 0 <= item.comprehensiveness_vs_random <= 1
    low, high = item.random_comprehensiveness_interval
    assert low <= item.random_comprehensiveness <= high
    low, high = item.random_sufficiency_interval
    assert low <= item.random_sufficiency <= high


def test_the_first_random_orders_of_a_larger_draw_are_a_smaller_draw(tiny_loaded):
    """scripts/measure_random_orders.py judges fewer orders by reading the first ones of a larger draw: that
    must be what the panel computes with that many orders (same orders, same reports)."""
    ids = seed_ids(tiny_loaded)
    content = np.ones(ids.numel(), dtype=bool)
    content[0] = False
    request = AttributionRequest(ids, TARGET)
    methods = {"a": MethodScores("a", np.arange(ids.numel(), dtype=float)),
               "b": MethodScores("b", -np.arange(ids.numel(), dtype=float))}
    orders = [faithfulness_module.content_order(result.scores, content) for result in methods.values()]
    larger = faithfulness_module.aopc(tiny_loaded, request, orders + faithfulness_module.random_orders(content, 10),
                                      content)
    for n_random in (3, 6):
        report, _ = faithfulness(tiny_loaded, request, methods, content, n_random=n_random)
        read = faithfulness_module.judged(larger, list(methods), n_random, removal=report["a"].removal,
                                          scale=report["a"].scale)
        for name in methods:
            for field in ("comprehensiveness", "sufficiency", "random_comprehensiveness", "random_sufficiency",
                          "comprehensiveness_vs_random", "sufficiency_vs_random"):
                torch.testing.assert_close(getattr(read[name], field), getattr(report[name], field),
                                           rtol=1e-6, atol=1e-6)
            assert read[name].random_orders == report[name].random_orders == n_random
            assert read[name].evidence == report[name].evidence


@settings(max_examples=40, deadline=None)
@given(value=st.floats(-5, 5), chance=st.lists(st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0]), min_size=1, max_size=20))
def test_share_of_random_orders_beaten_counts_ties_half(value, chance):
    chance = np.array(chance)
    higher = faithfulness_module.share_beaten(value, chance, higher_is_better=True)
    lower = faithfulness_module.share_beaten(value, chance, higher_is_better=False)
    wins = sum(1.0 if other < value else 0.5 if other == value else 0.0 for other in chance)
    torch.testing.assert_close(higher, wins / len(chance))
    torch.testing.assert_close(higher + lower, 1.0)  # beating on one side is losing on the other


@pytest.mark.parametrize("removal", ["attention_mask", "pad_token", "mean_embedding"])
def test_the_cached_prefix_changes_no_value(tiny_loaded, removal, monkeypatch):
    """Rows continued from the shared prefix's keys and values equal rows run in full (the path taken
    for models whose cache cannot be expanded to a batch)."""
    ids = seed_ids(tiny_loaded)
    hidden = np.zeros((4, ids.numel()), dtype=bool)
    hidden[1, 3] = hidden[2, 4:] = hidden[3, [3, 5]] = True  # positions 0-2 are never removed: a prefix
    request = AttributionRequest(ids, TARGET, internal_batch_size=2)
    cached = removed_log_probabilities(tiny_loaded, request, hidden, removal)
    monkeypatch.setattr(faithfulness_module, "_prefix_cache", lambda *arguments: None)
    full = removed_log_probabilities(tiny_loaded, request, hidden, removal)
    torch.testing.assert_close(full, cached, rtol=1e-5, atol=1e-5)
