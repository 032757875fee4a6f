"""GGUF files: tiny random Llama and Qwen2 models written as llama.cpp writes them load with exactly
the original weights and give exactly the original scores; the converted copy is written once,
atomically, and read back equal; and every broken input gets one clear message (library and CLI)."""

from __future__ import annotations

import errno
import importlib.util
import os
import warnings

import numpy as np
import pytest
import torch

import attribution
import attribution.models as models
from attribution.gguf import PACKAGED_MODELS, cache_folder, cache_root, check_gguf_file
from attribution.models import is_chat_model
from attribution.prompts import encode_prompt
from conftest import SEED_PROMPT, SMOLLM2, SMOLLM2_INSTALL
from helpers import (
    CHAT_TEMPLATE, build_qwen2_folder, chat_template_ids, gguf_tensor_name, llama_cpp_permute, write_gguf,
    write_stub_gguf,
)

ARCHITECTURES = ["tiny-gqa-tied", "narrow-untied", "mha-rope-scaled", "qwen2"]
METHODS = ["gradient", "attention", "integrated_gradients"]


@pytest.fixture(scope="module")
def gguf_models(tmp_path_factory, model_folders) -> dict[str, tuple]:
    """name → (the model folder, the same model written as a GGUF file)."""
    root = tmp_path_factory.mktemp("gguf")
    folders = dict(model_folders, qwen2=build_qwen2_folder(root / "qwen2-folder"))
    return {name: (folders[name], write_gguf(folders[name], root / f"{name}.gguf")) for name in ARCHITECTURES}


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    """Every test converts into its own empty cache, with nothing loaded in this process yet."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    attribution.clear_cache()
    yield
    attribution.clear_cache()


def assert_same_weights(loaded, expected) -> None:
    ours, theirs = loaded.model.state_dict(), expected.model.state_dict()
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name


def assert_same_analysis(ours, theirs) -> None:
    assert ours.input_tokens == theirs.input_tokens and ours.target == theirs.target
    np.testing.assert_array_equal(ours.input_ids, theirs.input_ids)
    np.testing.assert_array_equal(ours.generated_ids, theirs.generated_ids)
    for name in theirs.methods:
        np.testing.assert_allclose(ours.methods[name].scores, theirs.methods[name].scores, rtol=1e-6, atol=1e-9)


def analyze(loaded, prompt=SEED_PROMPT, **settings):
    return attribution.analyze(loaded, prompt, methods=METHODS, n_steps=8, max_new_tokens=3, **settings)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_a_gguf_file_holds_exactly_the_original_model(gguf_models, name):
    folder, path = gguf_models[name]
    loaded = attribution.load_model(str(path), device="cpu")
    original = attribution.load_model(str(folder), device="cpu")
    assert path.name in loaded.note
    assert_same_weights(loaded, original)
    for key in ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "vocab_size", "tie_word_embeddings", "bos_token_id", "eos_token_id"):
        assert getattr(loaded.model.config, key) == getattr(original.model.config, key), key
    assert loaded.model.config.rope_parameters["rope_theta"] == original.model.config.rope_parameters["rope_theta"]
    for text in (SEED_PROMPT, "numbers 0 1 2 3, and (punctuation)!"):
        assert loaded.tokenizer(text)["input_ids"] == original.tokenizer(text)["input_ids"]
    assert_same_analysis(analyze(loaded), analyze(original))


def test_the_file_stores_q_and_k_permuted_as_llama_cpp_does(gguf_models):
    """The loader must undo llama.cpp's rotary permutation: the stored rows differ from the model's."""
    from gguf import GGUFReader

    folder, path = gguf_models["tiny-gqa-tied"]
    original = attribution.load_model(str(folder), device="cpu").model
    stored = {tensor.name: np.asarray(tensor.data) for tensor in GGUFReader(str(path)).tensors}
    config = original.config
    for hf_name, n_head_kv in (("model.layers.0.self_attn.q_proj.weight", config.num_attention_heads),
                               ("model.layers.0.self_attn.k_proj.weight", config.num_key_value_heads)):
        weights = original.state_dict()[hf_name].numpy()
        file_weights = stored[gguf_tensor_name(hf_name)].reshape(weights.shape)
        assert not np.array_equal(file_weights, weights)
        np.testing.assert_array_equal(file_weights, llama_cpp_permute(weights, config.num_attention_heads, n_head_kv))


def test_a_gguf_file_inside_a_folder_loads_the_same(gguf_models):
    folder, path = gguf_models["narrow-untied"]
    direct = attribution.load_model(str(path), device="cpu")
    inside = attribution.load_model(str(path.parent), gguf_file=path.name, device="cpu")
    assert_same_weights(inside, direct)
    with pytest.raises(ValueError, match="gguf_file must be the name of a .gguf file"):
        attribution.load_model(str(folder), gguf_file="model.safetensors", device="cpu")
    with pytest.raises(ValueError, match="no GGUF file at"):
        attribution.load_model(str(folder), gguf_file="absent.gguf", device="cpu")


def test_the_converted_copy_is_written_once_and_reloads_equal(gguf_models, monkeypatch):
    _, path = gguf_models["tiny-gqa-tied"]
    converted = attribution.load_model(str(path), device="cpu")
    copy = cache_folder(path)
    assert [entry.name for entry in cache_root().iterdir()] == [copy.name]  # no staging folder left
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {entry.name for entry in copy.iterdir()}

    # The reload reads that copy: no second conversion, not even the file check.
    sources = []
    real_from_pretrained = models.AutoModelForCausalLM.from_pretrained

    def recording_from_pretrained(source, *arguments, **options):
        sources.append((source, options.get("gguf_file")))
        return real_from_pretrained(source, *arguments, **options)

    def no_check(_path):
        raise AssertionError("a cached GGUF was checked again")

    monkeypatch.setattr(models.AutoModelForCausalLM, "from_pretrained", recording_from_pretrained)
    monkeypatch.setattr(models, "check_gguf_file", no_check)
    attribution.clear_cache()
    reloaded = attribution.load_model(str(path), device="cpu")
    assert sources == [(str(copy), None)]
    assert reloaded.note == converted.note
    assert_same_weights(reloaded, converted)
    assert_same_analysis(analyze(reloaded), analyze(converted))


def test_a_copy_that_fails_mid_write_leaves_nothing_behind(gguf_models, monkeypatch):
    folder, path = gguf_models["tiny-gqa-tied"]

    def disk_full(_descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.warns(RuntimeWarning, match="cannot write the converted GGUF cache") as caught:
        loaded = attribution.load_model(str(path), device="cpu")
    assert len([warning for warning in caught if warning.category is RuntimeWarning]) == 1
    assert list(cache_root().iterdir()) == []  # neither a half-written copy nor its staging folder
    assert_same_weights(loaded, attribution.load_model(str(folder), device="cpu"))


def test_an_unwritable_cache_warns_once_and_loading_still_works(gguf_models, tmp_path, monkeypatch):
    folder, path = gguf_models["tiny-gqa-tied"]
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "cache"))  # mkdir fails even for root
    original = attribution.load_model(str(folder), device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # a repeated warning must show up here, not be filtered
        first = attribution.load_model(str(path), device="cpu")
        attribution.clear_cache()
        second = attribution.load_model(str(path), device="cpu")
    cache_warnings = [warning for warning in caught if issubclass(warning.category, RuntimeWarning)]
    assert len(cache_warnings) == 1, [str(warning.message) for warning in caught]
    assert "XDG_CACHE_HOME" in str(cache_warnings[0].message)
    assert second is not first
    assert_same_weights(first, original)
    assert_same_weights(second, original)


def _write_bad_file(kind: str, folder, valid) -> object:
    path = folder / f"{kind}.gguf"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "not-gguf":
        path.write_text('{"model_type": "llama"}', encoding="utf-8")
    elif kind == "truncated-header":
        path.write_bytes(valid.read_bytes()[:40])
    elif kind == "truncated-data":
        path.write_bytes(valid.read_bytes()[:-1000])
    elif kind == "foreign":
        write_stub_gguf(path, "foo")
    return path


BAD_FILES = {
    "empty": "is empty",
    "not-gguf": "is not a GGUF file",
    "truncated-header": "is truncated",
    "truncated-data": "is truncated",
    "foreign": r"holds a 'foo' model, which transformers cannot convert; supported architectures: .*llama.*qwen2",
    "missing": "no GGUF file at",
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_a_bad_gguf_file_gets_a_clear_message(gguf_models, tmp_path, kind):
    path = _write_bad_file(kind, tmp_path, gguf_models["tiny-gqa-tied"][1])
    with pytest.raises(ValueError, match=BAD_FILES[kind]) as raised:
        attribution.load_model(str(path), device="cpu")
    assert str(path) in str(raised.value)
    assert not cache_root().exists()  # nothing was converted or cached


@pytest.mark.parametrize("architecture", ["qwen2moe", "qwen3moe", "gpt-oss", "minimax-m2"])
def test_llama_cpp_names_of_convertible_architectures_pass_the_check(tmp_path, architecture):
    """llama.cpp writes some architectures under other names than transformers' keys (which it renames
    before converting): the check must not refuse those files."""
    assert check_gguf_file(write_stub_gguf(tmp_path / "model.gguf", architecture)) == architecture


def assert_one_error_line(status: int, stderr: str, message: str) -> None:
    lines = stderr.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], stderr


def test_the_cli_refuses_bad_gguf_input_in_one_line(gguf_models, tmp_path, run_main):
    folder, valid = gguf_models["tiny-gqa-tied"]
    cases = [
        (["--model", str(_write_bad_file("truncated-data", tmp_path, valid))], "is truncated"),
        (["--model", str(_write_bad_file("foreign", tmp_path, valid))], "supported architectures: "),
        (["--model", str(folder), "--gguf-file", "absent.gguf"], "no GGUF file at"),
        (["--model", str(folder), "--gguf-file", "weights.bin"], "gguf_file must be the name of a .gguf file"),
    ]
    for arguments, message in cases:
        status, _, stderr = run_main(SEED_PROMPT, *arguments, "--max-new-tokens", "1")
        assert_one_error_line(status, stderr, message)


def _without_package(name: str):
    real_find_spec = importlib.util.find_spec

    def find_spec(module, *arguments, **options):
        return None if module == name else real_find_spec(module, *arguments, **options)

    return find_spec


@pytest.fixture
def smollm2_missing(monkeypatch, tmp_path):
    """Neither the package nor a hub download of SmolLM2: an empty hub cache, and find_spec finds no package."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    monkeypatch.setattr(importlib.util, "find_spec", _without_package(PACKAGED_MODELS[SMOLLM2].package))


