"""`analyze`: targets, settings validation and the JSON contract."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

import attribution
from attribution.targets import display_tokens
from benchmarks import notebook_reference as notebook
from conftest import SEED_PROMPT
from test_methods import load_notebook_model, relative_error


def test_json_contract_has_exactly_the_documented_keys(tiny_loaded):
    result = attribution.analyze(tiny_loaded, SEED_PROMPT, max_new_tokens=4, n_steps=8).to_dict()
    round_tripped = json.loads(json.dumps(result))
    assert {"model", "prompt", "input_tokens", "input_ids", "generated_text", "target", "methods"} <= set(round_tripped)
    assert set(round_tripped["target"]) == {"text", "id", "position"}
    assert {"scores"} <= set(round_tripped["methods"]["gradient"])
    assert {"scores", "per_layer"} <= set(round_tripped["methods"]["attention"])
    assert {"scores", "convergence_delta", "n_steps", "baseline", "aggregation"} <= set(
        round_tripped["methods"]["integrated_gradients"]
    )
    n_tokens = len(round_tripped["input_ids"])
    assert len(round_tripped["input_tokens"]) == n_tokens == round_tripped["target"]["position"]
    for method in round_tripped["methods"].values():
        assert len(method["scores"]) == n_tokens
        assert all(math.isfinite(value) for value in method["scores"])
    assert len(round_tripped["methods"]["attention"]["per_layer"]) == tiny_loaded.n_layers


def test_tokens_are_display_strings_with_leading_spaces(tiny_loaded):
    analysis = attribution.analyze(tiny_loaded, SEED_PROMPT, methods=["gradient"], max_new_tokens=0)
    assert " Latvia" in analysis.input_tokens
    assert not any("Ġ" in token for token in analysis.input_tokens)
    assert "".join(analysis.input_tokens[1:]) == SEED_PROMPT


def test_text_target_uses_its_first_token_at_the_next_position(tiny_loaded):
    analysis = attribution.analyze(tiny_loaded, SEED_PROMPT, methods=["gradient"], target=" Riga", max_new_tokens=2)
    expected_id = tiny_loaded.tokenizer(" Riga", add_special_tokens=False)["input_ids"][0]
    assert analysis.target.id == expected_id
    assert analysis.target.position == analysis.n_tokens == len(tiny_loaded.tokenizer(SEED_PROMPT)["input_ids"])


def test_kth_generated_target_equals_the_notebook_on_the_extended_input(tiny_folder, tiny_loaded):
    analysis_first = attribution.analyze(tiny_loaded, SEED_PROMPT, methods=["gradient"], max_new_tokens=4)
    k = 3
    analysis = attribution.analyze(tiny_loaded, SEED_PROMPT, methods=["gradient", "attention"], max_new_tokens=4, target=k)
    n_prompt = analysis_first.n_tokens
    np.testing.assert_array_equal(analysis.input_ids[:n_prompt], analysis_first.input_ids)
    np.testing.assert_array_equal(analysis.input_ids[n_prompt:], analysis.generated_ids[: k - 1])
    assert analysis.target.id == int(analysis.generated_ids[k - 1])
    assert analysis.target.position == n_prompt + k - 1

    model, _tokenizer = load_notebook_model(tiny_folder)
    extended = torch.from_numpy(np.array(analysis.input_ids))[None]
    gradient_scores, predicted_id = notebook.gradient_based_attribution(model, extended)
    attention_scores, _ = notebook.extract_attention_weights(model, extended)
    assert predicted_id == analysis.target.id
    assert relative_error(analysis.methods["gradient"].scores, gradient_scores) <= 1e-4
    assert relative_error(analysis.methods["attention"].scores, attention_scores) <= 1e-4


def test_default_target_without_generation_is_the_greedy_next_token(tiny_loaded):
    with_generation = attribution.analyze(tiny_loaded, SEED_PROMPT, methods=["gradient"], max_new_tokens=1)
    without = attribution.analyze(tiny_loaded, SEED_PROMPT, methods=["gradient"], max_new_tokens=0)
    assert without.target == with_generation.target
    assert without.generated_text == "" and without.generated_ids.size == 0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(prompt=""), "prompt is empty"),
        (dict(prompt="   \n\t"), "prompt is empty"),
        (dict(prompt=None), "prompt must be text"),
        (dict(methods=["gradient", "lime"]), "valid choices: gradient, attention, integrated_gradients"),
        (dict(methods=[]), "at least one method"),
        (dict(n_steps=0), "n_steps must be from 1 to 1000"),
        (dict(n_steps=1001), "n_steps must be from 1 to 1000"),
        (dict(n_steps=-1), "n_steps"),
        (dict(n_steps=float("nan")), "n_steps must be a whole number"),
        (dict(n_steps="50"), "n_steps must be a whole number"),
        (dict(n_steps=2.5), "n_steps must be a whole number"),
        (dict(baseline="uniform"), "valid choices: zero, pad"),
        (dict(aggregation="max"), "valid choices: l2, sum"),
        (dict(max_new_tokens=-1), "max_new_tokens must be from 0 to 256"),
        (dict(max_new_tokens=257), "max_new_tokens must be from 0 to 256"),
        (dict(target=""), "target text is empty"),
        (dict(target=0), "choose a generated token from 1 to"),
        (dict(target=99), "choose a generated token from 1 to"),
        (dict(target=2.0), "target must be None"),
        (dict(target=1, max_new_tokens=0), "none were generated"),
        (dict(prompt="abc\x00def"), "control character U+0000"),
    ],
)
def test_bad_input_raises_a_value_error_naming_the_problem(tiny_loaded, settings, message):
    arguments = dict(prompt=SEED_PROMPT, max_new_tokens=2, n_steps=4)
    arguments.update(settings)
    prompt = arguments.pop("prompt")
    with pytest.raises(ValueError, match=re.escape(message)):
        attribution.analyze(tiny_loaded, prompt, **arguments)


def test_prompt_over_the_token_limit_names_the_limit(tiny_loaded, monkeypatch):
    monkeypatch.setenv("ATTRIBUTION_MAX_PROMPT_TOKENS", "8")
    with pytest.raises(ValueError, match="the limit is 8 tokens"):
        attribution.analyze(tiny_loaded, SEED_PROMPT, max_new_tokens=0)
    monkeypatch.delenv("ATTRIBUTION_MAX_PROMPT_TOKENS")
    context = tiny_loaded.model.config.max_position_embeddings  # without the override: the model's context
    with pytest.raises(ValueError, match=f"limit of {context:,} tokens"):
        attribution.analyze(tiny_loaded, "Latvia " * 20_000, max_new_tokens=0)


def test_integral_floats_from_number_fields_are_accepted(tiny_loaded):
    analysis = attribution.analyze(tiny_loaded, SEED_PROMPT, methods=["integrated_gradients"], n_steps=6.0, max_new_tokens=1.0)
    assert analysis.methods["integrated_gradients"].n_steps == 6


def test_display_tokens_of_multibyte_text_never_show_byte_pieces(tiny_loaded):
    ids = tiny_loaded.tokenizer("Rīga ☃", add_special_tokens=False)["input_ids"]
    assert not any("Ġ" in token for token in display_tokens(tiny_loaded, ids))


def test_contrast_names_the_foil_and_refuses_the_target_itself(tiny_loaded):
    plain = attribution.analyze(tiny_loaded, SEED_PROMPT, methods=["gradient"], max_new_tokens=1)
    foil = plain.top_predictions[1]
    contrasted = attribution.analyze(tiny_loaded, SEED_PROMPT, methods=["gradient"], max_new_tokens=1, contrast=foil.id)
    assert contrasted.foil.id == foil.id
    by_text = attribution.analyze(tiny_loaded, SEED_PROMPT, methods=["gradient"], max_new_tokens=1, contrast=" Riga")
    assert by_text.foil.id == tiny_loaded.tokenizer(" Riga", add_special_tokens=False)["input_ids"][0]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        attribution.analyze(tiny_loaded, SEED_PROMPT, methods=["gradient"], max_new_tokens=1, contrast=10**9)
    assert contrasted.to_dict()["contrast"] == {"foil": {"text": contrasted.foil.text, "id": contrasted.foil.id}}
    with pytest.raises(ValueError, match="starts with the target token"):
        attribution.analyze(tiny_loaded, SEED_PROMPT, methods=["gradient"], max_new_tokens=1, contrast=plain.target.id)
    with pytest.raises(ValueError, match="contrast text is empty"):
        attribution.analyze(tiny_loaded, SEED_PROMPT, methods=["gradient"], max_new_tokens=1, contrast="")


def test_top_predictions_are_sorted_probabilities(tiny_loaded):
    analysis = attribution.analyze(tiny_loaded, SEED_PROMPT, methods=["gradient"], max_new_tokens=1)
    probabilities = [prediction.probability for prediction in analysis.top_predictions]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-6
    assert analysis.top_predictions[0].id == analysis.target.id


@pytest.mark.parametrize("target", [None, 3])
def test_top_predictions_from_generation_equal_a_fresh_forward(tiny_loaded, target):
    """analyze takes them from generation's logits at the target's step; a forward of their own agrees."""
    analysis = attribution.analyze(tiny_loaded, SEED_PROMPT, methods=["gradient"], max_new_tokens=4, target=target)
    fresh = attribution.engine.top_predictions(tiny_loaded, torch.from_numpy(analysis.input_ids))
    assert [prediction.id for prediction in analysis.top_predictions] == [prediction.id for prediction in fresh]
    torch.testing.assert_close([prediction.probability for prediction in analysis.top_predictions],
                               [prediction.probability for prediction in fresh], rtol=1e-5, atol=1e-7)


def test_progress_reports_every_stage_in_order(tiny_loaded):
    seen = []
    attribution.analyze(tiny_loaded, SEED_PROMPT, max_new_tokens=2, n_steps=4, all_targets=True, trust=True,
                        progress=seen.append)
    # The methods run in the order asked (IG's shared integration does not need to come first).
    assert [(stage.kind, stage.method) for stage in seen] == [
        ("generate", None), ("method", "gradient"), ("method", "attention"), ("method", "integrated_gradients"),
        ("answer_map", None), ("trust", None),
    ]
    assert [stage.index for stage in seen] == list(range(len(seen))) and {stage.total for stage in seen} == {6}
    assert [stage.fraction for stage in seen] == sorted(stage.fraction for stage in seen) and seen[0].fraction == 0


def test_small_cpu_models_run_on_one_thread_and_restore_the_setting(tiny_loaded):
    before = torch.get_num_threads()
    inside = []
    attribution.analyze(tiny_loaded, SEED_PROMPT, methods=["gradient"], max_new_tokens=1,
                        progress=lambda stage: inside.append(torch.get_num_threads()))
    assert inside and set(inside) == {1}
    assert torch.get_num_threads() == before
