"""Benchmark models: random-weight Llamas of real shapes, built offline, each with its own tokenizer.

Nothing here downloads anything. A shape is built once from its config (seeded), saved as an ordinary
Hugging Face folder under a cache directory (default /tmp/attribution-bench-models) and then loaded
through the same `from_pretrained` calls a hub model goes through.

The tokenizer is a small byte-level BPE trained on a few sentences, with Llama-3 style BOS/EOS; its
vocabulary is padded with reserved tokens up to the model's real vocabulary size (49,152 or 128,256),
so every id a random model can generate decodes (and re-encodes to itself).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from attribution import DEMO_MODEL_PATH
from attribution.testing import CORPUS, SEED_PROMPT, byte_level_bpe, random_llama

DEFAULT_CACHE = Path(os.environ.get("BENCH_MODEL_CACHE", "/tmp/attribution-bench-models"))

# Words that make up long prompts. Each appears in the tokenizer's training text often enough to be
# one token (with its leading space), so prompts of an exact token count are easy to build.
FILLER_WORDS = (
    "the capital city of a country is where its government sits and most of its people live "
    "while some nations keep the parliament in one town and the courts in another and many old "
    "maps show borders that moved over time so the answer to a simple question can change"
).split()

# The tests' sentences (the seed prompt first) plus the filler words, alone and space-prefixed.
_CORPUS = [*CORPUS, " ".join(FILLER_WORDS), " " + " ".join(FILLER_WORDS)]


@dataclass(frozen=True)
class Shape:
    """A Llama shape: LlamaConfig keyword arguments, plus what the benchmark says about it."""

    name: str
    description: str
    config: dict = field(default_factory=dict)
    expected_parameters: int | None = None  # the real checkpoint's count, checked when given


SHAPES: dict[str, Shape] = {
    "tiny": Shape(
        "tiny",
        "tiny Llama (hidden 64, 2 layers, 4 heads / 2 KV, vocab 512, tied) for smoke tests",
        dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
             max_position_embeddings=2048, rms_norm_eps=1e-5),
    ),
    "smollm-135m": Shape(
        "smollm-135m",
        "SmolLM-135M shape (hidden 576, 30 layers, 9 heads / 3 KV, intermediate 1536, vocab 49152, tied)",
        dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
             num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True,
             max_position_embeddings=2048, rms_norm_eps=1e-5,
             rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        expected_parameters=134_515_008,
    ),
    "llama-3.2-1b": Shape(
        "llama-3.2-1b",
        "Llama-3.2-1B shape (hidden 2048, 16 layers, 32 heads / 8 KV, intermediate 8192, "
        "vocab 128256, tied, rope_theta 500000 + llama3 scaling)",
        dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
             num_attention_heads=32, num_key_value_heads=8, head_dim=64, tie_word_embeddings=True,
             max_position_embeddings=131072, rms_norm_eps=1e-5,
             rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                              "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                              "original_max_position_embeddings": 8192}),
        expected_parameters=1_235_814_400,
    ),
}

MODEL_NAMES = ("demo", *SHAPES)


def build_tokenizer(vocab_size: int, trained_size: int = 400):
    """A byte-level BPE (BOS added automatically) padded with reserved tokens to `vocab_size` ids: every
    id then decodes, and the decoded text encodes back to the same id (Inseq works on text)."""
    return byte_level_bpe(_CORPUS * 8, min(trained_size, vocab_size), padded_to=vocab_size)


def _fingerprint(shape: Shape, seed: int) -> str:
    text = json.dumps({"config": shape.config, "seed": seed, "corpus": _CORPUS, "v": 2}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def model_folder(name: str, cache_dir: Path = DEFAULT_CACHE, seed: int = 0, log=print) -> Path:
    """The folder of model `name` ("demo" or a key of SHAPES), building and caching it if needed.

    Raises FileNotFoundError for "demo" when assets/demo-model is not there (yet)."""
    if name == "demo":
        if not (DEMO_MODEL_PATH / "config.json").exists():
            raise FileNotFoundError(f"the demo model is not built yet ({DEMO_MODEL_PATH} has no config.json)")
        return DEMO_MODEL_PATH
    shape = SHAPES[name]
    folder = Path(cache_dir) / f"{name}-{_fingerprint(shape, seed)}"
    if (folder / ".complete").exists():
        return folder
    import time

    started = time.perf_counter()
    log(f"  building {name} (random weights, seed {seed}) in {folder} ...")
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    tokenizer = build_tokenizer(shape.config["vocab_size"])
    tokenizer.save_pretrained(partial)
    model = random_llama(tokenizer, seed, **shape.config)
    count = sum(parameter.numel() for parameter in model.parameters())
    if shape.expected_parameters is not None and count != shape.expected_parameters:
        raise RuntimeError(f"{name}: built {count:,} parameters, the real model has {shape.expected_parameters:,}")
    model.save_pretrained(partial)
    del model
    (partial / ".complete").write_text(f"{count}\n")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    log(f"  built {name}: {count:,} parameters in {time.perf_counter() - started:.0f} s")
    return folder


def parameter_count(model) -> int:
    """Distinct parameters (tied embeddings counted once), as `model.num_parameters()` does."""
    return sum(parameter.numel() for parameter in {id(p): p for p in model.parameters()}.values())


def weight_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in {id(p): p for p in model.parameters()}.values())


def prompt_with_tokens(tokenizer, n_tokens: int) -> str:
    """Text that tokenizes (BOS included) to exactly `n_tokens` ids, ending with the seed question
    when there is room; filler words are prepended to make up the length."""
    def count(text: str) -> int:
        return len(tokenizer(text)["input_ids"])

    seed_words = SEED_PROMPT.split()
    # Short prompts: the last words of the seed question.
    for start in range(len(seed_words)):
        text = " ".join(seed_words[start:])
        if count(text) == n_tokens:
            return text
    # Longer: filler words before the question; each (space-prefixed, trained) word is one token.
    words: list[str] = []
    position = 0
    while True:
        text = " ".join(words + seed_words)
        have = count(text)
        if have == n_tokens:
            return text
        if have > n_tokens:
            break
        words.append(FILLER_WORDS[position % len(FILLER_WORDS)])
        position += 1
    # Fallback (a tokenizer that merges differently): trim filler to the closest count from below.
    for cut in range(len(words) - 1, -1, -1):
        text = " ".join(words[:cut] + seed_words)
        if count(text) <= n_tokens:
            # Top up with single characters when a word was worth several tokens.
            while count(text) < n_tokens:
                text = "a " + text
            if count(text) == n_tokens:
                return text
    raise ValueError(f"could not build a prompt of exactly {n_tokens} tokens with this tokenizer")