@pytest.mark.usefixtures("smollm2_missing")
def test_a_missing_packaged_model_says_how_to_install_it():
    with pytest.raises(ValueError) as raised:
        attribution.load_model(SMOLLM2, device="cpu")
    assert SMOLLM2_INSTALL in str(raised.value) and SMOLLM2 in str(raised.value)


@pytest.mark.usefixtures("smollm2_missing")
def test_the_cli_says_how_to_install_a_missing_packaged_model(run_main):
    status, _, stderr = run_main(SEED_PROMPT, "--model", SMOLLM2)
    assert_one_error_line(status, stderr, SMOLLM2_INSTALL)


def test_a_chat_template_in_the_gguf_makes_chat_work(gguf_models, tmp_path):
    folder, plain = gguf_models["tiny-gqa-tied"]
    path = write_gguf(folder, tmp_path / "tiny-instruct.gguf", chat_template=CHAT_TEMPLATE)
    loaded = attribution.load_model(str(path), device="cpu")
    assert loaded.tokenizer.chat_template == CHAT_TEMPLATE and is_chat_model(loaded)
    analysis = attribution.analyze(loaded, SEED_PROMPT, chat=True, methods=["gradient"], max_new_tokens=2)
    assert "".join(token for token, user in zip(analysis.input_tokens, analysis.user_tokens) if user) == SEED_PROMPT
    ids, user = chat_template_ids(loaded.tokenizer, SEED_PROMPT)
    assert (analysis.input_ids.tolist(), analysis.user_tokens.tolist()) == (ids, user)

    # The converted copy keeps the template.
    attribution.clear_cache()
    reloaded = attribution.load_model(str(path), device="cpu")
    assert reloaded.tokenizer.chat_template == CHAT_TEMPLATE
    assert encode_prompt(reloaded, SEED_PROMPT, chat=True).ids.tolist() == ids

    without = attribution.load_model(str(plain), device="cpu")
    assert not is_chat_model(without)
    with pytest.raises(ValueError, match="has no chat template"):
        attribution.analyze(without, SEED_PROMPT, chat=True)


