"""Attention weights of a few query rows per layer, without any layer's full seq × seq map.

The attention method reads, per layer and head, only the row of the explained position (the answer map:
the rows of the generated tokens' positions), and rollout only the last row of the composed maps. An
eager forward with `output_attentions` keeps every layer's [heads, seq, seq] map alive until the forward
returns (at 4,000 tokens on SmolLM2: 30 × 9 × 4000² fp32 values, 17 GB). Here the forward runs with an
attention implementation of our own (registered with transformers' `AttentionInterface` under
`IMPLEMENTATION`): each layer's output comes from sdpa, as in an ordinary forward, and the weights of the
asked rows come from the model's own eager attention function (its module's `eager_attention_forward`:
GQA, scaling, softcapping and sinks as the model defines them) applied to those query rows only, with
the same mask the eager pass would add. Softmax is row-wise, so these rows are exactly the eager map's.

Rollout needs every row of every layer, but only as products with one vector: top-down,
v ← v · mixed(layer) from the last layer to the first, where each layer's map is rebuilt in row blocks
from the queries and keys this pass kept (`keep_inputs`), so no full map ever exists either.

A model whose attention does not go through the interface (Bloom's and Falcon's own attention code in
transformers 5.24) never calls ours: its weights then come from the model's own `output_attentions`
forward (`_output_attentions_rows`), which does hold every layer's full map, so that pass refuses prompts
whose maps would not fit in half the free memory.
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from .budget import available_memory_bytes
from .models import LoadedModel, eager_attention

#: The attention implementation this module registers: sdpa outputs, eager weights of the asked rows.
IMPLEMENTATION = "attribution_rows"
#: Rollout's row blocks hold about this many attention values at a time (64 MiB in fp32).
BLOCK_VALUES = 16 * 1024 * 1024


@dataclass
class _Layer:
    """What rollout keeps of one layer to rebuild its map: the attention module and its inputs."""

    module: torch.nn.Module
    query: torch.Tensor  # [1, heads, seq, head_dim], after rotary embeddings
    key: torch.Tensor  # [1, kv_heads, seq, head_dim]
    value: torch.Tensor  # [1, kv_heads, seq, 0]: the eager function's shape, no features (`_no_values`)
    mask: torch.Tensor | None  # the mask the layer got: [1, 1, seq, seq] bool, or None (causal)
    kwargs: dict


@dataclass
class _Recorder:
    rows: torch.Tensor  # [R] query positions whose weights are kept
    keep_inputs: bool
    head_mean: bool = False  # keep each layer's mean over heads only
    weights: list[torch.Tensor] = field(default_factory=list)  # per layer [heads or 1, R, seq] fp32 CPU
    layers: list[_Layer] = field(default_factory=list)


_local = threading.local()  # the recorder of the pass running in this thread


def _eager_function(module: torch.nn.Module) -> Callable:
    """The model's own eager attention (the function its eager implementation calls)."""
    function = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
    if function is None:
        raise RuntimeError(
            f"{type(module).__name__} has no eager_attention_forward in its module; its attention "
            "weights cannot be computed row by row"
        )
    return function


