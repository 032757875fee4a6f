"""Views redrawn from the stored result (answer map, colour scaling, contrast, trust panel), presets, auto steps,
the score and the held context, through the page's handlers."""

from __future__ import annotations

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import app  # noqa: E402
import attribution  # noqa: E402
from attribution.display import explanations, tables  # noqa: E402
from ui import exports  # noqa: E402
from ui import inputs as ui_inputs  # noqa: E402
from ui import store  # noqa: E402
from ui import view  # noqa: E402
from conftest import SEED_PROMPT  # noqa: E402
from ui import settings as ui_settings  # noqa: E402
from ui import analysis as ui_analysis  # noqa: E402
from ui.tabs import answer_map as answer_map_tab  # noqa: E402
from ui import controls  # noqa: E402
from ui import figures  # noqa: E402
from attribution.display.plotting import draw_figure  # noqa: E402
from helpers import exported, png_bytes_of, png_of  # noqa: E402

RUN = tuple(ui_settings.DEFAULTS["methods"])  # the methods the app runs unless told otherwise


# --- beyond the notebook: answer map, contrast, attention sinks, trust panel ------------------------


@pytest.fixture
def no_model_runs(monkeypatch):
    """Redraws must come from the stored result: running the model again fails the test."""
    def refuse(*_args, **_kwargs):
        raise AssertionError("the model was run again for a redraw")

    monkeypatch.setattr(ui_analysis, "compute", refuse)
    monkeypatch.setattr(attribution, "analyze", refuse)


def test_answer_map_selector_redraws_from_the_stored_result(outputs, no_model_runs):
    state = outputs["state"]
    assert "Answer map" in outputs["answer_map:notes"]
    assert outputs["answer_map:heatmap"].plot.startswith("data:image/png;base64,")
    first = outputs["answer_map:highlight"]
    n_prompt = len(outputs["gradient:highlight"])
    assert len(first) == n_prompt  # generated token 1 is explained by the prompt alone
    method, token, _contrast, _button, label, _answer = ui_analysis.after_analysis(state, None)
    assert [value for _label, value in method["choices"]] == [
        name for name in RUN if name in attribution.ANSWER_MAP_METHODS]
    assert method["value"] == "gradient" and token["value"] == 1 and len(token["choices"]) == 4
    assert "generated token 1" in label["label"]
    shown, highlight = answer_map_tab.views(state, "integrated_gradients", 3, False)
    # The page shows exactly the display layer's figure for that method, row and scaling, drawn from the
    # kept result (the model is not run), and not another row's.
    kept = store.recall(state).analysis
    figure = draw_figure(kept, "answer_map:integrated_gradients", False, selected=3)
    assert "Integrated Gradients" in figure.axes[0].get_title()
    assert figure.axes[0].get_images()[0].get_array().shape == (4, n_prompt + 3)
    assert png_of(shown) == png_bytes_of(figure, store.DPI)
    assert png_of(shown) != png_bytes_of(draw_figure(kept, "answer_map:integrated_gradients", False, selected=2),
                                         store.DPI)
    values = highlight["value"]
    assert len(values) == n_prompt + 2  # the prompt and the two tokens generated before token 3
    assert all(-1.0 <= score <= 1.0 for _, score in values)
    assert "generated token 3" in highlight["label"]
    assert answer_map_tab.views(state, "gradient", 3, False)[1]["value"] != values
    assert answer_map_tab.views(None, "gradient", 1, False) == [gr.update(), gr.update()]  # nothing analyzed yet
    no_map, no_highlight = answer_map_tab.views(state, "occlusion", 1, False)  # a method without an answer map
    assert no_map is None and no_highlight["value"] is None


