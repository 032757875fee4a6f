"""Loading a causal language model and its tokenizer once per process, on the right device and dtype.

Hub ids and local folders go through the same `from_pretrained` calls. Remote code is never run.
"""

from __future__ import annotations

import os
import re
import threading
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PretrainedConfig
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

from .settings import allowed_models
from .gguf import (
    PACKAGED_MODELS, cache_folder, check_gguf_file, is_gguf_path, mark_dequantised, packaged_gguf, store_converted,
)

def _demo_model_path() -> Path:
    """The repository's assets/demo-model, or the copy an installed package carries (pip install .)."""
    in_repository = Path(__file__).resolve().parent.parent / "assets" / "demo-model"
    if in_repository.is_dir():
        return in_repository
    return Path(__file__).resolve().parent / "demo_model"


#: Where the project's trained demo model lives (the default when MODEL_ID is unset).
DEMO_MODEL_PATH = _demo_model_path()

# Encoder families whose configs also map to a "...LMHeadModel" but only act causally with is_decoder.
_ENCODER_FAMILIES = {
    "bert", "roberta", "xlm-roberta", "xlm-roberta-xl", "electra", "camembert", "ernie",
    "data2vec-text", "xmod", "roberta-prelayernorm", "megatron-bert", "rembert", "big_bird",
}

# Instruction-tuned checkpoints say so in their names: "-Instruct", "-chat", "-it" (Gemma).
_CHAT_NAME = re.compile(r"(instruct|chat|(^|[-_])it($|[-_.]))", re.IGNORECASE)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A frozen model, its tokenizer, and a lock: attribution passes on one model run one at a time."""

    name: str
    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    dtype: torch.dtype
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    note: str = ""  # where the weights came from when that is not obvious (e.g. a packaged GGUF)

    @property
    def n_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def n_heads(self) -> int:
        return int(self.model.config.num_attention_heads)

    @property
    def input_device(self) -> torch.device:
        """Where input ids and embeddings must go (the embedding layer's device under device_map)."""
        return self.model.get_input_embeddings().weight.device


_cache: dict[tuple[str, str | None, str, torch.dtype], LoadedModel] = {}
_cache_lock = threading.Lock()


def default_model_name() -> str:
    """`MODEL_ID` from the environment, else the shipped demo model folder."""
    return os.environ.get("MODEL_ID", "").strip() or str(DEMO_MODEL_PATH)


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"unknown device {device!r}; use 'cpu' or 'cuda'") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available; use 'cpu'")
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """fp32 on CPU; bf16 on GPU (sums and norms are then formed in fp32 by the methods)."""
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in _DTYPES:
        return _DTYPES[dtype]
    raise ValueError(f"unknown dtype {dtype!r}; valid choices: {', '.join(_DTYPES)}")


#: Longest model name accepted (Linux's PATH_MAX); hub ids are far shorter.
MAX_MODEL_NAME_CHARS = 4096


def _check_model_name(name_or_path: str) -> None:
    """Refuse names that no hub id or folder can have, before any file system or hub lookup."""
    if len(name_or_path) > MAX_MODEL_NAME_CHARS:
        raise ValueError(
            f"model name is {len(name_or_path):,} characters long; a hub id or folder path has at most "
            f"{MAX_MODEL_NAME_CHARS}"
        )
    for position, character in enumerate(name_or_path):
        if unicodedata.category(character) == "Cc":
            raise ValueError(
                f"model name contains the control character U+{ord(character):04X} at position {position}; "
                "give a hub id such as meta-llama/Llama-3.2-1B or a folder path"
            )


def _path_is(name_or_path: str, check: str) -> bool:
    """`Path.exists()` or `Path.is_dir()` of a user-given name; False where the system cannot even look
    the name up (a part longer than the file system allows raises OSError rather than answering)."""
    try:
        return bool(getattr(Path(name_or_path).expanduser(), check)())
    except (OSError, ValueError, RuntimeError):
        return False


def is_local_path(name_or_path: str) -> bool:
    return _path_is(name_or_path, "exists") or name_or_path.startswith(("/", ".", "~"))


def check_hosted_policy(name_or_path: str) -> None:
    """On a hosted Space (SPACE_ID set) only allow-listed hub ids load; local paths never do."""
    if not os.environ.get("SPACE_ID"):
        return
    if Path(name_or_path).expanduser().resolve() == DEMO_MODEL_PATH:
        return  # the shipped demo model is part of the Space itself, not a user-chosen path
    allowed = allowed_models()
    default = os.environ.get("MODEL_ID", "").strip()
    if default:
        allowed.append(default)
    allowed += [name for name in PACKAGED_MODELS if name not in allowed]  # built-in real models
    if is_local_path(name_or_path) and name_or_path not in allowed:
        raise ValueError("local model folders cannot be loaded on the hosted Space; pick a listed model")
    if name_or_path not in allowed:
        raise ValueError(
            f"model {name_or_path!r} is not allowed on this Space; allowed: {', '.join(allowed) or 'none'}"
        )


