"""The answer map: attributions for every generated token at once.

Sources are the prompt tokens plus the generated tokens but the last; generated token t is predicted
at source position n_prompt − 1 + t. Because the model is causal, row t's score only depends on the
sources up to that position: later sources get exactly 0, and a batch of rows runs only as far as its
last target needs (so 20 targets cost about what 20 separate runs of their own lengths would). The
gradient rows without IG come from the answer's forward in segments of about a dozen targets, each
continuing from the keys and values before it, so each target's backward stops at its segment's end.

How each method's rows are built is its catalog entry's `answer_map`: a batched builder here (or in the
method's own file), or True for any method, which then runs once per generated token.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch
from transformers.cache_utils import DynamicCache, DynamicLayer, DynamicSlidingWindowLayer

from .attention_rows import row_attention
from .cancel import check as check_cancelled
from .catalog import CATALOG
from .integrated_gradients import Integration, integrate
from .budget import checkpointed_layers, use_checkpointing
from .methods import METHODS, aggregate
from .models import LoadedModel
from .passes import (
    AttributionRequest,
    SharedWork,
    at_least_fp32,
    choose_batch_size,
    embed,
    logits_at_positions,
    score_rows,
)
from .results import AnswerMap
from .targets import display_tokens


@dataclass(frozen=True)
class AnswerMapRequest:
    """Every generated token as a target: target t is `target_ids[t]` at source position `positions[t]`."""

    source_ids: torch.Tensor  # [S] prompt + generated tokens but the last
    positions: torch.Tensor  # [T]
    target_ids: torch.Tensor  # [T] the generated tokens
    request: AttributionRequest  # the analysis's request: its settings (and its foil is not used here)
    held: torch.Tensor | None = None  # [S] bool: sources IG's baseline keeps (generated ones never)
    # Passes two builders share (IG's integration also gives every target's plain gradient).
    work: SharedWork = field(default_factory=SharedWork, compare=False, repr=False)


def _integration(loaded: LoadedModel, job: AnswerMapRequest) -> Integration:
    return job.work.once("integration", lambda: integrate(
        loaded, job.source_ids, job.request.settings, job.positions, job.target_ids, held=job.held))


def _target_gradients(loaded: LoadedModel, job: AnswerMapRequest) -> torch.Tensor:
    """d(score of target t)/d(source embeddings) for every target: [T, S, d_model]; read from IG's
    integration when IG is in the map too (its batches held each target's plain gradient)."""
    if "integrated_gradients" in job.request.settings.mapped_methods:
        integration = _integration(loaded, job)
        if integration.has_input_gradients:  # not when a held prefix ran once without gradients
            return integration.input_gradients
    return job.work.once("gradients", lambda: _gradient_pass(loaded, job))


# Targets per segment of the answer's forward (below). SmolLM2 chat, the seed prompt, one thread, quiet
# (`_gradient_pass` timed alone): 20 targets 3.7–4.3 s in one segment, 3.5–3.7 s in 2, 3.8–4.0 s in 4;
# 60 targets 21–24 s in one, 13.5–14.3 s in 4, 13.3 s in 5, 13.7 s in 6, 15.1 s in 8. Each further
# segment adds one more batched backward through the layers, so a dozen targets apiece is the balance.
TARGETS_PER_SEGMENT = 12


def _segments(positions: torch.Tensor) -> list[tuple[int, int]]:
    """Target ranges [first, last) of the answer's segments, about TARGETS_PER_SEGMENT each; one range
    when the positions are not in order (segments follow the sequence)."""
    n_targets = int(positions.numel())
    in_order = bool((positions[1:] > positions[:-1]).all())
    n_segments = max(1, round(n_targets / TARGETS_PER_SEGMENT)) if in_order else 1
    bounds = [round(i * n_targets / n_segments) for i in range(n_segments + 1)]
    return list(zip(bounds, bounds[1:]))


def _continues(cache: object) -> bool:
    """Whether a forward can go on from `cache` with gradients flowing back into it: transformers' own
    key/value layers, which only concatenate. Layers that write in place (static, quantized,
    linear-attention states) could break or bypass the backward, so their models run in one segment."""
    return isinstance(cache, DynamicCache) and all(
        type(layer) in (DynamicLayer, DynamicSlidingWindowLayer) for layer in cache.layers)


def _segment_scores(loaded: LoadedModel, embeddings: torch.Tensor, job: AnswerMapRequest,
                    ranges: list[tuple[int, int]]) -> list[tuple[int, int, torch.Tensor]]:
    """(first, last, scores [last − first]) of each range of targets, from forwards of the answer in
    segments: each segment runs from the end of the one before to its last target's position,
    continuing from their keys and values with the graph kept, so that a target's backward runs through
    its own segment and the earlier ones only, never through the rest of the answer (the model is causal)."""
    positions, target_ids, score = job.positions, job.target_ids, job.request.settings.score
    if len(ranges) == 1:
        kept, column = torch.unique(positions.cpu(), return_inverse=True)
        logits = logits_at_positions(loaded, embeddings, kept)[0, column]  # [T, vocab]
        return [(0, int(positions.numel()), score_rows(logits, target_ids, None, score))]
    scored, cache, start = [], None, 0
    for first, last in ranges:
        end = int(positions[last - 1]) + 1
        output = loaded.model(inputs_embeds=embeddings[:, start:end], cache=cache, use_cache=True,
                              logits_to_keep=positions[first:last].cpu() - start)
        logits = at_least_fp32(output.logits)[0]  # [last − first, vocab]
        scored.append((first, last, score_rows(logits, target_ids[first:last], None, score)))
        cache, start = getattr(output, "cache", None), end
        if last < positions.numel() and not _continues(cache):
            return _segment_scores(loaded, embeddings, job, [(0, int(positions.numel()))])
    return scored


def _gradient_pass(loaded: LoadedModel, job: AnswerMapRequest) -> torch.Tensor:
    """The answer's forward in segments (together they give every target's score at its own position),
    then batched backwards for each segment's targets: [T, S, d_model]."""
    positions = job.positions
    n_targets = int(job.target_ids.numel())
    embeddings = embed(loaded, job.source_ids[: int(positions.max()) + 1]).requires_grad_(True)  # [1, L, d_model]
    gradients = torch.zeros((n_targets, job.source_ids.numel(), embeddings.shape[-1]),
                            dtype=at_least_fp32(embeddings).dtype, device=embeddings.device)  # [T, S, d_model]
    checkpoint = use_checkpointing(loaded, embeddings.shape[1])  # long answers: layers recomputed per backward
    # Checkpointed layers run in one segment: their recomputation would append to the cache again.
    ranges = [(0, n_targets)] if checkpoint else _segments(positions)
    with torch.enable_grad(), checkpointed_layers(loaded, checkpoint):
        for first, last, scores in _segment_scores(loaded, embeddings, job, ranges):
            # Batched vector–Jacobian products (one backward for a chunk of targets, vmapped over one-hot
            # cotangents): SmolLM2 chat, 12 targets, one thread, loaded machine: 4.5–7.6 s against 6.5–11.5 s
            # one backward at a time, equal gradients. Not with checkpointed layers (their recomputation
            # runs per backward), and chunks sized like batch rows, since each cotangent keeps a backward's
            # activations (as far as the segment's last target).
            end = int(positions[last - 1]) + 1
            chunk = 1 if checkpoint else choose_batch_size(loaded, end, last - first)
            for start in range(first, last, chunk):
                check_cancelled()
                stop = min(start + chunk, last)
                retain = stop < n_targets  # later segments' backwards run through this graph again
                if stop - start == 1:
                    (gradient,) = torch.autograd.grad(scores[start - first], embeddings, retain_graph=retain)
                    gradient = gradient.unsqueeze(0)  # [1, 1, L, d_model]
                else:
                    picks = torch.eye(last - first, dtype=scores.dtype, device=scores.device)[
                        start - first: stop - first]  # [c, last − first]
                    (gradient,) = torch.autograd.grad(scores, embeddings, grad_outputs=picks, retain_graph=retain,
                                                      is_grads_batched=True)  # [c, 1, L, d_model]
                for t in range(start, stop):
                    length = int(positions[t]) + 1
                    gradients[t, :length] = at_least_fp32(gradient[t - start, 0, :length])
    return gradients


def integrated_gradients_rows(loaded: LoadedModel, job: AnswerMapRequest) -> np.ndarray:
    return aggregate(_integration(loaded, job).attributions, job.request.settings.aggregation)


def gradient_rows(loaded: LoadedModel, job: AnswerMapRequest) -> np.ndarray:
    return _target_gradients(loaded, job).norm(dim=-1).cpu().numpy()


def input_x_gradient_rows(loaded: LoadedModel, job: AnswerMapRequest) -> np.ndarray:
    embeddings = at_least_fp32(embed(loaded, job.source_ids))  # [1, S, d_model]
    return (_target_gradients(loaded, job) * embeddings).sum(dim=-1).cpu().numpy()


def attention_rows(loaded: LoadedModel, job: AnswerMapRequest) -> np.ndarray:
    # Only the targets' query rows, never the [layers, S, S] maps: [layers, heads, T, S] → [T, S]
    weights = row_attention(loaded, job.source_ids, rows=job.positions.cpu(), head_mean=True).weights
    return weights.mean(dim=(0, 1)).numpy()


def per_target_rows(loaded: LoadedModel, job: AnswerMapRequest, name: str) -> np.ndarray:
    """Any method's rows, one run per generated token on the sources before it (later sources 0)."""
    matrix = np.zeros((job.target_ids.numel(), job.source_ids.numel()))
    for row, (position, target_id) in enumerate(zip(job.positions.tolist(), job.target_ids.tolist())):
        check_cancelled()
        held = None if job.held is None else job.held[: position + 1]
        request = replace(job.request, input_ids=job.source_ids[: position + 1], target_id=int(target_id),
                          foil_id=None, held=held, work=SharedWork(name == "integrated_gradients"),
                          span_ids=None, span_positions=None)  # each generated token alone, span or not
        matrix[row, : position + 1] = METHODS[name](loaded, request).scores
    return matrix


def builder(name: str) -> Callable[[LoadedModel, AnswerMapRequest], np.ndarray]:
    """The method's answer-map builder, from its catalog entry."""
    spec = CATALOG[name].answer_map
    if spec is False:
        raise ValueError(f"{name} has no answer map")
    if spec is True:
        return lambda loaded, job: per_target_rows(loaded, job, name)
    module_name, function_name = spec.split(":")
    return getattr(importlib.import_module(f"{__package__}.{module_name}"), function_name)


def compute_answer_map(
    loaded: LoadedModel,
    prompt_ids: torch.Tensor,
    generated_ids: torch.Tensor,
    request: AttributionRequest,
    *,
    held: np.ndarray | None = None,
) -> dict[str, AnswerMap]:
    """Target × source matrices for the request's methods that have one (catalog `answer_map`), with its
    settings. `held` [n_prompt] bool: prompt positions IG's baseline keeps."""
    n_targets = int(generated_ids.numel())
    if n_targets == 0:
        raise ValueError("the answer map explains generated tokens: set max_new_tokens to 1 or more")
    source_ids = torch.cat([prompt_ids, generated_ids])[:-1]  # [S]
    held_sources = None
    if held is not None:  # generated sources are not held
        held_sources = torch.zeros(source_ids.numel(), dtype=torch.bool)
        held_sources[: held.size] = torch.from_numpy(np.asarray(held, dtype=bool))
    job = AnswerMapRequest(
        source_ids=source_ids,
        positions=torch.arange(prompt_ids.numel() - 1, source_ids.numel(), device=source_ids.device),  # [T]
        target_ids=generated_ids, request=request, held=held_sources,
    )
    chosen = request.settings.mapped_methods
    sources = display_tokens(loaded, source_ids.tolist())
    targets = display_tokens(loaded, generated_ids.tolist())
    return {name: AnswerMap(method=name, targets=targets, sources=sources, matrix=builder(name)(loaded, job))
            for name in chosen}
