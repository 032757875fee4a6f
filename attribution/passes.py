"""Model passes shared by the methods: embeddings, the explained score, input gradients, masked
forwards, and sizing batches to free memory.

Work that two methods need (input gradients for gradient and input×gradient — which Integrated
Gradients also yields from its own batches —, the attention-rows pass for attention and rollout,
`attribution.attention_rows`) is computed once per request and kept in the request's `SharedWork`
(see `attribution.shared`).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch

from .cancel import check as check_cancelled
from .groups import Grouping
from .budget import activation_budget, checkpointed_layers, row_bytes, use_checkpointing  # noqa: F401 (re-exported)
from .models import LoadedModel
from .settings import SCORES, Settings  # noqa: F401 (SCORES re-exported)


@dataclass(frozen=True)
class AttributionRequest:
    """What one method call explains: the score of `target_id` right after `input_ids`, with the
    analysis's `Settings` (score, IG's steps, baseline, aggregation, ...) as they were given."""

    input_ids: torch.Tensor  # [seq] on the model's input device, BOS included
    target_id: int
    foil_id: int | None = None  # contrastive: explain score(target) − score(foil)
    settings: Settings = field(default_factory=Settings)
    held: torch.Tensor | None = None  # [seq] bool on the CPU: context IG's baseline keeps at the input
    # [seq] bool on the CPU: what context ablation may remove — the user's typed tokens outside the held
    # context (the engine's, whatever hold_context says); None: every token but the first and special ones.
    removable: torch.Tensor | None = None
    internal_batch_size: int | None = None  # rows per forward; None sizes it to free memory
    # Passes more than one method needs, computed at most once for this request (attribution.shared).
    work: "SharedWork" = field(default_factory=lambda: SharedWork(), compare=False, repr=False)
    # A span target (Settings.target (k, m), continuation): the score is the sum over its S tokens, token i
    # (id span_ids[i]) predicted at input position span_positions[i]; the last is target_id at the last
    # position, the earlier ones end input_ids (teacher-forced). None: the one target at the last position.
    span_ids: torch.Tensor | None = None  # [S] long
    span_positions: torch.Tensor | None = None  # [S] long, increasing

    def __post_init__(self) -> None:
        if (self.span_ids is None) != (self.span_positions is None):
            raise ValueError("a span request needs both its token ids and their positions")
        if self.span_ids is None:
            return
        last = self.input_ids.numel() - 1
        if self.span_ids.shape != self.span_positions.shape or self.span_ids.dim() != 1 or not self.span_ids.numel():
            raise ValueError(f"span ids {tuple(self.span_ids.shape)} and positions {tuple(self.span_positions.shape)} "
                             "must be two lists of the same length, one or more")
        if int(self.span_positions[-1]) != last or int(self.span_ids[-1]) != self.target_id:
            raise ValueError("a span's last token must be the request's target, at the last input position")
        if self.foil_id is not None:
            raise ValueError("a span target cannot have a contrastive foil")

    @property
    def explained_ids(self) -> torch.Tensor:
        """[S] the ids whose scores add up to the explained score (S = 1 without a span)."""
        return torch.tensor([self.target_id]) if self.span_ids is None else self.span_ids.cpu()

    @property
    def explained_positions(self) -> torch.Tensor:
        """[S] the input positions whose logits predict them (the last position without a span)."""
        return torch.tensor([self.input_ids.numel() - 1]) if self.span_positions is None else self.span_positions.cpu()
    # granularity → the input tokens' groups (attribution.groups), for the methods that run on whole
    # groups (occlusion hides each group); empty: tokens only.
    groupings: Mapping[str, Grouping] = field(default_factory=dict, compare=False, repr=False)


class SharedWork:
    """What methods of one request share, each piece computed at most once, in any method order.

    `with_integration`: Integrated Gradients is among the request's methods. Its batches carry the
    input itself as one row, so the input gradient (gradient, input × gradient) is then read from
    IG's integration instead of a pass of its own — whichever method asks first.
    """

    def __init__(self, with_integration: bool = False) -> None:
        self.with_integration = with_integration
        self._done: dict[str, object] = {}

    def once(self, key: str, compute: Callable[[], object]) -> object:
        if key not in self._done:
            self._done[key] = compute()
        return self._done[key]


def at_least_fp32(tensor: torch.Tensor) -> torch.Tensor:
    """Upcast bf16/fp16 to fp32 before sums and norms are formed; fp32 and fp64 stay as they are."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def embed(loaded: LoadedModel, input_ids: torch.Tensor) -> torch.Tensor:
    """Input embeddings [1, seq, d_model], detached: the leaf that gradients are taken against."""
    with torch.no_grad():
        return loaded.model.get_input_embeddings()(input_ids.unsqueeze(0)).detach().clone()


