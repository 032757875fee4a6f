"""Tiny GGUF files written the way llama.cpp's convert_hf_to_gguf.py writes them, from a saved
transformers model folder: F32 tensors under llama.cpp's names, the q/k rows permuted as llama.cpp
permutes them (Llama only; transformers undoes it when it loads), `{arch}.*` hyperparameters, and the
byte-level BPE tokenizer as `tokenizer.ggml.*` metadata.

Also the broken files the loader must refuse with a clear message.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

#: A ChatML-like template whose markers are the tiny tokenizers' own special tokens, so every boundary
#: between the template's text and the user's is also a token boundary.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ bos_token }}{{ message['role'] }}\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ bos_token }}assistant\n{% endif %}"
)



def chat_template_ids(tokenizer, prompt: str, system: str | None = None) -> tuple[list[int], list[bool]]:
    """What CHAT_TEMPLATE renders, written out here by hand: the ids of its pieces tokenised apart (its
    markers are special tokens, so no token crosses a piece boundary) and, per id, whether it is the prompt's."""
    bos, eos = tokenizer.bos_token, tokenizer.eos_token
    before = (f"{bos}system\n{system}{eos}\n" if system is not None else "") + f"{bos}user\n"
    after = f"{eos}\n{bos}assistant\n"
    ids, user = [], []
    for text, typed in ((before, False), (prompt, True), (after, False)):
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        user += [typed] * len(piece)
    return ids, user


#: The same, but refusing system messages (as Gemma's template does).
NO_SYSTEM_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    + CHAT_TEMPLATE
)

# transformers' parameter names → llama.cpp's tensor names (per layer: `{}` is the layer index).
_GLOBAL_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}

_TOKEN_NORMAL, _TOKEN_CONTROL = 1, 3  # llama.cpp's token types


def gguf_tensor_name(hf_name: str) -> str:
    if hf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[hf_name]
    prefix, layer, rest = hf_name.split(".", 3)[1:]
    assert prefix == "layers", hf_name
    return f"blk.{layer}.{_LAYER_NAMES[rest]}"


def llama_cpp_permute(weights: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """llama.cpp's `LlamaModel.permute` (convert_hf_to_gguf.py): rotary halves → interleaved pairs."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _tokenizer_metadata(folder: Path) -> dict:
    """Tokens by id, their types, the merges and the special ids of a saved byte-level BPE tokenizer."""
    spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = dict(spec["model"]["vocab"])
    special = {token["content"]: token["id"] for token in spec["added_tokens"] if token["special"]}
    vocab.update(special)
    tokens = [None] * len(vocab)
    for token, index in vocab.items():
        tokens[index] = token
    assert None not in tokens, "the vocabulary must be dense"
    merges = [merge if isinstance(merge, str) else " ".join(merge) for merge in spec["model"]["merges"]]
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    return {
        "tokens": tokens,
        "types": [_TOKEN_CONTROL if token in special else _TOKEN_NORMAL for token in tokens],
        "merges": merges,
        "bos": vocab[config["bos_token"]],
        "eos": vocab[config["eos_token"]],
    }


def write_gguf(folder: Path, path: Path, *, chat_template: str | None = None) -> Path:
    """Write the Llama or Qwen2 model saved in `folder` as an F32 GGUF file at `path`."""
    import gguf
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder)
    architecture = {"llama": "llama", "qwen2": "qwen2"}[config.model_type]
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    n_head, n_head_kv = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head

    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name(f"tiny-{architecture}")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_rope_dimension_count(head_dim)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    tokenizer = _tokenizer_metadata(folder)
    writer.add_tokenizer_model("gpt2")
    if architecture == "qwen2":
        writer.add_tokenizer_pre("qwen2")  # Qwen2's own split (digits one by one), as its GGUFs say
    writer.add_token_list(tokenizer["tokens"])
    writer.add_token_types(tokenizer["types"])
    writer.add_token_merges(tokenizer["merges"])
    writer.add_bos_token_id(tokenizer["bos"])
    writer.add_eos_token_id(tokenizer["eos"])
    writer.add_add_bos_token(True)
    if chat_template is not None:
        writer.add_chat_template(chat_template)

    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # a tied head is stored once, as token_embd
        weights = tensor.detach().numpy().astype(np.float32)
        if architecture == "llama" and name.endswith("q_proj.weight"):
            weights = llama_cpp_permute(weights, n_head, n_head)
        elif architecture == "llama" and name.endswith("k_proj.weight"):
            weights = llama_cpp_permute(weights, n_head, n_head_kv)
        writer.add_tensor(gguf_tensor_name(name), np.ascontiguousarray(weights))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_stub_gguf(path: Path, architecture: str) -> Path:
    """A well-formed GGUF that says it holds `architecture`, with one small tensor and nothing else."""
    import gguf

    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def build_qwen2_folder(folder: Path, seed: int = 0) -> Path:
    """A tiny random Qwen2 (q/k/v biases, untied head) with the tiny byte-level tokenizer."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from conftest import build_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(folder)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, initializer_range=0.1,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():  # random biases, so that a lost or misplaced bias changes the numbers
        for layer in model.model.layers:
            for projection in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                projection.bias.normal_(0.0, 0.1)
    model.save_pretrained(folder)
    return folder
