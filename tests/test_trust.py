"""Trust panel: agreement statistics, faithfulness against independent masked forwards, completeness."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import attribution
from attribution.passes import AttributionRequest
from attribution.results import MethodScores
from attribution.trust import agreement, faithfulness, rank_average, removal_counts, spearman
from conftest import SEED_PROMPT


def test_spearman_against_its_definition():
    first = np.array([0.1, 0.4, 0.3, 0.9, 0.2])
    second = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    n = len(first)
    d = rank_average(first) - rank_average(second)
    torch.testing.assert_close(spearman(first, second), 1 - 6 * float((d**2).sum()) / (n * (n**2 - 1)))
    torch.testing.assert_close(spearman(first, -first), -1.0)
    assert spearman(first, np.ones(5)) is None
    np.testing.assert_array_equal(rank_average(np.array([3.0, 1.0, 3.0])), [2.5, 1.0, 2.5])


def test_removal_counts():
    assert removal_counts(8) == (1, 2, 4)
    assert removal_counts(20) == (1, 2, 4, 10)
    assert removal_counts(1) == (1,)


def test_agreement_skips_special_tokens():
    content = np.array([False, True, True, True, True])
    methods = {
        "a": MethodScores("a", np.array([9.0, 1.0, 2.0, 3.0, 4.0])),
        "b": MethodScores("b", np.array([0.0, 1.0, 2.0, 3.0, 4.0])),
        "c": MethodScores("c", np.array([9.0, 4.0, 3.0, 2.0, 1.0])),
    }
    rank_correlation, overlap = agreement(methods, content)
    torch.testing.assert_close(rank_correlation["a|b"], 1.0)
    torch.testing.assert_close(rank_correlation["a|c"], -1.0)
    assert overlap["a|b"] == 1.0 and overlap["a|c"] == pytest.approx(2 / 3)  # {4, 3, 2} ∩ {1, 2, 3}


def test_faithfulness_equals_independent_masked_forwards(tiny_loaded):
    ids = tiny_loaded.tokenizer(SEED_PROMPT, return_tensors="pt")["input_ids"][0]
    request = AttributionRequest(input_ids=ids, target_id=5)
    n = ids.numel()
    content = np.ones(n, dtype=bool)
    content[0] = False
    scores = np.arange(n, dtype=np.float64)  # ranks the last tokens first
    report, ks = faithfulness(tiny_loaded, request, {"ordered": MethodScores("ordered", scores)}, content)

    def probability(mask):
        with torch.no_grad():
            logits = tiny_loaded.model(input_ids=ids[None], attention_mask=torch.tensor(mask)[None]).logits
        return float(torch.softmax(logits[0, -1].double(), -1)[5])

    full = probability([1] * n)
    comprehensiveness, sufficiency = [], []
    for k in ks:
        top = list(range(n - 1, n - 1 - k, -1))
        comprehensiveness.append(full - probability([0 if i in top else 1 for i in range(n)]))
        sufficiency.append(full - probability([1 if i in top or i == 0 else 0 for i in range(n)]))
    torch.testing.assert_close(report["ordered"].comprehensiveness, float(np.mean(comprehensiveness)), rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(report["ordered"].sufficiency, float(np.mean(sufficiency)), rtol=1e-4, atol=1e-7)


def test_trust_panel_is_finite_and_deterministic(tiny_loaded):
    settings = dict(methods=list(attribution.METHODS), max_new_tokens=2, n_steps=8, trust=True)
    first = attribution.analyze(tiny_loaded, SEED_PROMPT, **settings).to_dict()
    second = attribution.analyze(tiny_loaded, SEED_PROMPT, **settings).to_dict()
    assert first["faithfulness"] == second["faithfulness"] and first["agreement"] == second["agreement"]
    assert first["verdict"] == second["verdict"] and first["verdict"].endswith(".")
    for item in first["faithfulness"].values():
        assert all(math.isfinite(value) for value in item.values())
    assert set(first["faithfulness"]) == set(attribution.METHODS)
    completeness = first["completeness"]
    if completeness["relative_error"] > 0.05:
        assert completeness["rerun_n_steps"] == 16
    else:
        assert completeness["rerun_n_steps"] is None