def explained_score(logits: torch.Tensor, target_id: int, foil_id: int | None, score: str = "logit") -> torch.Tensor:
    """[batch, vocab] logits → [batch]: the target's score, minus the foil's when contrastive."""
    rows = logits.shape[0]
    target_ids = torch.full((rows,), int(target_id), dtype=torch.long)
    foil_ids = None if foil_id is None else torch.full((rows,), int(foil_id), dtype=torch.long)
    return score_rows(logits, target_ids, foil_ids, score)


def span_score(logits: torch.Tensor, target_ids: torch.Tensor, foil_ids: torch.Tensor | None,
               score: str = "logit") -> torch.Tensor:
    """[rows, S, vocab] logits at the S positions of one explained score → [rows]: the one function every
    method's score comes from. S = 1: that token's score (minus the foil's). S > 1, a span: the sum of its
    tokens' log-probabilities (log p of the whole span, each token with the earlier ones teacher-forced)
    or logits, and for "probability" p(span), their product."""
    rows, terms = logits.shape[0], logits.shape[1]
    if terms == 1:
        foils = None if foil_ids is None else foil_ids[0].expand(rows)
        return score_rows(logits[:, 0], target_ids[0].expand(rows), foils, score)
    if foil_ids is not None:
        raise ValueError("a span target cannot have a contrastive foil")
    each = "logit" if score == "logit" else "log_probability"
    total = sum(score_rows(logits[:, i], target_ids[i].expand(rows), None, each) for i in range(terms))
    return total.exp() if score == "probability" else total


def request_score(loaded: LoadedModel, request: "AttributionRequest", embeddings: torch.Tensor,
                  score: str | None = None) -> torch.Tensor:
    """The request's explained score [batch] of embeddings [batch, seq, d_model] (its settings' score
    unless `score` is given), from logits at the explained positions only."""
    score = request.settings.score if score is None else score
    if request.span_ids is None:
        return target_logit(loaded, embeddings, request.target_id, request.foil_id, score=score)
    logits = logits_at_positions(loaded, embeddings, request.explained_positions)  # [batch, S, vocab]
    return span_score(logits, request.explained_ids.to(logits.device), None, score)


def target_logit(
    loaded: LoadedModel,
    embeddings: torch.Tensor,
    target_id: int,
    foil_id: int | None = None,
    attention_mask: torch.Tensor | None = None,
    score: str = "logit",
) -> torch.Tensor:
    """The explained score per batch row [batch] at the last position, from the model's own forward.
    Only the last position's logits are computed (`logits_to_keep=1`)."""
    output = loaded.model(
        inputs_embeds=embeddings, attention_mask=attention_mask, logits_to_keep=1, use_cache=False
    )
    return explained_score(output.logits[:, -1, :], target_id, foil_id, score)


