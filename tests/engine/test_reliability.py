"""Reliability of the library and CLI: hostile text, faults, secrets (the app's side is in test_app)."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import attribution
import attribution.ig_path as ig_path_module
from conftest import REPO_ROOT, SEED_PROMPT

WORKING_TEXTS = [
    "ما هي عاصمة لاتفيا؟",  # right-to-left
    "שלום עולם Latvia",  # right-to-left mixed with Latin
    "Ca\u0301pital Ci\u0308ty of Latvia?",  # combining marks
    "What is the capital of 🇱🇻 Latvia? 🤔🏰",  # emoji, flag sequences
    "Столица Латвии — Рига; 拉脱维亚的首都? Latvia",  # mixed scripts
    "line one\nline two\tTabbed",
]


@pytest.mark.parametrize("text", WORKING_TEXTS)
def test_unusual_scripts_work(tiny_loaded, text):
    analysis = attribution.analyze(tiny_loaded, text, max_new_tokens=2, n_steps=4)
    for result in analysis.methods.values():
        assert result.n_tokens == analysis.n_tokens and np.all(np.isfinite(result.scores))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompt=st.text(max_size=40))
def test_fuzz_any_unicode_prompt_gives_finite_scores_or_value_error(tiny_loaded, prompt):
    try:
        analysis = attribution.analyze(tiny_loaded, prompt, methods=["gradient", "attention"], max_new_tokens=1)
    except ValueError:
        return
    for result in analysis.methods.values():
        assert result.n_tokens == analysis.n_tokens
        assert all(math.isfinite(value) for value in result.scores)


def test_out_of_memory_halves_the_batch_and_gives_the_same_numbers(tiny_loaded, monkeypatch):
    expected = attribution.analyze(tiny_loaded, SEED_PROMPT, methods=["integrated_gradients"], max_new_tokens=0, n_steps=16)
    real_logits_at = ig_path_module.logits_at_positions
    batch_sizes = []

    def small_memory(loaded, embeddings, positions, prefix=None):
        batch_sizes.append(embeddings.shape[0])
        if embeddings.shape[0] > 2 and torch.is_grad_enabled():
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_logits_at(loaded, embeddings, positions, prefix)

    monkeypatch.setattr(ig_path_module, "logits_at_positions", small_memory)
    retried = attribution.analyze(tiny_loaded, SEED_PROMPT, methods=["integrated_gradients"], max_new_tokens=0, n_steps=16)
    assert batch_sizes[0] == 16 + 2 and 2 in batch_sizes  # the 16 path points, the input and the baseline
    torch.testing.assert_close(
        torch.from_numpy(retried.methods["integrated_gradients"].scores.copy()),
        torch.from_numpy(expected.methods["integrated_gradients"].scores.copy()), rtol=1e-5, atol=1e-6,
    )


def test_out_of_memory_at_one_step_gives_a_clear_message(tiny_loaded, monkeypatch):
    def no_memory(loaded, embeddings, positions, prefix=None):
        raise torch.OutOfMemoryError("CUDA out of memory.")

    monkeypatch.setattr(ig_path_module, "logits_at_positions", no_memory)
    with pytest.raises(ValueError, match="out of memory computing integrated gradients even one step at a time"):
        attribution.analyze(tiny_loaded, SEED_PROMPT, methods=["integrated_gradients"], max_new_tokens=0, n_steps=4)
    # The model keeps serving once memory is back.
    monkeypatch.undo()
    attribution.analyze(tiny_loaded, SEED_PROMPT, methods=["integrated_gradients"], max_new_tokens=0, n_steps=4)


def test_non_finite_scores_are_refused_not_drawn(tiny_loaded, monkeypatch):
    import attribution.methods as methods_module

    monkeypatch.setattr(methods_module, "input_gradients", lambda loaded, request: torch.full((request.input_ids.numel(), 4), float("nan")))
    with pytest.raises(ValueError, match="NaN or infinite"):
        attribution.analyze(tiny_loaded, SEED_PROMPT, methods=["gradient"], max_new_tokens=0)


def test_failed_load_leaves_the_loaded_model_serving(tiny_loaded, tmp_path):
    with pytest.raises(ValueError):
        attribution.load_model(str(tmp_path / "nothing-here"), device="cpu")
    assert attribution.analyze(tiny_loaded, SEED_PROMPT, methods=["gradient"], max_new_tokens=1).n_tokens > 1


def test_gated_model_without_token_says_how_to_set_hf_token(monkeypatch):
    import attribution.models as models_module

    def gated(*args, **kwargs):
        raise OSError(
            "You are trying to access a gated repo.\nMake sure to have access to it at "
            "https://huggingface.co/meta-llama/Llama-3.2-1B.\n401 Client Error."
        )

    monkeypatch.setattr(models_module.AutoConfig, "from_pretrained", gated)
    with pytest.raises(ValueError, match="gated.*HF_TOKEN"):
        attribution.load_model("meta-llama/Llama-3.2-1B", device="cpu")


def test_hf_token_never_appears_in_errors_or_cli_output(monkeypatch, tiny_folder, tmp_path):
    secret = "hf_SECRETtoken1234567890"
    monkeypatch.setenv("HF_TOKEN", secret)
    import attribution.models as models_module

    def leaky(*args, **kwargs):
        raise OSError(f"401 Client Error for url with token {secret}")

    monkeypatch.setattr(models_module.AutoConfig, "from_pretrained", leaky)
    with pytest.raises(ValueError) as caught:
        attribution.load_model("someone/private-model", device="cpu")
    assert secret not in str(caught.value)
    monkeypatch.undo()

    json_path = tmp_path / "out.json"
    environment = dict(os.environ, HF_TOKEN=secret, HF_HUB_OFFLINE="1")
    runs = [
        [SEED_PROMPT, "--model", str(tiny_folder), "--steps", "4", "--json", str(json_path)],
        [SEED_PROMPT, "--model", "no-such-org/no-such-model"],
        ["", "--model", str(tiny_folder)],
    ]
    for arguments in runs:
        completed = subprocess.run([sys.executable, "-m", "attribution", *arguments], capture_output=True,
                                   text=True, cwd=REPO_ROOT, env=environment, timeout=300)
        assert secret not in completed.stdout + completed.stderr
    assert secret not in json_path.read_text(encoding="utf-8")


def test_out_of_memory_while_storing_a_batch_adds_nothing_twice(tiny_loaded, monkeypatch):
    """The halving retry reruns a batch's rows: an out-of-memory error at any of its writes must not
    leave part of that batch already added."""
    expected = attribution.analyze(tiny_loaded, SEED_PROMPT, methods=["integrated_gradients"], max_new_tokens=0,
                                   n_steps=8, aggregation="sum")
    real_setitem = torch.Tensor.__setitem__
    failed = []

    def setitem_failing_once(tensor, index, value):
        if not failed and isinstance(value, torch.Tensor) and value.dim() == 3:  # the input rows' gradients
            failed.append(True)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_setitem(tensor, index, value)

    monkeypatch.setattr(torch.Tensor, "__setitem__", setitem_failing_once)
    retried = attribution.analyze(tiny_loaded, SEED_PROMPT, methods=["integrated_gradients"], max_new_tokens=0,
                                  n_steps=8, aggregation="sum")
    monkeypatch.undo()
    assert failed
    torch.testing.assert_close(
        torch.from_numpy(retried.methods["integrated_gradients"].scores.copy()),
        torch.from_numpy(expected.methods["integrated_gradients"].scores.copy()), rtol=1e-5, atol=1e-6,
    )
