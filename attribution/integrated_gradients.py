"""Integrated Gradients on the input embeddings: baselines, Captum's integration rule, batched steps.

Uses Captum's default rule (Gauss–Legendre nodes and weights) exactly as
`captum.attr.IntegratedGradients` does (formed here without importing Captum), but forms the weighted
sum in fp32, sizes the batch of steps to free memory, and can explain many targets in one pass (the
answer map). `n_steps="auto"` refines a nested rule until IG adds up to a stated accuracy: adaptive
panels by default (`attribution.ig_adaptive`), uniform Romberg on request. The batched pass over the
path points is `attribution.ig_path`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .ig_adaptive import integrate_adaptively
from .ig_path import Integration, Path
from .models import LoadedModel
from .settings import AUTO_FIRST_INTERVALS, BASELINE_LABELS, RECOMMENDED_BASELINE, Settings  # noqa: F401 (re-exported)
from .passes import Prefix, embed, explained_score, shared_prefix  # noqa: F401 (explained_score re-exported)


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
    groups: tuple[torch.Tensor, ...] | None = None,
) -> Integration:
    """IG attributions for T targets at once: target t is the score of target_ids[t] at position
    positions[t] (minus foil_ids[t]'s), from `settings`' baseline, score and steps. `n_steps`: Captum's
    Gauss–Legendre rule with that many points, or "auto" (`integrate_to_accuracy`). `held` [seq] bool:
    positions the baseline keeps at the input. `reuse_prefix`: run the leading held positions once
    (`held_prefix`; False only to check that the reuse changes nothing). `groups`: the terms that add up
    to each explained score (a span's tokens: one score, their sum; `ig_path.path_sums`), T = len(groups)."""
    inputs, baseline = path_endpoints(loaded, input_ids, settings.baseline, held)
    prefix = held_prefix(loaded, inputs, baseline, positions) if reuse_prefix else None
    path = Path(loaded, inputs, baseline, positions, target_ids, foil_ids, settings.score, batch_size, prefix, groups)
    if settings.n_steps == "auto":
        return integrate_adaptively(path, target_error=settings.target_error, max_steps=settings.max_steps)
    alphas, weights = integration_nodes(int(settings.n_steps))
    sums = path.sums(alphas, weights, ends=True)
    return path.integration(sums.weighted, sums, int(settings.n_steps), "gausslegendre")


# The Romberg rule starts from AUTO_FIRST_INTERVALS midpoint intervals and triples them.


def auto_levels(max_steps: int) -> list[int]:
    """The Romberg rule's interval counts 9, 27, 81, ... (one path point each) within `max_steps` points."""
    levels, intervals = [], AUTO_FIRST_INTERVALS
    while intervals <= max_steps:
        levels.append(intervals)
        intervals *= 3
    return levels


#: n_steps="auto"'s rules: adaptive panels (`attribution.ig_adaptive`, the default) or uniform Romberg.
AUTO_RULES = ("adaptive", "romberg")


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
    rule: str = "adaptive",
    groups: tuple[torch.Tensor, ...] | None = None,
) -> Integration:
    """IG refined until every target's relative completeness error is at most `target_error`, or
    until the next refinement would pass `max_steps` path points, by a nested rule (no point is
    evaluated twice): `rule="adaptive"` places points where the integrand changes
    (`ig_adaptive.integrate_adaptively`), `"romberg"` refines uniformly (`romberg_to_accuracy`)."""
    if rule not in AUTO_RULES:
        raise ValueError(f"unknown auto-steps rule {rule!r}; valid choices: {', '.join(AUTO_RULES)}")
    refine = integrate_adaptively if rule == "adaptive" else romberg_to_accuracy
    path = Path(loaded, inputs, baseline, positions, target_ids, foil_ids, score, batch_size, prefix, groups)
    return refine(path, target_error=target_error, max_steps=max_steps)


def romberg_to_accuracy(path: Path, *, target_error: float, max_steps: int) -> Integration:
    """The uniform rule: the midpoint rule on 9, 27, 81, ... intervals (tripling keeps every earlier
    midpoint and adds two per interval), with Richardson extrapolation across levels (Romberg's method;
    for a smooth integrand the midpoint error expands in h², h⁴, ...), until the target or the budget.
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
    first = levels[0]
    midpoints = (torch.arange(first, dtype=torch.float64) + 0.5) / first
    sums = path.sums(midpoints, torch.full_like(midpoints, 1 / first), ends=True)
    table = [sums.weighted]  # the last Romberg row: table[j] is extrapolated j times
    n_points = first
    best = path.integration(table[-1], sums, n_points, "romberg")
    for intervals in levels[1:]:
        if float(best.relative_errors.max()) <= target_error:
            break
        # Each interval of the last level splits in three: its midpoint stays, two new ones come.
        cell = torch.arange(intervals // 3, dtype=torch.float64)
        new_points = torch.cat([(3 * cell + 0.5) / intervals, (3 * cell + 2.5) / intervals])
        new = path.sums(new_points, torch.full_like(new_points, 1 / intervals), ends=False)
        row = [table[0] / 3 + new.weighted]
        for order, previous in enumerate(table, start=1):
            factor = 9.0**order  # h shrinks threefold, so the h^(2·order) term shrinks 9^order-fold
            row.append(row[-1] + (row[-1] - previous) / (factor - 1))
        table = row
        n_points += int(new_points.numel())
        best = path.integration(table[-1], sums, n_points, "romberg")
    return best


__all__ = [
    "AUTO_RULES", "BASELINES", "BASELINE_LABELS", "RECOMMENDED_BASELINE", "Integration", "auto_levels",
    "explained_score", "integrate", "integrate_to_accuracy", "integration_nodes", "pad_baseline_token_id",
    "path_endpoints", "romberg_to_accuracy", "special_token_mask",
]
