"""The context-ablation surrogate: the lasso minimises scikit-learn's objective (checked against closed
forms and the optimality conditions), and its held-out fit (LDS) is what it says."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from attribution.ranks import spearman
from attribution.surrogate import DEFAULT_ALPHA, fit, lasso, soft_threshold


def _random_problem(seed: int = 0, n: int = 60, p: int = 6):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, p)) + 0.5 * rng.normal(size=(n, 1))  # correlated columns
    targets = features @ rng.normal(size=p) * 2 + rng.normal(size=n) + 3.0
    return features, targets


def test_without_a_penalty_the_lasso_is_least_squares_with_an_intercept():
    features, targets = _random_problem()
    weights, intercept = lasso(features, targets, 0.0)
    design = np.column_stack([np.ones(len(targets)), features])
    expected = np.linalg.lstsq(design, targets, rcond=None)[0]
    np.testing.assert_allclose(intercept, expected[0], rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(weights, expected[1:], rtol=1e-7, atol=1e-8)


def _factorial(p: int, repeats: int) -> np.ndarray:
    """Every 0/1 mask of p groups, `repeats` times: centred columns orthogonal, each of variance 1/4."""
    return np.array(list(itertools.product([0.0, 1.0], repeat=p)) * repeats)


@pytest.mark.parametrize("alpha", [0.0, 0.05, 0.3, 2.0])
def test_on_an_orthogonal_design_the_lasso_is_the_soft_thresholded_correlation(alpha):
    masks = _factorial(3, 2)
    rng = np.random.default_rng(1)
    scores = masks @ np.array([1.5, -0.4, 0.1]) + rng.normal(scale=0.2, size=len(masks)) - 2.0
    n = len(scores)
    centred = masks - masks.mean(axis=0)
    expected = np.array([soft_threshold(centred[:, j] @ scores / n, alpha) for j in range(3)]) / 0.25
    weights, intercept = lasso(masks, scores, alpha)
    np.testing.assert_allclose(weights, expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(intercept, scores.mean() - masks.mean(axis=0) @ expected, rtol=1e-9, atol=1e-12)
    # fit standardises first (each column's std is 1/2): the same threshold acts on x̃ᵀy/n = 2·xᵀy/n.
    expected_standardised = np.array([soft_threshold(2 * centred[:, j] @ scores / n, alpha) for j in range(3)]) * 2
    np.testing.assert_allclose(fit(masks, scores, alpha).weights, expected_standardised, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.01, 0.1, 0.5])
def test_the_lasso_meets_its_optimality_conditions(alpha):
    features, targets = _random_problem(seed=2)
    weights, intercept = lasso(features, targets, alpha)
    n = len(targets)
    gradient = features.T @ (targets - intercept - features @ weights) / n  # −∂(squared loss)/∂w
    active = weights != 0
    np.testing.assert_allclose(gradient[active], alpha * np.sign(weights[active]), atol=1e-9)
    assert np.all(np.abs(gradient[~active]) <= alpha + 1e-9)
    assert abs((targets - intercept - features @ weights).mean()) < 1e-9  # the intercept is optimal too
    # Any other point has a higher objective.
    def objective(w, b):
        return ((targets - b - features @ w) ** 2).sum() / (2 * n) + alpha * np.abs(w).sum()
    rng = np.random.default_rng(3)
    best = objective(weights, intercept)
    for _ in range(50):
        assert objective(weights + rng.normal(scale=0.01, size=weights.shape), intercept) > best


def test_a_large_penalty_leaves_only_the_intercept():
    features, targets = _random_problem(seed=4)
    centred = features - features.mean(axis=0)
    threshold = np.abs(centred.T @ (targets - targets.mean())).max() / len(targets)
    weights, intercept = lasso(features, targets, threshold * 1.001)
    assert not weights.any() and intercept == pytest.approx(targets.mean())
    assert lasso(features, targets, threshold * 0.9)[0].any()


def test_the_surrogate_recovers_a_linear_score_and_predicts_held_out_ablations():
    rng = np.random.default_rng(5)
    masks = rng.random((64, 5)) < 0.5
    true_weights = np.array([2.0, 0.0, -0.5, 0.0, 0.25])
    scores = -1.0 + masks @ true_weights
    result = fit(masks, scores, alpha=1e-6)
    np.testing.assert_allclose(result.weights, true_weights, atol=1e-4)
    assert result.intercept == pytest.approx(-1.0, abs=1e-4)
    np.testing.assert_allclose(result.predict(masks), scores, atol=1e-4)
    assert result.heldout_lds == pytest.approx(spearman(result.heldout_predictions, scores))
    assert result.heldout_lds > 0.99


def test_held_out_predictions_come_from_surrogates_fitted_without_them():
    rng = np.random.default_rng(6)
    masks = (rng.random((40, 4)) < 0.5).astype(float)
    scores = masks @ np.array([1.0, -1.0, 0.5, 0.0]) + rng.normal(scale=0.5, size=40)
    result = fit(masks, scores, folds=4)
    for held_out in np.array_split(np.arange(40), 4):
        training = np.setdiff1d(np.arange(40), held_out)
        alone = fit(masks[training], scores[training], folds=2)
        np.testing.assert_allclose(result.heldout_predictions[held_out], alone.predict(masks[held_out]), atol=1e-10)
    # Noise the surrogate cannot predict: its held-out fit is poor.
    noise = fit(masks, rng.normal(size=40))
    assert noise.heldout_lds is None or noise.heldout_lds < result.heldout_lds


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="masks"):
        fit(np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match="folds"):
        fit(np.zeros((3, 2)), np.zeros(3), folds=4)
    with pytest.raises(ValueError, match="NaN"):
        fit(np.eye(4), np.array([0.0, np.nan, 1.0, 2.0]), folds=2)
    with pytest.raises(ValueError, match="alpha"):
        lasso(np.eye(3), np.zeros(3), -1.0)
    assert DEFAULT_ALPHA > 0
