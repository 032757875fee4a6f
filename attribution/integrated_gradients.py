"""Integrated Gradients on the input embeddings: baselines, Captum's integration rule, batched steps.

Uses Captum's default rule (Gauss–Legendre nodes and weights) exactly as
`captum.attr.IntegratedGradients` does, but forms the weighted sum in fp32, sizes the batch of steps
to free memory, and can explain many targets in one pass (the answer map).
"""

from __future__ import annotations

from typing import Callable

import torch
from captum.attr._utils.approximation_methods import approximation_parameters

from .models import LoadedModel
from .passes import (
    choose_batch_size,
    embed,
    explained_score,
    logits_at,
    run_in_batches,
    score_rows,
)


def special_token_mask(loaded: LoadedModel, input_ids: torch.Tensor) -> torch.Tensor:
    """[seq] bool: BOS, EOS, pad and other special tokens."""
    special = set(loaded.tokenizer.all_special_ids)
    return torch.tensor([int(token) in special for token in input_ids], device=input_ids.device)


def _zero(loaded: LoadedModel, input_ids: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(inputs)


def _pad(loaded: LoadedModel, input_ids: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    # As the seed: every position, BOS included, becomes the pad token (eos when the tokenizer has none).
    return embed(loaded, torch.full_like(input_ids, loaded.tokenizer.pad_token_id))


def _keep_special(baseline: torch.Tensor, loaded: LoadedModel, input_ids: torch.Tensor, inputs: torch.Tensor):
    # Llama's RMSNorm makes F(α·x) jump as α → 0 and its attention sinks onto BOS: holding the special
    # tokens at their real embeddings keeps the whole path on ordinary inputs, so the integral converges.
    # Those positions then get exactly zero attribution (input − baseline is zero there).
    keep = special_token_mask(loaded, input_ids).view(1, -1, 1)
    return torch.where(keep, inputs, baseline)


def _pad_keep_special(loaded: LoadedModel, input_ids: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    return _keep_special(_pad(loaded, input_ids, inputs), loaded, input_ids, inputs)


def _mean_keep_special(loaded: LoadedModel, input_ids: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        mean = loaded.model.get_input_embeddings().weight.mean(dim=0)  # [d_model]
    return _keep_special(mean.expand_as(inputs).clone(), loaded, input_ids, inputs)


BaselineBuilder = Callable[[LoadedModel, torch.Tensor, torch.Tensor], torch.Tensor]

#: name → builder(loaded, input_ids [seq], input embeddings [1, seq, d_model]) → baseline embeddings.
BASELINES: dict[str, BaselineBuilder] = {
    "zero": _zero,
    "pad": _pad,
    "pad_keep_special": _pad_keep_special,
    "mean_keep_special": _mean_keep_special,
}

BASELINE_LABELS = {
    "zero": "zero embeddings (the seed's default; often does not converge on Llama)",
    "pad": "pad-token embedding at every position (the seed's option; recommended)",
    "pad_keep_special": "pad embedding, BOS/special tokens kept at their own",
    "mean_keep_special": "mean embedding, BOS/special tokens kept at their own",
}

# Chosen by measurement (`python scripts/measure_baselines.py`, README): the lowest worst-case
# completeness error at 50 steps on the demo model and random Llama shapes.
RECOMMENDED_BASELINE = "pad"


def integration_nodes(n_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Captum's default rule: Gauss–Legendre alphas in (0, 1) and their weights, [steps] each."""
    step_sizes_of, alphas_of = approximation_parameters("gausslegendre")
    return (
        torch.tensor(alphas_of(n_steps), dtype=torch.float64),
        torch.tensor(step_sizes_of(n_steps), dtype=torch.float64),
    )


def integrate(
    loaded: LoadedModel,
    input_ids: torch.Tensor,
    baseline_name: str,
    n_steps: int,
    positions: torch.Tensor,
    target_ids: torch.Tensor,
    foil_ids: torch.Tensor | None = None,
    batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """IG attributions for T targets at once: target t is the logit of target_ids[t] at position
    positions[t] (minus foil_ids[t]'s). Rows of one batch are (step, target) pairs.

    Returns attributions [T, seq, d_model] (fp32 or wider), F(input) [T] and F(baseline) [T] (fp64).
    """
    if baseline_name not in BASELINES:
        raise ValueError(f"unknown baseline {baseline_name!r}; valid choices: {', '.join(BASELINES)}")
    inputs = embed(loaded, input_ids)  # [1, seq, d_model]
    baseline = BASELINES[baseline_name](loaded, input_ids, inputs)  # [1, seq, d_model]
    difference = inputs - baseline
    alphas, weights = integration_nodes(n_steps)
    n_targets = int(target_ids.numel())
    accumulate_dtype = torch.promote_types(inputs.dtype, torch.float32)

    # Every (step, target) pair is one row; rows are independent, so the gradient of the summed
    # scores gives each row its own gradient.
    step_of_row = torch.arange(n_steps).repeat_interleave(n_targets)  # [steps·T]
    target_of_row = torch.arange(n_targets).repeat(n_steps)  # [steps·T]
    total_rows = n_steps * n_targets
    batch_size = batch_size or choose_batch_size(loaded, input_ids.numel(), total_rows)
    weighted = torch.zeros((n_targets, *inputs.shape[1:]), dtype=accumulate_dtype, device=inputs.device)

    def accumulate(start: int, stop: int) -> None:
        steps, targets = step_of_row[start:stop], target_of_row[start:stop]
        chunk_alphas = alphas[steps].to(inputs.device, inputs.dtype).view(-1, 1, 1)
        scaled = (baseline + chunk_alphas * difference).requires_grad_(True)  # [rows, seq, d_model]
        with torch.enable_grad():
            logits = logits_at(loaded, scaled, positions[targets])
            score = score_rows(logits, target_ids[targets], None if foil_ids is None else foil_ids[targets])
            (gradients,) = torch.autograd.grad(score.sum(), scaled)
        chunk_weights = weights[steps].to(inputs.device, accumulate_dtype).view(-1, 1, 1)
        weighted.index_add_(0, targets.to(inputs.device), gradients.to(accumulate_dtype) * chunk_weights)

    run_in_batches(loaded, total_rows, batch_size, accumulate, "integrated gradients", "step")
    attributions = weighted * difference.to(accumulate_dtype)  # [T, seq, d_model]

    with torch.inference_mode():
        endpoints = torch.cat([inputs, baseline]).repeat_interleave(n_targets, dim=0)  # [2T, seq, d]
        both = torch.cat([positions, positions])
        logits = logits_at(loaded, endpoints, both)
        foils = None if foil_ids is None else torch.cat([foil_ids, foil_ids])
        values = score_rows(logits, torch.cat([target_ids, target_ids]), foils).double()
    return attributions, values[:n_targets], values[n_targets:]


__all__ = [
    "BASELINES", "BASELINE_LABELS", "RECOMMENDED_BASELINE", "explained_score", "integrate",
    "integration_nodes", "special_token_mask",
]