def _is_causal(config: PretrainedConfig) -> bool:
    if getattr(config, "is_encoder_decoder", False):
        return False
    if config.model_type in _ENCODER_FAMILIES and not getattr(config, "is_decoder", False):
        return False
    architectures = getattr(config, "architectures", None) or []
    if architectures:
        return any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in architectures)
    return type(config) in MODEL_FOR_CAUSAL_LM_MAPPING


def _explain_load_error(name_or_path: str, error: Exception) -> ValueError:
    """Turn the hub's and transformers' errors into one clear sentence (never echoing the token)."""
    message = str(error)
    token = os.environ.get("HF_TOKEN")
    if token:
        message = message.replace(token, "***")
    lowered = message.lower()
    if "trust_remote_code" in lowered or "custom code" in lowered:
        return ValueError(f"model {name_or_path!r} requires running its own remote code, which this tool refuses")
    if "gated" in lowered or "401" in lowered or "403" in lowered or "restricted" in lowered:
        return ValueError(
            f"model {name_or_path!r} is gated: accept its licence on huggingface.co, then set the "
            "HF_TOKEN environment variable to an access token with read permission"
        )
    if name_or_path.startswith(("/", ".", "~")) and not _path_is(name_or_path, "exists"):
        return ValueError(f"no model folder at {name_or_path!r}: the path does not exist")
    if _path_is(name_or_path, "is_dir"):
        return ValueError(
            f"the folder {name_or_path!r} is not a complete model (needs config.json, weights and "
            f"tokenizer files): {message.splitlines()[0] if message else type(error).__name__}"
        )
    return ValueError(
        f"could not load model {name_or_path!r}: not a local folder, and not found on (or not reachable "
        f"from) the Hugging Face hub ({message.splitlines()[0] if message else type(error).__name__})"
    )


def load_model(
    name_or_path: str,
    *,
    gguf_file: str | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> LoadedModel:
    """Load (or fetch from this process's cache) a causal LM and its tokenizer, parameters frozen.

    `name_or_path`: a hub id, a local folder, or a local `.gguf` file. `gguf_file`: the name of a GGUF
    file inside that hub repository or folder (llama.cpp / Ollama weights, dequantised by transformers).
    A hub id with a packaged offline copy (`attribution.gguf.PACKAGED_MODELS`, e.g.
    HuggingFaceTB/SmolLM2-135M-Instruct) loads that copy when the hub cannot be reached.
    """
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise ValueError("model name must be a non-empty hub id (e.g. meta-llama/Llama-3.2-1B) or folder path")
    name_or_path = name_or_path.strip()
    _check_model_name(name_or_path)
    if gguf_file is not None:
        if not isinstance(gguf_file, str) or not gguf_file.strip() or not is_gguf_path(gguf_file.strip()):
            raise ValueError(f"gguf_file must be the name of a .gguf file, got {gguf_file!r}")
        gguf_file = gguf_file.strip()
        _check_model_name(gguf_file)
    check_hosted_policy(name_or_path)
    resolved_device = resolve_device(device)
    resolved_dtype = resolve_dtype(dtype, resolved_device)
    key = (name_or_path, gguf_file, str(resolved_device), resolved_dtype)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
        loaded = _load_uncached(name_or_path, gguf_file, resolved_device, resolved_dtype)
        _cache[key] = loaded
        return loaded


def _load_uncached(
    name_or_path: str, gguf_file: str | None, device: torch.device, dtype: torch.dtype
) -> LoadedModel:
    if gguf_file is None and is_gguf_path(name_or_path):
        return _load_gguf(Path(name_or_path).expanduser(), name_or_path, device, dtype)
    if gguf_file is not None:
        return _load_gguf(_locate_gguf(name_or_path, gguf_file), name_or_path, device, dtype)
    try:
        return _load_pretrained(name_or_path, name_or_path, device, dtype)
    except ValueError:
        if name_or_path not in PACKAGED_MODELS or _path_is(name_or_path, "exists"):
            raise
    # The hub (or its local cache) does not have it: use the copy a pip package ships.
    note = PACKAGED_MODELS[name_or_path].note
    return _load_gguf(packaged_gguf(name_or_path), name_or_path, device, dtype, note=note)


def _locate_gguf(name_or_path: str, gguf_file: str) -> Path:
    """The local path of `gguf_file` in a folder, or in a hub repository (downloaded to the hub cache)."""
    if _path_is(name_or_path, "is_dir"):
        return Path(name_or_path).expanduser() / gguf_file
    if is_local_path(name_or_path):
        raise ValueError(f"no model folder at {name_or_path!r}: the path does not exist")
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(name_or_path, gguf_file, token=os.environ.get("HF_TOKEN") or None))
    except (OSError, ValueError) as error:
        raise _explain_load_error(f"{name_or_path} ({gguf_file})", error) from None


