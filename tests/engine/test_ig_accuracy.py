"""IG to a stated accuracy, held context, what is explained (score), presets and the seed's pad token:
checked against independent computations (completeness, Gauss–Legendre at many steps, a direct
softmax, the notebook's own code) on tiny seeded models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import attribution
from attribution.settings import Settings
from attribution.__main__ import main as cli_main
from attribution.limits import AUTO_FIRST_INTERVALS
from attribution.integrated_gradients import auto_levels, integrate, integrate_to_accuracy, path_endpoints
from attribution.passes import explained_score
from benchmarks import notebook_reference as notebook
from conftest import SEED_PROMPT
from test_methods import load_notebook_model, relative_error


def _ids(loaded, prompt=SEED_PROMPT) -> torch.Tensor:
    return loaded.tokenizer(prompt, return_tensors="pt")["input_ids"][0]


class RowCounter:
    """Counts the rows (sequences) the model runs forward, through a forward pre-hook."""

    def __init__(self, model):
        self.rows = 0
        self.handle = model.register_forward_pre_hook(self.count, with_kwargs=True)

    def count(self, module, args, kwargs):
        embeddings = kwargs.get("inputs_embeds")
        self.rows += int(embeddings.shape[0]) if embeddings is not None else int(kwargs["input_ids"].shape[0])

    def close(self):
        self.handle.remove()


@pytest.mark.parametrize("baseline", ["zero", "pad", "mean"])
def test_held_positions_get_exactly_zero_ig(tiny_loaded, baseline):
    analysis = attribution.analyze(
        tiny_loaded, SEED_PROMPT, methods=["integrated_gradients"], baseline=baseline, aggregation="sum",
        hold_context=True, n_steps=8, max_new_tokens=1,
    )
    scores = analysis.methods["integrated_gradients"].scores
    assert analysis.held_tokens[0]  # the first position (here BOS) is always held
    assert np.all(scores[analysis.held_tokens] == 0.0)
    assert np.any(scores[~analysis.held_tokens] != 0.0)


def test_romberg_auto_steps_stop_at_the_target_and_evaluate_each_point_once(tiny_loaded):
    input_ids = _ids(tiny_loaded)
    inputs, baseline = path_endpoints(tiny_loaded, input_ids, "pad", None)
    last, target = torch.tensor([input_ids.numel() - 1]), torch.tensor([7])
    counter = RowCounter(tiny_loaded.model)
    try:
        result = integrate_to_accuracy(
            tiny_loaded, inputs, baseline, last, target, None, "logit", target_error=1e-4, max_steps=1000,
            rule="romberg",
        )
    finally:
        counter.close()
    error = float(result.relative_errors[0])
    assert error <= 1e-4 and result.rule == "romberg"
    # Every path point once, plus the input and the baseline rows: nothing is evaluated twice.
    assert counter.rows == result.n_points + 2
    assert result.n_points in auto_levels(1000)  # tripling intervals: the points so far are a level's
    # It stopped at the first level that met the target: one level fewer did not.
    fewer = [points for points in auto_levels(1000) if points < result.n_points]
    if fewer:
        coarser = integrate_to_accuracy(
            tiny_loaded, inputs, baseline, last, target, None, "logit", target_error=1e-4, max_steps=fewer[-1],
            rule="romberg",
        )
        assert float(coarser.relative_errors[0]) > 1e-4


def test_auto_steps_agree_with_gauss_legendre_at_many_steps(model_folder):
    loaded = attribution.load_model(str(model_folder), device="cpu")
    input_ids = _ids(loaded)
    last, target = torch.tensor([input_ids.numel() - 1]), torch.tensor([11])
    reference = integrate(loaded, input_ids, Settings(baseline="pad", n_steps=600), last, target)
    automatic = integrate(loaded, input_ids, Settings(baseline="pad", n_steps="auto", target_error=1e-5, max_steps=800),
                          last, target)
    assert automatic.rule == "adaptive"  # the default rule of n_steps="auto"
    torch.testing.assert_close(automatic.attributions, reference.attributions, rtol=1e-3, atol=1e-5)


def test_auto_steps_report_what_they_reached_when_the_budget_is_too_small(tiny_loaded):
    analysis = attribution.analyze(
        tiny_loaded, SEED_PROMPT, methods=["integrated_gradients"], n_steps="auto", target_error=1e-12,
        max_steps=9, max_new_tokens=1,
    )
    result = analysis.methods["integrated_gradients"]
    assert result.n_steps == AUTO_FIRST_INTERVALS and result.reached_target is False  # no split fits in 9
    exported = analysis.to_dict()["methods"]["integrated_gradients"]
    assert exported["reached_target"] is False and exported["relative_completeness_error"] > 1e-12


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(n_steps="auto", target_error=0.0), "target_error must be between 0 and 1"),
        (dict(n_steps="auto", target_error=float("nan")), "target_error must be a number"),
        (dict(n_steps="auto", max_steps=3), "max_steps must be from 9"),
        (dict(n_steps="many"), "or 'auto'"),
        (dict(score="odds"), "valid choices: logit, probability, log_probability"),
        (dict(hold_context="yes"), "hold_context must be True or False"),
    ],
)
def test_bad_accuracy_settings_name_the_problem(tiny_loaded, settings, message):
    with pytest.raises(ValueError, match=message):
        attribution.analyze(tiny_loaded, SEED_PROMPT, max_new_tokens=1, **settings)


@pytest.mark.parametrize("score", ["probability", "log_probability"])
def test_scores_explain_what_they_say(tiny_loaded, score):
    """F(input) is the softmax of the model's own logits, and IG stays complete for every score."""
    analysis = attribution.analyze(
        tiny_loaded, SEED_PROMPT, methods=["integrated_gradients", "gradient"], score=score, baseline="pad",
        aggregation="sum", n_steps="auto", target_error=1e-3, max_new_tokens=1,
    )
    with torch.inference_mode():
        logits = tiny_loaded.model(input_ids=_ids(tiny_loaded)[None]).logits[0, -1].double()
    probabilities = torch.softmax(logits, dim=-1)
    expected = probabilities[analysis.target.id]
    expected = expected if score == "probability" else expected.log()
    result = analysis.methods["integrated_gradients"]
    torch.testing.assert_close(torch.tensor(result.input_output, dtype=torch.float64), expected, rtol=1e-4, atol=1e-7)
    assert result.relative_completeness_error <= 1e-3


