"""Result objects: frozen, shape-checked, finite; normalisation helpers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from attribution.results import (
    Analysis,
    AttentionScores,
    IntegratedGradientsScores,
    MethodScores,
    Target,
    normalize_max_abs,
    normalize_min_max,
    top_k,
)


def test_method_scores_are_frozen_read_only_copies():
    source = np.array([1.0, 2.0, 3.0])
    result = MethodScores(method="gradient", scores=source)
    source[0] = 99
    assert result.scores[0] == 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.scores = np.zeros(3)
    with pytest.raises(ValueError):
        result.scores[0] = 5.0


@pytest.mark.parametrize("bad", [np.array([1.0, np.nan]), np.array([np.inf, 0.0])])
def test_non_finite_scores_are_refused(bad):
    with pytest.raises(ValueError, match="NaN or infinite"):
        MethodScores(method="gradient", scores=bad)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="1 dimension"):
        MethodScores(method="gradient", scores=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="attention shapes disagree"):
        AttentionScores(method="attention", scores=np.ones(3) / 3, per_layer=np.ones((2, 4)), per_head=np.ones((2, 1, 3)))
    with pytest.raises(ValueError, match="3 scores for 2 input tokens"):
        Analysis(
            model="m", prompt="p", input_tokens=("a", "b"), input_ids=np.array([1, 2]), generated_text="",
            generated_ids=np.array([], dtype=np.int64), target=Target("c", 3, 2),
            methods={"gradient": MethodScores("gradient", np.ones(3))},
        )


def test_integrated_gradients_completeness_error():
    result = IntegratedGradientsScores(
        method="integrated_gradients", scores=np.array([1.0, 2.0]), convergence_delta=-0.5,
        input_output=4.0, baseline_output=0.5, aggregation="sum",
    )
    torch.testing.assert_close(result.output_difference, 3.5)
    torch.testing.assert_close(result.relative_completeness_error, 0.5 / 3.5)
    assert result.to_dict()["relative_completeness_error"] == result.relative_completeness_error


def test_min_max_matches_the_seed_formula_and_max_abs_keeps_sign():
    scores = np.array([2.0, -1.0, 0.5])
    torch.testing.assert_close(
        torch.from_numpy(normalize_min_max(scores)), torch.from_numpy((scores + 1.0) / (3.0 + 1e-10))
    )
    torch.testing.assert_close(torch.from_numpy(normalize_max_abs(scores)), torch.tensor([1.0, -0.5, 0.25], dtype=torch.float64))
    np.testing.assert_array_equal(normalize_max_abs(np.zeros(3)), np.zeros(3))


def test_top_k_orders_largest_first():
    assert top_k(np.array([0.1, 0.9, 0.5, 0.9]), 3) == [1, 3, 2]
