"""Context attribution by ablation (ContextCite, Cohen-Wang et al. 2024): which sentences (or segments,
words) the target's log-probability depends on, from a sparse linear surrogate fitted on random ablations.

Each ablation keeps every removable group with probability KEEP_PROBABILITY (seeded: the same prompt
gives the same masks) and drops the other groups' tokens from the input; the held context (the first
position, special and chat-template tokens) and tokens outside every removable group always stay.

Why dropped rather than hidden by the attention mask (as occlusion and faithfulness hide single tokens):
an ablated row is then a real, shorter prompt — the document without those sentences, as ContextCite
re-renders its prompt without them — whose positions run on without the gaps in position ids that
the model never saw in training, and it is cheaper (about half the removable tokens are gone). The
rows are right-padded; a causal model's logits at a row's last real position never see the padding.

What is explained: the target's log-probability (log p(target) − log p(foil) when contrastive), the
catalog's `log_probability`, as occlusion's. ContextCite regresses the logit-probability
log(p / (1 − p)) of the whole response instead; for one token the two differ only where p is near 1,
where the log-probability saturates at 0 (`scripts/measure_documents.py` compares their held-out fit).

Everything before the first removable token is the same in every row (with a chat template, the
system prompt): it runs once (`passes.shared_prefix`) and each batch continues from its keys and values.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .models import LoadedModel
from .passes import AttributionRequest, choose_batch_size, explained_score, logits_at_positions, run_in_batches, \
    shared_prefix
from .results import ContextAblationScores
from .surrogate import fit

#: The chance that an ablation keeps a group (ContextCite's `ablation_keep_prob`).
KEEP_PROBABILITY = 0.5
#: The masks' seed: an analysis is reproducible, and row i of the masks is the same whatever their count.
ABLATION_SEED = 0


def ablation_masks(n_ablations: int, n_groups: int, seed: int = ABLATION_SEED) -> np.ndarray:
    """[n_ablations, n_groups] bool, True = kept, each with probability KEEP_PROBABILITY. The draw fills
    rows in order, so the first k rows of n ablations are the k ablations' masks."""
    return np.random.default_rng(seed).random((n_ablations, n_groups)) < KEEP_PROBABILITY


def default_removable(loaded: LoadedModel, input_ids: torch.Tensor) -> torch.Tensor:
    """[seq] bool for a request that does not say: every token but the first and special ones."""
    special = set(loaded.tokenizer.all_special_ids)
    removable = torch.tensor([int(token) not in special for token in input_ids.cpu()], dtype=torch.bool)
    removable[0] = False
    return removable


def removable_groups(groups: Sequence[Sequence[int]], removable: np.ndarray) -> list[tuple[int, ...]]:
    """The groups every token of which may be removed (a group with a held token stays whole)."""
    removable = np.asarray(removable, dtype=bool)
    return [tuple(int(index) for index in group) for group in groups
            if len(group) and all(removable[int(index)] for index in group)]


def ablated_log_probabilities(
    loaded: LoadedModel, request: AttributionRequest, groups: Sequence[Sequence[int]], masks: np.ndarray,
    *, reuse_prefix: bool = True,
) -> np.ndarray:
    """For each row of `masks` [rows, groups] (True = kept), the target's log-probability (minus the
    foil's) after the input with the removed groups' tokens dropped, float64 [rows]. `reuse_prefix`: run
    the positions before the first removable token once (False only to check that it changes nothing)."""
    input_ids = request.input_ids
    n_tokens = input_ids.numel()
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 2 or masks.shape[1] != len(groups):
        raise ValueError(f"ablation masks {masks.shape} do not match {len(groups)} groups")
    removed = np.zeros((masks.shape[0], n_tokens), dtype=bool)  # [rows, seq]
    for column, group in enumerate(groups):
        removed[:, list(group)] = ~masks[:, [column]]
    # The prefix stops one token before the first removable one, so that every row has a position to read
    # (the last kept one) among those it runs, even with everything removed.
    first = min(min(group) for group in groups) if groups else n_tokens
    prefix_length = max(first - 1, 0)
    embeddings = loaded.model.get_input_embeddings()
    with torch.inference_mode():
        prefix = shared_prefix(loaded, embeddings(input_ids[None, :prefix_length]), prefix_length) \
            if reuse_prefix else None
    start = 0 if prefix is None else prefix.length
    tails = [input_ids[start:][torch.from_numpy(~row[start:]).to(input_ids.device)] for row in removed]
    lengths = np.array([tail.numel() for tail in tails])
    # Rows of like length share a batch: little padding, and few distinct positions whose logits are kept.
    order = np.argsort(lengths, kind="stable")
    batch_size = request.internal_batch_size or choose_batch_size(loaded, int(lengths.max()), len(tails),
                                                                  backward=False)
    values = np.empty(len(tails))

    def compute(begin: int, stop: int) -> None:
        rows = order[begin:stop]
        width = int(lengths[rows].max())
        padded = torch.zeros((rows.size, width), dtype=input_ids.dtype, device=input_ids.device)  # [rows, width]
        for slot, row in enumerate(rows):
            padded[slot, : lengths[row]] = tails[row]
        last = torch.from_numpy(start + lengths[rows] - 1)  # [rows] each row's last real position
        kept, column = torch.unique(last, return_inverse=True)
        logits = logits_at_positions(loaded, embeddings(padded), kept, prefix)  # [rows, positions, vocab]
        picked = logits[torch.arange(rows.size), column.to(logits.device)]  # [rows, vocab]
        scores = explained_score(picked, request.target_id, request.foil_id, "log_probability")
        values[rows] = scores.double().cpu().numpy()

    with torch.inference_mode():
        run_in_batches(loaded, len(tails), batch_size, compute, "context ablation", "ablation")
    return values


