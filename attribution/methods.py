"""Attribution methods: one function per method, one signature, registered in `METHODS`.

Every method takes the loaded model and an `AttributionRequest` (the token ids that precede the
target, the target id, settings) and returns a `MethodScores` with one score per input token.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from captum.attr._utils.approximation_methods import approximation_parameters

from .models import LoadedModel, eager_attention
from .results import AttentionScores, IntegratedGradientsScores, MethodScores


@dataclass(frozen=True)
class AttributionRequest:
    """What one method call explains: the logit of `target_id` right after `input_ids`."""

    input_ids: torch.Tensor  # [seq] on the model's input device, BOS included
    target_id: int
    foil_id: int | None = None  # contrastive: explain logit(target) − logit(foil)
    n_steps: int = 50
    baseline: str = "zero"
    aggregation: str = "l2"
    internal_batch_size: int | None = None  # IG steps per forward; None sizes it to free memory


# --- shared building blocks -------------------------------------------------------------------


def at_least_fp32(tensor: torch.Tensor) -> torch.Tensor:
    """Upcast bf16/fp16 to fp32 before sums and norms are formed; fp32 and fp64 stay as they are."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def embed(loaded: LoadedModel, input_ids: torch.Tensor) -> torch.Tensor:
    """Input embeddings [1, seq, d_model], detached: the leaf that gradients are taken against."""
    with torch.no_grad():
        return loaded.model.get_input_embeddings()(input_ids.unsqueeze(0)).detach().clone()


def target_logit(
    loaded: LoadedModel, embeddings: torch.Tensor, target_id: int, foil_id: int | None = None
) -> torch.Tensor:
    """The explained score per batch row [batch], in fp32: the target's logit at the last position
    (minus the foil's when contrastive). Only the last position's logits are computed."""
    output = loaded.model(inputs_embeds=embeddings, logits_to_keep=1, use_cache=False)
    logits = at_least_fp32(output.logits[:, -1, :])  # [batch, vocab]
    score = logits[:, target_id]
    if foil_id is not None:
        score = score - logits[:, foil_id]
    return score


def aggregate(attributions: torch.Tensor, aggregation: str) -> np.ndarray:
    """[seq, d_model] → [seq]: the seed's L2 norm, or the signed sum that keeps completeness."""
    attributions = at_least_fp32(attributions)
    if aggregation == "l2":
        return attributions.norm(dim=-1).cpu().numpy()
    if aggregation == "sum":
        return attributions.sum(dim=-1).cpu().numpy()
    raise ValueError(f"unknown aggregation {aggregation!r}; valid choices: {', '.join(AGGREGATIONS)}")


AGGREGATIONS = {
    "l2": "L2 norm over the embedding dimension (the seed's; always ≥ 0)",
    "sum": "signed sum over the embedding dimension (keeps completeness)",
}


# --- gradient ---------------------------------------------------------------------------------


def input_gradients(loaded: LoadedModel, request: AttributionRequest) -> torch.Tensor:
    """d(explained score)/d(input embeddings) [seq, d_model] in fp32, from one forward and backward."""
    embeddings = embed(loaded, request.input_ids).requires_grad_(True)  # [1, seq, d_model]
    with torch.enable_grad():
        score = target_logit(loaded, embeddings, request.target_id, request.foil_id)
        (gradients,) = torch.autograd.grad(score.sum(), embeddings)
    return at_least_fp32(gradients[0])


def gradient(loaded: LoadedModel, request: AttributionRequest) -> MethodScores:
    """L2 norm over d_model of d(target logit)/d(input embeddings), as the seed's method A."""
    return MethodScores(method="gradient", scores=input_gradients(loaded, request).norm(dim=-1).cpu().numpy())


# --- attention --------------------------------------------------------------------------------


def attention(loaded: LoadedModel, request: AttributionRequest) -> AttentionScores:
    """Attention of the last input position, averaged over heads and layers (the seed's method B)."""
    with torch.inference_mode(), eager_attention(loaded):
        output = loaded.model(
            input_ids=request.input_ids.unsqueeze(0),
            output_attentions=True,
            logits_to_keep=1,
            use_cache=False,
        )
    attentions = output.attentions
    if not attentions or len(attentions) != loaded.n_layers or any(layer is None for layer in attentions):
        raise RuntimeError(
            f"the model returned {len(attentions or ())} attention tensors for {loaded.n_layers} layers; "
            "its attention implementation does not expose weights"
        )
    # Layers may sit on different GPUs under device_map: gather on the CPU, in fp32.
    last_rows = torch.stack([layer[0, :, -1, :].float().cpu() for layer in attentions])  # [layers, heads, seq]
    return AttentionScores(
        method="attention",
        scores=last_rows.mean(dim=(0, 1)).numpy(),
        per_layer=last_rows.mean(dim=1).numpy(),
        per_head=last_rows.numpy(),
    )


# --- integrated gradients ---------------------------------------------------------------------


