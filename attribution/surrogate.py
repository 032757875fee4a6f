"""A sparse linear surrogate of a score over ablation masks (torch-free): the lasso that ContextCite fits,
and its fit on held-out ablations (the linear datamodeling score, LDS).

`lasso` minimises scikit-learn's `Lasso(alpha, fit_intercept=True)` objective,

    (1 / (2·n)) · ‖y − b − X·w‖² + alpha · ‖w‖₁,

by cyclic coordinate descent on centred data (the intercept is not penalised). `fit` standardises the
mask columns first, as ContextCite's `LassoRegression` does (`StandardScaler` then `Lasso(alpha=0.01)`),
so the penalty treats every group alike whatever its empirical keep rate, and returns the weights on the
masks' own 0/1 scale: weight j is the change in the score the surrogate predicts when group j is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ranks import spearman

#: The lasso penalty on standardised masks: ContextCite's default (`LassoRegression(lasso_alpha=0.01)`).
DEFAULT_ALPHA = 0.01
#: Held-out folds for the LDS: each ablation is predicted by a surrogate fitted without it.
DEFAULT_FOLDS = 4


def soft_threshold(value: float, threshold: float) -> float:
    return float(np.sign(value) * max(abs(value) - threshold, 0.0))


def lasso(
    features: np.ndarray, targets: np.ndarray, alpha: float, *, max_iter: int = 10_000, tol: float = 1e-12
) -> tuple[np.ndarray, float]:
    """(weights [p], intercept) minimising (1/(2n))‖y − b − Xw‖² + alpha‖w‖₁ for X [n, p], y [n].

    Coordinate descent: with the residual r kept up to date, each coordinate's exact minimiser is
    w_j = S(x_jᵀ(r + x_j·w_j) / n, alpha) / (x_jᵀx_j / n), S the soft threshold. Sweeps stop when no
    weight moved by more than `tol` times the largest weight (or the targets' scale); a constant column
    gets weight 0 (it cannot be told from the intercept).
    """
    features = np.asarray(features, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    if features.ndim != 2 or targets.shape != (features.shape[0],):
        raise ValueError(f"lasso needs features [n, p] and targets [n], got {features.shape} and {targets.shape}")
    if alpha < 0:
        raise ValueError(f"lasso alpha must be 0 or more, got {alpha}")
    n, p = features.shape
    feature_mean, target_mean = features.mean(axis=0), targets.mean()
    centred = features - feature_mean  # [n, p]
    residual = targets - target_mean  # [n]: y − Xw with w = 0
    squares = (centred**2).sum(axis=0) / n  # [p]
    weights = np.zeros(p)
    scale = max(float(np.abs(residual).max(initial=0.0)), 1e-300)
    for _sweep in range(max_iter):
        largest_step = 0.0
        for j in range(p):
            if squares[j] <= 1e-300:
                continue
            old = weights[j]
            correlation = centred[:, j] @ residual / n + squares[j] * old
            new = soft_threshold(correlation, alpha) / squares[j]
            if new != old:
                residual -= centred[:, j] * (new - old)
                weights[j] = new
                largest_step = max(largest_step, abs(new - old))
        if largest_step <= tol * max(float(np.abs(weights).max(initial=0.0)), scale):
            break
    return weights, float(target_mean - feature_mean @ weights)


@dataclass(frozen=True)
class SurrogateFit:
    """score ≈ intercept + masks @ weights, fitted on every ablation; `heldout_predictions` [n] are each
    ablation's prediction by the surrogate fitted on the other folds, and `heldout_lds` their Spearman
    correlation with the actual scores (None when undefined: a constant prediction or score)."""

    weights: np.ndarray  # [groups]
    intercept: float
    heldout_lds: float | None
    heldout_predictions: np.ndarray  # [n]

    def predict(self, masks: np.ndarray) -> np.ndarray:
        """[rows, groups] 0/1 → [rows] predicted scores."""
        return self.intercept + np.asarray(masks, dtype=np.float64) @ self.weights


def _standardised_lasso(masks: np.ndarray, scores: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """The lasso on standardised columns (population std; a constant column keeps scale 1, as
    StandardScaler does), mapped back to the masks' own scale."""
    mean, scale = masks.mean(axis=0), masks.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    coefficients, intercept = lasso((masks - mean) / scale, scores, alpha)
    weights = coefficients / scale
    return weights, float(intercept - (mean / scale) @ coefficients)


def fit(masks: np.ndarray, scores: np.ndarray, alpha: float = DEFAULT_ALPHA, folds: int = DEFAULT_FOLDS) -> SurrogateFit:
    """The surrogate of `scores` [n] over `masks` [n, groups] (1 = the group was kept), and its LDS on
    held-out ablations: the rows split into `folds` contiguous folds (the masks are drawn at random, so
    contiguous folds are random ones), each predicted by the lasso fitted on the others."""
    masks = np.asarray(masks, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if masks.ndim != 2 or scores.shape != (masks.shape[0],):
        raise ValueError(f"surrogate needs masks [n, groups] and scores [n], got {masks.shape} and {scores.shape}")
    n = masks.shape[0]
    if not 2 <= folds <= n:
        raise ValueError(f"folds must be from 2 to the {n} ablations, got {folds}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("ablation scores contain NaN or infinite values; the surrogate cannot be fitted")
    weights, intercept = _standardised_lasso(masks, scores, alpha)
    predictions = np.empty(n)
    for held_out in np.array_split(np.arange(n), folds):
        training = np.setdiff1d(np.arange(n), held_out)
        fold_weights, fold_intercept = _standardised_lasso(masks[training], scores[training], alpha)
        predictions[held_out] = fold_intercept + masks[held_out] @ fold_weights
    return SurrogateFit(weights=weights, intercept=intercept, heldout_lds=spearman(predictions, scores),
                        heldout_predictions=predictions)
