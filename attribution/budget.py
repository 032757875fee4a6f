"""How much memory an analysis needs and how much there is, and what follows from the two: rows per
batch (`attribution.passes.choose_batch_size`), when the decoder layers are checkpointed, and the
longest prompt an analysis accepts (`check_prompt`, run before any work starts).

The activation model counts values per token, decoder layer and batch row. A gradient pass keeps about
6·hidden + 2.5·intermediate per token and layer (measured on SmolLM2-135M with sdpa attention: 0.87 GB
more per 1,000 prompt tokens over its 30 layers, `benchmarks/long_prompts.py`; Korthikanti et al. 2022
count 34·h bytes at 2 bytes a value, i.e. 17·h values, for the 4·h MLP this gives 16·h). Only eager
attention adds the softmax weights kept for the backward, 2.5 values per head and key (their 5·a·s
bytes): sdpa keeps no seq × seq map. A forward without gradients holds a few layers' worth at a time.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch
from torch.utils.checkpoint import checkpoint
from transformers.modeling_layers import GradientCheckpointingLayer

from .catalog import CATALOG
from .models import LoadedModel
from .settings import Settings
from .validation import max_prompt_tokens, prompt_token_override

HIDDEN_VALUES = 6.0  # kept per token and layer by a gradient pass, per hidden unit
INTERMEDIATE_VALUES = 2.5  # ...and per MLP unit
EAGER_VALUES_PER_KEY = 2.5  # ...and, with eager attention only, per head and key
FORWARD_LAYERS = 2  # a forward without gradients holds about this many layers' activations at once
# A checkpointed layer's backward holds its recomputed activations, their gradients and temporaries: about
# this many times what the layer keeps (SmolLM2, one row: 0.25 MB more per token checkpointed, against
# 0.87 MB not; the layers' inputs are 30 · 576 values of that).
CHECKPOINTED_LAYER_FACTOR = 6.0
CPU_ACTIVATION_SHARE = 0.25  # activations per CPU batch, as a share of the weights' bytes
CPU_MIN_ACTIVATION_BYTES = 1024**3  # ...but smaller models may always use this much
UNKNOWN_MEMORY_BYTES = 4 * 1024**3  # where free memory cannot be read: assume a modest 4 GiB
GIB = 1024**3


def available_memory_bytes(device: torch.device) -> int:
    """Free memory where the activations will live: the GPU's free memory, or the system's MemAvailable."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return UNKNOWN_MEMORY_BYTES


def weight_bytes(loaded: LoadedModel) -> int:
    return sum(parameter.numel() * parameter.element_size() for parameter in loaded.model.parameters())


def activation_budget(loaded: LoadedModel) -> float:
    """Bytes of activations one batch may hold: half the free memory (the rest is headroom). On the
    CPU also at most CPU_ACTIVATION_SHARE of the weights' bytes, but CPU_MIN_ACTIVATION_BYTES for small
    models: bigger CPU batches stop paying once a matmul has a few hundred rows, while activations grow
    without bound (IG-50 at 128 tokens on the Llama-3.2-1B shape peaked at 3.5× the weights with 31 rows
    per batch, 1.6× with 5); narrower models' matmuls need more rows to run well."""
    budget = 0.5 * available_memory_bytes(loaded.input_device)
    if loaded.input_device.type == "cpu":
        budget = min(budget, max(CPU_ACTIVATION_SHARE * weight_bytes(loaded), CPU_MIN_ACTIVATION_BYTES))
    return budget


def _config(loaded: LoadedModel):
    config = loaded.model.config
    return getattr(config, "text_config", None) or config


def _element_bytes(loaded: LoadedModel) -> int:
    return torch.finfo(loaded.dtype).bits // 8


