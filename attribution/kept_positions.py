"""Removal by attention mask, exactly, for less: each row runs only the positions it keeps, from where it
first differs from the full input, and rows that agree up to a position run it once.

A token hidden by the attention mask is a key no later position sees, so its own hidden states are never
read: a row that drops it from the sequence, keeps every other token at its original position
(`position_ids`) and hides it nowhere else gives the same logits (fp32 rounding aside: softmax sums over
fewer exact zeros). Every position before a row's first removed token is the full input's: its keys and
values are the full input's, run once. And a position's hidden states depend only on the removals up to
it, so rows with the same removals up to a position share it there: the rows run as a tree of "nodes" (a
position and the removals up to it), each distinct node once, in one sequence per chunk of rows, each node
at its own position id and seeing, by a boolean 4-D mask, the cached positions and the kept nodes of its
own prefix. Every position from the first explained one on is a node of every row, so each row's
explained logits are read from its own nodes.

Measured on SmolLM2 chat, the seed prompt's content token (the trust panel's 135 distinct rows, 20
positions each after the system prompt): 2,700 row positions masked, 1,510 kept positions row by row
(1,772 with the pads of the batches that ran them before the tree), 992 distinct nodes. The trust panel
took 1.80-1.86 s against 3.5-3.9 s row by row (2-core CPU, quiet); the values equal the masked rows' within
3.1e-5 (their range 16.8).

`runs_kept_positions_only` says when the shortcut is exact; otherwise `attribution.faithfulness` runs the
masked rows in full: models whose positions are not given by `position_ids` (ALiBi-style models that take
none), sliding-window or chunked attention shorter than the prompt (a window counts columns, and dropped
tokens would widen it), and caches that cannot be cut back. An explained position that a row removes
stays in the row as a query with its key masked, as in the masked row (its own token is still in its
residual stream). The tree also needs transformers' sdpa attention (its mask is boolean) and a model that
honours a custom 4-D mask and the position ids: one row of the first chunk of several rows (the one with
the most other rows' nodes among its own, `_most_interleaved`) is run once more as a masked row, and logits
other than its (a mask or positions ignored) send the rows back to the masked run.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers.cache_utils import DynamicLayer

from .cancel import check as check_cancelled
from .models import LoadedModel
from .passes import AttributionRequest, explained_log_probability, logits_to_keep


def runs_kept_positions_only(loaded: LoadedModel, request: AttributionRequest, hidden: torch.Tensor) -> bool:
    """Whether rows `hidden` [rows, seq] (True = removed by the attention mask) can run their kept
    positions alone with results equal to the masked rows (the module's conditions)."""
    n_tokens = hidden.shape[1]
    config = loaded.model.config
    for window in (getattr(config, "sliding_window", None), getattr(config, "attention_chunk_size", None)):
        if isinstance(window, int) and window < n_tokens:
            return False
    return "position_ids" in inspect.signature(loaded.model.forward).parameters


def kept_positions_log_probabilities(
    loaded: LoadedModel, request: AttributionRequest, hidden: torch.Tensor, batch_size: int
) -> torch.Tensor | None:
    """[rows] fp64: each row's explained log-probability (as `explained_log_probability`) with the
    positions `hidden` [rows, seq] marks removed, computed from the kept positions only, each distinct kept
    prefix once (`Chunk`); None when the model's cache cannot be cut back exactly or the model does not
    honour the tree's mask and positions (then the caller runs the masked rows)."""
    input_ids = request.input_ids
    rows, n_tokens = hidden.shape
    keep = logits_to_keep(request)
    values = torch.empty(rows, dtype=torch.float64)
    with torch.inference_mode():
        full = loaded.model(input_ids=input_ids[None], use_cache=True, logits_to_keep=keep)
        full_value = explained_log_probability(full.logits, request).double().cpu()[0]
        cache = getattr(full, "cache", None)
        if not _croppable(cache) or getattr(loaded.model.config, "_attn_implementation", None) != "sdpa":
            return None  # the tree's boolean mask is an sdpa mask (eager attention adds its mask to the scores)
        removed = hidden.cpu().numpy().astype(bool)
        # [rows]: each row's first removed position (n_tokens: nothing removed, the full input's value).
        first_removed = np.where(removed.any(axis=1), removed.argmax(axis=1), n_tokens)
        values[torch.from_numpy(first_removed == n_tokens)] = full_value
        remaining = np.flatnonzero(first_removed < n_tokens)
        explained_positions = frozenset(request.explained_positions.tolist())
        verified = False
        for chunk in _chunks(removed, remaining, first_removed, explained_positions, batch_size):
            check_cancelled()
            chunk_values, chunk_logits = _run_chunk(loaded, request, cache, chunk)
            if not verified and chunk.rows.size > 1:
                # The first chunk of several rows checks one row against that row masked in full: the row
                # with the most other rows' nodes among its own (the last of those), which a model that
                # ignored the tree's mask would let it see, and which would move its positions if the
                # model counted them along the sequence; among rows whose last node sees two keys or more,
                # since one key gets all the attention wherever it is. Rows with no other rows' nodes
                # among their own are whole blocks, which such a model would still get right.
                check = _most_interleaved(chunk)
                masked = _masked_row_logits(loaded, request, cache, removed[int(chunk.rows[check])], chunk.start)
                if not _agrees(chunk_logits[check], masked):
                    return None
                verified = True
            values[torch.from_numpy(chunk.rows)] = chunk_values
    return values


@dataclass
class Chunk:
    """Removal rows run as one sequence: every distinct kept prefix ("node": a position and the removals up
    to it) once, each node attending to the cached positions [0, start) and to the kept nodes of its own
    prefix, at its own position id.

    Rows that first differ from the full input at the same position share their nodes up to where their
    removals part; rows that first differ at different positions share nothing after the earlier one, so a
    chunk is rows in order of their first removal, then of their removals, which keeps sharers together."""

    start: int  # the cache holds positions [0, start)
    explained_positions: frozenset[int]  # the positions whose logits give the value
    rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=int))  # [rows] indices into the removal rows
    positions: list[int] = field(default_factory=list)  # [nodes] each node's position in the sequence
    parents: list[int] = field(default_factory=list)  # [nodes] the node before it in its rows (−1: none)
    visible: list[bool] = field(default_factory=list)  # [nodes] whether later nodes (and itself) see it
    explained: list[list[int]] = field(default_factory=list)  # per row: its nodes at the explained positions
    interleaved: list[int] = field(default_factory=list)  # per row: other rows' nodes between its first and last
    seen: list[int] = field(default_factory=list)  # per row: its kept nodes (the keys its last node sees)
    # (parent node, position, kept) → node: a node's removals are its parent's plus the positions between
    # them (not run, so removed) plus its own flag, so this names a node's whole prefix in O(1).
    index: dict = field(default_factory=dict)

    def runs(self, removed_row: np.ndarray) -> list[tuple[int, bool]]:
        """The row's nodes from `start` on as (position, kept): its kept positions and, kept or not, every
        position from the first explained one."""
        first_explained = min(self.explained_positions)
        return [(i, not removed_row[i]) for i in range(self.start, removed_row.size)
                if i >= first_explained or not removed_row[i]]

    def new_nodes(self, runs: list[tuple[int, bool]]) -> int:
        """How many of the row's nodes the chunk does not hold yet (once one is new, so are the rest)."""
        parent = -1
        for found, (position, kept) in enumerate(runs):
            parent = self.index.get((parent, position, kept), None)
            if parent is None:
                return len(runs) - found
        return 0

    def add(self, row: int, runs: list[tuple[int, bool]]) -> None:
        parent, at_explained, own = -1, [], []
        for position, kept in runs:
            node = self.index.get((parent, position, kept))
            if node is None:
                node = self.index[(parent, position, kept)] = len(self.positions)
                self.positions.append(position)
                self.parents.append(parent)
                self.visible.append(kept)
            if position in self.explained_positions:
                at_explained.append(node)
            own.append(node)
            parent = node
        self.explained.append(at_explained)
        self.interleaved.append(own[-1] - own[0] + 1 - len(own))
        self.seen.append(sum(kept for _, kept in runs))
        self.rows = np.append(self.rows, row)