def test_the_held_context_toggle_redraws_scaling_from_the_stored_result(outputs, no_model_runs):
    views = dict(zip(ui_analysis.SCALED_KEYS, ui_analysis.scaled_views(outputs["state"], True, "gradient", 2)))
    for name in RUN:
        highlight = views[f"{name}:highlight"]
        assert highlight[0][1] is None  # BOS, the held first position: left out of the scaling, uncoloured
        assert max(abs(score) for _, score in highlight[1:]) == pytest.approx(1.0)
        assert highlight == outputs[f"{name}:highlight"]  # the default view
        assert 0 not in list(views[f"{name}:top"]["position"])
    # The figures the scaling changes are cleared, and drawn again (here: the Compare tab opened) with it.
    assert views["compare:heatmap"] is None and views["compare:bars"] is None and views["answer_map:heatmap"] is None
    kept = store.recall(outputs["state"]).analysis
    shown = dict(zip(figures.FIGURE_KEYS, figures.draw_tab("compare", True, None, 1, outputs["state"])))
    figure = draw_figure(kept, "compare:heatmap", True)
    assert png_of(shown["compare:heatmap"]) == png_bytes_of(figure, store.DPI)
    heatmap = figure.axes[0].get_images()[0].get_array()
    assert np.ma.getmaskarray(heatmap)[:, 0].all()
    assert views["answer_map:highlight"]["value"][0][1] is None
    # Unticked: the seed's view, every token in the scaling; the stored scores are the same either way.
    seed_view = dict(zip(ui_analysis.SCALED_KEYS, ui_analysis.scaled_views(outputs["state"], False, "gradient", 2)))
    for name in RUN:
        scores = kept.methods[name].scores
        highlight = seed_view[f"{name}:highlight"]
        assert all(score is not None for _token, score in highlight)
        largest = max(abs(float(value)) for value in scores)
        assert [score for _token, score in highlight] == [round(float(value) / largest, 4) for value in scores]
    seed_shown = dict(zip(figures.FIGURE_KEYS, figures.draw_tab("compare", False, None, 1, outputs["state"])))
    seed_figure = draw_figure(kept, "compare:heatmap", False)
    assert png_of(seed_shown["compare:heatmap"]) == png_bytes_of(seed_figure, store.DPI)
    assert png_of(seed_shown["compare:heatmap"]) != png_of(shown["compare:heatmap"])
    assert not np.ma.getmaskarray(seed_figure.axes[0].get_images()[0].get_array()).any()


def test_contrast_by_picked_id_and_by_typed_text(outputs, tiny_folder, monkeypatch):
    state = outputs["state"]
    options = view.contrast_options(store.recall(state).analysis)
    assert options[0] == ("(none)", "")
    assert all(value != store.recall(state).analysis.target.id for _label, value in options[1:])
    assert all(label.endswith("%)") for label, _value in options[1:])
    picked_id = options[1][1]
    text, pick = ui_analysis.pick_contrast(picked_id, state)
    assert pick == {"id": picked_id, "text": text}
    assert ui_inputs.parse_contrast(text, pick) == picked_id  # the id, as display text may not round-trip

    seen = []
    compute = ui_analysis.compute
    monkeypatch.setattr(ui_analysis, "compute", lambda *args, **kwargs: seen.append(args[2]) or compute(*args, **kwargs))
    quick = {"methods": ["gradient", "attention"], "max_new_tokens": 2, "all_targets": False, "trust": False}
    values = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.analyze(SEED_PROMPT, str(tiny_folder), contrast_text=text,
                                                   contrast_pick=pick, **quick)))
    assert seen[-1].contrast == picked_id  # the one Settings the page built
    assert values["explained"].startswith("explaining ") and "rather than" in values["explained"]
    assert "rather than" in values["gradient:notes"] and "does not depend" in values["attention:notes"]
    assert json.loads(Path(values["export:json"]).read_text(encoding="utf-8"))["contrast"]["foil"]["id"] == picked_id
    _method, _token, contrast, _button, _label, _answer = ui_analysis.after_analysis(values["state"], pick)
    assert contrast["value"] == picked_id  # the picked foil stays selected after its analysis
    typed = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.analyze(SEED_PROMPT, str(tiny_folder), contrast_text=" Tallinn", **quick)))
    assert seen[-1].contrast == " Tallinn"
    assert "rather than" in typed["explained"]
    assert "Trust panel is off" in typed["compare:verdict"] and typed["compare:agreement"] is None
    assert "not computed" in typed["answer_map:notes"] and typed["answer_map:heatmap"] is None