def context_ablation_scores(
    loaded: LoadedModel, request: AttributionRequest, groups: Sequence[Sequence[int]], labels: Sequence[str],
    granularity: str, *, reuse_prefix: bool = True,
) -> ContextAblationScores:
    """The method on given `groups` (token positions) with their `labels`: the removable ones are ablated
    `request.settings.n_ablations` times, plus once with nothing and once with everything removed."""
    removable = request.removable if request.removable is not None else default_removable(loaded, request.input_ids)
    removable = np.asarray(removable.cpu().numpy() if isinstance(removable, torch.Tensor) else removable, dtype=bool)
    label_of = {tuple(int(index) for index in group): label for group, label in zip(groups, labels)}
    kept_groups = removable_groups(groups, removable)
    if not kept_groups:
        raise ValueError(
            f"context ablation has nothing to remove: every {granularity} of this prompt is held context "
            "(the first token, special and chat-template tokens) or generated; give a prompt with text of its own")
    masks = ablation_masks(request.settings.n_ablations, len(kept_groups))
    n_groups = len(kept_groups)
    rows = np.vstack([masks, np.ones((1, n_groups), dtype=bool), np.zeros((1, n_groups), dtype=bool)])
    values = ablated_log_probabilities(loaded, request, kept_groups, rows, reuse_prefix=reuse_prefix)
    surrogate = fit(masks, values[:-2])
    scores = np.zeros(request.input_ids.numel())
    for group, weight in zip(kept_groups, surrogate.weights):
        scores[list(group)] = weight
    return ContextAblationScores(
        method="context_ablation", scores=scores, granularity=granularity,
        group_labels=tuple(label_of[group] for group in kept_groups), groups=tuple(kept_groups),
        group_weights=surrogate.weights, intercept=surrogate.intercept, heldout_lds=surrogate.heldout_lds,
        masks=masks, ablation_scores=values[:-2], full_score=float(values[-2]), empty_score=float(values[-1]),
    )


def ablation_granularity(settings: object) -> str:
    """The groups the method removes: sentences when the analysis is shown per token (single tokens are
    occlusion's job, and a surrogate over hundreds of tokens would need far more ablations), else the
    analysis's own granularity."""
    # The analysis's granularity is a Settings field of the granularity work; until it is merged every
    # analysis is per token.
    shown = getattr(settings, "granularity", "token")
    return "sentence" if shown == "token" else shown


def context_ablation(loaded: LoadedModel, request: AttributionRequest) -> ContextAblationScores:
    """Context attribution by ablation over the prompt's sentences (or the analysis's granularity): each
    removable group's weight in a lasso of the target's log-probability over random ablations."""
    from .groups import grouping_for

    granularity = ablation_granularity(request.settings)
    removable = request.removable if request.removable is not None else default_removable(loaded, request.input_ids)
    removable = np.asarray(removable.cpu().numpy(), dtype=bool)
    # Everything that may not be removed is held, so it stays in groups of its own, out of the text's groups.
    grouping = grouping_for(loaded.tokenizer, request.input_ids.tolist(), granularity,
                            getattr(request.settings, "separator", None), held=~removable)
    text = [group for group in grouping.groups if group.kind == "text"]
    return context_ablation_scores(loaded, request, [group.tokens for group in text],
                                   [group.label for group in text], granularity)