#: The most nodes one chunk runs together (at least one whole row): fewer, longer sequences make larger
#: matrix products, but every node's attention spans the whole chunk. The trust panel on SmolLM2 chat (the
#: seed prompt's 992 nodes, 3 runs each, quiet): 256 nodes 1.86-1.90 s, 512 1.80-1.86 s, 1,024 2.00-2.03 s,
#: 2,048 2.01-2.04 s.
NODES_PER_FORWARD = 512


def _chunks(removed: np.ndarray, remaining: np.ndarray, first_removed: np.ndarray,
            explained_positions: frozenset[int], batch_size: int) -> list[Chunk]:
    """The rows `remaining` in chunks of at most `batch_size` rows and NODES_PER_FORWARD nodes (or one row,
    if a row alone has more), in order of first removal, then of removals."""
    n = removed.shape[1]
    # np.lexsort's last key is the primary one: first removal, then the removal flags column by column.
    order = remaining[np.lexsort([removed[remaining, column] for column in reversed(range(n))]
                                 + [first_removed[remaining]])]
    chunks: list[Chunk] = []
    for row in order.tolist():
        if chunks:
            chunk = chunks[-1]
            runs = chunk.runs(removed[row])
            if (chunk.rows.size < batch_size
                    and len(chunk.positions) + chunk.new_nodes(runs) <= NODES_PER_FORWARD):
                chunk.add(row, runs)
                continue
        chunk = Chunk(start=int(first_removed[row]), explained_positions=explained_positions)
        chunk.add(row, chunk.runs(removed[row]))
        chunks.append(chunk)
    return chunks


