"""Loading: cache, frozen parameters, pad token, refusing what cannot be explained."""

from __future__ import annotations

import json

import pytest
import torch

import attribution
from attribution.models import check_hosted_policy, eager_attention


def test_loaded_once_frozen_with_a_pad_token(tiny_folder):
    first = attribution.load_model(str(tiny_folder), device="cpu")
    assert attribution.load_model(str(tiny_folder), device="cpu") is first
    assert not any(parameter.requires_grad for parameter in first.model.parameters())
    assert first.tokenizer.pad_token_id == first.tokenizer.eos_token_id
    assert first.dtype == torch.float32 and first.device.type == "cpu"


def test_eager_switch_is_restored(tiny_loaded):
    before = tiny_loaded.model.config._attn_implementation
    with eager_attention(tiny_loaded):
        assert tiny_loaded.model.config._attn_implementation == "eager"
    assert tiny_loaded.model.config._attn_implementation == before


def test_non_causal_model_is_refused(tmp_path):
    from transformers import BertConfig

    BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=32, architectures=["BertForMaskedLM"]).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not a causal language model"):
        attribution.load_model(str(tmp_path), device="cpu")


def test_folder_with_missing_files_is_explained(tmp_path, tiny_folder):
    (tmp_path / "config.json").write_text((tiny_folder / "config.json").read_text())
    with pytest.raises(ValueError, match="not a complete model"):
        attribution.load_model(str(tmp_path), device="cpu")


def test_remote_code_is_refused(tmp_path, tiny_folder):
    config = json.loads((tiny_folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig", "AutoModelForCausalLM": "modeling_evil.Evil"}
    config["model_type"] = "evil-remote"
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "configuration_evil.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(ValueError, match="remote code"):
        attribution.load_model(str(tmp_path), device="cpu")


@pytest.mark.parametrize(("device", "dtype", "message"), [("tpu9", None, "unknown device"), ("cpu", "int8", "unknown dtype")])
def test_bad_device_or_dtype(tiny_folder, device, dtype, message):
    with pytest.raises(ValueError, match=message):
        attribution.load_model(str(tiny_folder), device=device, dtype=dtype)


def test_hosted_space_allows_only_listed_hub_ids(monkeypatch, tiny_folder):
    monkeypatch.setenv("SPACE_ID", "someone/space")
    monkeypatch.setenv("ALLOWED_MODELS", "meta-llama/Llama-3.2-1B")
    with pytest.raises(ValueError, match="local model folders cannot be loaded"):
        attribution.load_model(str(tiny_folder), device="cpu")
    with pytest.raises(ValueError, match="not allowed on this Space"):
        check_hosted_policy("someone/other-model")
    check_hosted_policy("meta-llama/Llama-3.2-1B")
    check_hosted_policy(str(attribution.DEMO_MODEL_PATH))  # shipped with the Space
    with pytest.raises(ValueError, match="local model folders cannot be loaded"):
        check_hosted_policy(str(attribution.DEMO_MODEL_PATH / ".." / ".." / "tests"))


def test_default_model_is_model_id_else_the_demo(monkeypatch):
    monkeypatch.delenv("MODEL_ID", raising=False)
    assert attribution.default_model_name() == str(attribution.DEMO_MODEL_PATH)
    monkeypatch.setenv("MODEL_ID", "meta-llama/Llama-3.2-1B")
    assert attribution.default_model_name() == "meta-llama/Llama-3.2-1B"
