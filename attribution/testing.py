"""Tiny models built offline, for tests, benchmarks and scripts: a byte-level BPE tokenizer with
Llama-3 special tokens, trained on a few sentences in a second, and seeded random Llama weights
saved as an ordinary Hugging Face folder (loadable like any hub model, no network).

    from attribution.testing import build_model_folder, tiny_tokenizer
    folder = build_model_folder(tmp / "tiny", tiny_tokenizer(), seed=0, hidden_size=32,
                                intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=2)

Same seed, same texts, same settings: the same files, byte for byte.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
SEED_PROMPT = "What is the Capital City of Latvia?"

#: The sentences the tiny tokenizer learns its merges from (the seed prompt and its answer first).
CORPUS = (
    SEED_PROMPT + " Riga",
    "What is the Capital City of Estonia? Tallinn",
    "What is the Capital City of Lithuania? Vilnius",
    "The capital of France is Paris, and the capital of Spain is Madrid.",
    "Which city is the capital of Germany? Berlin is the answer.",
    "numbers 0 1 2 3 4 5 6 7 8 9 and punctuation , . ! ? ; : ' \" ( )",
)


def byte_level_bpe(
    texts: Iterable[str],
    vocab_size: int,
    *,
    min_frequency: int = 0,
    padded_to: int | None = None,
    pair_type_id: int = 0,
    **options,
):
    """A byte-level BPE trained on `texts` (words keep their leading space), BOS added to every
    encoding, wrapped as a `PreTrainedTokenizerFast` with BOS/EOS set.

    `padded_to`: add reserved tokens `<|reserved_N|>` up to that many ids (as Llama 3's reserved
    tokens), so every id a random model of that vocabulary can generate decodes and encodes back to
    itself. `pair_type_id`: the type id of a pair's second sequence. `options` go to
    `PreTrainedTokenizerFast` (pad_token, model_max_length, ...)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    if padded_to is not None:
        tokenizer.add_tokens([
            AddedToken(f"<|reserved_{token_id}|>", normalized=False, special=False)
            for token_id in range(tokenizer.get_vocab_size(), padded_to)
        ])
    second = f"$B:{pair_type_id}" if pair_type_id else "$B"
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} {second}", special_tokens=[(BOS, tokenizer.token_to_id(BOS))]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, **options)
    if padded_to is not None and len(fast) != padded_to:
        raise RuntimeError(f"tokenizer has {len(fast)} ids, wanted {padded_to}")
    return fast


def tiny_tokenizer():
    """The tests' tokenizer: 400 ids learnt from `CORPUS`."""
    return byte_level_bpe(list(CORPUS) * 4, 400)


def random_llama(tokenizer, seed: int = 0, **config):
    """A `LlamaForCausalLM` with seeded random weights; `config`: LlamaConfig keywords (the vocabulary
    size and BOS/EOS ids default to the tokenizer's)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    defaults = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                    eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**{**defaults, **config}))


def build_model_folder(folder: Path, tokenizer, seed: int = 0, **config) -> Path:
    """`random_llama(tokenizer, seed, **config)` and its tokenizer saved in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    random_llama(tokenizer, seed, **config).save_pretrained(folder)
    return folder


def sentencepiece_bpe(texts: Iterable[str], vocab_size: int):
    """A SentencePiece-style BPE as Llama 2's tokenizer is converted to a fast one: "▁" marks a word
    start (prepended to the first word), unknown characters fall back to their UTF-8 bytes (`<0xNN>`
    pieces), and the decoder strips the first space; `<s>` added to every encoding."""
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tokenizer.train_from_iterator(texts, trainer)
    trained = json.loads(tokenizer.to_str())["model"]
    vocab = dict(trained["vocab"])
    for byte in range(256):  # byte fallback: every byte has a piece of its own
        vocab.setdefault(f"<0x{byte:02X}>", len(vocab))
    merges = [tuple(merge.split(" ")) if isinstance(merge, str) else tuple(merge) for merge in trained["merges"]]
    tokenizer.model = models.BPE(vocab, merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    tokenizer.decoder = decoders.Sequence([
        decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0),
    ])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tokenizer.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