def test_a_cached_examples_result_is_pinned_and_becomes_the_sessions_state(tiny_folder, monkeypatch):
    values = {**ui_settings.page_defaults(str(tiny_folder), False), "prompt": SEED_PROMPT, "methods": ["gradient"],
              "max_new_tokens": 2, "all_targets": False, "trust": False}
    cached = dict(zip(ui_analysis.EXAMPLE_KEYS, ui_analysis.analyze_example(
        *[values[key] for key in ui_settings.SETTING_KEYS])))
    # Gradio's example cache holds no gr.State: the result's id travels in a hidden text output.
    assert "state" not in cached and "gradient:highlight" in cached
    result_id = cached["example:result"]
    monkeypatch.setattr(exports, "EXPORT_TTL_S", -1)  # past any age: an example's result is still kept
    assert ui_analysis.example_state(result_id) == result_id
    assert store.recall(result_id).analysis.settings.methods == ("gradient",)
    warnings = []
    monkeypatch.setattr(store.gr, "Warning", warnings.append)
    assert ui_analysis.example_state("0" * 32) is None and warnings == [store.EXPIRED]  # a cache of another process


def test_trust_panel_outputs_are_present_and_finite(outputs):
    assert outputs["compare:verdict"].startswith("**Verdict:** ") and len(outputs["compare:verdict"]) > 20
    table = outputs["compare:faithfulness"]
    assert list(table.columns) == tables.FAITHFULNESS_HEADERS
    assert list(table["method"]) == [attribution.METHOD_LABELS[name] for name in RUN]
    # Comprehensiveness, random's, sufficiency, random's: each cell's number (the random ones with an interval).
    numbers = [float(str(cell).split(" ")[0]) for cell in table.iloc[:, 1:5].to_numpy().ravel()]
    assert np.all(np.isfinite(numbers))
    assert outputs["compare:agreement"].plot.startswith("data:image/png;base64,")
    overlap = outputs["compare:overlap"]
    assert len(overlap) == len(RUN) * (len(RUN) - 1) // 2
    assert all(value == "n/a" or -1.0 <= float(value) <= 1.0 for value in overlap["Spearman ρ"])
    assert "Integrated Gradients completeness" in outputs["compare:completeness"]
    notes = outputs["integrated_gradients:notes"]
    assert "the **Seed settings**" in notes and "Use the recommended IG settings" in notes
    *_, button, _label, _answer = ui_analysis.after_analysis(outputs["state"], None)
    assert button["visible"] is True  # zero baseline, L2: the recommended settings are offered


def test_nothing_generated_skips_the_answer_map_with_a_note(tiny_folder):
    values = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.analyze(SEED_PROMPT, str(tiny_folder), methods=["gradient"],
                                                   max_new_tokens=0, trust=False)))
    assert "no tokens were generated" in values["answer_map:notes"]
    with pytest.raises(gr.Error, match="all_targets must be true or false"):
        ui_analysis.analyze(SEED_PROMPT, str(tiny_folder), all_targets="yes")


# --- presets, auto steps, the score and the held context -----------------------------------------------


@pytest.mark.parametrize("name", list(attribution.PRESETS))
def test_preset_buttons_fill_the_controls_with_exactly_the_presets_values(name):
    preset = attribution.PRESETS[name]
    values = dict(zip(ui_inputs.PRESET_CONTROLS, controls.fill_preset(name)))
    assert values["methods"] == list(preset["methods"])
    assert (values["ig_baseline"], values["aggregation"], values["score"], values["hold_context"]) == (
        preset["baseline"], preset["aggregation"], preset["score"], preset["hold_context"])
    if preset["n_steps"] == "auto":
        assert values["ig_auto"] is True and values["target_error"] == preset["target_error"]
        assert values["ig_steps"] == gr.update()  # the step count is left as it is
    else:
        assert values["ig_auto"] is False and values["ig_steps"] == preset["n_steps"]
    assert values["hide_special"] is (name == "recommended")  # the seed's view scales every token
    # The IG tab's button fills the same IG settings and leaves the methods alone.
    fields = [field for field in ui_inputs.PRESET_CONTROLS if field != "methods"]
    assert controls.fill_preset(name, fields) == [values[field] for field in fields]