def logits_at(
    loaded: LoadedModel, embeddings: torch.Tensor, positions: torch.Tensor, prefix: "Prefix | None" = None
) -> torch.Tensor:
    """Logits [batch, vocab] of row b at position positions[b]: one forward explains many targets."""
    rows = torch.arange(embeddings.shape[0])
    kept, column = torch.unique(positions.cpu(), return_inverse=True)
    return logits_at_positions(loaded, embeddings, kept, prefix)[rows, column]


def logits_at_positions(
    loaded: LoadedModel, embeddings: torch.Tensor, positions: torch.Tensor, prefix: "Prefix | None" = None
) -> torch.Tensor:
    """Logits [batch, P, vocab] of every row at each of `positions` [P] (sorted, distinct).

    The model's own forward computes them (so its head's post-processing — Gemma's softcapping,
    Granite's and Cohere's logit scaling — is applied as it would be), with the vocabulary projection
    run only at those positions (`logits_to_keep` given as positions). With a `prefix`, `embeddings` are
    the positions after it, continued from its keys and values; `positions` still count from the
    sequence's start.
    """
    start = 0 if prefix is None else prefix.length
    cache = None if prefix is None else prefix.for_rows(embeddings.shape[0])
    output = loaded.model(inputs_embeds=embeddings, logits_to_keep=positions.cpu() - start, cache=cache,
                          use_cache=cache is not None)
    return at_least_fp32(output.logits)  # [batch, P, vocab]


@dataclass(frozen=True)
class Prefix:
    """Keys and values of the first `length` positions, computed once for rows that all share them
    (IG's path rows where the held context leads the prompt: a chat template's system prompt)."""

    length: int
    cache: object  # the model's cache (transformers' DynamicCache), batch 1

    def for_rows(self, rows: int) -> object:
        cache = copy.deepcopy(self.cache)  # the forward appends to the cache it is given
        cache.batch_repeat_interleave(rows)
        return cache


def shared_prefix(loaded: LoadedModel, embeddings: torch.Tensor, length: int) -> Prefix | None:
    """The `Prefix` of embeddings [1, seq, d_model] up to `length`, or None when there is none or the
    model's cache cannot be expanded to a batch (then every row runs in full)."""
    if length < 1:
        return None
    with torch.no_grad():
        output = loaded.model(inputs_embeds=embeddings[:, :length], use_cache=True, logits_to_keep=1)
    cache = getattr(output, "cache", None)
    return Prefix(length, cache) if hasattr(cache, "batch_repeat_interleave") else None


def input_gradient_pass(loaded: LoadedModel, request: AttributionRequest) -> torch.Tensor:
    """d(explained score)/d(input embeddings) [seq, d_model], from one forward and backward of its own
    (`attribution.shared.input_gradients` reuses IG's batches instead when IG runs too)."""
    embeddings = embed(loaded, request.input_ids).requires_grad_(True)  # [1, seq, d_model]
    checkpoint = use_checkpointing(loaded, request.input_ids.numel())  # long prompts: layers recomputed
    with torch.enable_grad(), checkpointed_layers(loaded, checkpoint):
        score = request_score(loaded, request, embeddings)
        (gradients,) = torch.autograd.grad(score.sum(), embeddings)
    return at_least_fp32(gradients[0])


def log_probability_scores(
    loaded: LoadedModel, request: AttributionRequest, keep_masks: torch.Tensor
) -> torch.Tensor:
    """For each row of `keep_masks` [rows, seq] (1 = visible, 0 = hidden by the attention mask), the
    target's log-probability at the last position (log p(target) − log p(foil) when contrastive), or a
    span's summed log-probability."""
    input_ids = request.input_ids
    rows = keep_masks.shape[0]
    keep = logits_to_keep(request)
    batch_size = request.internal_batch_size or choose_batch_size(loaded, input_ids.numel(), rows, backward=False)
    values = []
    with torch.inference_mode():
        for start in range(0, rows, batch_size):
            check_cancelled()
            masks = keep_masks[start : start + batch_size].to(input_ids.device)
            output = loaded.model(
                input_ids=input_ids.unsqueeze(0).expand(masks.shape[0], -1),
                attention_mask=masks.long(),
                logits_to_keep=keep,
                use_cache=False,
            )
            values.append(explained_log_probability(output.logits, request).cpu())
    return torch.cat(values)  # [rows]


