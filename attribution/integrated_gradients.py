"""Integrated Gradients on the input embeddings: baselines, Captum's integration rule, batched steps.

Uses Captum's default rule (Gauss–Legendre nodes and weights) exactly as
`captum.attr.IntegratedGradients` does, but forms the weighted sum in fp32, sizes the batch of steps
to free memory, and can explain many targets in one pass (the answer map).
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class Integration:
    """What one batched IG run yields for T targets (tensors on the model's input device)."""

    attributions: torch.Tensor  # [T, seq, d_model], fp32 or wider
    input_values: torch.Tensor  # [T] fp64: F(input)
    baseline_values: torch.Tensor  # [T] fp64: F(baseline)
    input_gradients: torch.Tensor  # [T, seq, d_model]: dF/d(embeddings) at the input itself


def integrate(
    loaded: LoadedModel,
    input_ids: torch.Tensor,
    baseline_name: str,
    n_steps: int,
    positions: torch.Tensor,
    target_ids: torch.Tensor,
    foil_ids: torch.Tensor | None = None,
    batch_size: int | None = None,
) -> Integration:
    """IG attributions for T targets at once: target t is the logit of target_ids[t] at position
    positions[t] (minus foil_ids[t]'s).

    Each target contributes n_steps + 2 rows: its path points, the input itself (which gives F(input)
    and the plain gradient, so the gradient method needs no pass of its own) and the baseline (which
    gives F(baseline)). A target's rows are consecutive, so a batch can stop at the last position
    its targets need: the model is causal, later tokens cannot change those logits, and their
    gradients are exactly zero.
    """
    if baseline_name not in BASELINES:
        raise ValueError(f"unknown baseline {baseline_name!r}; valid choices: {', '.join(BASELINES)}")
    inputs = embed(loaded, input_ids)  # [1, seq, d_model]
    baseline = BASELINES[baseline_name](loaded, input_ids, inputs)  # [1, seq, d_model]
    alphas, weights = integration_nodes(n_steps)
    n_targets = int(target_ids.numel())
    device = inputs.device
    accumulate_dtype = torch.promote_types(inputs.dtype, torch.float32)
    # Path points are formed in fp32 (or wider) and then cast to the model's dtype: α and the
    # difference rounded to bf16 would move them by up to 0.4%.
    wide_baseline = baseline.to(accumulate_dtype)
    difference = inputs.to(accumulate_dtype) - wide_baseline  # [1, seq, d_model]

    rows_per_target = n_steps + 2
    input_point, baseline_point = n_steps, n_steps + 1
    target_of_row = torch.arange(n_targets).repeat_interleave(rows_per_target)  # [T·(steps + 2)]
    point_of_row = torch.arange(rows_per_target).repeat(n_targets)  # step index, or input / baseline
    # α = 0 reproduces the baseline exactly (x + 0·d = x); the input row is taken as is, since
    # baseline + 1·(input − baseline) can differ from the input in the last bit.
    alpha_of_point = torch.cat([alphas, torch.tensor([1.0, 0.0], dtype=torch.float64)])
    total_rows = n_targets * rows_per_target
    batch_size = batch_size or choose_batch_size(loaded, input_ids.numel(), total_rows)

    weighted = torch.zeros((n_targets, *inputs.shape[1:]), dtype=accumulate_dtype, device=device)
    input_gradients = torch.zeros_like(weighted)
    values = torch.zeros((n_targets, 2), dtype=torch.float64, device=device)  # F(input), F(baseline)

    def accumulate(start: int, stop: int) -> None:
        targets, points = target_of_row[start:stop], point_of_row[start:stop]  # [rows] each, on the CPU
        length = int(positions[targets].max()) + 1  # no later token can matter to these targets
        alpha = alpha_of_point[points].to(device, accumulate_dtype).view(-1, 1, 1)
        path = (wide_baseline[:, :length] + alpha * difference[:, :length]).to(inputs.dtype)  # [rows, length, d]
        is_input, on_path, differentiated = points == input_point, points < input_point, points != baseline_point
        rows = torch.where(is_input.to(device).view(-1, 1, 1), inputs[:, :length], path).requires_grad_(True)
        with torch.enable_grad():
            logits = logits_at(loaded, rows, positions[targets])
            score = score_rows(logits, target_ids[targets], None if foil_ids is None else foil_ids[targets])
            gradients = None
            if bool(differentiated.any()):
                # Rows are independent, so the gradient of the summed scores is each row's own.
                (gradients,) = torch.autograd.grad(score[differentiated.to(score.device)].sum(), rows)
        ends = ~on_path
        end_values = score.detach().double().to(device)[ends.to(device)]  # logits may sit on another GPU
        if gradients is not None:
            gradients = gradients.to(accumulate_dtype)  # [rows, length, d_model], on the inputs' device
            step_weights = weights[points[on_path]].to(device, accumulate_dtype).view(-1, 1, 1)
            weighted_gradients = gradients[on_path.to(device)] * step_weights
            input_rows = gradients[is_input.to(device)]
        # Every temporary exists before the first write, and the one write that adds comes last: an
        # out-of-memory error anywhere above leaves nothing that the retry of these rows would add twice.
        values[targets[ends].to(device), (points[ends] - input_point).to(device)] = end_values
        if gradients is None:
            return
        input_gradients[targets[is_input].to(device), :length] = input_rows
        weighted[:, :length].index_add_(0, targets[on_path].to(device), weighted_gradients)

    run_in_batches(loaded, total_rows, batch_size, accumulate, "integrated gradients", "step")
    return Integration(
        attributions=weighted * difference,  # [T, seq, d_model]
        input_values=values[:, 0],
        baseline_values=values[:, 1],
        input_gradients=input_gradients,
    )


__all__ = [
    "BASELINES", "BASELINE_LABELS", "RECOMMENDED_BASELINE", "Integration", "explained_score", "integrate",
    "integration_nodes", "special_token_mask",
]
