"""Results as they come: the answer as it is generated, each method's result as soon as it is done (the
cheap ones before IG), and a Stop that ends the analysis within a batch and frees the model."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import attribution
from attribution.settings import Settings
from conftest import SEED_PROMPT

SETTINGS = Settings(methods=("integrated_gradients", "gradient", "attention", "occlusion"), max_new_tokens=3,
                    n_steps=8, all_targets=True, trust=True)


def test_partials_grow_cheap_methods_first_and_the_last_is_the_result(tiny_loaded):
    partials, answers = [], []
    result = attribution.analyze(tiny_loaded, SEED_PROMPT, SETTINGS, partial=partials.append, answer=answers.append)
    seen = [tuple(item.methods) for item in partials]
    assert seen[0] == ()  # the answer, before any method
    assert [set(names) for names in seen] == sorted((set(names) for names in seen), key=len)  # only grows
    first_with_ig = next(index for index, names in enumerate(seen) if "integrated_gradients" in names)
    assert {"gradient", "attention", "occlusion"} <= set(seen[first_with_ig - 1])  # cheap ones shown before IG
    assert partials[-1] is result and result.trust is not None and result.answer_map
    assert list(result.methods) == list(SETTINGS.methods)  # listed as asked, whatever the run order
    # Streaming changes nothing: the same analysis without callbacks gives the same JSON.
    assert attribution.analyze(tiny_loaded, SEED_PROMPT, SETTINGS).to_dict() == result.to_dict()
    # The answer grew token by token up to the generated text.
    assert answers and answers[-1] == result.generated_text
    assert all(later.startswith(earlier) for earlier, later in zip(answers, answers[1:]))
    # Each partial's scores are the final ones.
    for item in partials:
        for name, scores in item.methods.items():
            np.testing.assert_array_equal(scores.scores, result.methods[name].scores)


@pytest.mark.parametrize("stage", ["generate", "integrated_gradients", "answer_map", "trust"])
def test_cancel_stops_the_analysis_and_frees_the_model(tiny_loaded, stage):
    cancel = threading.Event()

    def progress(step) -> None:
        if step.kind == stage or step.method == stage:
            cancel.set()

    with pytest.raises(attribution.Cancelled):
        attribution.analyze(tiny_loaded, SEED_PROMPT, SETTINGS, progress=progress, cancel=cancel)
    # The lock is free and nothing is left cancelled: the next analysis runs.
    assert attribution.analyze(tiny_loaded, SEED_PROMPT, SETTINGS.replace(trust=False)).methods


def test_cancel_during_generation_stops_it_early(tiny_loaded):
    cancel = threading.Event()
    answers = []

    def answer(text: str) -> None:
        answers.append(text)
        cancel.set()  # stop after the first token

    with pytest.raises(attribution.Cancelled):
        attribution.analyze(tiny_loaded, SEED_PROMPT, SETTINGS.replace(max_new_tokens=50), answer=answer, cancel=cancel)
    assert len(answers) == 1


def test_the_answer_map_explains_only_the_methods_it_is_given(tiny_loaded):
    settings = SETTINGS.replace(answer_map_methods=("gradient", "attention"), trust=False)
    mapped = attribution.analyze(tiny_loaded, SEED_PROMPT, settings)
    assert list(mapped.answer_map) == ["gradient", "attention"]
    full = attribution.analyze(tiny_loaded, SEED_PROMPT, settings.replace(answer_map_methods=None))
    assert set(full.answer_map) == {"gradient", "attention", "integrated_gradients"}
    for name in ("gradient", "attention"):
        np.testing.assert_allclose(mapped.answer_map[name].matrix, full.answer_map[name].matrix, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="unknown answer-map method 'occlusion'; valid choices: gradient"):
        Settings(answer_map_methods=("occlusion",))
