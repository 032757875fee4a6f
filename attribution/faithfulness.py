"""Faithfulness: ERASER comprehensiveness and sufficiency (DeYoung et al. 2020) as AOPC, for each
method's token order against random orders of the same tokens, with bootstrap intervals.

Only content tokens are ever removed: the held context (the first position, special and chat-template
tokens) stays as it is in every row, so hiding the attention sink cannot pass for a method's insight.
How a token is removed is a choice (`REMOVALS`); `scripts/measure_removal.py` measures which one
tells methods from random orders on a real model (README, "The trust panel on a real model").
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

from .bootstrap import mean_interval
from .reports import (  # noqa: F401 (re-exported: attribution.faithfulness's API)
    CONTRASTIVE_SCALE, DEFAULT_REMOVAL, DEFAULT_SCALE, MEASURED, RANDOM_ORDERS, REMOVALS, SCALES, Faithfulness,
    validate_removal, validate_scale,
)
from .cancel import check as check_cancelled
from .kept_positions import kept_positions_log_probabilities, runs_kept_positions_only
from .models import LoadedModel
from .passes import AttributionRequest, choose_batch_size, embed, explained_log_probability, logits_to_keep
from .results import MethodScores

SOFT_KEEP = 0.5  # "soft": the probability that an embedding dimension of a removed token survives


def removal_counts(n_content: int) -> tuple[int, ...]:
    """k ∈ {1, 2, ⌈20%⌉, ⌈50%⌉} of the content tokens, clipped to what exists, duplicates dropped."""
    counts = [1, 2, math.ceil(0.2 * n_content), math.ceil(0.5 * n_content)]
    return tuple(sorted({min(max(k, 1), n_content) for k in counts})) if n_content else ()


def _removed_inputs(
    loaded: LoadedModel, input_ids: torch.Tensor, hidden: torch.Tensor, removal: str, start: int,
    survives: torch.Tensor | None,
) -> dict[str, torch.Tensor]:
    """Model inputs for positions start.. of each row of `hidden` [rows, seq] (True = removed);
    `survives` [rows, seq − start, d_model] bool: the dimensions "soft" keeps."""
    rows = hidden.shape[0]
    ids = input_ids.unsqueeze(0).expand(rows, -1)
    if removal == "attention_mask":
        # The mask covers the cached prefix too: it is all ones there (nothing before `start` is hidden).
        return {"input_ids": ids[:, start:], "attention_mask": (~hidden).long()}
    if removal == "pad_token":
        pad = int(loaded.tokenizer.pad_token_id)  # load_model makes it EOS where the tokenizer has none
        return {"input_ids": torch.where(hidden, torch.full_like(ids, pad), ids)[:, start:]}
    embeddings = embed(loaded, input_ids)[0, start:].expand(rows, -1, -1)  # [rows, suffix, d_model]
    removed = hidden[:, start:].unsqueeze(-1)
    if removal == "mean_embedding":
        with torch.no_grad():
            mean = loaded.model.get_input_embeddings().weight.mean(dim=0)
        return {"inputs_embeds": torch.where(removed, mean.to(embeddings.dtype), embeddings)}
    return {"inputs_embeds": torch.where(removed & ~survives.to(embeddings.device), 0.0, embeddings)}


def _prefix_cache(loaded: LoadedModel, input_ids: torch.Tensor, start: int):
    """Keys and values of positions [0, start), or None when there are none or the model's cache
    cannot be expanded to a batch (then every row runs in full)."""
    if not start:
        return None
    cache = getattr(loaded.model(input_ids=input_ids[None, :start], use_cache=True), "cache", None)
    return cache if hasattr(cache, "batch_repeat_interleave") else None


def removed_log_probabilities(
    loaded: LoadedModel, request: AttributionRequest, hidden: np.ndarray, removal: str = DEFAULT_REMOVAL
) -> np.ndarray:
    """For each row of `hidden` [rows, seq] bool (True = removed), the target's log-probability at the
    last position (log p(target) − log p(foil) when contrastive), or a span's summed log-probability,
    float64 [rows].

    Positions before the first one any row removes are the same in every row (in a chat prompt the
    whole system prompt): they run once, and each batch continues from their keys and values.
    """
    removal = validate_removal(removal)
    hidden = np.asarray(hidden, dtype=bool)
    if removal != "soft" and hidden.ndim == 2 and len(hidden) > 1:
        # Orders often remove the same tokens (random orders' and the methods' first token at k = 1, 2):
        # each distinct row runs once (SmolLM2 chat, the answer's content token, 4 methods: 161 rows, 131 and
        # 129 distinct on two prompts).
        # "soft" draws its kept dimensions per row, so its equal rows are not the same removal.
        distinct, row_of = np.unique(hidden, axis=0, return_inverse=True)
        if len(distinct) < len(hidden):
            return _removed_log_probabilities(loaded, request, distinct, removal)[row_of.reshape(-1)]
    return _removed_log_probabilities(loaded, request, hidden, removal)


def _removed_log_probabilities(
    loaded: LoadedModel, request: AttributionRequest, hidden: np.ndarray, removal: str
) -> np.ndarray:
    input_ids = request.input_ids
    hidden = torch.as_tensor(hidden).to(input_ids.device)
    rows, n_tokens = hidden.shape
    if n_tokens != input_ids.numel():
        raise ValueError(f"{n_tokens} removal flags per row for {input_ids.numel()} input tokens")
    removed_anywhere = torch.nonzero(hidden.any(dim=0)).flatten()
    # The cached prefix stops before the first explained position: its logits are computed by the rows.
    first_explained = int(request.explained_positions.min())
    start = min(int(removed_anywhere[0]) if removed_anywhere.numel() else n_tokens, first_explained)
    batch_size = request.internal_batch_size or choose_batch_size(loaded, n_tokens, rows, backward=False)
    if removal == "attention_mask" and runs_kept_positions_only(loaded, request, hidden):
        values = kept_positions_log_probabilities(loaded, request, hidden, batch_size)
        if values is not None:
            return values.numpy()
    with torch.inference_mode():
        prefix = _prefix_cache(loaded, input_ids, start)
    start = 0 if prefix is None else start
    survives = None
    if removal == "soft":  # one seeded draw for all rows: the same rows give the same numbers at any batch size
        shape = (rows, n_tokens - start, loaded.model.get_input_embeddings().weight.shape[1])
        survives = torch.rand(shape, generator=torch.Generator().manual_seed(0)) < SOFT_KEEP
    values = []
    with torch.inference_mode():
        for first in range(0, rows, batch_size):
            check_cancelled()
            part = hidden[first : first + batch_size]
            kept_dimensions = None if survives is None else survives[first : first + part.shape[0]]
            inputs = _removed_inputs(loaded, input_ids, part, removal, start, kept_dimensions)
            past = None
            if prefix is not None:
                past = copy.deepcopy(prefix)  # the forward appends to the cache it is given
                past.batch_repeat_interleave(part.shape[0])
            output = loaded.model(**inputs, cache=past, use_cache=past is not None,
                                  logits_to_keep=logits_to_keep(request, start))
            scores = explained_log_probability(output.logits, request)
            values.append(scores.double().cpu())
    return torch.cat(values).numpy()


@dataclass(frozen=True)
class Aopc:
    """AOPC of each order (rows of `orders`): comprehensiveness (drop when its top-k are removed,
    higher is better) and sufficiency (drop when only its top-k are kept, lower is better)."""

    ks: tuple[int, ...]
    full: float  # the explained value with nothing removed
    comprehensiveness: np.ndarray  # [orders]
    sufficiency: np.ndarray  # [orders]
    log_values: np.ndarray  # [1 + orders·ks·2]: each row's log-probability (difference), row 0 the full input


def aopc(
    loaded: LoadedModel, request: AttributionRequest, orders: list[list[int]], content: np.ndarray,
    removal: str = DEFAULT_REMOVAL, scale: str = DEFAULT_SCALE, members: np.ndarray | None = None,
) -> Aopc:
    """ERASER scores of token orders (content positions, most important first) in one batched pass.
    The explained value is the target's log-probability or probability (`scale`), and always
    log p(target) − log p(foil) when contrastive (a difference of two tokens' probabilities is often
    tiny at both ends)."""
    scale = validate_scale(scale)
    content = np.asarray(content, dtype=bool)
    ks = removal_counts(int(content.sum()))
    rows = [np.zeros(len(content), dtype=bool)]  # row 0: the full input
    for order in orders:
        if sorted(order) != sorted(np.flatnonzero(content).tolist()):
            raise ValueError("each order must rank exactly the content positions")
        for k in ks:
            removed = np.zeros(len(content), dtype=bool)
            removed[order[:k]] = True
            rows += [removed, content & ~removed]  # comprehensiveness row, sufficiency row
    removed_rows = np.stack(rows)  # [rows, positions]
    if members is not None:  # positions are groups: remove every token of each removed group
        removed_rows = removed_rows[:, np.asarray(members)]  # [rows, seq]
    log_values = removed_log_probabilities(loaded, request, removed_rows, removal)
    values = np.exp(log_values) if scale == "probability" and request.foil_id is None else log_values
    drops = values[0] - values[1:].reshape(len(orders), len(ks), 2)  # [orders, ks, (removed, kept)]
    area = drops.mean(axis=1) if ks else np.zeros((len(orders), 2))
    return Aopc(ks, float(values[0]), area[:, 0], area[:, 1], log_values)


def content_order(scores: np.ndarray, content: np.ndarray) -> list[int]:
    """Content positions by score, largest first (ties keep the earlier position first)."""
    return [int(index) for index in np.argsort(-np.asarray(scores), kind="stable") if content[index]]


def random_orders(content: np.ndarray, count: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [[int(index) for index in rng.permutation(np.flatnonzero(content))] for _ in range(count)]


def _interval(values: np.ndarray) -> tuple[float, float]:
    interval = mean_interval(values)
    return (interval.low, interval.high)


def share_beaten(value: float, chance: np.ndarray, higher_is_better: bool) -> float:
    """The share of random orders' values that `value` beats, ties counting half (0.5 = chance)."""
    better = chance < value if higher_is_better else chance > value
    return float(np.mean(better + 0.5 * (chance == value)))


