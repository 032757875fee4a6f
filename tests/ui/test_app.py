"""app.py: the handlers on a tiny random model, and the public API through gradio_client."""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import shutil
import socket
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import app  # noqa: E402
import attribution  # noqa: E402
from attribution.display import explanations, tables  # noqa: E402
from ui import inputs as ui_inputs  # noqa: E402
from ui import view_state  # noqa: E402
from conftest import SEED_PROMPT, SMOLLM2  # noqa: E402
from ui import settings as ui_settings  # noqa: E402
from ui import runtime  # noqa: E402
from attribution import catalog  # noqa: E402
from ui.tabs import method as method_tab  # noqa: E402
from ui import analysis as ui_analysis  # noqa: E402
from ui.tabs import answer_map as answer_map_tab  # noqa: E402
from ui import controls  # noqa: E402
from ui import figures  # noqa: E402
from attribution.display.plotting import draw_figure  # noqa: E402

RUN = tuple(ui_settings.DEFAULTS["methods"])


def png_of(plot) -> bytes:
    """The PNG bytes a gr.Plot value shows."""
    return base64.b64decode(plot.plot.split(",", 1)[1])


def png_bytes_of(figure) -> bytes:
    """A figure saved as the page saves it (PNG at the page's dpi)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figures.DPI)
    return buffer.getvalue()  # the methods the app runs unless told otherwise


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def analyzed(tiny_folder) -> dict:
    """One analysis through the UI handler with the default settings (answer map and trust panel
    included), by output name, as the analyze event returns it (no figures drawn yet); four generated
    tokens keep the answer map quick on a random model."""
    return dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.analyze(SEED_PROMPT, str(tiny_folder), max_new_tokens=4)))


@pytest.fixture(scope="module")
def outputs(analyzed) -> dict:
    """`analyzed` with every tab opened (its figures drawn, as the page draws them when a tab is seen) and
    the PNG files made, as the page shows them after a user has looked at everything."""
    values = dict(analyzed)
    for tab in figures.TAB_FIGURES:
        drawn = dict(zip(figures.FIGURE_KEYS, figures.draw_tab(tab, True, None, 1, analyzed["state"])))
        values.update({key: value for key, value in drawn.items() if key in ui_analysis.OUTPUT_KEYS
                       and not isinstance(value, dict)})  # gr.update(): another tab's figure, left as it was
    values["export:png"] = figures.export_pngs(analyzed["state"], True)
    return values


def test_the_analysis_comes_without_figures_and_the_open_tab_is_drawn_after_it(analyzed):
    # Drawing every figure cost seconds per request: the analyze event clears them and draws none.
    assert all(analyzed[key] is None for key in ui_analysis.OUTPUT_KEYS if key in figures.FIGURE_KEYS)
    assert analyzed["export:png"] is None
    drawn = dict(zip(figures.FIGURE_KEYS, figures.draw_after_analysis("attention", True, analyzed["state"])))
    assert drawn["attention:bars"].plot.startswith("data:image/png;base64,")
    assert drawn["attention:layers"].plot.startswith("data:image/png;base64,")
    assert drawn["attention:heads"]["visible"] is True
    others = [key for key in figures.FIGURE_KEYS if not key.startswith("attention:")]
    assert all(drawn[key] is None for key in others)  # cleared of any earlier result: drawn when opened


def test_the_png_downloads_are_the_bytes_the_page_shows(outputs):
    files = {Path(path).stem: Path(path).read_bytes() for path in outputs["export:png"]}
    shown = {f"{name}:bars": f"{name}_bars" for name in RUN} | {
        "attention:layers": "attention_layers", "compare:heatmap": "comparison_heatmap",
        "compare:bars": "comparison_bars", "compare:agreement": "agreement_heatmap",
        "answer_map:heatmap": "answer_map_gradient"}  # the answer map as it opens: gradient, token 1
    for output, stem in shown.items():
        assert png_of(outputs[output]) == files[stem], output
    assert len(set(files.values())) == len(files)  # fourteen different figures, not one copied


def test_a_result_no_longer_kept_says_so(analyzed, monkeypatch):
    warnings = []
    monkeypatch.setattr(figures.gr, "Warning", lambda message: warnings.append(message))
    state = json.dumps({**json.loads(analyzed["state"]), "result": "0" * 32})
    assert all(value == gr.update() for value in figures.draw_tab("compare", True, None, 1, state))
    assert warnings == [figures.EXPIRED]
    with pytest.raises(gr.Error, match="no longer kept"):
        figures.export_pngs(state, True)
    with pytest.raises(gr.Error, match="unknown tab 'nope'; valid choices: gradient"):
        figures.draw_tab("nope", True, None, 1, analyzed["state"])


def test_output_keys_follow_the_method_registry(tiny_loaded):
    for name in attribution.METHODS:
        for part in method_tab.PARTS:
            assert f"{name}:{part}" in ui_analysis.OUTPUT_KEYS
    # The layered methods are exactly those whose results, run on a model, carry per-head weights
    # shaped [layers, heads, tokens]: found by running every method, not by reading the result types.
    analysis = attribution.analyze(tiny_loaded, SEED_PROMPT, methods=list(attribution.METHODS), max_new_tokens=0,
                                   n_steps=2)
    config = tiny_loaded.model.config
    shape = (config.num_hidden_layers, config.num_attention_heads, len(analysis.input_tokens))
    layered = tuple(name for name, result in analysis.methods.items()
                    if np.shape(getattr(result, "per_head", None)) == shape)
    assert layered == ("attention",)  # the seed's per-head view; no other method keeps heads
    assert catalog.LAYERED_METHODS == layered
    for name in attribution.METHODS:
        assert (f"{name}:layers" in ui_analysis.OUTPUT_KEYS) == (name in layered), name


def test_handler_returns_highlights_figures_and_tables_for_every_method_run(outputs):
    assert isinstance(outputs["answer"], str)
    assert "predicted next token" in outputs["explained"]
    n_tokens = len(outputs["gradient:highlight"])
    assert n_tokens >= 9  # BOS + the seed prompt's tokens
    for name in RUN:
        highlight = outputs[f"{name}:highlight"]
        assert "".join(token for token, _ in highlight).endswith(SEED_PROMPT)
        assert highlight[0][1] is None  # the held first position (BOS): grey, out of the scaling by default
        assert all(-1.0 <= score <= 1.0 for _, score in highlight[1:])
        assert outputs[f"{name}:bars"].plot.startswith("data:image/png;base64,")
        top = outputs[f"{name}:top"]
        assert list(top.columns) == ["rank", "token", "position", "score"]
        assert len(top) == 5
        assert attribution.METHOD_LABELS[name] in outputs[f"{name}:notes"]
    assert outputs["attention:layers"].plot.startswith("data:image/png;base64,")
    assert "converge" in outputs["integrated_gradients:notes"]
    assert outputs["compare:heatmap"].plot.startswith("data:image/png;base64,")
    assert outputs["compare:bars"].plot.startswith("data:image/png;base64,")


def test_exports_follow_the_cli_contract(outputs, tiny_folder):
    data = json.loads(Path(outputs["export:json"]).read_text(encoding="utf-8"))
    assert data["prompt"] == SEED_PROMPT
    assert data["model"] == str(tiny_folder)
    assert set(data["methods"]) == set(RUN)
    assert len(data["methods"]["gradient"]["scores"]) == len(data["input_tokens"])
    csv_lines = Path(outputs["export:csv"]).read_text(encoding="utf-8").splitlines()
    assert csv_lines[0] == "position,token,token_id," + ",".join(RUN)
    assert len(csv_lines) == len(data["input_tokens"]) + 1
    pngs = [Path(path) for path in outputs["export:png"]]
    assert {path.name for path in pngs} == {f"{name}_bars.png" for name in RUN} | {
        "attention_layers.png", "comparison_heatmap.png", "comparison_bars.png", "agreement_heatmap.png"} | {
        f"answer_map_{name}.png" for name in attribution.ANSWER_MAP_METHODS}
    # The new keys arrive through to_dict(): the answer map, the trust panel, the foil candidates.
    assert set(data["answer_map"]) == set(attribution.ANSWER_MAP_METHODS)
    assert len(data["answer_map"]["gradient"]["targets"]) == 4
    assert data["verdict"] and set(data["faithfulness"]) == set(RUN)
    assert data["top_predictions"] and data["special_tokens"][0] is True
    assert all(path.read_bytes().startswith(b"\x89PNG") for path in pngs)
    # Every set of files sits in its own fresh temporary folder with fixed names: the JSON and CSV of the
    # analysis in one, the PNGs (made when asked for) in another.
    assert len({path.parent for path in pngs}) == 1
    assert Path(outputs["export:json"]).parent == Path(outputs["export:csv"]).parent


def test_per_head_view_is_redrawn_from_the_stored_result(outputs):
    state = outputs["state"]
    stored = json.loads(state)
    n_layers = len(stored["per_head"]["attention"])
    slider, heads = method_tab.head_views(state, "attention")
    assert slider["maximum"] == max(n_layers - 1, 1) and slider["value"] == n_layers - 1
    assert isinstance(heads["value"], Figure)
    figure = method_tab.head_figure(state, "attention", 0)
    assert isinstance(figure, Figure)
    assert "layer 0" in figure.axes[0].get_title()
    assert method_tab.head_figure(None, "attention", 0) is None


def test_analysis_survives_pickling_for_the_gpu_worker(tiny_loaded):
    analysis = attribution.analyze(tiny_loaded, SEED_PROMPT, max_new_tokens=2, n_steps=4)
    restored = pickle.loads(pickle.dumps(analysis))
    assert restored.to_dict() == analysis.to_dict()
    np.testing.assert_array_equal(restored.methods["attention"].per_head, analysis.methods["attention"].per_head)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt": "   "}, "prompt is empty"),
        ({"prompt": "x" * 100_000}, "far over the limit"),
        ({"model": "/no/such/model/folder"}, "no model folder"),
        ({"ig_baseline": "banana"}, "unknown baseline"),
        ({"methods": []}, "choose at least one method"),
        ({"methods": "gradient,bogus"}, "unknown method 'bogus'"),
        ({"model": 42}, "model name must be"),
        ({"target": "generated", "target_k": 99}, "out of range"),
        ({"target": "text", "target_text": ""}, "target text is empty"),
        ({"target_error": 0}, "target_error must be between 0 and 1 (e.g. 0.01 for 1%), got 0"),
        ({"ig_auto": True, "target_error": "1%"}, "target_error must be a number between 0 and 1"),
        ({"score": "energy"}, "unknown score 'energy'; valid choices: logit, probability, log_probability"),
        ({"hold_context": "yes"}, "hold_context must be true or false"),
        ({"ig_auto": "sometimes"}, "ig_auto must be true or false"),
    ],
)
def test_bad_input_raises_a_clear_gr_error(tiny_folder, kwargs, message):
    arguments = {"prompt": SEED_PROMPT, "model": str(tiny_folder), "max_new_tokens": 3, "ig_steps": 4}
    arguments.update(kwargs)
    with pytest.raises(gr.Error) as raised:
        ui_analysis.analyze(**arguments)
    assert message in raised.value.message


def test_targets_from_the_settings(tiny_folder):
    values = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.analyze(
        SEED_PROMPT, str(tiny_folder), methods=["gradient"], max_new_tokens=3, target="generated", target_k=2.0)))
    assert "generated token 2" in values["explained"]
    for name in set(attribution.METHODS) - {"gradient"}:
        assert values[f"{name}:highlight"] is None and values[f"{name}:bars"] is None
        assert "not computed" in values[f"{name}:notes"]
    assert values["attention:layers"] is None


def test_progress_names_each_stage(tiny_folder):
    seen = []

    class Recorder:
        def __call__(self, fraction, desc=None, **_):
            seen.append((fraction, desc))

    ui_analysis.analyze(SEED_PROMPT, str(tiny_folder), max_new_tokens=2, ig_steps=3, progress=Recorder())
    fractions = [fraction for fraction, _ in seen]
    assert fractions == sorted(fractions) and 0 < fractions[0] and fractions[-1] < 1
    descriptions = " | ".join(desc for _, desc in seen)
    assert "Loading" in descriptions and "Generating the answer" in descriptions
    assert "Computing Integrated Gradients (3 steps)" in descriptions
    assert "Drawing" not in descriptions  # figures are drawn after the result is shown, not before


def test_deep_link_fills_valid_settings_and_ignores_the_rest():
    keep = gr.update()
    values = controls.from_query(
        {"prompt": "Hello there", "methods": "gradient,bogus", "steps": "120", "max_new_tokens": "9999",
         "baseline": "pad", "aggregation": "nonsense", "target": "text", "text": " Riga"},
        ["m"],
    )
    (prompt, model, methods, max_new, steps, baseline, aggregation, target, k, text, contrast, answer_map,
     trust, hide_special, chat, system, auto, target_error, score, hold_context) = values
    assert prompt == "Hello there" and methods == ["gradient"] and steps == 120 and baseline == "pad"
    assert max_new == keep and aggregation == keep and model == keep and k == keep
    assert target == "text" and text == " Riga"
    assert contrast == keep and answer_map == keep and trust == keep and hide_special == keep
    assert chat == keep and system == keep  # no model named: the page's chat setting stays
    assert auto == keep and target_error == keep and score == keep and hold_context == keep
    values = controls.from_query({"contrast": " Tallinn", "answer_map": "0", "trust": "1", "hide_special": "yes"}, ["m"])
    assert values[10:] == [" Tallinn", False, True, keep, keep, keep, keep, keep, keep, keep]
    values = controls.from_query({"steps": "auto", "target_error": "1.5", "score": "energy", "hold_context": "2"}, ["m"])
    assert values[4] == keep and values[16:] == [True, keep, keep, keep]  # steps=auto is auto=1


def test_hosted_space_lists_only_allowed_models(monkeypatch, tiny_folder):
    monkeypatch.setenv("SPACE_ID", "someone/token-attribution")
    monkeypatch.setenv("MODEL_ID", "meta-llama/Llama-3.2-1B")
    monkeypatch.setenv("ALLOWED_MODELS", "meta-llama/Llama-3.2-1B,HuggingFaceTB/SmolLM2-135M")
    choices = [value for _label, value in controls.model_choices("meta-llama/Llama-3.2-1B")]
    assert choices == ["meta-llama/Llama-3.2-1B", "HuggingFaceTB/SmolLM2-135M", SMOLLM2]
    with pytest.raises(gr.Error) as raised:
        ui_analysis.analyze(SEED_PROMPT, str(tiny_folder))
    assert "cannot be loaded on the hosted Space" in raised.value.message


def test_local_model_picker_offers_demo_hub_and_custom(tiny_folder):
    choices = controls.model_choices(str(tiny_folder))
    values = [value for _label, value in choices]
    assert values == [str(tiny_folder), str(attribution.DEMO_MODEL_PATH), "meta-llama/Llama-3.2-1B", SMOLLM2]
    assert choices[1][0].startswith("demo model")
    assert choices[3][0].startswith(f"{SMOLLM2} (built-in chat model")


def test_server_settings(monkeypatch):
    for name in ("GRADIO_SHARE", "GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT", "SPACE_ID"):
        monkeypatch.delenv(name, raising=False)
    assert app.server_settings(app.parse_args([])) == {
        "server_name": "127.0.0.1", "server_port": 7860, "share": False}
    assert app.server_settings(app.parse_args(["--share", "--port", "8000", "--host", "0.0.0.0"])) == {
        "server_name": "0.0.0.0", "server_port": 8000, "share": True}
    monkeypatch.setenv("GRADIO_SHARE", "1")
    monkeypatch.setenv("SPACE_ID", "someone/space")
    assert app.server_settings(app.parse_args([])) == {
        "server_name": "0.0.0.0", "server_port": 7860, "share": True}


def test_gpu_decorator_is_a_no_op_off_spaces_and_spaces_gpu_on_them(monkeypatch):
    def work():
        return 42

    assert runtime.spaces is None
    assert runtime.gpu(work) is work

    class FakeSpaces:  # what `spaces.GPU(duration=...)` does on ZeroGPU: run elsewhere, pickle back
        @staticmethod
        def GPU(duration):  # noqa: N802 (the real package's name)
            def decorate(function):
                def run_in_worker(*args, **kwargs):
                    return pickle.loads(pickle.dumps(function(*args, **kwargs)))
                run_in_worker.duration = duration
                return run_in_worker
            return decorate

    monkeypatch.setattr(runtime, "spaces", FakeSpaces)
    assert runtime.gpu(work)() == 42 and runtime.gpu(work).duration == runtime.GPU_DURATION_S


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
    kept = figures.recall(json.loads(state)["result"])
    figure = draw_figure(kept, "answer_map_integrated_gradients", False, selected=3)
    assert "Integrated Gradients" in figure.axes[0].get_title()
    assert figure.axes[0].get_images()[0].get_array().shape == (4, n_prompt + 3)
    assert png_of(shown) == png_bytes_of(figure)
    assert png_of(shown) != png_bytes_of(draw_figure(kept, "answer_map_integrated_gradients", False, selected=2))
    values = highlight["value"]
    assert len(values) == n_prompt + 2  # the prompt and the two tokens generated before token 3
    assert all(-1.0 <= score <= 1.0 for _, score in values)
    assert "generated token 3" in highlight["label"]
    assert answer_map_tab.views(state, "gradient", 3, False)[1]["value"] != values
    empty_figure, empty_highlight = answer_map_tab.views(None, "gradient", 1, False)
    assert empty_figure is None and empty_highlight["value"] is None


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
    kept = figures.recall(json.loads(outputs["state"])["result"])
    shown = dict(zip(figures.FIGURE_KEYS, figures.draw_tab("compare", True, None, 1, outputs["state"])))
    figure = draw_figure(kept, "comparison_heatmap", True)
    assert png_of(shown["compare:heatmap"]) == png_bytes_of(figure)
    heatmap = figure.axes[0].get_images()[0].get_array()
    assert np.ma.getmaskarray(heatmap)[:, 0].all()
    assert views["answer_map:highlight"]["value"][0][1] is None
    # Unticked: the seed's view, every token in the scaling; the stored scores are the same either way.
    seed_view = dict(zip(ui_analysis.SCALED_KEYS, ui_analysis.scaled_views(outputs["state"], False, "gradient", 2)))
    scores = json.loads(outputs["state"])["scores"]
    for name in RUN:
        highlight = seed_view[f"{name}:highlight"]
        assert all(score is not None for _token, score in highlight)
        largest = max(abs(value) for value in scores[name])
        assert [score for _token, score in highlight] == [round(value / largest, 4) for value in scores[name]]
    seed_shown = dict(zip(figures.FIGURE_KEYS, figures.draw_tab("compare", False, None, 1, outputs["state"])))
    seed_figure = draw_figure(kept, "comparison_heatmap", False)
    assert png_of(seed_shown["compare:heatmap"]) == png_bytes_of(seed_figure)
    assert png_of(seed_shown["compare:heatmap"]) != png_of(shown["compare:heatmap"])
    assert not np.ma.getmaskarray(seed_figure.axes[0].get_images()[0].get_array()).any()


def test_contrast_by_picked_id_and_by_typed_text(outputs, tiny_folder, monkeypatch):
    state = outputs["state"]
    options = view_state.contrast_options(view_state.load_view_state(state))
    assert options[0] == ("(none)", "")
    assert all(value != json.loads(state)["target_id"] for _label, value in options[1:])
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
    assert seen[-1]["contrast"] == picked_id
    assert values["explained"].startswith("explaining ") and "rather than" in values["explained"]
    assert "rather than" in values["gradient:notes"] and "does not depend" in values["attention:notes"]
    assert json.loads(Path(values["export:json"]).read_text(encoding="utf-8"))["contrast"]["foil"]["id"] == picked_id
    _method, _token, contrast, _button, _label, _answer = ui_analysis.after_analysis(values["state"], pick)
    assert contrast["value"] == picked_id  # the picked foil stays selected after its analysis
    typed = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.analyze(SEED_PROMPT, str(tiny_folder), contrast_text=" Tallinn", **quick)))
    assert seen[-1]["contrast"] == " Tallinn"
    assert "rather than" in typed["explained"]
    assert "Trust panel is off" in typed["compare:verdict"] and typed["compare:agreement"] is None
    assert "not computed" in typed["answer_map:notes"] and typed["answer_map:heatmap"] is None


def test_trust_panel_outputs_are_present_and_finite(outputs):
    assert outputs["compare:verdict"].startswith("**Verdict:** ") and len(outputs["compare:verdict"]) > 20
    table = outputs["compare:faithfulness"]
    assert list(table.columns) == tables.FAITHFULNESS_HEADERS
    assert list(table["method"]) == [attribution.METHOD_LABELS[name] for name in RUN]
    assert np.all(np.isfinite(table.iloc[:, 1:5].to_numpy(dtype=float)))
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
    values = dict(zip(ui_inputs.PRESET_FIELDS, controls.fill_preset(name)))
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
    fields = [field for field in ui_inputs.PRESET_FIELDS if field != "methods"]
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
        assert [by_id[output] for output in fill["outputs"]] == [controls[field] for field in ui_inputs.PRESET_FIELDS]
        assert fill["api_visibility"] == "private" and "analyze" not in str(fill.get("api_name"))


def test_the_recommended_preset_through_the_app_gives_the_librarys_numbers(tiny_folder, tiny_loaded, no_extra):
    settings = ui_inputs.preset_settings("recommended")
    values = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.analyze(SEED_PROMPT, str(tiny_folder), max_new_tokens=2, **no_extra,
                                                   **settings)))
    library = attribution.analyze(tiny_loaded, SEED_PROMPT, max_new_tokens=2, **attribution.PRESETS["recommended"])
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
    assert ig["reached_target"] is False and ig["n_steps"] == max(attribution.integrated_gradients.auto_levels(
        ui_inputs.MAX_STEPS))
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


# --- chat templates, the system prompt and the clickable answer -------------------------------------

# A chat template shaped like SmolLM2's: a default system message, one line per role, the generation prompt.
CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|begin_of_text|>system\nYou name capitals.<|end_of_text|>\n{% endif %}"
    "{% for message in messages %}<|begin_of_text|>{{ message['role'] }}\n{{ message['content'] }}<|end_of_text|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|begin_of_text|>assistant\n{% endif %}"
)
QUICK = {"methods": ["gradient", "attention"], "max_new_tokens": 3, "all_targets": False, "trust": False}


@pytest.fixture(scope="module")
def chat_folder(tiny_folder, tmp_path_factory) -> Path:
    """The tiny model with a chat template, in a folder named as instruction-tuned checkpoints are."""
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("chat") / "tiny-chat-Instruct"
    shutil.copytree(tiny_folder, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    return folder


def exported(values: dict) -> dict:
    return json.loads(Path(values["export:json"]).read_text(encoding="utf-8"))


def template_flags(data: dict) -> np.ndarray:
    """Which input tokens the chat template added, from the exported JSON."""
    return ~np.array(data["user_tokens"]) & ~np.array(data["special_tokens"])


def test_chat_checkbox_starts_ticked_for_chat_models_only(chat_folder, tiny_folder):
    assert ui_inputs.chat_default(SMOLLM2) is True and ui_inputs.chat_default(str(chat_folder)) is True
    assert ui_inputs.chat_default(str(attribution.DEMO_MODEL_PATH)) is False
    assert ui_inputs.chat_default("meta-llama/Llama-3.2-1B") is False and ui_inputs.chat_default(str(tiny_folder)) is False

    def checkbox(default_model):
        demo = app.build_demo(default_model, cache_examples=False)
        return next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "chat")

    assert checkbox(str(chat_folder)).value is True and checkbox(str(tiny_folder)).value is False


def test_chat_template_tokens_are_grey_and_out_of_the_scaling_and_top_5(chat_folder):
    values = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.analyze(SEED_PROMPT, str(chat_folder), chat=True, **QUICK)))
    data = exported(values)
    user = np.array(data["user_tokens"])
    held = np.array(data["held_tokens"])
    template = template_flags(data)
    assert data["chat"] is True and "system" not in data  # the template's default system prompt
    assert "".join(np.array(data["input_tokens"])[user]) == SEED_PROMPT
    assert "You name capitals." in "".join(data["input_tokens"]) and template.sum() > 5
    assert held[0] and not (held & user).any() and held[template].all()  # the held context: all but the prompt
    for name in QUICK["methods"]:
        scores = [score for _token, score in values[f"{name}:highlight"]]
        assert [score is None for score in scores] == list(held)  # grey, uncoloured: the held context
        assert max(abs(score) for score in scores if score is not None) == pytest.approx(1.0)
        assert not held[list(values[f"{name}:top"]["position"])].any()
        assert "**Chat template:**" in values[f"{name}:notes"]
    shown = dict(zip(ui_analysis.SCALED_KEYS, ui_analysis.scaled_views(values["state"], True, "gradient", 1)))
    assert shown["gradient:highlight"] == values["gradient:highlight"]  # the toggle's default
    kept = figures.recall(json.loads(values["state"])["result"])
    drawn = dict(zip(figures.FIGURE_KEYS, figures.draw_tab("compare", True, None, 1, values["state"])))
    figure = draw_figure(kept, "comparison_heatmap", True)
    assert png_of(drawn["compare:heatmap"]) == png_bytes_of(figure)
    heatmap = figure.axes[0].get_images()[0].get_array()
    assert list(np.ma.getmaskarray(heatmap)[0]) == list(held)
    title = figure.axes[0].get_title().replace("\n", " ")
    assert "special and chat-template tokens left out" in title
    # Unticked, the special tokens (each role line's BOS) come back into the scaling; the template stays out.
    seed_view = dict(zip(ui_analysis.SCALED_KEYS, ui_analysis.scaled_views(values["state"], False, "gradient", 1)))
    assert [score is None for _token, score in seed_view["gradient:highlight"]] == list(template)
    assert not template[list(seed_view["gradient:top"]["position"])].any()


def test_system_prompt_reaches_the_template_and_needs_chat(chat_folder, tiny_folder):
    data = exported(dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.analyze(SEED_PROMPT, str(chat_folder), chat=True,
                                                          system="Answer in one word.", **QUICK))))
    text = "".join(data["input_tokens"])
    assert data["system"] == "Answer in one word." and "Answer in one word." in text
    assert "You name capitals." not in text  # the given system prompt replaces the default
    blank = exported(dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.analyze(SEED_PROMPT, str(chat_folder), chat=True, system="  ",
                                                           **QUICK))))
    assert "You name capitals." in "".join(blank["input_tokens"])  # blank: the template's default
    with pytest.raises(gr.Error, match="a system prompt needs the chat template"):
        ui_analysis.analyze(SEED_PROMPT, str(chat_folder), system="Answer in one word.", **QUICK)
    with pytest.raises(gr.Error, match="has no chat template"):
        ui_analysis.analyze(SEED_PROMPT, str(tiny_folder), chat=True, **QUICK)
    with pytest.raises(gr.Error, match="chat must be true or false"):
        ui_analysis.analyze(SEED_PROMPT, str(chat_folder), chat="on", **QUICK)


def test_clicking_a_generated_token_explains_it(tiny_folder):
    first = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.analyze(SEED_PROMPT, str(tiny_folder), **QUICK)))
    *_, answer = ui_analysis.after_analysis(first["state"], None)
    assert [category for _token, category in answer] == ["explained", None, None]  # the next token = the first
    click = gr.SelectData(None, {"index": 2, "value": [answer[2][0], None]})
    assert ui_analysis.explain_answer_token(None, click) == [gr.update(), gr.update()]  # no answer yet: nothing to pick
    target, k = ui_analysis.explain_answer_token(first["state"], click)
    assert (target, k) == ("generated", 3)
    second = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.analyze(SEED_PROMPT, str(tiny_folder), target=target, target_k=k,
                                                   **QUICK)))
    assert "generated token 3" in second["explained"] and second["answer"] == first["answer"]
    assert json.loads(second["state"])["target"] == answer[2][0]  # the clicked token is the one explained
    *_, marked = ui_analysis.after_analysis(second["state"], None)
    assert [category for _token, category in marked] == [None, None, "explained"]
    assert [token for token, _category in marked] == [token for token, _category in answer]


def test_deep_link_carries_chat_system_and_the_clicked_token():
    keys = list(ui_settings.DEEP_LINK_KEYS)
    linked = dict(zip(keys, controls.from_query({"prompt": "Hi", "model": SMOLLM2}, [SMOLLM2])))
    assert linked["model"] == SMOLLM2 and linked["chat"] is True  # the linked model's own default
    linked = dict(zip(keys, controls.from_query({"model": SMOLLM2, "chat": "0", "system": "Be brief."}, [SMOLLM2])))
    assert linked["chat"] is False and linked["system"] == "Be brief."
    linked = dict(zip(keys, controls.from_query({"model": str(attribution.DEMO_MODEL_PATH), "chat": "1"}, [])))
    assert linked["chat"] is True
    linked = dict(zip(keys, controls.from_query({"target": "generated", "k": "7"}, [])))
    assert linked["target"] == "generated" and linked["k"] == 7
    # The share link writes the same keys (a clicked token is target=generated with its k).
    for key in ("chat", "system", "target", "k"):
        assert f'"{key}"' in ui_settings.share_js(ui_settings.DEFAULTS)


@pytest.mark.slow
def test_built_in_smollm2_chats_by_default_answers_riga_and_greys_its_template(real_model):
    # real_model (conftest) has loaded SmolLM2 into this process's model cache, where the app finds it.
    chat = ui_inputs.chat_default(SMOLLM2)  # what the page ticks when SmolLM2 is picked
    assert chat is True
    values = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.analyze(SEED_PROMPT, SMOLLM2, methods=["gradient"], max_new_tokens=8,
                                                   all_targets=False, trust=False, chat=chat)))
    assert "Riga" in values["answer"]
    data = exported(values)
    template = template_flags(data)
    assert "".join(np.array(data["input_tokens"])[np.array(data["user_tokens"])]) == SEED_PROMPT
    assert "SmolLM" in "".join(np.array(data["input_tokens"])[template])  # the default system prompt
    held = np.array(data["held_tokens"])
    assert held[template].all() and not (held & np.array(data["user_tokens"])).any()
    assert [score is None for _token, score in values["gradient:highlight"]] == list(held)
    assert not held[list(values["gradient:top"]["position"])].any()
    *_, answer = ui_analysis.after_analysis(values["state"], None)
    tokens = [token for token, _category in answer]
    assert "".join(tokens).strip() == values["answer"].strip()
    riga = next(index for index, token in enumerate(tokens) if "Rig" in token)
    click = gr.SelectData(None, {"index": riga, "value": [tokens[riga], None]})
    assert ui_analysis.explain_answer_token(values["state"], click) == ["generated", riga + 1]


# --- the public API, served for real on a free port ------------------------------------------------


@pytest.fixture(scope="module")
def served(tiny_folder, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:  # lazily cached examples go to a throwaway folder
        patch.setenv("GRADIO_EXAMPLES_CACHE", str(tmp_path_factory.mktemp("examples-cache")))
        demo = app.build_demo(str(tiny_folder))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def client(served, tmp_path_factory):
    from gradio_client import Client

    return Client(served, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def test_client_predict_returns_highlights_and_figures_for_all_methods(client):
    result = client.predict(SEED_PROMPT, api_name="/analyze")
    values = dict(zip([key for key in ui_analysis.OUTPUT_KEYS if key != "state"], result))
    for name in RUN:
        highlight = values[f"{name}:highlight"]
        assert len(highlight) >= 9
        assert highlight[0]["class_or_confidence"] is None  # the held first position, by default
        assert all(-1.0 <= item["class_or_confidence"] <= 1.0 for item in highlight[1:])
        assert values[f"{name}:bars"] is None  # figures are drawn when asked for, not with the result
    assert json.loads(Path(values["export:json"]).read_text(encoding="utf-8"))["prompt"] == SEED_PROMPT
    # /figures draws one tab's figures for this client's last analysis (its session's stored result).
    for tab in RUN:
        drawn = dict(zip(figures.FIGURE_KEYS, client.predict(tab, api_name="/figures")))
        assert drawn[f"{tab}:bars"]["plot"].startswith("data:image/png;base64,")
    drawn = dict(zip(figures.FIGURE_KEYS, client.predict("attention", api_name="/figures")))
    assert drawn["attention:layers"]["plot"].startswith("data:image/png;base64,")
    drawn = dict(zip(figures.FIGURE_KEYS, client.predict("compare", api_name="/figures")))
    assert drawn["compare:heatmap"]["plot"].startswith("data:image/png;base64,")
    pngs = client.predict(api_name="/figures_png")
    assert {Path(path).name for path in pngs} >= {f"{name}_bars.png" for name in RUN}


def test_api_lists_analyze_and_hides_internal_events(client):
    info = client.view_api(print_info=False, return_format="dict")
    assert list(info["named_endpoints"]) == ["/analyze", "/figures", "/figures_png"]
    assert info["unnamed_endpoints"] == {}
    parameters = info["named_endpoints"]["/analyze"]["parameters"]
    assert parameters[0]["parameter_name"] == "prompt"
    assert all(parameter["parameter_has_default"] for parameter in parameters[1:])
    defaults = {parameter["parameter_name"]: parameter["parameter_default"] for parameter in parameters}
    assert defaults["contrast_text"] == "" and "contrast_pick" not in defaults
    assert defaults["all_targets"] is ui_settings.DEFAULTS["all_targets"] and defaults["trust"] is ui_settings.DEFAULTS["trust"]
    assert defaults["hide_special"] is True  # display only: the held context out of the colour scaling
    # Added after every older parameter, so positional calls written for older versions still fit.
    assert [parameter["parameter_name"] for parameter in parameters] == list(ui_settings.SETTING_KEYS)
    assert list(ui_settings.SETTING_KEYS[-6:]) == ["chat", "system", "ig_auto", "target_error", "score", "hold_context"]
    assert defaults["chat"] is False and defaults["system"] == ""
    seed = attribution.PRESETS["seed"]
    assert (defaults["ig_steps"], defaults["ig_baseline"], defaults["aggregation"], defaults["score"],
            defaults["hold_context"]) == (seed["n_steps"], seed["baseline"], seed["aggregation"], seed["score"],
                                          seed["hold_context"])
    assert defaults["ig_auto"] is False and defaults["target_error"] == 0.01


def test_client_call_with_contrast_answer_map_and_trust(client):
    result = client.predict(SEED_PROMPT, max_new_tokens=3, contrast_text=" Tallinn", all_targets=True,
                            trust=True, api_name="/analyze")
    values = dict(zip([key for key in ui_analysis.OUTPUT_KEYS if key != "state"], result))
    assert values["explained"].startswith("explaining ") and "rather than" in values["explained"]
    assert len(values["answer_map:highlight"]) >= 9
    assert values["compare:verdict"].startswith("**Verdict:**")
    drawn = dict(zip(figures.FIGURE_KEYS, client.predict("answer_map", api_name="/figures")))
    assert drawn["answer_map:heatmap"]["plot"].startswith("data:image/png;base64,")
    drawn = dict(zip(figures.FIGURE_KEYS, client.predict("compare", api_name="/figures")))
    assert drawn["compare:agreement"]["plot"].startswith("data:image/png;base64,")
    data = json.loads(Path(values["export:json"]).read_text(encoding="utf-8"))
    assert data["contrast"]["foil"]["text"] and len(data["answer_map"]["gradient"]["targets"]) == 3
    assert "verdict" in data


def test_bad_input_through_the_api_is_a_clear_error_and_the_app_keeps_serving(client):
    with pytest.raises(Exception, match="prompt is empty"):
        client.predict("   ", api_name="/analyze")
    with pytest.raises(Exception, match="no model folder"):
        client.predict(SEED_PROMPT, "/no/such/model", api_name="/analyze")
    result = client.predict("The capital of France is", methods=["gradient"], api_name="/analyze")
    assert result[list(ui_analysis.OUTPUT_KEYS).index("gradient:highlight")]


def test_client_positional_calls_from_before_chat_still_work_and_chat_goes_through(client, tiny_folder, chat_folder):
    keys = [key for key in ui_analysis.OUTPUT_KEYS if key != "state"]
    older = [SEED_PROMPT, str(tiny_folder), ["integrated_gradients"], 2, 2, "zero", "l2", "next", 1, "", "", False,
             False, False]
    data = exported(dict(zip(keys, client.predict(*older, api_name="/analyze"))))
    assert data["chat"] is False and list(data["methods"]) == ["integrated_gradients"]
    ig = data["methods"]["integrated_gradients"]  # the newer settings at their defaults: the seed's
    assert ig["n_steps"] == 2 and "auto_steps" not in ig and ig["score"] == "logit" and ig["held_context"] is False
    data = exported(dict(zip(keys, client.predict(SEED_PROMPT, str(chat_folder), ["gradient"], 2, 2, "zero", "l2",
                                                  "next", 1, "", "", False, False, False, True, "Be brief.",
                                                  api_name="/analyze"))))
    assert data["chat"] is True and data["system"] == "Be brief." and "Be brief." in "".join(data["input_tokens"])
    # Every parameter, positionally: auto steps to 5%, the mean baseline, probability, the context held.
    data = exported(dict(zip(keys, client.predict(SEED_PROMPT, str(tiny_folder), ["integrated_gradients"], 2, 2,
                                                  "mean", "sum", "next", 1, "", "", False, False, True, False, "",
                                                  True, 0.05, "probability", True, api_name="/analyze"))))
    ig = data["methods"]["integrated_gradients"]
    assert ig["auto_steps"] is True and ig["target_error"] == 0.05 and ig["score"] == "probability"
    assert ig["held_context"] is True and ig["baseline"] == "mean"
    with pytest.raises(Exception, match="has no chat template"):
        client.predict(SEED_PROMPT, chat=True, methods=["gradient"], api_name="/analyze")
    # The refusal leaves the app serving: the next call analyses this prompt and generates one token.
    values = dict(zip(keys, client.predict(SEED_PROMPT, methods=["gradient"], max_new_tokens=1, api_name="/analyze")))
    data = exported(values)
    assert data["prompt"] == SEED_PROMPT and list(data["methods"]) == ["gradient"] and data["chat"] is False
    # One generated token: greedy decoding generates the explained next token, which is the whole answer.
    assert data["generated_text"] == data["target"]["text"] and values["answer"] == data["generated_text"]
