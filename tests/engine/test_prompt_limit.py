"""The prompt limit follows the model: its context, and the memory the analysis needs, checked before
any work starts (attribution/budget.py); ATTRIBUTION_MAX_PROMPT_TOKENS still caps it."""

from __future__ import annotations

import pytest
import torch

import attribution
from attribution import budget, engine, testing
from attribution.settings import Settings

CONTEXT = 32


@pytest.fixture(scope="module")
def short_context(tmp_path_factory):
    """The tiny Llama made for 32 positions only."""
    folder = testing.build_model_folder(tmp_path_factory.mktemp("short") / "short-context", testing.tiny_tokenizer(),
                                        hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2,
                                        max_position_embeddings=CONTEXT)
    return attribution.load_model(str(folder), device="cpu")


def prompt_of(loaded, n_tokens: int) -> str:
    """A raw prompt of n_tokens tokens or one fewer (BOS included)."""
    count = n_tokens
    while len(loaded.tokenizer(" a" * count)["input_ids"]) > n_tokens:
        count -= 1
    return " a" * count


def n_tokens(loaded, prompt: str) -> int:
    return len(loaded.tokenizer(prompt)["input_ids"])


@pytest.fixture
def no_generation(monkeypatch):
    """Fails the test if the engine starts generating: refusals come before any work."""
    def generate(*args, **kwargs):
        raise AssertionError("generation started before the prompt was checked")

    monkeypatch.setattr(engine, "generate_with_logits", generate)


def test_a_prompt_beyond_the_context_is_refused_before_any_work(short_context, no_generation):
    prompt = prompt_of(short_context, CONTEXT + 8)
    assert n_tokens(short_context, prompt) > CONTEXT
    with pytest.raises(ValueError, match=f"the model's context is {CONTEXT} tokens") as refused:
        attribution.analyze(short_context, prompt, methods=["gradient"], max_new_tokens=0)
    assert f"the limit is {CONTEXT} tokens" in str(refused.value)


def test_the_answer_must_fit_in_the_context_too(short_context, no_generation):
    prompt = prompt_of(short_context, CONTEXT - 4)
    length = n_tokens(short_context, prompt)
    assert length <= CONTEXT
    with pytest.raises(ValueError, match=f"the limit is {CONTEXT - 10} tokens .*10 are kept for the answer"):
        attribution.analyze(short_context, prompt, methods=["gradient"], max_new_tokens=10)


def test_an_answer_as_long_as_the_context_leaves_no_room_and_says_to_lower_max_new_tokens(short_context,
                                                                                        no_generation):
    # Not "the limit of 0 tokens; shorten it": no prompt, however short, would do.
    with pytest.raises(ValueError, match=f"max_new_tokens is {CONTEXT}, but the model's context is {CONTEXT} tokens"
                                         f".*choose max_new_tokens below {CONTEXT}"):
        attribution.analyze(short_context, " a", methods=["gradient"], max_new_tokens=CONTEXT)


def test_a_prompt_that_fits_the_context_runs(short_context):
    prompt = prompt_of(short_context, CONTEXT - 6)
    analysis = attribution.analyze(short_context, prompt, methods=["gradient"], max_new_tokens=6)
    assert analysis.input_ids.size == n_tokens(short_context, prompt) and analysis.generated_ids.size <= 6


def test_the_override_caps_the_limit_and_cannot_lift_the_context(short_context, monkeypatch, no_generation):
    monkeypatch.setenv("ATTRIBUTION_MAX_PROMPT_TOKENS", "8")
    with pytest.raises(ValueError, match=r"the limit is 8 tokens"):
        attribution.analyze(short_context, prompt_of(short_context, 12), methods=["gradient"], max_new_tokens=0)
    monkeypatch.setenv("ATTRIBUTION_MAX_PROMPT_TOKENS", str(100 * CONTEXT))
    with pytest.raises(ValueError, match=f"the model's context is {CONTEXT} tokens"):
        attribution.analyze(short_context, prompt_of(short_context, CONTEXT + 8), methods=["gradient"],
                            max_new_tokens=0)


def test_an_analysis_that_cannot_fit_in_memory_is_refused_naming_the_limit(tiny_loaded, monkeypatch, no_generation):
    settings = Settings(methods=("gradient", "attention"), max_new_tokens=2)
    prompt = prompt_of(tiny_loaded, 400)
    length = n_tokens(tiny_loaded, prompt)
    # Free memory that the analysis of a prompt half as long would just fill.
    available = max(budget.analysis_bytes(tiny_loaded, settings, length // 2 + 2).values())
    monkeypatch.setattr(budget, "available_memory_bytes", lambda device: available)
    with pytest.raises(ValueError, match="GiB of memory is free") as refused:
        attribution.analyze(tiny_loaded, prompt, settings)
    message = str(refused.value)
    needs = budget.analysis_bytes(tiny_loaded, settings, length + 2)
    assert f"{max(needs, key=needs.get)} would need about" in message
    limit, reason = budget.longest_prompt(tiny_loaded, settings)
    assert f"the limit is {limit:,} tokens" in message and "GiB of memory is free" in reason
    # The named limit is exact: at it the analysis fits, one token more it does not.
    budget.check_prompt(tiny_loaded, settings, limit)
    with pytest.raises(ValueError, match="GiB of memory is free"):
        budget.check_prompt(tiny_loaded, settings, limit + 1)
    assert length // 2 <= limit < length


def test_a_long_prompt_runs_on_a_tiny_model(tiny_loaded):
    """Well over the old fixed 512 tokens, within the tiny model's 1,024 positions: every cheap method runs,
    and the gradient is the one computed directly."""
    prompt = prompt_of(tiny_loaded, 900)
    methods = ("gradient", "input_x_gradient", "attention", "attention_rollout")
    analysis = attribution.analyze(tiny_loaded, prompt, methods=methods, max_new_tokens=2)
    length = n_tokens(tiny_loaded, prompt)
    assert length > 512 and analysis.input_ids.size == length
    ids = torch.from_numpy(analysis.input_ids)
    embeddings = tiny_loaded.model.get_input_embeddings()(ids[None]).detach().requires_grad_(True)
    with torch.enable_grad():
        logit = tiny_loaded.model(inputs_embeds=embeddings).logits[0, -1, analysis.target.id]
        (gradient,) = torch.autograd.grad(logit, embeddings)
    torch.testing.assert_close(torch.from_numpy(analysis.methods["gradient"].scores).float(), gradient[0].norm(dim=-1),
                               rtol=1e-4, atol=1e-6)
    for name in methods:
        assert analysis.methods[name].scores.shape == (length,)