def faithfulness(
    loaded: LoadedModel, request: AttributionRequest, methods: Mapping[str, MethodScores], content: np.ndarray,
    *, removal: str = DEFAULT_REMOVAL, scale: str = DEFAULT_SCALE, n_random: int = RANDOM_ORDERS,
    members: np.ndarray | None = None,
) -> tuple[dict[str, Faithfulness], tuple[int, ...]]:
    """ERASER scores for every method and `n_random` random orders in one batched pass; only content
    positions are ever removed. `members` [seq] (the group of each token): the scores and `content` are per
    group, and a removed group's tokens are all removed (faithfulness per word, sentence or segment)."""
    removal, scale = validate_removal(removal), validate_scale(scale)
    if isinstance(n_random, bool) or not isinstance(n_random, int) or n_random < 2:
        raise ValueError(f"n_random must be a whole number ≥ 2 (an interval needs two orders), got {n_random!r}")
    content = np.asarray(content, dtype=bool)
    if not content.any():
        return {}, ()
    orders = {name: content_order(result.scores, content) for name, result in methods.items()}
    scores = aopc(loaded, request, [*orders.values(), *random_orders(content, n_random)], content, removal, scale,
                  members)
    report = judged(scores, list(orders), n_random, removal=removal,
                    scale=scale if request.foil_id is None else CONTRASTIVE_SCALE)
    return report, scores.ks


