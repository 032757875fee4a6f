"""The tests' shared helpers, in three parts: hand-made results for the display tests (no model), tiny
GGUF files written as llama.cpp writes them, and serving app.py on a loopback port for HTTP tests."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch

from attribution.results import (
    Analysis,
    AnswerMap,
    AttentionScores,
    IntegratedGradientsScores,
    MethodScores,
    Prediction,
    Target,
)
from attribution.testing import SEED_PROMPT
from attribution.trust import Completeness, Faithfulness, TrustReport


# --- sample analyses ---------------------------------------------------------------------------
# Hand-made results (no model) for the tests of the figures, tables and explanations: the display
# layer only ever sees these objects.

TOKENS = ("<|begin_of_text|>", "What", " is", " the", " Capital", " City", " of", " Latvia", "?", "\n")


def make_analysis(aggregation: str = "l2", n_layers: int = 3, n_heads: int = 4) -> Analysis:
    """A hand-made result (no model): the plotting layer only ever sees these objects."""
    n = len(TOKENS)
    rng = np.random.default_rng(0)
    per_head = rng.dirichlet(np.ones(n), size=(n_layers, n_heads))  # [layers, heads, tokens]
    ig_scores = rng.normal(size=n) if aggregation == "sum" else rng.random(n)
    methods = {
        "gradient": MethodScores("gradient", rng.random(n) * 3.0),
        "attention": AttentionScores("attention", per_head.mean(axis=(0, 1)), per_layer=per_head.mean(axis=1),
                                     per_head=per_head),
        "integrated_gradients": IntegratedGradientsScores(
            "integrated_gradients", ig_scores, convergence_delta=0.02, input_output=3.0, baseline_output=1.0,
            n_steps=50, baseline="zero", aggregation=aggregation),
    }
    return Analysis(model="tiny", prompt="What is the Capital City of Latvia?\n", input_tokens=TOKENS,
                    input_ids=np.arange(n), generated_text=" Riga", generated_ids=np.array([99]),
                    target=Target(text=" Riga", id=99, position=n), methods=methods)


def tick_texts(ax) -> list[str]:
    return [label.get_text() for label in ax.get_xticklabels()]


GENERATED = (" Riga", ".", "<|end_of_text|>")


def make_answer_map(method: str = "input_x_gradient") -> AnswerMap:
    """Generated tokens × sources (the prompt, then the generated tokens but the last), causal zeros."""
    sources = TOKENS + GENERATED[:-1]
    rng = np.random.default_rng(1)
    matrix = rng.normal(size=(len(GENERATED), len(sources)))
    for row in range(len(GENERATED)):
        matrix[row, len(TOKENS) + row:] = 0.0
    return AnswerMap(method=method, targets=GENERATED, sources=sources, matrix=matrix)


def make_rich_analysis() -> Analysis:
    """make_analysis plus everything analyze(contrast=..., all_targets=True, trust=True) adds."""
    base = make_analysis()
    special = np.zeros(len(TOKENS), dtype=bool)
    special[0] = True
    names = list(base.methods)
    report = TrustReport(
        faithfulness={name: Faithfulness(comprehensiveness, sufficiency, 0.3, 0.5)
                      for name, (comprehensiveness, sufficiency) in zip(names, [(0.6, 0.2), (0.5, 0.7), (0.25, 0.6)])},
        spearman={"gradient|attention": 0.5, "gradient|integrated_gradients": -0.25},  # one pair undefined
        top3_overlap={"gradient|attention": 2 / 3, "gradient|integrated_gradients": 1 / 3,
                      "attention|integrated_gradients": 1.0},
        completeness=Completeness(0.5, 50, "zero", rerun_n_steps=100, rerun_relative_error=0.3),
        verdict="Gradient and Attention agree on 'Latvia'.", ks=(1, 2, 5),
    )
    return Analysis(model=base.model, prompt=base.prompt, input_tokens=TOKENS, input_ids=base.input_ids,
                    generated_text="".join(GENERATED[:2]), generated_ids=np.array([99, 7, 1]), target=base.target,
                    methods=base.methods, foil=Target(" Tallinn", 98, len(TOKENS)),
                    top_predictions=(Prediction(" Riga", 99, 0.9), Prediction(" Tallinn", 98, 0.031)),
                    special_tokens=special, answer_map={"input_x_gradient": make_answer_map()}, trust=report)


#: Which TOKENS make_chat_analysis pretends a chat template added (role words and the final line break).
CHAT_TEMPLATE_POSITIONS = (1, 2, 9)


def make_chat_analysis() -> Analysis:
    """make_rich_analysis as if the prompt went through a chat template: BOS is special, the tokens at
    CHAT_TEMPLATE_POSITIONS are the template's, the rest the user's."""
    base = make_rich_analysis()
    user = ~base.special_tokens
    user[list(CHAT_TEMPLATE_POSITIONS)] = False
    return dataclasses.replace(base, user_tokens=user, chat=True)


# --- gguf files --------------------------------------------------------------------------------
# Tiny GGUF files written the way llama.cpp's convert_hf_to_gguf.py writes them, from a saved
# transformers model folder: F32 tensors under llama.cpp's names, the q/k rows permuted as llama.cpp
# permutes them (Llama only; transformers undoes it when it loads), `{arch}.*` hyperparameters, and the
# byte-level BPE tokenizer as `tokenizer.ggml.*` metadata.
#
# Also the broken files the loader must refuse with a clear message.

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


def write_gguf(folder: Path, path: Path, *, chat_template: str | None = None, dtype: str = "f32") -> Path:
    """Write the Llama or Qwen2 model saved in `folder` as an F32 GGUF file at `path` (dtype "f16": its
    matrices in F16, the norms in F32, as llama.cpp's --outtype f16 writes them)."""
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
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16}[dtype])

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
        if dtype == "f16" and weights.ndim == 2:
            weights = weights.astype(np.float16)
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