def _load_gguf(path: Path, name: str, device: torch.device, dtype: torch.dtype, note: str = "") -> LoadedModel:
    """A GGUF file through its converted copy when one is cached; otherwise converted (fp32) and cached."""
    # A copy exists only for a file that passed the check, and is keyed by its size and mtime: skip the
    # check (gguf's reader parses the whole vocabulary, most of a cached load's time) when there is one.
    cached = cache_folder(path) if path.is_file() else None
    if cached is not None and cached.is_dir():
        return _load_pretrained(str(cached), name, device, dtype, note=note or f"GGUF {path.name}")
    check_gguf_file(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, NotImplementedError) as error:
        raise ValueError(f"could not convert the GGUF file {str(path)!r}: {str(error).splitlines()[0]}") from None
    mark_dequantised(model)
    store_converted(path, model, tokenizer)
    model.to(dtype)
    if device.type == "cuda":
        model.to(device)
    return _finish(name, model, tokenizer, device, dtype, note or f"GGUF {path.name}")


def _load_pretrained(
    source: str, name: str, device: torch.device, dtype: torch.dtype, note: str = ""
) -> LoadedModel:
    token = os.environ.get("HF_TOKEN") or None
    common = {"token": token, "trust_remote_code": False}
    try:
        config = AutoConfig.from_pretrained(source, **common)
    except (OSError, ValueError, KeyError) as error:
        raise _explain_load_error(name, error) from None
    if not _is_causal(config):
        raise ValueError(
            f"model {name!r} ({config.model_type}) is not a causal language model; "
            "token attribution here needs a decoder-only model such as Llama"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **common)
        placement = {"device_map": "auto"} if device.type == "cuda" else {}
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **placement, **common)
    except (OSError, ValueError, KeyError) as error:
        raise _explain_load_error(name, error) from None
    return _finish(name, model, tokenizer, device, dtype, note)


def _finish(name: str, model, tokenizer, device: torch.device, dtype: torch.dtype, note: str) -> LoadedModel:
    if device.type != "cuda":
        model.to(device)
    if tokenizer.pad_token is None:
        # As the seed notebook: generation needs a pad id, and eos is the conventional stand-in.
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    # Only input gradients are ever needed; frozen parameters keep autograd from building 1B of them.
    model.requires_grad_(False)
    return LoadedModel(name=name, model=model, tokenizer=tokenizer, device=device, dtype=dtype, note=note)


def is_chat_model_name(name: str) -> bool:
    """Whether a model name says the model is instruction-tuned, without loading it: a packaged model by
    its entry, any other by its last path part (-Instruct, -chat, -it)."""
    packaged = PACKAGED_MODELS.get(name)
    if packaged is not None:
        return packaged.chat
    return bool(_CHAT_NAME.search(Path(name).name))


def is_chat_model(loaded: LoadedModel) -> bool:
    """Whether prompts should go through the chat template by default: the tokenizer has one and the
    model is known to be instruction-tuned (`is_chat_model_name`)."""
    if not getattr(loaded.tokenizer, "chat_template", None):
        return False
    return is_chat_model_name(loaded.name)


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


@contextmanager
def eager_attention(loaded: LoadedModel) -> Iterator[None]:
    """Run the block with eager attention: sdpa and flash kernels return no attention weights."""
    model = loaded.model
    previous = model.config._attn_implementation
    if previous != "eager":
        model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if previous != "eager":
            model.set_attn_implementation(previous)


def loaded_models() -> list[LoadedModel]:
    """The models this process holds in its loader cache."""
    with _cache_lock:
        return list(_cache.values())


def release(loaded: LoadedModel) -> None:
    """Drop `loaded` from the loader cache (its memory is freed once nothing else holds it; a later
    `load_model` loads it again)."""
    import gc

    with _cache_lock:
        for key in [key for key, value in _cache.items() if value is loaded]:
            del _cache[key]
    gc.collect()
    if loaded.device.type == "cuda":
        torch.cuda.empty_cache()
