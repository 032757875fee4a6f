"""Attribution methods: one function per method, one signature, registered in `METHODS`.

Every method takes the loaded model and an `AttributionRequest` (the token ids that precede the
target, the target id, settings) and returns a `MethodScores` with one score per input token.
"""

from __future__ import annotations

import importlib
from typing import Callable

import numpy as np
import torch

from .models import LoadedModel
from .passes import AttributionRequest, at_least_fp32, embed, log_probability_scores
from .catalog import CATALOG, METHOD_DESCRIPTIONS, METHOD_LABELS  # noqa: F401 (re-exported)
from .shared import input_gradients, integration, shared_attention, shared_rollout
from .settings import AGGREGATIONS  # noqa: F401 (re-exported)
from .results import AttentionScores, IntegratedGradientsScores, MethodScores, OcclusionScores



def aggregate(attributions: torch.Tensor, aggregation: str) -> np.ndarray:
    """[..., seq, d_model] → [..., seq]: the seed's L2 norm, or the signed sum that keeps completeness."""
    attributions = at_least_fp32(attributions)
    if aggregation == "l2":
        return attributions.norm(dim=-1).cpu().numpy()
    if aggregation == "sum":
        return attributions.sum(dim=-1).cpu().numpy()
    raise ValueError(f"unknown aggregation {aggregation!r}; valid choices: {', '.join(AGGREGATIONS)}")


def gradient(loaded: LoadedModel, request: AttributionRequest) -> MethodScores:
    """L2 norm over d_model of d(target logit)/d(input embeddings), as the seed's method A."""
    return MethodScores(method="gradient", scores=input_gradients(loaded, request).norm(dim=-1).cpu().numpy())


def input_x_gradient(loaded: LoadedModel, request: AttributionRequest) -> MethodScores:
    """Σ over d_model of embedding × gradient: signed, the first-order share of each token."""
    embeddings = at_least_fp32(embed(loaded, request.input_ids)[0])  # [seq, d_model]
    scores = (embeddings * input_gradients(loaded, request)).sum(dim=-1)
    return MethodScores(method="input_x_gradient", scores=scores.cpu().numpy())


def attention(loaded: LoadedModel, request: AttributionRequest) -> AttentionScores:
    """Attention of the last input position, averaged over heads and layers (the seed's method B)."""
    last_rows = shared_attention(loaded, request).last_rows  # [layers, heads, seq]
    return AttentionScores(
        method="attention",
        scores=last_rows.mean(dim=(0, 1)).numpy(),
        per_layer=last_rows.mean(dim=1).numpy(),
        per_head=last_rows.numpy(),
    )


def rollout(head_mean: torch.Tensor) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020) of [layers, seq, seq] head-averaged maps → [seq, seq].

    Each layer's residual connection is modelled as half identity, half attention (rows renormalised),
    and layers compose by matrix product from the first layer up. The method itself forms only the
    last row, without the full maps (`attribution.attention_rows.rollout_last_row`); this is the
    definition that is tested against.
    """
    identity = torch.eye(head_mean.shape[-1], dtype=head_mean.dtype)
    result = identity
    for layer in head_mean:
        mixed = 0.5 * layer + 0.5 * identity
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        result = mixed @ result
    return result


def attention_rollout(loaded: LoadedModel, request: AttributionRequest) -> MethodScores:
    """How much of the last position's representation flows from each token through all layers."""
    return MethodScores(method="attention_rollout", scores=shared_rollout(loaded, request).numpy())


def occlusion(loaded: LoadedModel, request: AttributionRequest) -> OcclusionScores:
    """Leave-one-token-out: drop in the target's log-probability when a token is hidden by the
    attention mask (its own position still runs, so the last token keeps its residual stream); and per
    group of each of the request's groupings, the drop when the whole group is hidden (a group of one
    token reuses that token's row)."""
    n_tokens = request.input_ids.numel()
    hidden: dict[tuple[int, ...], int] = {(index,): index + 1 for index in range(n_tokens)}  # tokens → row
    for grouping in request.groupings.values():
        for group in grouping.groups:
            hidden.setdefault(group.tokens, len(hidden) + 1)
    keep = torch.ones(len(hidden) + 1, n_tokens, dtype=torch.long)  # row 0: nothing hidden
    for tokens, row in hidden.items():
        keep[row, list(tokens)] = 0
    values = log_probability_scores(loaded, request, keep)  # [1 + rows]
    drops = (values[0] - values).numpy()
    return OcclusionScores(
        method="occlusion", scores=drops[1:n_tokens + 1],
        groups={granularity: np.array([drops[hidden[group.tokens]] for group in grouping.groups])
                for granularity, grouping in request.groupings.items()},
    )


def integrated_gradients(loaded: LoadedModel, request: AttributionRequest) -> IntegratedGradientsScores:
    """Integrated Gradients on the input embeddings (the seed's method C), steps batched."""
    result = integration(loaded, request)
    settings = request.settings
    attributions = result.attributions
    input_output, baseline_output = result.input_values, result.baseline_values
    delta = float(attributions[0].double().sum()) - float(input_output[0] - baseline_output[0])
    return IntegratedGradientsScores(
        method="integrated_gradients",
        scores=aggregate(attributions[0], settings.aggregation),
        convergence_delta=delta,
        input_output=float(input_output[0]),
        baseline_output=float(baseline_output[0]),
        n_steps=result.n_points,
        baseline=settings.baseline,
        aggregation=settings.aggregation,
        score=settings.score,
        held=request.held is not None,
        target_error=settings.target_error if settings.n_steps == "auto" else None,
    )


def _resolve(path: str) -> Callable[[LoadedModel, AttributionRequest], MethodScores]:
    """"module:function" inside this package → the function (a new method lives in a file of its own)."""
    module_name, function_name = path.split(":")
    return getattr(importlib.import_module(f"{__package__}.{module_name}"), function_name)


#: The registry the CLI and the UI read: name → method(loaded, request) → MethodScores, in the
#: catalog's order (the catalog holds every other fact about each method).
METHODS: dict[str, Callable[[LoadedModel, AttributionRequest], MethodScores]] = {
    name: _resolve(info.function) for name, info in CATALOG.items()
}