def _zero_baseline(loaded: LoadedModel, input_ids: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(embeddings)


def _pad_baseline(loaded: LoadedModel, input_ids: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    # As the seed: every position, BOS included, becomes the pad token (eos when the tokenizer has none).
    return embed(loaded, torch.full_like(input_ids, loaded.tokenizer.pad_token_id))


BASELINES: dict[str, Callable[[LoadedModel, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "zero": _zero_baseline,
    "pad": _pad_baseline,
}


def _available_memory_bytes(device: torch.device) -> int:
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
    return 4 * 1024**3  # unknown platform: assume a modest 4 GiB


def choose_internal_batch_size(loaded: LoadedModel, seq_len: int, n_steps: int) -> int:
    """How many IG steps fit in one forward+backward, from an activation estimate and free memory.

    Per layer and sequence, training-style activations take about 34·s·h + 5·a·s² values
    (Korthikanti et al. 2022, for 2-byte values); we keep half of the free memory as headroom.
    """
    override = os.environ.get("ATTRIBUTION_IG_BATCH")
    if override:
        return max(1, min(n_steps, int(override)))
    config = loaded.model.config
    hidden = int(config.hidden_size)
    heads = int(config.num_attention_heads)
    element_bytes = torch.finfo(loaded.dtype).bits // 8
    per_step = config.num_hidden_layers * seq_len * (34 * hidden + 5 * heads * seq_len) * element_bytes / 2
    budget = 0.5 * _available_memory_bytes(loaded.input_device)
    return int(max(1, min(n_steps, budget // max(per_step, 1))))


def _is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def integrated_gradients(loaded: LoadedModel, request: AttributionRequest) -> IntegratedGradientsScores:
    """Integrated Gradients on the input embeddings (the seed's method C), steps batched.

    Uses Captum's default rule (Gauss–Legendre nodes and weights) exactly as
    `captum.attr.IntegratedGradients` does, but forms the weighted sum in fp32 and sizes the batch of
    steps to free memory; on out-of-memory the batch halves down to one step before giving up.
    """
    if request.baseline not in BASELINES:
        raise ValueError(f"unknown baseline {request.baseline!r}; valid choices: {', '.join(BASELINES)}")
    inputs = embed(loaded, request.input_ids)  # [1, seq, d_model]
    baseline = BASELINES[request.baseline](loaded, request.input_ids, inputs)  # [1, seq, d_model]
    step_sizes_of, alphas_of = approximation_parameters("gausslegendre")
    alphas = torch.tensor(alphas_of(request.n_steps), dtype=torch.float32)  # [steps]
    step_sizes = torch.tensor(step_sizes_of(request.n_steps), dtype=torch.float32)  # [steps]
    difference = inputs - baseline

    batch_size = request.internal_batch_size or choose_internal_batch_size(
        loaded, inputs.shape[1], request.n_steps
    )
    weighted_gradients = torch.zeros(inputs.shape[1:], dtype=torch.float32, device=inputs.device)
    start = 0
    while start < request.n_steps:
        stop = min(start + batch_size, request.n_steps)
        chunk_alphas = alphas[start:stop].to(inputs.device, inputs.dtype).view(-1, 1, 1)
        try:
            scaled = (baseline + chunk_alphas * difference).requires_grad_(True)  # [chunk, seq, d_model]
            with torch.enable_grad():
                score = target_logit(loaded, scaled, request.target_id, request.foil_id)
                # Rows are independent, so the gradient of the sum is each row's own gradient.
                (gradients,) = torch.autograd.grad(score.sum(), scaled)
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not _is_out_of_memory(error):
                raise
            del error
            if loaded.input_device.type == "cuda":
                torch.cuda.empty_cache()
            if batch_size == 1:
                raise ValueError(
                    "out of memory computing integrated gradients even one step at a time; "
                    "use a shorter prompt or a smaller model"
                ) from None
            batch_size = max(1, batch_size // 2)
            continue
        chunk_weights = step_sizes[start:stop].to(inputs.device).view(-1, 1, 1)
        weighted_gradients += (gradients.float() * chunk_weights).sum(dim=0)
        start = stop
    attributions = weighted_gradients * difference[0].float()  # [seq, d_model]

    with torch.inference_mode():
        endpoints = target_logit(
            loaded, torch.cat([inputs, baseline]), request.target_id, request.foil_id
        ).double()  # [2]: F(input), F(baseline)
    input_output, baseline_output = float(endpoints[0]), float(endpoints[1])
    delta = float(attributions.double().sum()) - (input_output - baseline_output)
    return IntegratedGradientsScores(
        method="integrated_gradients",
        scores=aggregate(attributions, request.aggregation),
        convergence_delta=delta,
        input_output=input_output,
        baseline_output=baseline_output,
        n_steps=request.n_steps,
        baseline=request.baseline,
        aggregation=request.aggregation,
    )


#: The registry the CLI and the UI read: name → method. Labels for display live in METHOD_LABELS.
METHODS: dict[str, Callable[[LoadedModel, AttributionRequest], MethodScores]] = {
    "gradient": gradient,
    "attention": attention,
    "integrated_gradients": integrated_gradients,
}

METHOD_LABELS: dict[str, str] = {
    "gradient": "Gradient",
    "attention": "Attention",
    "integrated_gradients": "Integrated Gradients",
}
