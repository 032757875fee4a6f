"""`attribution.Settings`: one frozen, validated, JSON-round-tripping type for every analysis setting,
used by the library, the CLI and the dataset mode, and recorded on the result."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import attribution
from attribution.settings import PRESET_FIELDS, Settings
from conftest import REPO_ROOT, SEED_PROMPT


@pytest.mark.parametrize(("changes", "message"), [
    ({"baseline": "ones"}, "valid choices: zero, pad, mean"),
    ({"aggregation": "max"}, "valid choices: l2, sum"),
    ({"score": "odds"}, "valid choices: logit, probability, log_probability"),
    ({"methods": ["gradient", "lime"]}, "valid choices: gradient, attention"),
    ({"methods": []}, "choose at least one method"),
    ({"n_steps": "many"}, "or 'auto'"),
    ({"n_steps": 0}, "n_steps must be from 1 to"),
    ({"target_error": 1.5}, "target_error must be between 0 and 1"),
    ({"max_new_tokens": 2.5}, "max_new_tokens must be a whole number"),
    ({"target": ""}, "target text is empty"),
    ({"target": 0}, "choose a generated token from 1"),
    ({"contrast": -1}, "contrast token id must be 0 or more"),
    ({"trust": "yes"}, "trust must be True or False"),
    ({"system": "   "}, "system prompt is empty"),
])
def test_a_bad_setting_is_refused_when_built_naming_it(changes, message):
    with pytest.raises(ValueError, match=message):
        Settings(**changes)
    with pytest.raises(ValueError, match=message):
        Settings().replace(**changes)


def test_an_unknown_setting_is_refused_listing_the_valid_ones():
    with pytest.raises(ValueError, match="unknown setting 'steps'; valid choices: methods, max_new_tokens"):
        Settings().replace(steps=5)
    with pytest.raises(ValueError, match="unknown setting 'steps'"):
        Settings.from_dict({"steps": 5})


def test_settings_are_frozen_and_normalised():
    settings = Settings(methods="gradient, attention,gradient", max_new_tokens=3.0)
    assert settings.methods == ("gradient", "attention")  # a comma list, duplicates dropped, a tuple
    assert settings.max_new_tokens == 3 and isinstance(settings.max_new_tokens, int)
    with pytest.raises(AttributeError):
        settings.n_steps = 7  # type: ignore[misc]


@pytest.mark.parametrize("settings", [
    Settings(), attribution.PRESETS["recommended"],
    Settings(target=3, contrast=" Tallinn", chat=True, system="Be brief.", trust=True, all_targets=True),
    Settings(target=" Riga", contrast=42, n_steps="auto", max_steps=81, target_error=0.02),
])
def test_json_round_trip_gives_the_same_settings(settings):
    assert Settings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings


def test_presets_are_settings_and_differ_only_in_their_own_fields():
    seed, recommended = attribution.PRESETS["seed"], attribution.PRESETS["recommended"]
    assert isinstance(seed, Settings) and seed == Settings()  # the seed's settings are the defaults
    assert set(recommended.differences(seed)) <= set(PRESET_FIELDS)
    assert attribution.preset("recommended") is recommended
    with pytest.raises(ValueError, match="valid choices: seed, recommended"):
        attribution.preset("fast")
    # The keyword form scripts used when presets were dicts: ** gives the preset's own fields.
    assert dict(**recommended) == {name: getattr(recommended, name) for name in PRESET_FIELDS}


def test_the_settings_object_and_the_keyword_form_give_the_same_analysis(tiny_loaded):
    settings = Settings(methods=("gradient", "integrated_gradients"), max_new_tokens=2, n_steps=6, baseline="pad",
                        aggregation="sum", trust=True)
    by_object = attribution.analyze(tiny_loaded, SEED_PROMPT, settings)
    by_keywords = attribution.analyze(tiny_loaded, SEED_PROMPT, methods=["gradient", "integrated_gradients"],
                                      max_new_tokens=2, n_steps=6, baseline="pad", aggregation="sum", trust=True)
    assert by_object.to_dict() == by_keywords.to_dict()
    # Keywords replace the given object's fields.
    replaced = attribution.analyze(tiny_loaded, SEED_PROMPT, settings, n_steps=12)
    assert replaced.settings == settings.replace(n_steps=12)
    assert replaced.methods["integrated_gradients"].n_steps == 12


def test_the_result_records_its_settings_and_the_json_carries_them(tiny_loaded):
    settings = Settings(methods=("attention",), max_new_tokens=3, target=2, score="log_probability")
    analysis = attribution.analyze(tiny_loaded, SEED_PROMPT, settings)
    assert analysis.settings == settings
    recorded = json.loads(analysis.to_json())["settings"]
    assert Settings.from_dict(recorded) == settings
    assert recorded["target"] == 2 and recorded["methods"] == ["attention"]


def test_analyze_refuses_a_settings_of_the_wrong_type(tiny_loaded):
    with pytest.raises(ValueError, match="settings must be an attribution.Settings"):
        attribution.analyze(tiny_loaded, SEED_PROMPT, {"n_steps": 5})


def test_the_cli_builds_one_settings_from_its_flags(run_main, tiny_folder, tmp_path):
    output = tmp_path / "result.json"
    code, _stdout, _stderr = run_main(SEED_PROMPT, "--model", str(tiny_folder), "--preset", "recommended",
                                      "--steps", "7", "--methods", "gradient,integrated_gradients",
                                      "--max-new-tokens", "2", "--json", str(output))
    assert code == 0
    recorded = Settings.from_dict(json.loads(output.read_text(encoding="utf-8"))["settings"])
    # The preset's fields, each flag given replacing its own.
    assert recorded == attribution.PRESETS["recommended"].replace(
        n_steps=7, methods=("gradient", "integrated_gradients"), max_new_tokens=2)


def test_the_cli_refuses_a_bad_setting_before_loading_a_model(run_main):
    code, _stdout, stderr = run_main(SEED_PROMPT, "--model", "/nonexistent/model", "--baseline", "ones")
    assert code == 2
    assert "unknown baseline 'ones'; valid choices" in stderr


def test_settings_and_reports_import_without_torch():
    code = ("import sys, attribution.settings, attribution.reports, attribution.results; "
            "bad = [name for name in ('torch', 'transformers', 'gradio', 'matplotlib') if name in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
