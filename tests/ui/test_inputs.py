"""ui.inputs: the page's values and deep links → one attribution.Settings, and presets → the page's controls."""

from __future__ import annotations

import pytest

import attribution
from attribution.catalog import CATALOG
from ui import inputs as ui_inputs
from ui import settings as ui_settings
from attribution.gguf import PACKAGED_MODELS
from attribution.settings import PRESET_FIELDS, Settings
from attribution.models import DEMO_MODEL_PATH
from conftest import SMOLLM2


def test_targets_from_the_settings():
    assert ui_inputs.parse_target("next", 1, "") is None
    assert ui_inputs.parse_target("generated", 3.0, "") == 3
    assert ui_inputs.parse_target("text", 1, " Riga") == " Riga"
    with pytest.raises(ValueError, match="valid choices"):
        ui_inputs.parse_target("sideways", 1, "")


def test_contrast_is_the_picked_id_while_the_box_shows_the_picked_text():
    pick = {"id": 98, "text": " Tallinn"}
    assert ui_inputs.parse_contrast(" Tallinn", pick) == 98
    assert ui_inputs.parse_contrast(" Vilnius", pick) == " Vilnius"  # typed over the pick: the text
    assert ui_inputs.parse_contrast("", pick) is None
    with pytest.raises(ValueError, match="contrast_text"):
        ui_inputs.parse_contrast(3, None)


def test_flags_and_the_token_selector():
    assert ui_inputs.parse_flag(True, "trust") is True and ui_inputs.parse_flag(0, "trust") is False
    with pytest.raises(ValueError, match="trust must be true or false"):
        ui_inputs.parse_flag("yes", "trust")
    assert [ui_inputs.token_index(value, 3) for value in (2, "3.0", 9, -1, None, "x")] == [2, 3, 3, 1, 1, 1]


def test_deep_link_keeps_only_valid_settings():
    query = {"prompt": "Hello", "model": "someone/model", "methods": "gradient,bogus", "steps": "120",
             "max_new_tokens": "9999", "baseline": "pad", "aggregation": "nonsense", "target": "text",
             "k": "x", "answer_map": "0", "hide_special": "yes"}
    settings = ui_inputs.deep_link_settings(query, ["m"], any_model=True)
    assert settings == {"prompt": "Hello", "model": "someone/model", "methods": ["gradient"], "steps": 120,
                        "baseline": "pad", "target": "text", "answer_map": False,
                        "chat": False}  # the named model's chat default
    assert "model" not in ui_inputs.deep_link_settings(query, ["m"], any_model=False)  # a Space: listed only
    assert set(settings) <= set(ui_settings.DEEP_LINK_KEYS)


def test_system_prompt_is_none_when_empty_and_needs_chat_otherwise():
    assert ui_inputs.parse_system("", True) is None and ui_inputs.parse_system(" \n", False) is None
    assert ui_inputs.parse_system(None, False) is None
    assert ui_inputs.parse_system("Be brief.", True) == "Be brief."
    with pytest.raises(ValueError, match="needs the chat template"):
        ui_inputs.parse_system("Be brief.", False)
    with pytest.raises(ValueError, match="system must be text"):
        ui_inputs.parse_system(3, True)


def test_chat_default_follows_the_model_name():
    assert ui_inputs.chat_default(SMOLLM2) is PACKAGED_MODELS[SMOLLM2].chat is True
    assert ui_inputs.chat_default("Qwen/Qwen2.5-0.5B-Instruct") is True
    assert ui_inputs.chat_default("/models/gemma-2-2b-it.Q4_K_M.gguf") is True  # a local GGUF file's name
    assert ui_inputs.chat_default(str(DEMO_MODEL_PATH)) is False
    assert ui_inputs.chat_default("meta-llama/Llama-3.2-1B") is False
    assert ui_inputs.chat_default("") is False and ui_inputs.chat_default(None) is False


