"""Integrated Gradients on the input embeddings: baselines, Captum's integration rule, batched steps.

Uses Captum's default rule (Gauss–Legendre nodes and weights) exactly as
`captum.attr.IntegratedGradients` does (formed here without importing Captum), but forms the weighted
sum in fp32, sizes the batch of steps to free memory, and can explain many targets in one pass (the
answer map). `n_steps="auto"` refines a nested rule until IG adds up to a stated accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .cancel import check as check_cancelled
from .budget import checkpointed_layers, use_checkpointing
from .models import LoadedModel
from .settings import AUTO_FIRST_INTERVALS, BASELINE_LABELS, RECOMMENDED_BASELINE, Settings  # noqa: F401 (re-exported)
from .passes import (
    Prefix,
    choose_batch_size,
    embed,
    explained_score,
    logits_at_positions,
    run_in_batches,
    score_rows,
    shared_prefix,
)


def special_token_mask(loaded: LoadedModel, input_ids: torch.Tensor) -> torch.Tensor:
    """[seq] bool: BOS, EOS, pad and other special tokens."""
    special = set(loaded.tokenizer.all_special_ids)
    return torch.tensor([int(token) in special for token in input_ids], device=input_ids.device)


def _zero(loaded: LoadedModel, input_ids: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(inputs)


def pad_baseline_token_id(loaded: LoadedModel) -> int:
    """The token a "pad" baseline repeats: EOS, as the seed notebook sets `pad_token = eos_token`
    unconditionally (the tokenizer's own pad token only when it has no EOS at all)."""
    tokenizer = loaded.tokenizer
    token_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.pad_token_id
    if token_id is None:
        raise ValueError("the pad baseline needs an EOS or pad token, and this tokenizer has neither; use zero or mean")
    return int(token_id)


def _pad(loaded: LoadedModel, input_ids: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    # As the seed: every position, BOS included, becomes the pad token, which the seed sets to EOS.
    return embed(loaded, torch.full_like(input_ids, pad_baseline_token_id(loaded)))


def _keep_special(baseline: torch.Tensor, loaded: LoadedModel, input_ids: torch.Tensor, inputs: torch.Tensor):
    # Llama's RMSNorm makes F(α·x) jump as α → 0 and its attention sinks onto BOS: holding the special
    # tokens at their real embeddings keeps the whole path on ordinary inputs, so the integral converges.
    # Those positions then get exactly zero attribution (input − baseline is zero there).
    keep = special_token_mask(loaded, input_ids).view(1, -1, 1)
    return torch.where(keep, inputs, baseline)


def _pad_keep_special(loaded: LoadedModel, input_ids: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    return _keep_special(_pad(loaded, input_ids, inputs), loaded, input_ids, inputs)


def _mean(loaded: LoadedModel, input_ids: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        mean = loaded.model.get_input_embeddings().weight.mean(dim=0)  # [d_model]
    return mean.to(inputs.dtype).expand_as(inputs).clone()


def _mean_keep_special(loaded: LoadedModel, input_ids: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    return _keep_special(_mean(loaded, input_ids, inputs), loaded, input_ids, inputs)


BaselineBuilder = Callable[[LoadedModel, torch.Tensor, torch.Tensor], torch.Tensor]

#: name → builder(loaded, input_ids [seq], input embeddings [1, seq, d_model]) → baseline embeddings.
BASELINES: dict[str, BaselineBuilder] = {
    "zero": _zero,
    "pad": _pad,
    "mean": _mean,
    "pad_keep_special": _pad_keep_special,
    "mean_keep_special": _mean_keep_special,
}



def integration_nodes(n_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Captum's default rule: Gauss–Legendre alphas in (0, 1) and their weights, [steps] each.

    Formed as `captum.attr._utils.approximation_methods.gauss_legendre_builders` forms them (numpy's
    nodes on [−1, 1] rescaled to [0, 1]); importing Captum's package would also import matplotlib,
    which the engine must not load. A test checks these equal Captum's own.
    """
    nodes, weights = np.polynomial.legendre.leggauss(n_steps)
    return (
        torch.tensor((0.5 * (1 + nodes)).tolist(), dtype=torch.float64),
        torch.tensor((0.5 * weights).tolist(), dtype=torch.float64),
    )


@dataclass(frozen=True)
class Integration:
    """What one batched IG run yields for T targets (tensors on the model's input device)."""

    attributions: torch.Tensor  # [T, seq, d_model], fp32 or wider
    input_values: torch.Tensor  # [T] fp64: F(input)
    baseline_values: torch.Tensor  # [T] fp64: F(baseline)
    input_gradients: torch.Tensor  # [T, seq, d_model]: dF/d(embeddings) at the input itself
    n_points: int = 0  # path points evaluated per target (n_steps for a fixed rule)
    rule: str = "gausslegendre"  # or "romberg" for n_steps="auto"
    # Positions before this one ran once as a shared prefix (`held_prefix`): their attributions are
    # exactly 0 (input = baseline there) but their input gradients were not formed (0 in the tensor).
    prefix_length: int = 0

    @property
    def has_input_gradients(self) -> bool:
        """Whether `input_gradients` covers every position (then the gradient methods reuse it)."""
        return self.prefix_length == 0

    @property
    def relative_errors(self) -> torch.Tensor:
        """[T] |Σ attributions − (F(x) − F(x′))| / |F(x) − F(x′)|."""
        total = self.attributions.double().sum(dim=(1, 2))
        difference = self.input_values - self.baseline_values
        return (total - difference).abs() / difference.abs().clamp_min(1e-12)


@dataclass(frozen=True)
class _PathSums:
    weighted: torch.Tensor  # [T, seq, d_model]: Σ weight · dF/dx at the given path points
    values: torch.Tensor  # [T, 2] fp64: F(input), F(baseline) (zeros unless ends were asked for)
    input_gradients: torch.Tensor  # [T, seq, d_model] (zeros unless ends were asked for, and in the prefix)


def held_prefix(
    loaded: LoadedModel, inputs: torch.Tensor, baseline: torch.Tensor, positions: torch.Tensor
) -> Prefix | None:
    """The leading positions where the baseline equals the input (the held context at the start: the
    first token and a chat template's system prompt), run once for every path row.

    Every row of the path has exactly these embeddings there, whatever α, so their keys and values are
    the same in every row: measured on SmolLM2 with the chat template, 24 of the seed prompt's 38
    tokens. The prefix stops before the first position whose logits are explained.
    """
    same = (inputs[0] == baseline[0]).all(dim=-1)  # [seq]
    leading = int(same.int().cumprod(dim=0).sum())
    return shared_prefix(loaded, inputs, min(leading, int(positions.min())))


def _path_sums(
    loaded: LoadedModel,
    inputs: torch.Tensor,
    baseline: torch.Tensor,
    alphas: torch.Tensor,
    weights: torch.Tensor,
    positions: torch.Tensor,
    target_ids: torch.Tensor,
    foil_ids: torch.Tensor | None,
    score: str,
    *,
    ends: bool,
    batch_size: int | None = None,
    prefix: Prefix | None = None,
) -> _PathSums:
    """One batched pass over the path points baseline + α·(input − baseline) for T targets.

    One row per α plus, with `ends`, the input itself (which gives F(input) and the plain gradient, so
    the gradient methods need no pass of its own) and the baseline (which gives F(baseline)). The model
    is causal, so one forward of a row gives every target's score at once (target t at its position):
    the answer map's T targets share each forward, and only the backward runs per target (on the same
    graph; measured on SmolLM2's chat answer, 8 targets × 16 steps: 9.1 s against 14.8 s with a row of
    its own per target and α). Sources after a target's position cannot change its score, and their
    gradients are exactly zero. With a `prefix` (`held_prefix`), rows start after it and continue from
    its keys and values.
    """
    first = 0 if prefix is None else prefix.length  # the first position the rows run
    n_targets, n_alphas = int(target_ids.numel()), int(alphas.numel())
    device = inputs.device
    accumulate_dtype = torch.promote_types(inputs.dtype, torch.float32)
    # Path points are formed in fp32 (or wider) and then cast to the model's dtype: α and the
    # difference rounded to bf16 would move them by up to 0.4%.
    wide_baseline = baseline.to(accumulate_dtype)
    length = int(positions.max()) + 1  # no later token can matter to any target
    span = slice(first, length)
    difference = inputs.to(accumulate_dtype) - wide_baseline  # [1, seq, d_model]

    n_points = n_alphas + 2 * ends
    input_point, baseline_point = n_alphas, n_alphas + 1
    # α = 0 reproduces the baseline exactly (x + 0·d = x); the input row is taken as is, since
    # baseline + 1·(input − baseline) can differ from the input in the last bit.
    alpha_of_point = torch.cat([alphas.double(), torch.tensor([1.0, 0.0], dtype=torch.float64)])
    checkpoint = use_checkpointing(loaded, length - first, cache_free=prefix is None)
    batch_size = batch_size or choose_batch_size(loaded, length - first, n_points, checkpointed=checkpoint)
    kept_positions, column = torch.unique(positions.cpu(), return_inverse=True)  # targets may share a position
    target_rows = target_ids.to(device)
    foil_rows = None if foil_ids is None else foil_ids.to(device)

    weighted = torch.zeros((n_targets, *inputs.shape[1:]), dtype=accumulate_dtype, device=device)
    input_gradients = torch.zeros_like(weighted)
    values = torch.zeros((n_targets, 2), dtype=torch.float64, device=device)  # F(input), F(baseline)

    def accumulate(start: int, stop: int) -> None:
        points = torch.arange(start, stop)  # [rows]: α index, or input / baseline
        alpha = alpha_of_point[points].to(device, accumulate_dtype).view(-1, 1, 1)
        path = (wide_baseline[:, span] + alpha * difference[:, span]).to(inputs.dtype)  # [rows, length − first, d]
        is_input, is_baseline = points == input_point, points == baseline_point
        on_path = points < n_alphas
        rows = torch.where(is_input.to(device).view(-1, 1, 1), inputs[:, span], path)
        differentiated = ~is_baseline
        rows = rows.requires_grad_(bool(differentiated.any()))
        n_rows = rows.shape[0]
        with torch.enable_grad(), checkpointed_layers(loaded, checkpoint):
            # [rows, T, vocab]: each row's logits at every target's position (the model's own head).
            logits = logits_at_positions(loaded, rows, kept_positions, prefix)[:, column]  # [rows, T, vocab]
            row_scores = torch.stack([
                score_rows(logits[:, t], target_rows[t].repeat(n_rows),
                           None if foil_rows is None else foil_rows[t].repeat(n_rows), score)
                for t in range(n_targets)
            ], dim=1)  # [rows, T]
            differentiate = bool(differentiated.any())
            if differentiate:
                # Exact causality: a target's score never depends on later sources.
                later = torch.arange(first, length, device=device) > positions.to(device).view(-1, 1)  # [T, span]
                step_weights = weights[points[on_path]].to(device, accumulate_dtype).view(-1, 1, 1)
                batch_weighted = torch.zeros((n_targets, length - first, inputs.shape[2]), dtype=accumulate_dtype,
                                             device=device)
                batch_inputs = torch.zeros_like(batch_weighted) if bool(is_input.any()) else None
                kept = differentiated.to(row_scores.device)
                for t in range(n_targets):  # rows are independent: each row's gradient is its own
                    check_cancelled()
                    (gradient,) = torch.autograd.grad(row_scores[kept, t].sum(), rows,
                                                      retain_graph=t < n_targets - 1)
                    gradient = gradient.to(accumulate_dtype).masked_fill(later[t].view(1, -1, 1), 0.0)
                    batch_weighted[t] = (gradient[on_path.to(device)] * step_weights).sum(dim=0)
                    if batch_inputs is not None:
                        batch_inputs[t] = gradient[is_input.to(device)][0]
        at_ends = ~on_path
        end_values = row_scores.detach().double().to(device)[at_ends.to(device)]  # [ends, T]; logits may sit elsewhere
        # Every temporary exists before the first write, and the one write that adds comes last: an
        # out-of-memory error anywhere above leaves nothing that the retry of these rows would add twice.
        values[:, (points[at_ends] - input_point).to(device)] = end_values.T
        if not differentiate:
            return
        if batch_inputs is not None:
            input_gradients[:, span] = batch_inputs
        weighted[:, span] += batch_weighted

    run_in_batches(loaded, n_points, batch_size, accumulate, "integrated gradients", "step")
    return _PathSums(weighted, values, input_gradients)


def path_endpoints(
    loaded: LoadedModel, input_ids: torch.Tensor, baseline_name: str, held: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The input embeddings and the baseline [1, seq, d_model] each; held positions (`held` [seq]
    bool) keep their real embeddings in the baseline, so they get exactly zero attribution."""
    if baseline_name not in BASELINES:
        raise ValueError(f"unknown baseline {baseline_name!r}; valid choices: {', '.join(BASELINES)}")
    inputs = embed(loaded, input_ids)  # [1, seq, d_model]
    baseline = BASELINES[baseline_name](loaded, input_ids, inputs)  # [1, seq, d_model]
    if held is not None:
        baseline = torch.where(held.to(inputs.device).view(1, -1, 1), inputs, baseline)
    return inputs, baseline


def integrate(
    loaded: LoadedModel,
    input_ids: torch.Tensor,
    settings: Settings,
    positions: torch.Tensor,
    target_ids: torch.Tensor,
    foil_ids: torch.Tensor | None = None,
    *,
    held: torch.Tensor | None = None,
    batch_size: int | None = None,
    reuse_prefix: bool = True,
) -> Integration:
    """IG attributions for T targets at once: target t is the score of target_ids[t] at position
    positions[t] (minus foil_ids[t]'s), from `settings`' baseline, score and steps. `n_steps`: Captum's
    Gauss–Legendre rule with that many points, or "auto" (`integrate_to_accuracy`). `held` [seq] bool:
    positions the baseline keeps at the input. `reuse_prefix`: run the leading held positions once
    (`held_prefix`; False only to check that the reuse changes nothing)."""
    inputs, baseline = path_endpoints(loaded, input_ids, settings.baseline, held)
    n_steps, score = settings.n_steps, settings.score
    prefix = held_prefix(loaded, inputs, baseline, positions) if reuse_prefix else None
    if n_steps == "auto":
        return integrate_to_accuracy(
            loaded, inputs, baseline, positions, target_ids, foil_ids, score,
            target_error=settings.target_error, max_steps=settings.max_steps, batch_size=batch_size, prefix=prefix,
        )
    alphas, weights = integration_nodes(int(n_steps))
    sums = _path_sums(
        loaded, inputs, baseline, alphas, weights, positions, target_ids, foil_ids, score,
        ends=True, batch_size=batch_size, prefix=prefix,
    )
    difference = inputs.to(sums.weighted.dtype) - baseline.to(sums.weighted.dtype)
    return Integration(
        attributions=sums.weighted * difference,  # [T, seq, d_model]
        input_values=sums.values[:, 0],
        baseline_values=sums.values[:, 1],
        input_gradients=sums.input_gradients,
        n_points=int(n_steps),
        prefix_length=0 if prefix is None else prefix.length,
    )


# n_steps="auto" starts from AUTO_FIRST_INTERVALS midpoint intervals and triples them.


def auto_levels(max_steps: int) -> list[int]:
    """Interval counts 9, 27, 81, ... (one path point each) that fit in `max_steps` points."""
    levels, intervals = [], AUTO_FIRST_INTERVALS
    while intervals <= max_steps:
        levels.append(intervals)
        intervals *= 3
    return levels


def integrate_to_accuracy(
    loaded: LoadedModel,
    inputs: torch.Tensor,
    baseline: torch.Tensor,
    positions: torch.Tensor,
    target_ids: torch.Tensor,
    foil_ids: torch.Tensor | None,
    score: str,
    *,
    target_error: float,
    max_steps: int,
    batch_size: int | None = None,
    prefix: Prefix | None = None,
) -> Integration:
    """IG refined until every target's relative completeness error is at most `target_error`, or
    until the next refinement would pass `max_steps` path points.

    A nested rule, so no point is evaluated twice: the midpoint rule on 9, 27, 81, ... intervals
    (tripling keeps every earlier midpoint and adds two per interval), with Richardson extrapolation
    across levels (Romberg's method; for a smooth integrand the midpoint error expands in h², h⁴, ...).
    An open rule, like Captum's Gauss–Legendre, never evaluates the end points' gradients: at a zero
    baseline RMSNorm's gradient is 1/sqrt(ε) and overflows. The end points are still run once, for
    F(input), F(baseline) and the plain input gradient.
    """
    levels = auto_levels(max_steps)
    if not levels:
        raise ValueError(
            f"max_steps {max_steps} is below the {AUTO_FIRST_INTERVALS} path points of the first "
            "auto level; allow more steps or give a fixed number of steps"
        )
    accumulate_dtype = torch.promote_types(inputs.dtype, torch.float32)
    difference = inputs.to(accumulate_dtype) - baseline.to(accumulate_dtype)  # [1, seq, d_model]
    first = levels[0]
    midpoints = (torch.arange(first, dtype=torch.float64) + 0.5) / first
    sums = _path_sums(
        loaded, inputs, baseline, midpoints, torch.full_like(midpoints, 1 / first), positions, target_ids,
        foil_ids, score, ends=True, batch_size=batch_size, prefix=prefix,
    )
    table = [sums.weighted]  # the last Romberg row: table[j] is extrapolated j times
    n_points = first

    def result(estimate: torch.Tensor) -> Integration:
        return Integration(
            attributions=estimate * difference, input_values=sums.values[:, 0], baseline_values=sums.values[:, 1],
            input_gradients=sums.input_gradients, n_points=n_points, rule="romberg",
            prefix_length=0 if prefix is None else prefix.length,
        )

    best = result(table[-1])
    for intervals in levels[1:]:
        if float(best.relative_errors.max()) <= target_error:
            break
        # Each interval of the last level splits in three: its midpoint stays, two new ones come.
        cell = torch.arange(intervals // 3, dtype=torch.float64)
        new_points = torch.cat([(3 * cell + 0.5) / intervals, (3 * cell + 2.5) / intervals])
        new = _path_sums(
            loaded, inputs, baseline, new_points, torch.full_like(new_points, 1 / intervals), positions,
            target_ids, foil_ids, score, ends=False, batch_size=batch_size, prefix=prefix,
        )
        row = [table[0] / 3 + new.weighted]
        for order, previous in enumerate(table, start=1):
            factor = 9.0**order  # h shrinks threefold, so the h^(2·order) term shrinks 9^order-fold
            row.append(row[-1] + (row[-1] - previous) / (factor - 1))
        table = row
        n_points += int(new_points.numel())
        best = result(table[-1])
    return best


__all__ = [
    "BASELINES", "BASELINE_LABELS", "RECOMMENDED_BASELINE", "Integration", "auto_levels", "explained_score",
    "integrate", "integrate_to_accuracy", "integration_nodes", "pad_baseline_token_id", "path_endpoints",
    "special_token_mask",
]