def additive_rows(mask: torch.Tensor | None, rows: torch.Tensor, q_length: int, kv_length: int,
                  dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The eager pass's additive mask [1, 1, R, kv] for query `rows`: 0 where a key is visible, the
    dtype's minimum where not. `mask` is what sdpa got: a boolean [b, 1, q, kv] map, or None for plain
    causal attention (sdpa's is_causal skip)."""
    if mask is None:
        offset = kv_length - q_length  # keys before the first query (none without a cache)
        visible = torch.arange(kv_length, device=device)[None, :] <= (rows.to(device)[:, None] + offset)
        visible = visible[None, None]
    elif mask.dtype == torch.bool:
        visible = mask[:1, :, rows.to(mask.device), :kv_length]
    else:  # already additive
        return mask[:1, :, rows.to(mask.device), :kv_length].to(dtype)
    zero = torch.zeros((), dtype=dtype, device=device)
    return torch.where(visible.to(device), zero, torch.finfo(dtype).min)


def _uses_sdpa(kwargs: dict) -> bool:
    """sdpa computes plain softmax attention; softcapped logits or attention sinks need eager."""
    return kwargs.get("softcap") is None and kwargs.get("s_aux") is None


def _no_values(value: torch.Tensor) -> torch.Tensor:
    """The values with no features: the eager function's weights are what is read, and its output
    (weights × values) then costs nothing."""
    return value.new_empty((*value.shape[:-1], 0))  # not a view: the values' memory is not held


def _block_rows(query: torch.Tensor, kv_length: int) -> int:
    """Query rows per block so that a block's weights [heads, rows, kv] hold about BLOCK_VALUES."""
    return max(1, BLOCK_VALUES // max(1, query.shape[1] * kv_length))


def _blocked_eager(module, query, key, value, mask, scaling, kwargs) -> torch.Tensor:
    """The layer's output [b, q, heads, head_dim] from its eager function, in query blocks."""
    eager = _eager_function(module)
    q_length, kv_length = query.shape[2], key.shape[2]
    block = _block_rows(query, kv_length)
    outputs = []
    for start in range(0, q_length, block):
        rows = torch.arange(start, min(start + block, q_length), device=query.device)
        rows_mask = additive_rows(mask, rows, q_length, kv_length, query.dtype, query.device)
        output, _ = eager(module, query[:, :, rows], key, value, rows_mask, scaling=scaling, dropout=0.0, **kwargs)
        outputs.append(output)
    return torch.cat(outputs, dim=1)


def _attention_function(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """The registered attention function: the layer's output, and the asked rows' weights recorded."""
    recorder = getattr(_local, "recorder", None)
    if recorder is None:
        raise RuntimeError(f"the {IMPLEMENTATION!r} attention runs only inside attention_rows.recording()")
    q_length, kv_length = query.shape[2], key.shape[2]
    rows = recorder.rows.to(query.device)
    rows_mask = additive_rows(attention_mask, rows, q_length, kv_length, query.dtype, query.device)
    _, weights = _eager_function(module)(
        module, query[:, :, rows], key, _no_values(value), rows_mask, scaling=scaling, dropout=0.0, **kwargs
    )  # [1, heads, R, kv]
    weights = weights[0].float()  # [heads, R, kv]
    recorder.weights.append((weights.mean(dim=0, keepdim=True) if recorder.head_mean else weights).cpu())
    if recorder.keep_inputs:
        recorder.layers.append(_Layer(module, query, key, _no_values(value), attention_mask,
                                      dict(kwargs, scaling=scaling)))
    if _uses_sdpa(kwargs):
        output, _ = sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                           scaling=scaling, **kwargs)
    else:
        output = _blocked_eager(module, query, key, value, attention_mask, scaling, kwargs)
    return output, None


AttentionInterface.register(IMPLEMENTATION, _attention_function)
# The same masks as sdpa: a boolean map, or None where plain causal attention needs none.
AttentionMaskInterface.register(IMPLEMENTATION, sdpa_mask)


@contextmanager
def recording(loaded: LoadedModel, rows: torch.Tensor, keep_inputs: bool = False,
              head_mean: bool = False) -> Iterator[_Recorder]:
    """Run the block's forwards with the row-recording attention; yields the recorder they fill."""
    if getattr(_local, "recorder", None) is not None:
        raise RuntimeError("attention rows are already being recorded in this thread")
    model = loaded.model
    previous = model.config._attn_implementation
    recorder = _Recorder(rows=rows.cpu().long(), keep_inputs=keep_inputs, head_mean=head_mean)
    model.set_attn_implementation(IMPLEMENTATION)
    _local.recorder = recorder
    try:
        yield recorder
    finally:
        _local.recorder = None
        model.set_attn_implementation(previous)


@dataclass(frozen=True)
class AttentionRows:
    """Attention weights of the asked query rows, every layer and head, gathered on the CPU in fp32."""

    rows: torch.Tensor  # [R] query positions
    weights: torch.Tensor  # [layers, heads, R, seq]; [layers, 1, R, seq] when recorded as head means
    layers: tuple[_Layer, ...] = ()  # kept for rollout (`keep_inputs`), else empty
    # For rollout from `_output_attentions_rows` (`keep_inputs`): each layer's head-mean map, fp32 CPU.
    maps: torch.Tensor | None = None  # [layers, seq, seq]

    @property
    def last_rows(self) -> torch.Tensor:
        """[layers, heads, seq]: what the last asked row attends to (the explained position)."""
        return self.weights[:, :, -1]


def row_attention(loaded: LoadedModel, input_ids: torch.Tensor, rows: torch.Tensor | None = None,
                  keep_inputs: bool = False, head_mean: bool = False) -> AttentionRows:
    """One forward over input_ids [seq] recording the attention weights of query `rows` (default: the
    last position) in every layer; `keep_inputs` also keeps each layer's queries and keys for rollout,
    `head_mean` keeps only each layer's mean over heads (the answer map's many rows)."""
    seq = int(input_ids.numel())
    rows = torch.tensor([seq - 1]) if rows is None else torch.as_tensor(rows).reshape(-1).long().cpu()
    if rows.numel() == 0 or int(rows.min()) < 0 or int(rows.max()) >= seq:
        raise ValueError(f"attention rows must be positions from 0 to {seq - 1}, got {rows.tolist()}")
    with torch.inference_mode(), recording(loaded, rows, keep_inputs, head_mean) as recorder:
        loaded.model(input_ids=input_ids.unsqueeze(0), logits_to_keep=1, use_cache=False)
    if not recorder.weights:  # its attention is its own code: the interface was never called
        return _output_attentions_rows(loaded, input_ids, rows, keep_inputs, head_mean)
    if len(recorder.weights) != loaded.n_layers:
        raise RuntimeError(
            f"the model ran its attention {len(recorder.weights)} times for {loaded.n_layers} layers; "
            "only some of its layers go through transformers' AttentionInterface"
        )
    return AttentionRows(rows=rows, weights=torch.stack(recorder.weights), layers=tuple(recorder.layers))


def _output_attentions_rows(loaded: LoadedModel, input_ids: torch.Tensor, rows: torch.Tensor, keep_inputs: bool,
                            head_mean: bool) -> AttentionRows:
    """`row_attention` from the model's own `output_attentions` forward, for a model whose attention does
    not go through the interface: every layer's full [heads, seq, seq] map exists during that forward."""
    seq, config = int(input_ids.numel()), loaded.model.config
    heads = int(getattr(config, "num_attention_heads", None) or getattr(config, "n_head", 1))
    needed = loaded.n_layers * heads * seq * seq * max(torch.finfo(loaded.dtype).bits // 8, 4)
    room = 0.5 * available_memory_bytes(loaded.input_device)
    if needed > room:
        raise ValueError(
            f"this model's attention does not go through transformers' AttentionInterface, so its attention "
            f"weights come from output_attentions, which holds every layer's full map: {needed / 2**30:.1f} GiB "
            f"for {seq} tokens, more than the {room / 2**30:.1f} GiB free for it; use a shorter prompt or "
            "leave attention and attention_rollout out"
        )
    with torch.inference_mode(), eager_attention(loaded):  # sdpa kernels give no weights
        output = loaded.model(input_ids=input_ids.unsqueeze(0), output_attentions=True, logits_to_keep=1,
                              use_cache=False)
    maps = getattr(output, "attentions", None)
    if not maps or len(maps) != loaded.n_layers or any(layer is None for layer in maps):
        raise RuntimeError(
            f"the model gave {0 if not maps else len(maps)} attention maps for {loaded.n_layers} layers: its "
            "attention neither goes through transformers' AttentionInterface nor returns output_attentions"
        )
    # Per layer, so that no second copy of all the maps is made: the asked rows and, for rollout, the head mean.
    weights = torch.stack([layer[0][:, rows.to(layer.device)].float().cpu()
                           for layer in maps])  # [layers, heads, R, seq]
    if head_mean:
        weights = weights.mean(dim=1, keepdim=True)
    means = None if not keep_inputs else torch.stack(
        [layer[0].float().mean(dim=0).cpu() for layer in maps])  # [layers, seq, seq]
    return AttentionRows(rows=rows, weights=weights, maps=means)


def rollout_last_row(rows: AttentionRows) -> torch.Tensor:
    """The last row [seq] (fp64) of attention rollout (`attribution.methods.rollout`) over the layers
    `rows` kept: v ← v · mixed(layer), top-down, each layer's head-averaged map rebuilt in row blocks."""
    if rows.maps is not None:
        return _rollout_from_maps(rows.maps)
    if not rows.layers:
        raise ValueError("rollout needs the layers' inputs: record them with keep_inputs=True")
    seq = rows.layers[0].query.shape[2]
    vector = torch.zeros(seq, dtype=torch.float64)
    vector[-1] = 1.0
    with torch.inference_mode():
        for layer in reversed(rows.layers):
            vector = _times_mixed(vector, layer)
    return vector


def _rollout_from_maps(maps: torch.Tensor) -> torch.Tensor:
    """Rollout's last row [seq] (fp64) from each layer's head-mean map `maps` [layers, seq, seq]: the same
    products as `_times_mixed`, on maps that already exist."""
    seq = maps.shape[-1]
    vector = torch.zeros(seq, dtype=torch.float64)
    vector[-1] = 1.0
    identity = torch.eye(seq, dtype=torch.float64)
    for layer_map in reversed(maps.double()):
        mixed = 0.5 * layer_map + 0.5 * identity
        vector = vector @ (mixed / mixed.sum(dim=-1, keepdim=True))
    return vector


def _times_mixed(vector: torch.Tensor, layer: _Layer) -> torch.Tensor:
    """vector [seq] · (½ · head-mean map + ½ · I, rows renormalised) of one layer, in row blocks."""
    query, key = layer.query, layer.key
    q_length, kv_length = query.shape[2], key.shape[2]
    eager = _eager_function(layer.module)
    block = _block_rows(query, kv_length)
    result = torch.zeros(kv_length, dtype=torch.float64)
    for start in range(0, q_length, block):
        stop = min(start + block, q_length)
        if not bool(vector[start:stop].any()):
            continue  # rows nothing above reads contribute nothing
        block_rows = torch.arange(start, stop, device=query.device)
        mask = additive_rows(layer.mask, block_rows, q_length, kv_length, query.dtype, query.device)
        _, weights = eager(layer.module, query[:, :, block_rows], key, layer.value, mask, dropout=0.0,
                           **layer.kwargs)  # [1, heads, B, kv]
        mixed = 0.5 * weights[0].float().mean(dim=0).cpu().double()  # [B, kv]
        mixed[torch.arange(stop - start), torch.arange(start, stop)] += 0.5
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        result += vector[start:stop] @ mixed
    return result
