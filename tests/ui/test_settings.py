"""One ordered settings list drives the /analyze parameters, the deep links, the share link and the examples."""

from __future__ import annotations

import inspect
from collections import Counter

from attribution.settings import Settings
from ui import analysis as ui_analysis
from ui import controls
from ui import settings as ui_settings


def test_the_api_parameters_are_the_settings_in_order_with_their_defaults():
    parameters = list(inspect.signature(ui_analysis.analyze).parameters.values())
    assert [parameter.name for parameter in parameters] == [*ui_settings.SETTING_KEYS, "contrast_pick", "progress"]
    for parameter in parameters[2:len(ui_settings.SETTING_KEYS)]:
        if parameter.name == "methods":  # None stands for DEFAULTS["methods"] (a list cannot be a default)
            assert parameter.default is None
            continue
        assert parameter.default == ui_settings.DEFAULTS[parameter.name], parameter.name


def test_each_setting_fills_one_settings_field_and_the_combined_ones_are_named():
    fields = Counter(setting.field for setting in ui_settings.SETTINGS if setting.field is not None)
    assert set(fields) <= set(Settings.names())
    assert [setting.name for setting in ui_settings.SETTINGS if setting.field is None] == [
        "prompt", "model", "hide_special"]  # the analysis' own arguments and a display choice
    # A field filled by several inputs is one of COMBINED, which names exactly those inputs (contrast: also
    # the page's picked foil, which is not an API parameter).
    assert {field for field, count in fields.items() if count > 1} <= set(ui_settings.COMBINED)
    for field, names in ui_settings.COMBINED.items():
        assert names == tuple(setting.name for setting in ui_settings.SETTINGS if setting.field == field), field
    assert ui_settings.LIBRARY_ONLY == ("max_steps",)  # the page leaves auto steps' budget to the library


def test_a_deep_link_fills_each_setting_in_the_settings_order():
    query = {setting.link: "" for setting in ui_settings.SETTINGS}
    query.update(prompt="Hi there", steps="7", baseline="mean", target="generated", k="3", answer_map="0",
                 auto="1", target_error="0.02", score="probability", hold_context="1", system="Be brief.",
                 contrast=" Oslo", text=" Riga", chat="1", trust="0", hide_special="0", aggregation="sum",
                 max_new_tokens="5", methods="gradient,occlusion", ablations="32")
    values = dict(zip(ui_settings.SETTING_KEYS, controls.from_query(query, [])))
    assert values["prompt"] == "Hi there" and values["ig_steps"] == 7 and values["ig_baseline"] == "mean"
    assert values["target"] == "generated" and values["target_k"] == 3 and values["all_targets"] is False
    assert values["ig_auto"] is True and values["target_error"] == 0.02 and values["score"] == "probability"
    assert values["hold_context"] is True and values["system"] == "Be brief." and values["contrast_text"] == " Oslo"
    assert values["target_text"] == " Riga" and values["chat"] is True and values["trust"] is False
    assert values["hide_special"] is False and values["aggregation"] == "sum" and values["max_new_tokens"] == 5
    assert values["methods"] == ["gradient", "occlusion"] and values["n_ablations"] == 32


def test_example_rows_hold_every_setting_at_the_page_default():
    for chat in (True, False):
        defaults = ui_settings.page_defaults("some/model", chat=chat)
        rows = ui_settings.example_rows(defaults)
        assert [row[0] for row in rows] == list(ui_settings.EXAMPLE_PROMPTS)
        for row in rows:
            values = dict(zip(ui_settings.SETTING_KEYS, row, strict=True))
            assert values["model"] == "some/model" and values["chat"] is chat
            # A chat model's page: the affordable IG settings; any other: the API's (the seed's).
            expected = {**ui_settings.DEFAULTS, **(ui_settings.CHAT_MODEL_DEFAULTS if chat else {})}
            assert {key: values[key] for key in ui_settings.DEFAULTS if key != "chat"} == {
                key: value for key, value in expected.items() if key != "chat"}


def test_a_chat_models_page_starts_with_ig_settings_that_converge_and_an_answer_map_without_ig():
    from attribution.settings import PRESETS

    chat = ui_settings.CHAT_MODEL_DEFAULTS
    recommended = PRESETS["recommended"]
    assert (chat["ig_baseline"], chat["aggregation"], chat["hold_context"]) == (
        recommended.baseline, recommended.aggregation, recommended.hold_context)
    assert chat["ig_auto"] is True  # auto steps to the target: converges, and the trust panel reruns nothing
    for kind in (True, False):  # every page's answer map leaves IG out (the tab offers it with its cost)
        assert ui_settings.page_defaults("some/model", chat=kind)["answer_map_ig"] is False
    values = {**ui_settings.page_defaults("some/model-Instruct", chat=True), "prompt": "Hi"}
    from ui import inputs as ui_inputs

    settings = ui_inputs.page_settings(values)
    # Auto steps stop where the trust panel calls IG converged, so it cites IG and reruns nothing; the
    # recommended preset aims tighter (`tests/ui/test_page_ig_target.py` measures what that costs).
    from attribution.limits import COMPLETENESS_TOLERANCE

    assert settings.n_steps == "auto" and settings.target_error == COMPLETENESS_TOLERANCE
    assert recommended.target_error < COMPLETENESS_TOLERANCE
    assert settings.baseline == "mean" and settings.hold_context is True
    assert settings.all_targets is True and "integrated_gradients" in settings.methods
    assert settings.mapped_methods == ("gradient", "attention", "input_x_gradient")  # IG left out
    # What the visitor asked about: the answer's first content word, not the reply's filler first token.
    from attribution.settings import ANSWER_TARGET

    assert settings.target == ANSWER_TARGET
    # The one-forward-per-token and per-sentence methods are one tick away on a real model's page.
    assert {"occlusion", "context_ablation"}.isdisjoint(settings.methods)
    assert ui_inputs.page_settings({**values, "target": "next"}).target is None
    # Only IG could map the answer and it is left out: no answer map (the tab says why and offers it).
    only_ig = ui_inputs.page_settings({**values, "methods": ["integrated_gradients", "occlusion"]})
    assert only_ig.all_targets is False and only_ig.answer_map_methods is None
    # Ticked, every chosen method maps the answer: the library's None.
    assert ui_inputs.page_settings({**values, "answer_map_ig": True}).answer_map_methods is None


def test_picking_a_model_brings_its_kinds_defaults_unless_they_were_changed():
    keys = controls.MODEL_KIND_CONTROLS
    seed = [ui_settings.DEFAULTS[key] for key in keys]
    chat = [ui_settings.CHAT_MODEL_DEFAULTS[key] for key in keys]
    assert controls.model_picked("HuggingFaceTB/SmolLM2-135M-Instruct", *seed) == [True, *chat]
    assert controls.model_picked("meta-llama/Llama-3.2-1B", *chat) == [False, *seed]
    changed = dict(zip(keys, seed)) | {"ig_steps": 7.0}  # a slider's value
    import gradio as gr

    assert controls.model_picked("HuggingFaceTB/SmolLM2-135M-Instruct", *changed.values()) == [
        True, *[gr.update()] * len(keys)]
