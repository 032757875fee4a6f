"""Work shared between the methods of one request, each piece computed at most once and in any method
order: IG's integration (whose input row also yields the plain input gradient), the input gradient,
and the attention-rows pass (attention and rollout, `attribution.attention_rows`).

Methods call these accessors instead of running the passes themselves; the request's `SharedWork`
remembers the results, so the order in which the engine runs the methods does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .attention_rows import rollout_last_row, row_attention
from .integrated_gradients import Integration, integrate
from .models import LoadedModel
from .passes import AttributionRequest, at_least_fp32, input_gradient_pass


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


@dataclass(frozen=True)
class SharedAttention:
    last_rows: torch.Tensor  # [layers, heads, seq]: what the last position attends to, per head
    rollout: torch.Tensor | None  # [seq] fp64: rollout's last row, when rollout is among the methods


def shared_attention(loaded: LoadedModel, request: AttributionRequest) -> SharedAttention:
    """The attention-rows pass over the request's input, run once for attention and rollout. With
    rollout among the methods the pass keeps the layers' queries and keys just long enough to form
    rollout's row; what is kept afterwards is O(layers × heads × seq)."""
    def compute() -> SharedAttention:
        with_rollout = "attention_rollout" in request.settings.methods
        rows = row_attention(loaded, request.input_ids, keep_inputs=with_rollout)
        return SharedAttention(rows.last_rows, rollout_last_row(rows) if with_rollout else None)

    return request.work.once("attention", compute)


def shared_rollout(loaded: LoadedModel, request: AttributionRequest) -> torch.Tensor:
    """Rollout's last row [seq] (fp64): from the shared pass, or a pass of its own when the request's
    settings do not list rollout (a caller running the method directly)."""
    def compute() -> torch.Tensor:
        if "attention_rollout" in request.settings.methods:
            return shared_attention(loaded, request).rollout
        return rollout_last_row(row_attention(loaded, request.input_ids, keep_inputs=True))

    return request.work.once("rollout", compute)
