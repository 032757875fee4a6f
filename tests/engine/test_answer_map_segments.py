"""The gradient answer map's forward in segments (each continuing from the keys and values before it, so
that a target's backward runs through its own segment and the earlier ones only) gives the gradients of
the answer's forward in one piece, two-sided: on rotary (Llama), learned-position (GPT-2) and
sliding-window (Gemma2, a window shorter than the answer) models and on the real model's chat reply.
A cache that cannot carry gradients runs the answer in one piece."""

from __future__ import annotations

import pytest
import torch

import attribution
from attribution import answer_map
from conftest import SEED_PROMPT
from test_kept_positions import _build_gemma2, _build_gpt2

ONE_PIECE = 10**9  # TARGETS_PER_SEGMENT that puts every target in one segment


def _job(loaded, monkeypatch, **options) -> answer_map.AnswerMapRequest:
    """The AnswerMapRequest that the gradient answer map of an analysis builds."""
    jobs = []
    original = answer_map._gradient_pass
    monkeypatch.setattr(answer_map, "_gradient_pass", lambda model, job: jobs.append(job) or original(model, job))
    attribution.analyze(loaded, SEED_PROMPT, methods=["gradient"], all_targets=True, trust=False, **options)
    monkeypatch.setattr(answer_map, "_gradient_pass", original)
    return jobs[0]


def _gradients(loaded, job, monkeypatch, per_segment: int) -> tuple[torch.Tensor, int]:
    """The pass's gradients [T, S, d_model] with `per_segment` targets a segment, and how many forwards ran."""
    monkeypatch.setattr(answer_map, "TARGETS_PER_SEGMENT", per_segment)
    forwards = []
    hook = loaded.model.register_forward_pre_hook(lambda module, args: forwards.append(1))
    try:
        gradients = answer_map._gradient_pass(loaded, job)
    finally:
        hook.remove()
    return gradients, len(forwards)


def _assert_same_both_ways(segmented: torch.Tensor, whole: torch.Tensor) -> None:
    # Attention over cached keys sums in another order: float rounding only, relative to the largest.
    scale = float(whole.abs().max())
    assert scale > 0
    torch.testing.assert_close(segmented, whole, rtol=1e-4, atol=1e-5 * scale)
    torch.testing.assert_close(whole, segmented, rtol=1e-4, atol=1e-5 * scale)


@pytest.fixture(scope="module")
def architectures(tmp_path_factory, tiny_loaded) -> dict:
    root = tmp_path_factory.mktemp("segments")
    return {
        "llama": tiny_loaded,
        "gpt2": attribution.load_model(str(_build_gpt2(root / "gpt2")), device="cpu"),
        "gemma2-window-4": attribution.load_model(str(_build_gemma2(root / "gemma2", window=4)), device="cpu"),
    }


@pytest.mark.parametrize("name", ["llama", "gpt2", "gemma2-window-4"])
@pytest.mark.parametrize("per_segment", [1, 2, 3])
def test_segments_give_the_gradients_of_one_piece(architectures, monkeypatch, name, per_segment):
    loaded = architectures[name]
    job = _job(loaded, monkeypatch, max_new_tokens=7)
    n_targets = int(job.target_ids.numel())
    assert n_targets >= 6  # enough targets that every segment size splits the answer
    whole, whole_forwards = _gradients(loaded, job, monkeypatch, ONE_PIECE)
    segmented, forwards = _gradients(loaded, job, monkeypatch, per_segment)
    assert whole_forwards == 1 and forwards == round(n_targets / per_segment)  # the segments really ran
    _assert_same_both_ways(segmented, whole)
    # Causal: nothing flows back from a target to the sources after its position.
    for t, position in enumerate(job.positions.tolist()):
        assert not segmented[t, position + 1:].any()


def test_a_cache_that_cannot_carry_gradients_runs_in_one_piece(tiny_loaded, monkeypatch):
    job = _job(tiny_loaded, monkeypatch, max_new_tokens=6)
    whole, _ = _gradients(tiny_loaded, job, monkeypatch, ONE_PIECE)
    monkeypatch.setattr(answer_map, "_continues", lambda cache: False)
    fallback, forwards = _gradients(tiny_loaded, job, monkeypatch, 2)
    assert forwards == 2  # the first segment, then the whole answer from the start
    _assert_same_both_ways(fallback, whole)


@pytest.mark.slow
def test_segments_on_the_real_model_chat_reply(smollm2, monkeypatch):
    job = _job(smollm2, monkeypatch, max_new_tokens=20, chat=True)
    n_targets, per_segment = int(job.target_ids.numel()), answer_map.TARGETS_PER_SEGMENT  # the shipped size
    whole, _ = _gradients(smollm2, job, monkeypatch, ONE_PIECE)
    segmented, forwards = _gradients(smollm2, job, monkeypatch, per_segment)
    assert forwards == round(n_targets / per_segment) > 1
    _assert_same_both_ways(segmented, whole)