def test_preset_buttons_are_wired_to_the_settings_controls(tiny_folder):
    demo = app.build_demo(str(tiny_folder), cache_examples=False)
    by_id = {block._id: getattr(block, "elem_id", None) for block in demo.blocks.values()}
    controls = {"methods": None, "ig_steps": "ig-steps", "ig_auto": "ig-auto", "target_error": "target-error",
                "ig_baseline": "ig-baseline", "aggregation": None, "score": "score", "hold_context": "hold-context",
                "hide_special": "hide-special"}
    for button in ("preset-seed", "preset-recommended"):
        button_id = next(key for key, elem_id in by_id.items() if elem_id == button)
        fill = next(dependency for dependency in demo.config["dependencies"]
                    if [button_id, "click"] in [list(trigger) for trigger in dependency["targets"]])
        assert [by_id[output] for output in fill["outputs"]] == [controls[field] for field in ui_inputs.PRESET_CONTROLS]
        assert fill["api_visibility"] == "private" and "analyze" not in str(fill.get("api_name"))


def test_the_recommended_preset_through_the_app_gives_the_librarys_numbers(tiny_folder, tiny_loaded, no_extra):
    settings = ui_inputs.preset_settings("recommended")
    values = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.analyze(SEED_PROMPT, str(tiny_folder), max_new_tokens=2, **no_extra,
                                                   **settings)))
    library = attribution.analyze(tiny_loaded, SEED_PROMPT, attribution.PRESETS["recommended"], max_new_tokens=2)
    data = exported(values)
    assert list(data["methods"]) == list(attribution.PRESETS["recommended"]["methods"])
    for name, result in library.methods.items():
        np.testing.assert_allclose(data["methods"][name]["scores"], result.scores, rtol=1e-6, atol=1e-9)
    ig = library.methods["integrated_gradients"]
    assert data["methods"]["integrated_gradients"]["n_steps"] == ig.n_steps
    notes = values["integrated_gradients:notes"]
    assert "the **Recommended** settings" in notes and "**Context held:**" in notes
    assert f"**Steps:** auto: {ig.n_steps} path points" in notes
    *_, button, _label, _answer = ui_analysis.after_analysis(values["state"], None)
    assert button["visible"] is False  # nothing better to offer
    assert values["gradient:highlight"][0][1] is None  # the recommended view: the held context out of the scaling


@pytest.fixture
def no_extra():
    return {"all_targets": False, "trust": False}


def test_auto_steps_report_the_points_and_the_error_reached(tiny_folder, no_extra):
    run = {"methods": ["integrated_gradients"], "max_new_tokens": 1, "ig_baseline": "pad", "aggregation": "sum",
           **no_extra}
    values = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.analyze(SEED_PROMPT, str(tiny_folder), ig_auto=True, **run)))
    ig = exported(values)["methods"]["integrated_gradients"]
    assert ig["auto_steps"] is True and ig["reached_target"] is True
    assert ig["relative_completeness_error"] <= 0.01
    notes = values["integrated_gradients:notes"]
    reached = explanations.percent(ig["relative_completeness_error"])
    assert f"**Steps:** auto: {ig['n_steps']} path points, {reached} error (target 1%)." in notes
    assert "**Pad baseline** = \"<|end_of_text|>\" (EOS, token id 1)" in notes  # the tiny model's EOS
    # ig_steps="auto" is the same request; an unreachable target spends the budget and says so.
    same = exported(dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.analyze(SEED_PROMPT, str(tiny_folder), ig_steps="auto", **run))))
    assert same["methods"]["integrated_gradients"] == ig
    missed = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.analyze(SEED_PROMPT, str(tiny_folder), ig_auto=True, target_error=1e-12,
                                                   **run)))
    ig = exported(missed)["methods"]["integrated_gradients"]
    # The whole budget spent: no further split of the adaptive rule fits in it.
    assert ig["reached_target"] is False and ig["n_steps"] <= ui_inputs.MAX_STEPS
    assert ig["n_steps"] + attribution.ig_adaptive.POINTS_PER_SPLIT > ui_inputs.MAX_STEPS
    assert (f"auto did **NOT** reach the {explanations.percent(1e-12)} target: "
            f"{explanations.percent(ig['relative_completeness_error'])} at {ig['n_steps']} path points") in (
        missed["integrated_gradients:notes"])


