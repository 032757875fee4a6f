"""Work shared between the methods of one request, each piece computed at most once and in any method
order: IG's integration (whose input row also yields the plain input gradient), the input gradient,
and the eager attention pass (attention and rollout).

Methods call these accessors instead of running the passes themselves; the request's `SharedWork`
remembers the results, so the order in which the engine runs the methods does not matter.
"""

from __future__ import annotations

import torch

from .integrated_gradients import Integration, integrate
from .models import LoadedModel
from .passes import AttentionMaps, AttributionRequest, at_least_fp32, attention_maps, input_gradient_pass


def integration(loaded: LoadedModel, request: AttributionRequest) -> Integration:
    """IG for the request's one target at the last input position, or its span's summed score (the
    integration's rows also give F(input), F(baseline) and the plain input gradient)."""

    def compute() -> Integration:
        positions, ids = request.explained_positions, request.explained_ids  # [S]: S = 1 unless a span
        foils = None if request.foil_id is None else torch.tensor([request.foil_id])
        return integrate(
            loaded, request.input_ids, request.settings, positions, ids, foils,
            held=request.held, batch_size=request.internal_batch_size,
            groups=None if request.span_ids is None else (torch.arange(ids.numel()),),  # a span: one score
        )

    return request.work.once("integration", compute)


def input_gradients(loaded: LoadedModel, request: AttributionRequest) -> torch.Tensor:
    """d(explained score)/d(input embeddings) [seq, d_model]: from IG's integration when IG is part of
    the request (no pass of its own), else from one forward and backward."""
    def compute() -> torch.Tensor:
        if request.work.with_integration:
            result = integration(loaded, request)
            # IG's input row covers every position unless a held prefix ran once without gradients.
            if result.has_input_gradients:
                return at_least_fp32(result.input_gradients[0])
        return input_gradient_pass(loaded, request)

    return request.work.once("input_gradients", compute)


def shared_attention_maps(loaded: LoadedModel, request: AttributionRequest) -> AttentionMaps:
    """The eager attention pass over the request's input, run once for attention and rollout."""
    return request.work.once("attention_maps", lambda: attention_maps(loaded, request.input_ids))