def judged(scores: Aopc, names: list[str], n_random: int, *, removal: str, scale: str) -> dict[str, Faithfulness]:
    """Each named order (the first rows of `scores`, in order) against the `n_random` random orders that follow
    them: the methods' `Faithfulness`, whose properties decide whether each beats random."""
    n_methods = len(names)
    chance_comprehensiveness = scores.comprehensiveness[n_methods: n_methods + n_random]
    chance_sufficiency = scores.sufficiency[n_methods: n_methods + n_random]
    reference = dict(
        random_comprehensiveness=float(chance_comprehensiveness.mean()),
        random_sufficiency=float(chance_sufficiency.mean()),
        random_comprehensiveness_interval=_interval(chance_comprehensiveness),
        random_sufficiency_interval=_interval(chance_sufficiency),
        removal=removal, random_orders=n_random, scale=scale,
    )
    return {
        name: Faithfulness(
            comprehensiveness=float(scores.comprehensiveness[index]), sufficiency=float(scores.sufficiency[index]),
            comprehensiveness_vs_random=share_beaten(scores.comprehensiveness[index], chance_comprehensiveness, True),
            sufficiency_vs_random=share_beaten(scores.sufficiency[index], chance_sufficiency, False),
            **reference,
        )
        for index, name in enumerate(names)
    }