def logits_to_keep(request: AttributionRequest, start: int = 0) -> int | torch.Tensor:
    """A forward's `logits_to_keep` for the request's explained positions, its rows starting at position
    `start` (after a cached prefix): the last position alone (1), or a span's positions."""
    return 1 if request.span_ids is None else request.explained_positions - start


def explained_log_probability(logits: torch.Tensor, request: AttributionRequest) -> torch.Tensor:
    """[rows, S, vocab] logits from a forward with `logits_to_keep(request)` → [rows]: the target's
    log-probability (minus the foil's when contrastive), or the span's summed log-probability."""
    foils = None if request.foil_id is None else torch.tensor([request.foil_id])
    return span_score(at_least_fp32(logits[:, -request.explained_ids.numel():]), request.explained_ids,
                      foils, "log_probability")


def choose_batch_size(loaded: LoadedModel, seq_len: int, rows: int, *, backward: bool = True,
                      checkpointed: bool = False) -> int:
    """How many sequences of `seq_len` fit in one forward (and backward, with `checkpointed` layers or
    not): the activation budget over one row's activations, both from `attribution.budget`."""
    override = os.environ.get("ATTRIBUTION_BATCH_SIZE")
    if override:
        return max(1, min(rows, int(override)))
    per_row = row_bytes(loaded, seq_len, "backward" if backward else "forward", checkpointed)
    batch = int(max(1, min(rows, activation_budget(loaded) // max(per_row, 1))))
    if rows <= batch:
        return batch
    # Equal batches: 52 rows that fit 44 at a time run as 26 + 26, not 44 + 8 (same count, lower peak).
    n_batches = -(-rows // batch)
    return -(-rows // n_batches)


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def free_cached_memory(loaded: LoadedModel) -> None:
    if loaded.input_device.type == "cuda":
        torch.cuda.empty_cache()


def run_in_batches(
    loaded: LoadedModel, total_rows: int, batch_size: int, compute: Callable[[int, int], None], what: str, unit: str
) -> None:
    """Call compute(start, stop) over [0, total_rows) in batches; on out-of-memory, halve the batch
    and retry the same rows, down to one row, then give up with a clear message."""
    start = 0
    while start < total_rows:
        check_cancelled()  # between batches: Stop ends an analysis within one batch's time
        stop = min(start + batch_size, total_rows)
        try:
            compute(start, stop)
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not is_out_of_memory(error):
                raise
            del error
            free_cached_memory(loaded)
            if batch_size == 1:
                raise ValueError(
                    f"out of memory computing {what} even one {unit} at a time; "
                    "use a shorter prompt, fewer targets or a smaller model"
                ) from None
            batch_size = max(1, batch_size // 2)
            continue
        start = stop


def score_rows(
    logits: torch.Tensor, target_ids: torch.Tensor, foil_ids: torch.Tensor | None, score: str = "logit"
) -> torch.Tensor:
    """Per-row explained score [rows] when each row has its own target (and foil): the logit, the
    log-probability or the probability (SCORES), formed in fp32 or wider."""
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; valid choices: {', '.join(SCORES)}")
    logits = at_least_fp32(logits)
    rows = torch.arange(logits.shape[0], device=logits.device)

    def value(ids: torch.Tensor) -> torch.Tensor:
        picked = logits[rows, ids.to(logits.device)]  # [rows]
        if score == "logit":
            return picked
        log_probability = picked - torch.logsumexp(logits, dim=-1)  # no [rows, vocab] softmax kept
        return log_probability if score == "log_probability" else log_probability.exp()

    result = value(target_ids)
    if foil_ids is not None:
        result = result - value(foil_ids)
    return result
