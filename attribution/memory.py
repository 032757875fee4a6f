"""Whether a second model fits in memory beside the first (the page's model comparison), from its
config alone: its weights' bytes (parameters counted from the config × the bytes of the dtype it would
load in) × HEADROOM, against the free memory as the batch sizing measures it (`budget.available_memory_bytes`:
MemAvailable on the CPU, the GPU's free memory). When it does not fit, the first model is released from
the loader cache before the second loads, and the second after its run (`load_second`, `finish_second`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transformers import AutoConfig, PretrainedConfig

from .gguf import PACKAGED_MODELS, cache_folder, is_gguf_path, packaged_gguf
from .models import LoadedModel, load_model, loaded_models, release, resolve_device, resolve_dtype
from .budget import available_memory_bytes as _available_memory_bytes

HEADROOM = 1.5  # weights × this: activations, the converted copy while loading, the allocator's slack


def parameter_count(config: PretrainedConfig) -> int:
    """A decoder's parameters from its config: embeddings (and an untied head), per layer attention
    (grouped-query aware), a gated MLP and two norms, and the final norm."""
    text = getattr(config, "text_config", None) or config
    hidden, layers = int(text.hidden_size), int(text.num_hidden_layers)
    heads = int(text.num_attention_heads)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(text, "head_dim", None) or hidden // heads)
    intermediate = int(getattr(text, "intermediate_size", None) or 4 * hidden)
    vocab = int(text.vocab_size)
    attention = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2  # q, o; k, v
    mlp = 3 * hidden * intermediate  # gate, up, down (a plain MLP has two: an overestimate, on the safe side)
    embeddings = vocab * hidden * (1 if getattr(config, "tie_word_embeddings", True) else 2)
    return embeddings + layers * (attention + mlp + 2 * hidden) + hidden


def _config(name_or_path: str) -> PretrainedConfig:
    """The config without loading weights: a folder's or the hub cache's, else a packaged GGUF's
    converted copy or the GGUF file's own metadata."""
    if is_gguf_path(name_or_path):
        path = Path(name_or_path).expanduser()
        return AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
    try:
        return AutoConfig.from_pretrained(name_or_path)
    except (OSError, ValueError) as error:
        if name_or_path not in PACKAGED_MODELS:
            raise ValueError(f"cannot read the config of {name_or_path!r} to size it: {str(error).splitlines()[0]}") from None
    path = packaged_gguf(name_or_path)
    converted = cache_folder(path)
    if (converted / "config.json").is_file():
        return AutoConfig.from_pretrained(str(converted))
    return AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)


def weight_bytes(name_or_path: str, device: str | None = None) -> int:
    """The bytes `load_model(name_or_path, device=device)` would hold in weights."""
    resolved = resolve_device(device)
    element = {"float32": 4}.get(str(resolve_dtype(None, resolved)).removeprefix("torch."), 2)
    return parameter_count(_config(name_or_path)) * element


def _loaded(name_or_path: str) -> LoadedModel | None:
    return next((model for model in loaded_models() if model.name == name_or_path), None)


@dataclass(frozen=True)
class MemoryPlan:
    """Whether `second` loads beside the models already in memory."""

    second: str
    needed_bytes: int  # its weights × HEADROOM (0: already loaded)
    available_bytes: int

    @property
    def both_fit(self) -> bool:
        return self.needed_bytes <= self.available_bytes

    def text(self, first: str) -> str:
        """What the page says it did."""
        gb = 1024**3
        if self.needed_bytes == 0:
            return f"Both models in memory: {self.second} was already loaded."
        sizes = f"{self.second} needs about {self.needed_bytes / gb:.2f} GB with headroom, {self.available_bytes / gb:.2f} GB free"
        if self.both_fit:
            return f"Both models in memory ({sizes})."
        return (f"One model at a time ({sizes}): {first} was released from memory while {self.second} ran, "
                "and reloads on the next analysis.")


def plan_second(second: str, device: str | None = None) -> MemoryPlan:
    if _loaded(second) is not None:
        return MemoryPlan(second, 0, _available_memory_bytes(resolve_device(device)))
    needed = int(HEADROOM * weight_bytes(second, device))
    return MemoryPlan(second, needed, _available_memory_bytes(resolve_device(device)))


def load_second(first: str, second: str, device: str | None = None) -> tuple[LoadedModel, MemoryPlan]:
    """The second model, loaded beside the first when both fit, else after releasing the first."""
    plan = plan_second(second, device)
    if not plan.both_fit:
        held = _loaded(first)
        if held is not None:
            release(held)
    return load_model(second, device=device), plan


def finish_second(loaded: LoadedModel, plan: MemoryPlan) -> None:
    """After the second model's run: released again when the two did not fit together."""
    if not plan.both_fit:
        release(loaded)