def test_model_picker_lists_the_built_in_model_and_says_how_to_install_it(monkeypatch):
    local = ui_inputs.model_choices("someone/model", hosted=False)
    assert [name for _label, name in local] == ["someone/model", str(DEMO_MODEL_PATH), ui_inputs.HUB_MODEL, SMOLLM2]
    hosted = ui_inputs.model_choices(ui_inputs.HUB_MODEL, hosted=True, allowed=["a/b", ui_inputs.HUB_MODEL])
    assert [name for _label, name in hosted] == [ui_inputs.HUB_MODEL, "a/b", SMOLLM2]

    def missing(hub_id):
        raise ValueError(f"{hub_id} is not installed")

    monkeypatch.setattr(attribution, "packaged_gguf", missing)
    label = ui_inputs.model_label(SMOLLM2)
    assert label.startswith(SMOLLM2) and PACKAGED_MODELS[SMOLLM2].install in label


def test_auto_steps_from_the_checkbox_or_the_steps_value():
    assert ui_inputs.parse_steps(50, False) == 50 and ui_inputs.parse_steps(50.0, 0) == 50.0
    assert ui_inputs.parse_steps(50, True) == "auto" and ui_inputs.parse_steps("auto", False) == "auto"
    with pytest.raises(ValueError, match="ig_auto must be true or false"):
        ui_inputs.parse_steps(50, "auto")


def test_presets_as_the_apps_controls():
    seed = ui_inputs.preset_settings("seed")
    assert seed == {"methods": list(attribution.PRESETS["seed"]["methods"]), "ig_steps": 50, "ig_auto": False,
                    "target_error": 0.01, "ig_baseline": "zero", "aggregation": "l2", "score": "logit",
                    "hold_context": False, "hide_special": False}
    recommended = ui_inputs.preset_settings("recommended")
    assert "ig_steps" not in recommended and recommended["ig_auto"] is True
    assert recommended["target_error"] == attribution.PRESETS["recommended"]["target_error"]
    assert recommended["hold_context"] is True and recommended["hide_special"] is True
    assert set(seed) == set(ui_inputs.PRESET_CONTROLS) == set(recommended) | {"ig_steps"}
    with pytest.raises(ValueError, match="unknown preset 'fast'"):
        ui_inputs.preset_settings("fast")


def test_deep_link_carries_auto_steps_target_error_score_and_held_context():
    settings = ui_inputs.deep_link_settings(
        {"steps": "auto", "target_error": "0.005", "score": "log_probability", "hold_context": "1"}, [], False)
    assert settings == {"auto": True, "target_error": 0.005, "score": "log_probability", "hold_context": True}
    assert ui_inputs.deep_link_settings({"steps": "auto", "auto": "0"}, [], False) == {"auto": False}
    for bad in ("0", "1", "nan", "inf", "-0.1", "1%"):
        assert "target_error" not in ui_inputs.deep_link_settings({"target_error": bad}, [], False), bad
    assert ui_inputs.deep_link_settings({"score": "energy", "hold_context": "yes"}, [], False) == {}


def page_values(**changes):
    """Every /analyze parameter at the page's defaults (as an API caller leaving them out sends them)."""
    return {**ui_settings.DEFAULTS, "prompt": "Hi", "model": None, **changes}


def test_the_page_builds_one_settings_and_its_defaults_are_the_pages():
    settings = ui_inputs.page_settings(page_values())
    # The answer map without IG (its box unticked): the chosen methods that have a map, but the costly one.
    cheap_maps = tuple(name for name in ui_settings.DEFAULTS["methods"]
                       if CATALOG[name].answer_map is not False and not CATALOG[name].costly)
    assert "integrated_gradients" not in cheap_maps and "gradient" in cheap_maps
    assert settings == Settings(methods=tuple(ui_settings.DEFAULTS["methods"]), all_targets=True, trust=True,
                                answer_map_methods=cheap_maps)
    # Each setting with a field fills it with its value as given (flags may come as 0/1).
    changed = ui_inputs.page_settings(page_values(
        methods=["gradient"], max_new_tokens=5.0, ig_baseline="mean", aggregation="sum", all_targets=0, trust=1,
        chat=True, system="Be brief.", target_error=0.02, score="probability", hold_context=True))
    assert changed.differences(settings) == {
        "methods": (("gradient",), settings.methods), "max_new_tokens": (5, 20), "baseline": ("mean", "zero"),
        "aggregation": ("sum", "l2"), "all_targets": (False, True), "chat": (True, False),
        "system": ("Be brief.", None), "target_error": (0.02, settings.target_error),
        "score": ("probability", "logit"), "hold_context": (True, False),
        "answer_map_methods": (None, cheap_maps)}  # only gradient chosen: nothing costly to leave out