def test_score_and_held_context_reach_the_library_and_the_notes(tiny_folder, no_extra):
    values = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.analyze(
        SEED_PROMPT, str(tiny_folder), methods=["gradient", "integrated_gradients", "occlusion"], max_new_tokens=3,
        target="generated", target_k=3, ig_steps=8, ig_baseline="mean", aggregation="sum", score="probability",
        hold_context=True, **no_extra)))
    data = exported(values)
    ig = data["methods"]["integrated_gradients"]
    assert ig["score"] == "probability" and ig["held_context"] is True
    held = np.array(data["held_tokens"])
    assert held[0] and not held[-2:].any()  # the two generated tokens before the target are not held
    assert np.all(np.array(ig["scores"])[held] == 0)  # held at their real embeddings: exactly 0
    notes = values["integrated_gradients:notes"]
    assert "**Score:** the target's probability" in notes and "Occlusion always uses the log-probability" in notes
    assert "**Context held:**" in notes and "Generated tokens before the explained one (here 2) are not held" in notes
    assert "target probability changes" in notes
    assert "**Score:** not the logit but the target's probability" in values["gradient:notes"]
    assert "**Score:**" not in values["occlusion:notes"]  # occlusion never follows the setting
    seed = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.analyze(SEED_PROMPT, str(tiny_folder), methods=["integrated_gradients"],
                                                 max_new_tokens=1, ig_steps=8, **no_extra)))
    assert "**Context not held:**" in seed["integrated_gradients:notes"]
    assert "**Steps:**" not in seed["integrated_gradients:notes"] and "Pad baseline" not in seed[
        "integrated_gradients:notes"]


def test_auto_steps_and_the_step_slider_follow_each_other():
    slider, target_error = controls.step_fields(True)
    assert slider["interactive"] is False and target_error["visible"] is True
    slider, target_error = controls.step_fields(False)
    assert slider["interactive"] is True and target_error["visible"] is False


def share_link(values: dict, defaults: dict) -> str:
    """The share button's JavaScript run in node on `values` (SETTING_KEYS names)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    # A page's window and a navigator without a clipboard, as arguments so they shadow any node globals.
    script = (f"((window, navigator) => {{\n"
              f"  const share = {ui_settings.share_js(defaults)};\n"
              f"  console.log(share(...{json.dumps([values[key] for key in ui_settings.SETTING_KEYS])}));\n"
              "})({location: {origin: 'http://app', pathname: '/'}, isSecureContext: false}, {});\n")
    import subprocess  # the test's own JavaScript, run with fixed arguments

    return subprocess.run([node, "-e", script], capture_output=True, text=True, check=True, timeout=60).stdout.strip()


def test_share_link_and_deep_link_round_trip_the_new_settings():
    from urllib.parse import parse_qsl, urlsplit

    defaults = {**ui_settings.DEFAULTS, "model": "m", "chat": False}
    shared = {**defaults, "prompt": "Hi", "ig_auto": True, "target_error": 0.005, "score": "log_probability",
              "hold_context": True, "hide_special": False, "ig_baseline": "mean", "aggregation": "sum"}
    link = share_link(shared, defaults)
    query = dict(parse_qsl(urlsplit(link).query))
    assert query == {"prompt": "Hi", "auto": "1", "target_error": "0.005", "score": "log_probability",
                     "hold_context": "1", "hide_special": "0", "baseline": "mean", "aggregation": "sum"}
    opened = dict(zip(ui_settings.DEEP_LINK_KEYS, controls.from_query(query, ["m"])))
    names = dict(zip(ui_settings.DEEP_LINK_KEYS, ui_settings.SETTING_KEYS))
    for key, value in opened.items():  # what the link names comes back; the rest stays at the page's defaults
        assert value == (shared[names[key]] if key in query else gr.update()), key
    # Settings left at their defaults stay out of the link.
    assert dict(parse_qsl(urlsplit(share_link({**defaults, "prompt": "Hi"}, defaults)).query)) == {"prompt": "Hi"}