def test_contrastive_log_probability_equals_the_logit_difference():
    logits = torch.randn(3, 50, dtype=torch.float64)
    torch.testing.assert_close(
        explained_score(logits, 4, 9, "log_probability"), explained_score(logits, 4, 9, "logit")
    )
    probabilities = torch.softmax(logits, dim=-1)
    torch.testing.assert_close(explained_score(logits, 4, 9, "probability"), probabilities[:, 4] - probabilities[:, 9])


def test_seed_preset_is_the_default(tiny_loaded):
    default = attribution.analyze(tiny_loaded, SEED_PROMPT, max_new_tokens=2)
    seeded = attribution.analyze(tiny_loaded, SEED_PROMPT, max_new_tokens=2, **attribution.PRESETS["seed"])
    assert default.to_dict() == seeded.to_dict()


def test_unknown_preset_lists_the_valid_ones(capsys):
    with pytest.raises(ValueError, match="valid choices: seed, recommended"):
        attribution.preset("fancy")
    assert cli_main([SEED_PROMPT, "--preset", "fancy"]) == 2
    assert "valid choices: seed, recommended" in capsys.readouterr().err


def test_cli_flags_override_the_preset(tiny_folder, tmp_path):
    output = tmp_path / "out.json"
    code = cli_main([SEED_PROMPT, "--model", str(tiny_folder), "--preset", "recommended", "--steps", "12",
                     "--methods", "integrated_gradients", "--max-new-tokens", "1", "--json", str(output)])
    assert code == 0
    import json

    result = json.loads(output.read_text())["methods"]["integrated_gradients"]
    recommended = attribution.PRESETS["recommended"]
    assert result["n_steps"] == 12 and "auto_steps" not in result
    assert result["baseline"] == recommended["baseline"] and result["aggregation"] == recommended["aggregation"]
    assert result["held_context"] is recommended["hold_context"]


def test_pad_baseline_is_eos_as_in_the_notebook_even_with_a_tokenizer_pad_token(tiny_folder, tmp_path):
    """The notebook sets pad_token = eos_token unconditionally; a tokenizer's own pad token must not
    change the seed's pad baseline."""
    import shutil

    from transformers import AutoTokenizer

    folder = tmp_path / "own-pad"
    shutil.copytree(tiny_folder, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.pad_token = tokenizer.bos_token  # an existing token that is not EOS
    tokenizer.save_pretrained(folder)
    loaded = attribution.load_model(str(folder), device="cpu")
    assert loaded.tokenizer.pad_token_id != loaded.tokenizer.eos_token_id
    analysis = attribution.analyze(loaded, SEED_PROMPT, baseline="pad", max_new_tokens=1)
    model, notebook_tokenizer = load_notebook_model(folder)
    input_ids = notebook_tokenizer(SEED_PROMPT, return_tensors="pt")["input_ids"]
    ig_scores, _ = notebook.compute_integrated_gradients(model, notebook_tokenizer, input_ids, "pad")
    assert relative_error(analysis.methods["integrated_gradients"].scores, ig_scores) <= 1e-3