def _run_chunk(loaded: LoadedModel, request: AttributionRequest, cache, chunk: Chunk
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunk's values [rows] and its rows' logits at the explained positions [rows, S, vocab]."""
    input_ids = request.input_ids
    device = input_ids.device
    count = len(chunk.positions)
    # [nodes, nodes] which nodes each node sees: its parent's view, and itself when kept.
    sees = np.zeros((count, count), dtype=bool)
    for node, parent in enumerate(chunk.parents):
        if parent >= 0:
            sees[node] = sees[parent]
        sees[node, node] = chunk.visible[node]
    # [1, 1, nodes, keys] True = attends: the cached positions, then what each node sees. Boolean, as
    # transformers' own sdpa masks are: torch gives a query that sees nothing (a removed explained
    # position with nothing kept before it) a zero attention output, as in the masked row.
    mask = torch.ones((1, 1, count, chunk.start + count), dtype=torch.bool, device=device)
    mask[0, 0, :, chunk.start:] = torch.from_numpy(sees).to(device)
    node_positions = torch.tensor(chunk.positions, dtype=torch.long, device=device)
    kept_logits = sorted({node for nodes in chunk.explained for node in nodes})
    column = {node: index for index, node in enumerate(kept_logits)}
    output = loaded.model(input_ids=input_ids[node_positions][None], attention_mask=mask,
                          position_ids=node_positions[None], cache=_cache_before(cache, chunk.start, input_ids.numel()),
                          use_cache=bool(chunk.start), logits_to_keep=torch.tensor(kept_logits, device=device))
    logits = output.logits[0]  # [kept nodes, vocab]
    per_row = torch.stack([logits[[column[node] for node in nodes]] for nodes in chunk.explained])  # [rows, S, vocab]
    return explained_log_probability(per_row, request).double().cpu(), per_row


def _most_interleaved(chunk: Chunk) -> int:
    """The chunk's row (an index into its rows) with the most other rows' nodes among its own, preferring
    rows that see two keys or more; the last of equals."""
    ranking = [(seen >= 2, interleaved, row) for row, (seen, interleaved)
               in enumerate(zip(chunk.seen, chunk.interleaved))]
    return max(ranking)[2]


def _cache_before(cache, start: int, n_tokens: int):
    """A copy of the full input's cache holding positions [0, start) only (None when start is 0)."""
    if not start:
        return None
    past = copy.deepcopy(cache)
    past.crop(start - n_tokens)  # drops the last n − start positions
    return past


def _masked_row_logits(loaded: LoadedModel, request: AttributionRequest, cache, removed_row: np.ndarray,
                       start: int) -> torch.Tensor:
    """[S, vocab] one row's explained logits as the masked rows give them: every position from `start`,
    the removed ones hidden by a 2-D attention mask (the reference the tree must equal)."""
    input_ids = request.input_ids
    mask = torch.from_numpy(~removed_row).long().to(input_ids.device)[None]  # [1, seq], ones before start
    output = loaded.model(input_ids=input_ids[None, start:], attention_mask=mask,
                          cache=_cache_before(cache, start, input_ids.numel()), use_cache=bool(start),
                          logits_to_keep=logits_to_keep(request, start))
    return output.logits[0, -request.explained_ids.numel():]


def _agrees(tree: torch.Tensor, full: torch.Tensor) -> bool:
    """Whether the tree's logits [S, vocab] for a row are the masked row's, to the model's rounding: a mask
    or positions ignored change the logits far more (on the tiny test models too, where the explained
    log-probabilities themselves barely move)."""
    tolerance = 1e-4 if torch.finfo(full.dtype).bits >= 32 else 2e-2
    scale = float(full.abs().max())
    return float((tree.float() - full.float()).abs().max()) <= tolerance * max(scale, 1e-6)


def _croppable(cache: object) -> bool:
    """Whether cutting the cache back to its first positions is exact: plain full-attention layers only
    (a sliding-window or linear-attention layer cannot give back what it no longer holds)."""
    layers = getattr(cache, "layers", None)
    return bool(layers) and hasattr(cache, "batch_repeat_interleave") and all(
        type(layer) is DynamicLayer for layer in layers)