def test_the_combined_fields_come_from_their_inputs():
    def built(**changes):
        return ui_inputs.page_settings(page_values(**changes))

    assert built(ig_steps=7).n_steps == 7 and built(ig_steps=7, ig_auto=True).n_steps == "auto"
    assert built(target="generated", target_k=3.0, target_text=" Riga").target == 3
    assert built(target="text", target_k=3, target_text=" Riga").target == " Riga"
    assert built(target="next", target_k=3, target_text=" Riga").target is None
    assert built(contrast_text=" Oslo").contrast == " Oslo" and built().contrast is None
    assert built(contrast_text=" Oslo", contrast_pick={"id": 98, "text": " Oslo"}).contrast == 98
    # Nothing generated: the answer map is skipped, not refused.
    assert built(max_new_tokens=0).all_targets is False and built(max_new_tokens=1).all_targets is True


def test_a_bad_page_value_is_a_value_error_naming_the_setting():
    for changes, message in (({"trust": "yes"}, "trust must be true or false"),
                             ({"ig_auto": 2}, "ig_auto must be true or false"),
                             ({"ig_steps": 0}, "n_steps must be from 1 to 1000, got 0"),
                             ({"ig_baseline": "banana"}, "unknown baseline 'banana'; valid choices: zero"),
                             ({"target": "generated", "target_k": "two"}, "generated token k must be a whole number"),
                             ({"system": "Be brief."}, "a system prompt needs the chat template"),
                             ({"methods": ["lime"]}, "unknown method 'lime'")):
        with pytest.raises(ValueError, match=message):
            ui_inputs.page_settings(page_values(**changes))
    # A field that inputs of other names fill: the message ends with those names, so that an API caller
    # who sent ig_steps=0 reads which of its parameters was wrong (the library only knows n_steps).
    for changes, field in (({"ig_steps": 0}, "n_steps"), ({"ig_steps": "fifty"}, "n_steps"),
                           ({"ig_baseline": "banana"}, "baseline")):
        names = [setting.name for setting in ui_settings.SETTINGS if setting.field == field]
        assert names and field not in names
        with pytest.raises(ValueError) as raised:
            ui_inputs.page_settings(page_values(**changes))
        assert str(raised.value).startswith(field if field == "n_steps" else f"unknown {field}")
        assert str(raised.value).endswith(f"(/analyze: {', '.join(names)})"), str(raised.value)


def test_presets_fill_the_controls_of_the_fields_they_decide_and_back():
    assert set(ui_inputs.PRESET_CONTROLS) == {setting.name for setting in ui_settings.SETTINGS
                                              if setting.field in PRESET_FIELDS} | {"hide_special"}
    for name, settings in attribution.PRESETS.items():
        values = ui_inputs.preset_settings(name)
        if "ig_steps" not in values:  # auto steps leave the step count as it is
            values["ig_steps"] = ui_settings.DEFAULTS["ig_steps"]
        # The page built from the filled controls runs the preset's settings.
        built = ui_inputs.page_settings(page_values(**values))
        assert {field: getattr(built, field) for field in PRESET_FIELDS} == {
            field: getattr(settings, field) for field in PRESET_FIELDS}, name
    with pytest.raises(ValueError, match="no preset decides them"):
        ui_inputs.control_values(Settings(), ["target"])


def test_describe_target_from_the_settings_target():
    assert ui_inputs.describe_target(None) == "the predicted next token"
    assert ui_inputs.describe_target(3) == "generated token 3"
    assert ui_inputs.describe_target(" Riga") == "the custom target's first token"
    # Only the word's first token is explained (engine: content_token), and the box says so.
    from attribution.settings import ANSWER_TARGET

    assert ui_inputs.describe_target(ANSWER_TARGET) == "the first token of the answer's first content word"