def test_two_quantisations_of_one_model_size_from_their_files_and_diff_token_for_token(gguf_models, tmp_path):
    """The what-if comparison of a GGUF file against another quantisation of the same weights (F32 and F16):
    the second is sized from its file's metadata before it loads, and the two align token for token."""
    from scipy.stats import spearmanr

    from attribution import memory
    from attribution.diff import diff

    folder, f32 = gguf_models["tiny-gqa-tied"]
    f16 = write_gguf(folder, tmp_path / "tiny-f16.gguf", dtype="f16")
    first = attribution.load_model(str(f32), device="cpu")
    assert memory.weight_bytes(str(f16), "cpu") == sum(parameter.numel() for parameter in first.model.parameters()) * 4
    second, plan = memory.load_second(str(f32), str(f16), "cpu")
    assert plan.both_fit and second.name == str(f16)
    rounded = second.model.get_input_embeddings().weight
    assert not torch.equal(rounded, first.model.get_input_embeddings().weight)  # really another quantisation
    torch.testing.assert_close(rounded, first.model.get_input_embeddings().weight.half().float())
    a, b = analyze(first), analyze(second)
    result = diff(a, b)
    assert result.alignment.by == "token" and not result.settings and "the model" in result.sentence
    content = ~a.context_tokens
    for name, item in result.methods.items():
        own = [analysis.methods[name].scores[content] for analysis in (a, b)]
        expected = [scores / np.abs(scores).sum() for scores in own]
        np.testing.assert_allclose(item.shares_a, expected[0], rtol=1e-12)
        np.testing.assert_allclose(item.difference, expected[1] - expected[0], atol=1e-12)
        assert item.spearman == pytest.approx(spearmanr(*expected).statistic, abs=1e-9)
