"""Exact reuse: the held context at the start of a prompt (the first token, a chat template's system
prompt) is the same in every IG path row, so it runs once and the rows continue from its keys and
values. Every score must equal the computation without the reuse."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import attribution
from attribution.integrated_gradients import integrate
from attribution.prompts import encode_prompt, held_context
from attribution.settings import Settings
from conftest import SEED_PROMPT


@pytest.fixture(scope="module")
def tiny_chat_loaded(chat_folder):
    return attribution.load_model(str(chat_folder), device="cpu")


def _chat_case(loaded):
    encoded = encode_prompt(loaded, SEED_PROMPT, chat=True)
    ids = encoded.ids
    special = attribution.integrated_gradients.special_token_mask(loaded, ids).cpu().numpy()
    held = torch.from_numpy(held_context(special, encoded.user_tokens, ids.numel(), True))
    return ids, held


def _both(loaded, settings, positions=None, target_ids=None):
    ids, held = _chat_case(loaded)
    positions = torch.tensor([ids.numel() - 1]) if positions is None else positions
    target_ids = torch.tensor([11]) if target_ids is None else target_ids
    reused = integrate(loaded, ids, settings, positions, target_ids, held=held)
    plain = integrate(loaded, ids, settings, positions, target_ids, held=held, reuse_prefix=False)
    return reused, plain


def _assert_same(reused, plain):
    # fp32 sums in another order (a prefix of batch 1, then the rows): differences of float rounding
    # only, so the tolerance is relative to the largest attribution.
    scale = float(plain.attributions.abs().max())
    torch.testing.assert_close(reused.attributions, plain.attributions, rtol=1e-4, atol=1e-4 * scale)
    torch.testing.assert_close(reused.attributions.sum(dim=-1), plain.attributions.sum(dim=-1),
                               rtol=1e-4, atol=1e-4 * scale)
    torch.testing.assert_close(reused.input_values, plain.input_values, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(reused.baseline_values, plain.baseline_values, rtol=1e-5, atol=1e-6)
    # Beyond the prefix the plain gradient at the input is formed too, and equal.
    start = reused.prefix_length
    gradient_scale = float(plain.input_gradients.abs().max())
    torch.testing.assert_close(reused.input_gradients[:, start:], plain.input_gradients[:, start:],
                               rtol=1e-4, atol=1e-4 * gradient_scale)


@pytest.mark.parametrize("n_steps", [8, "auto"])
@pytest.mark.parametrize("baseline", ["zero", "mean"])
def test_ig_with_a_held_template_prefix_equals_ig_without_reuse(tiny_chat_loaded, n_steps, baseline):
    reused, plain = _both(tiny_chat_loaded, Settings(n_steps=n_steps, baseline=baseline, max_steps=81))
    assert reused.prefix_length > 1 and plain.prefix_length == 0  # the reuse really happened
    assert reused.n_points == plain.n_points
    _assert_same(reused, plain)


def test_answer_map_rows_with_a_held_prefix_equal_rows_without(tiny_chat_loaded):
    ids, _held = _chat_case(tiny_chat_loaded)
    # Three targets after the prompt, as the answer map asks for them.
    extended = torch.cat([ids, torch.tensor([5, 6, 7])])
    held = torch.zeros(extended.numel(), dtype=torch.bool)
    held[: ids.numel()] = _held
    positions = torch.arange(ids.numel() - 1, extended.numel() - 1)
    settings = Settings(n_steps=6, baseline="mean")
    reused = integrate(tiny_chat_loaded, extended[:-1], settings, positions, extended[ids.numel():], held=held[:-1])
    plain = integrate(tiny_chat_loaded, extended[:-1], settings, positions, extended[ids.numel():], held=held[:-1],
                      reuse_prefix=False)
    assert reused.prefix_length > 1
    _assert_same(reused, plain)


def test_the_gradient_methods_do_not_read_ig_gradients_that_skipped_the_prefix(tiny_chat_loaded):
    """With the prefix reused IG forms no input gradient there, so the gradient methods run their own pass:
    their scores equal an analysis without IG (whose gradient is its own forward and backward)."""
    settings = Settings(methods=("gradient", "input_x_gradient", "integrated_gradients"), n_steps=6,
                        baseline="mean", hold_context=True, chat=True, max_new_tokens=2)
    with_ig = attribution.analyze(tiny_chat_loaded, SEED_PROMPT, settings)
    without_ig = attribution.analyze(tiny_chat_loaded, SEED_PROMPT,
                                     settings.replace(methods=("gradient", "input_x_gradient")))
    for name in ("gradient", "input_x_gradient"):
        np.testing.assert_allclose(with_ig.methods[name].scores, without_ig.methods[name].scores, rtol=1e-4, atol=1e-7)
    held = with_ig.held_tokens
    assert held[: int(np.argmin(held))].size > 1 and with_ig.methods["gradient"].scores[held].any()


@pytest.mark.slow
def test_reuse_on_the_real_model_with_its_chat_template(smollm2):
    reused, plain = _both(smollm2, Settings(n_steps=8, baseline="mean"))
    assert reused.prefix_length > 1
    _assert_same(reused, plain)