def _layer_values(loaded: LoadedModel, seq_len: int) -> float:
    """Values a gradient pass keeps per batch row in one decoder layer."""
    config = _config(loaded)
    hidden = int(config.hidden_size)
    intermediate = int(getattr(config, "intermediate_size", None) or 4 * hidden)
    per_token = HIDDEN_VALUES * hidden + INTERMEDIATE_VALUES * intermediate
    # Models without a transformers config (tests' hand-built ones) have no attention implementation named.
    if getattr(config, "_attn_implementation", None) == "eager":
        per_token += EAGER_VALUES_PER_KEY * int(config.num_attention_heads) * seq_len
    return seq_len * per_token


def row_bytes(loaded: LoadedModel, seq_len: int, kind: str, checkpointed: bool = False) -> float:
    """Activation bytes of one batch row of `seq_len` positions: `kind` "backward" (a forward kept for
    a backward, all layers — or with `checkpointed` layers each layer's input plus one layer's
    backward, CHECKPOINTED_LAYER_FACTOR × what it keeps) or "forward" (no gradients)."""
    config = _config(loaded)
    element, layers, hidden = _element_bytes(loaded), int(config.num_hidden_layers), int(config.hidden_size)
    if kind == "forward":
        return FORWARD_LAYERS * _layer_values(loaded, seq_len) * element
    if kind != "backward":
        raise ValueError(f"unknown pass kind {kind!r}; valid choices: backward, forward")
    kept = layers * seq_len * hidden + CHECKPOINTED_LAYER_FACTOR * _layer_values(loaded, seq_len) if checkpointed \
        else layers * _layer_values(loaded, seq_len)
    return kept * element + seq_len * hidden * 4 * 2  # + the fp32 input embeddings and their gradient


def use_checkpointing(loaded: LoadedModel, seq_len: int, cache_free: bool = True) -> bool:
    """Whether a gradient pass over `seq_len` positions checkpoints its decoder layers: when one row
    would keep more than the activation budget, checkpointing keeps less (not so in a model of few
    layers), and the layers support it (transformers' GradientCheckpointingLayer) and run without a cache (a held prefix's keys and values would be
    appended twice by the recomputation). It costs about one more forward."""
    if os.environ.get("ATTRIBUTION_CHECKPOINT_LAYERS") in {"0", "1"}:
        return os.environ["ATTRIBUTION_CHECKPOINT_LAYERS"] == "1" and cache_free and bool(_layers(loaded))
    plain = row_bytes(loaded, seq_len, "backward")
    return cache_free and bool(_layers(loaded)) and plain > activation_budget(loaded) \
        and row_bytes(loaded, seq_len, "backward", checkpointed=True) < plain  # not for a model of few layers


def _layers(loaded: LoadedModel) -> list[torch.nn.Module]:
    return [module for module in loaded.model.modules() if isinstance(module, GradientCheckpointingLayer)]


@contextmanager
def checkpointed_layers(loaded: LoadedModel, enabled: bool = True) -> Iterator[None]:
    """Inside the block, gradient passes keep only each decoder layer's inputs and recompute the layer
    in the backward (torch's non-reentrant checkpoint; the model stays in eval mode, so the recomputed
    values are the same). Forwards with a cache run as they are."""
    if not enabled:
        yield
        return
    layers = _layers(loaded)
    for layer in layers:
        forward = layer.forward

        def run(*args, _forward=forward, **kwargs):
            if not torch.is_grad_enabled() or kwargs.get("cache") is not None \
                    or kwargs.get("past_key_values") is not None:
                return _forward(*args, **kwargs)
            return checkpoint(_forward, *args, use_reentrant=False, **kwargs)

        layer.forward = run
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward  # the class's forward again


