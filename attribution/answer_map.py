"""The answer map: attributions for every generated token at once, in batches.

Sources are the prompt tokens plus the generated tokens but the last; generated token t is predicted
at source position n_prompt − 1 + t. Because the model is causal, row t's score only depends on the
sources up to that position: later sources get exactly 0, and a batch of rows runs only as far as its
last target needs (so 20 targets cost about what 20 separate runs of their own lengths would).
"""

from __future__ import annotations

import numpy as np
import torch

from .catalog import ANSWER_MAP_METHODS
from .integrated_gradients import integrate
from .methods import aggregate
from .models import LoadedModel
from .passes import (
    AttributionRequest,
    at_least_fp32,
    attention_maps,
    choose_batch_size,
    embed,
    logits_at,
    run_in_batches,
    score_rows,
)
from .results import AnswerMap
from .targets import display_tokens

# Methods the answer map supports (the catalog's `answer_map`; occlusion and rollout would need one
# pass per target).


def _target_gradients(
    loaded: LoadedModel, source_ids: torch.Tensor, positions: torch.Tensor, target_ids: torch.Tensor, score: str
) -> torch.Tensor:
    """d(logit of target t)/d(source embeddings) for every target: [T, S, d_model], batched rows."""
    embeddings = embed(loaded, source_ids)  # [1, S, d_model]
    n_targets = int(target_ids.numel())
    gradients = torch.zeros((n_targets, *embeddings.shape[1:]), dtype=at_least_fp32(embeddings).dtype,
                            device=embeddings.device)  # [T, S, d_model]

    def differentiate(start: int, stop: int) -> None:
        length = int(positions[start:stop].max()) + 1  # causal: later sources cannot matter (gradient 0)
        rows = embeddings[:, :length].expand(stop - start, -1, -1).clone().requires_grad_(True)
        with torch.enable_grad():
            logits = logits_at(loaded, rows, positions[start:stop])  # [rows, vocab]
            (chunk,) = torch.autograd.grad(score_rows(logits, target_ids[start:stop], None, score).sum(), rows)
        gradients[start:stop, :length] = at_least_fp32(chunk)

    batch_size = choose_batch_size(loaded, source_ids.numel(), n_targets)
    run_in_batches(loaded, n_targets, batch_size, differentiate, "the answer map's gradients", "target")
    return gradients


def compute_answer_map(
    loaded: LoadedModel,
    prompt_ids: torch.Tensor,
    generated_ids: torch.Tensor,
    methods: tuple[str, ...],
    *,
    request: AttributionRequest,
    held: np.ndarray | None = None,
) -> dict[str, AnswerMap]:
    """Target × source matrices for the chosen methods (those in ANSWER_MAP_METHODS), with the
    request's IG settings and score. `held` [n_prompt] bool: prompt positions IG's baseline keeps."""
    n_targets = int(generated_ids.numel())
    if n_targets == 0:
        raise ValueError("the answer map explains generated tokens: set max_new_tokens to 1 or more")
    full_ids = torch.cat([prompt_ids, generated_ids])
    source_ids = full_ids[:-1]  # [S]
    positions = torch.arange(prompt_ids.numel() - 1, source_ids.numel(), device=source_ids.device)  # [T]
    chosen = [name for name in methods if name in ANSWER_MAP_METHODS]
    matrices: dict[str, np.ndarray] = {}

    gradients = None  # [T, S, d_model]
    if "integrated_gradients" in chosen:
        held_sources = None
        if held is not None:  # generated sources are not held
            held_sources = torch.zeros(source_ids.numel(), dtype=torch.bool)
            held_sources[: held.size] = torch.from_numpy(np.asarray(held, dtype=bool))
        integration = integrate(
            loaded, source_ids, request.baseline, request.n_steps, positions, generated_ids,
            score=request.score, held=held_sources, target_error=request.target_error, max_steps=request.max_steps,
        )
        matrices["integrated_gradients"] = aggregate(integration.attributions, request.aggregation)
        gradients = integration.input_gradients  # IG's batches held each target's plain gradient too
    if {"gradient", "input_x_gradient"} & set(chosen):
        if gradients is None:
            gradients = _target_gradients(loaded, source_ids, positions, generated_ids, request.score)
        if "gradient" in chosen:
            matrices["gradient"] = gradients.norm(dim=-1).cpu().numpy()
        if "input_x_gradient" in chosen:
            embeddings = at_least_fp32(embed(loaded, source_ids))  # [1, S, d_model]
            matrices["input_x_gradient"] = (gradients * embeddings).sum(dim=-1).cpu().numpy()
    if "attention" in chosen:
        head_mean = attention_maps(loaded, source_ids).head_mean  # [layers, S, S]
        matrices["attention"] = head_mean.mean(dim=0)[positions.cpu()].numpy()

    sources = display_tokens(loaded, source_ids.tolist())
    targets = display_tokens(loaded, generated_ids.tolist())
    return {name: AnswerMap(method=name, targets=targets, sources=sources, matrix=matrices[name]) for name in chosen}