# --- app server --------------------------------------------------------------------------------
# Serve app.py in this process on a free loopback port, for tests that talk to it over HTTP.
#
# Only 127.0.0.1 is ever bound or contacted; the demo is always closed, even when a test fails.

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


@dataclass
class Served:
    url: str
    demo: Any


@contextmanager
def serve(default_model: str, cache_examples: bool = False, styled: bool = False) -> Iterator[Served]:
    """Build the app's Blocks for `default_model` and launch it on a free 127.0.0.1 port; with
    `cache_examples`, the examples are cached lazily as in `python app.py` (in the private folder),
    and `styled` launches with the app's css and theme, as `python app.py` does.

    The server gets its own gradio cache folder. Gradio names cached copies by a hash of their
    content with a seed shared by every process on the machine (gradio/hash_seed.txt), and a closing
    server deletes every cached file it handed out: another test process (or app) that produced the
    same bytes would then see its download links answer 403. A private folder keeps runs apart.
    """
    import app

    cache = tempfile.mkdtemp(prefix="attribution-test-gradio-")
    variables = {"GRADIO_TEMP_DIR": cache}  # read when the Blocks are built and when the server starts
    if cache_examples:  # lazily cached examples go to a throwaway folder, as app.main arranges
        variables["GRADIO_EXAMPLES_CACHE"] = os.path.join(cache, "examples")
    previous = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    demo = None
    url = None
    try:
        demo = app.build_demo(default_model, cache_examples=cache_examples)
        for _attempt in range(5):  # a port picked free can be taken before gradio binds it
            port = free_port()
            try:
                demo.launch(server_name=LOOPBACK, server_port=port, prevent_thread_lock=True, quiet=True,
                            **(app.launch_options() if styled else {}))
            except OSError:
                continue
            url = f"http://{LOOPBACK}:{port}/"
            break
        if url is None:
            raise RuntimeError("could not bind a free loopback port for the app")
        yield Served(url, demo)
    finally:
        if demo is not None:
            demo.close()
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(cache, ignore_errors=True)