def context_length(loaded: LoadedModel) -> int | None:
    """The most positions the model was made for (its config's max_position_embeddings, which a GGUF
    file's context_length becomes), or None when its config names none."""
    config = _config(loaded)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def analysis_bytes(loaded: LoadedModel, settings: Settings, seq_len: int) -> dict[str, float]:
    """The least memory each of the analysis's passes needs at `seq_len` positions (one row per batch,
    layers checkpointed where `use_checkpointing` would), by method; "generation" is the answer's
    key-value cache and "trust" the trust panel's masked forwards. Bytes beyond the loaded weights."""
    config = _config(loaded)
    element, layers = _element_bytes(loaded), int(config.num_hidden_layers)
    heads, hidden = int(config.num_attention_heads), int(config.hidden_size)
    head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
    kv_dim = int(getattr(config, "num_key_value_heads", None) or heads) * head_dim
    forward = row_bytes(loaded, seq_len, "forward")
    backward = row_bytes(loaded, seq_len, "backward", checkpointed=use_checkpointing(loaded, seq_len))
    rows = layers * heads * seq_len * 4  # the attention rows kept, fp32
    kept_inputs = layers * (heads * head_dim + kv_dim) * seq_len * element  # rollout's queries and keys
    by_pass = {"backward": backward, "forward": forward, "attention_rows": forward + rows,
               "rollout": forward + rows + kept_inputs}
    needs = {"generation": 2 * layers * kv_dim * seq_len * element + forward}
    for name in settings.methods:
        needs[name] = by_pass[CATALOG[name].memory]
    if settings.trust:
        needs["trust"] = forward
    return needs


def prompt_cap(loaded: LoadedModel, settings: Settings) -> tuple[int, str]:
    """The longest prompt in tokens by count alone, and why: the override, the context the answer must
    still fit in, or (neither known) the limit for any model."""
    override = prompt_token_override()
    context = context_length(loaded)
    if context is not None:
        room = context - settings.max_new_tokens
        if room < 1:  # else the prompt's check says "the limit of 0 tokens; shorten it", whatever its length
            raise ValueError(f"max_new_tokens is {settings.max_new_tokens}, but the model's context is {context:,} "
                             f"tokens: no room is left for the prompt; choose max_new_tokens below {context:,}")
        reason = (f"the model's context is {context:,} tokens and {settings.max_new_tokens} are kept for the answer"
                  if settings.max_new_tokens else f"the model's context is {context:,} tokens")
        if override is None or room < override:
            return max(room, 0), reason
    if override is not None:
        return override, "ATTRIBUTION_MAX_PROMPT_TOKENS"
    return max_prompt_tokens(), "the limit for any model"


def _fits(loaded: LoadedModel, settings: Settings, n_tokens: int, available: float) -> bool:
    return max(analysis_bytes(loaded, settings, n_tokens + settings.max_new_tokens).values()) <= available


def longest_prompt(loaded: LoadedModel, settings: Settings) -> tuple[int, str]:
    """The longest prompt (tokens) the analysis accepts with these settings on this model now, and the
    reason it is that long: the override, the model's context, or the memory the analysis needs."""
    cap, reason = prompt_cap(loaded, settings)
    available = available_memory_bytes(loaded.input_device)
    if _fits(loaded, settings, cap, available):
        return cap, reason
    low, high = 0, cap  # fits(low), not fits(high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if _fits(loaded, settings, middle, available) else (low, middle)
    return low, f"{available / GIB:.1f} GiB of memory is free"


def check_prompt(loaded: LoadedModel, settings: Settings, n_tokens: int, what: str = "prompt") -> None:
    """Refuse, before any work starts, a prompt of `n_tokens` beyond the longest the analysis accepts:
    ValueError naming the limit and the reason (the override, the context, or the memory needed)."""
    cap, reason = prompt_cap(loaded, settings)
    if n_tokens > cap:
        raise ValueError(f"{what} is {n_tokens:,} tokens long; the limit is {cap:,} tokens ({reason}), shorten it")
    available = available_memory_bytes(loaded.input_device)
    needs = analysis_bytes(loaded, settings, n_tokens + settings.max_new_tokens)
    largest = max(needs, key=needs.get)
    if needs[largest] <= available:
        return
    limit, _ = longest_prompt(loaded, settings)
    raise ValueError(
        f"{what} is {n_tokens:,} tokens long; the limit is {limit:,} tokens with these settings: "
        f"{largest} would need about {needs[largest] / GIB:.1f} GiB at this length and {available / GIB:.1f} GiB "
        "of memory is free. Shorten the prompt, leave that part out or generate fewer tokens"
    )
