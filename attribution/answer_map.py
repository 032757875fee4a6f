"""The answer map: attributions for every generated token at once.

Sources are the prompt tokens plus the generated tokens but the last; generated token t is predicted
at source position n_prompt − 1 + t. Because the model is causal, row t's score only depends on the
sources up to that position: later sources get exactly 0, and a batch of rows runs only as far as its
last target needs (so 20 targets cost about what 20 separate runs of their own lengths would).

How each method's rows are built is its catalog entry's `answer_map`: a batched builder here (or in the
method's own file), or True for any method, which then runs once per generated token.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch

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


def _gradient_pass(loaded: LoadedModel, job: AnswerMapRequest) -> torch.Tensor:
    """One forward of the whole answer (the model is causal: it gives every target's score at its own
    position), then one backward per target on that graph: [T, S, d_model]."""
    positions, target_ids, score = job.positions, job.target_ids, job.request.settings.score
    n_targets = int(target_ids.numel())
    kept, column = torch.unique(positions.cpu(), return_inverse=True)
    embeddings = embed(loaded, job.source_ids[: int(positions.max()) + 1]).requires_grad_(True)  # [1, L, d_model]
    gradients = torch.zeros((n_targets, job.source_ids.numel(), embeddings.shape[-1]),
                            dtype=at_least_fp32(embeddings).dtype, device=embeddings.device)  # [T, S, d_model]
    checkpoint = use_checkpointing(loaded, embeddings.shape[1])  # long answers: layers recomputed per backward
    # Batched vector–Jacobian products (one backward for a chunk of targets, vmapped over one-hot
    # cotangents): SmolLM2 chat, 12 targets, one thread, loaded machine: 4.5–7.6 s against 6.5–11.5 s one
    # backward at a time, equal gradients. Not with checkpointed layers (their recomputation runs per
    # backward), and chunks sized like batch rows, since each cotangent keeps a backward's activations.
    chunk = 1 if checkpoint else choose_batch_size(loaded, embeddings.shape[1], n_targets)
    with torch.enable_grad(), checkpointed_layers(loaded, checkpoint):
        logits = logits_at_positions(loaded, embeddings, kept)[0, column]  # [T, vocab]
        scores = score_rows(logits, target_ids, None, score)  # [T]
        for first in range(0, n_targets, chunk):
            check_cancelled()
            last = min(first + chunk, n_targets)
            retain = last < n_targets
            if last - first == 1:
                (gradient,) = torch.autograd.grad(scores[first], embeddings, retain_graph=retain)
                gradient = gradient.unsqueeze(0)  # [1, 1, L, d_model]
            else:
                picks = torch.eye(n_targets, dtype=scores.dtype, device=scores.device)[first:last]  # [c, T]
                (gradient,) = torch.autograd.grad(scores, embeddings, grad_outputs=picks, retain_graph=retain,
                                                  is_grads_batched=True)  # [c, 1, L, d_model]
            for t in range(first, last):
                end = int(positions[t]) + 1
                gradients[t, :end] = at_least_fp32(gradient[t - first, 0, :end])
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