def make_client(url: str, download_dir: Path | str | bool):
    """A gradio_client Client for the loopback app: no telemetry, no banner."""
    from gradio_client import Client

    assert url.startswith(f"http://{LOOPBACK}:"), url
    download = download_dir if download_dir is False else str(download_dir)
    return Client(url, verbose=False, download_files=download, analytics_enabled=False)


def api_outputs(result: Any) -> dict[str, Any]:
    """`/analyze`'s outputs by name (the client leaves the State output out)."""
    import app

    keys = [key for key in app.OUTPUT_KEYS if key != "state"]
    assert len(result) == len(keys), (len(result), len(keys))
    return dict(zip(keys, result))


# --- the page's handlers ---------------------------------------------------------------------------
# Shared by the UI tests: the methods the page runs, the PNG bytes it shows, and a chat-template model.

#: A chat template shaped like SmolLM2's: a default system message, one line per role, the generation prompt.
SYSTEM_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|begin_of_text|>system\nYou name capitals.<|end_of_text|>\n{% endif %}"
    "{% for message in messages %}<|begin_of_text|>{{ message['role'] }}\n{{ message['content'] }}<|end_of_text|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|begin_of_text|>assistant\n{% endif %}"
)
#: Settings for a quick analysis through the page's handler.
QUICK = {"methods": ["gradient", "attention"], "max_new_tokens": 3, "all_targets": False, "trust": False}


def png_of(plot) -> bytes:
    """The PNG bytes a gr.Plot value shows."""
    import base64

    return base64.b64decode(plot.plot.split(",", 1)[1])


def png_bytes_of(figure, dpi: int = 100) -> bytes:
    """A figure saved as the page saves it (PNG at the page's dpi, `ui.store.DPI`)."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def exported(values: dict) -> dict:
    """The JSON download of a handler's outputs."""
    return json.loads(Path(values["export:json"]).read_text(encoding="utf-8"))


def template_flags(data: dict) -> np.ndarray:
    """Which input tokens the chat template added, from the exported JSON."""
    return ~np.array(data["user_tokens"]) & ~np.array(data["special_tokens"])


# --- calling the served app -------------------------------------------------------------------------

REQUEST_TIMEOUT_S = 120  # one request on a tiny model takes about a second; generous for shared CPUs
#: The cheapest valid request: one method, no generation, no answer map or trust panel.
API_QUICK = {"methods": ["gradient"], "max_new_tokens": 0, "ig_steps": 2, "all_targets": False, "trust": False}
GENERIC_GRADIO_ERROR = "upstream Gradio app has raised an exception"


def call(client, timeout: float = REQUEST_TIMEOUT_S, **kwargs: Any) -> dict[str, Any]:
    """One bounded `/analyze` call (API_QUICK settings unless overridden), outputs by name."""
    arguments = {"prompt": SEED_PROMPT, **API_QUICK, **kwargs}
    return api_outputs(client.submit(**arguments, api_name="/analyze").result(timeout=timeout))


def assert_clear_error(error: BaseException, message: str) -> str:
    from gradio_client.exceptions import AppError

    assert isinstance(error, AppError), f"{type(error).__name__}: {error}"
    text = str(error)
    assert message in text, text
    assert "Traceback" not in text and 'File "' not in text, text
    assert GENERIC_GRADIO_ERROR not in text, text
    return text


def assert_refused_then_serving(client, message: str, **kwargs: Any) -> str:
    """The bad request gets `message`; the very next valid request succeeds."""
    with pytest.raises(Exception) as raised:
        call(client, **kwargs)
    text = assert_clear_error(raised.value, message)
    values = call(client)
    assert values["gradient:highlight"], "the request after a refused one must succeed"
    return text
