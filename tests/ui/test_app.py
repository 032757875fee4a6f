"""The page's analyze handler on a tiny random model: outputs, exports, bad input, deep links, hosting."""

from __future__ import annotations

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import app  # noqa: E402
import attribution  # noqa: E402
from conftest import SEED_PROMPT, SMOLLM2  # noqa: E402
from ui import settings as ui_settings  # noqa: E402
from ui import runtime  # noqa: E402
from attribution import catalog  # noqa: E402
from attribution.display import plotting  # noqa: E402
from ui.tabs import method as method_tab  # noqa: E402
from ui import analysis as ui_analysis  # noqa: E402
from ui import controls  # noqa: E402
from ui import figures  # noqa: E402
from ui import store  # noqa: E402
from helpers import png_of  # noqa: E402

RUN = tuple(ui_settings.DEFAULTS["methods"])  # the methods the app runs unless told otherwise


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
    files = {Path(path).name: Path(path).read_bytes() for path in outputs["export:png"]}
    # Each figure output shows the figure of the same key (the PNG named after it), but the answer map's,
    # which shows the picked method's: as it opens, gradient at token 1.
    shown = {key: plotting.file_name(key) for name in RUN for key in figures.TAB_FIGURES[name]} | {
        key: plotting.file_name(key) for key in figures.TAB_FIGURES["compare"]} | {
        "answer_map:heatmap": plotting.file_name("answer_map:gradient")}
    for output, name in shown.items():
        assert png_of(outputs[output]) == files[name], output
    assert len(set(files.values())) == len(files)  # fourteen different figures, not one copied


def test_the_state_is_only_the_id_of_the_full_result_kept_on_the_server(analyzed):
    state = analyzed["state"]
    assert isinstance(state, str) and re.fullmatch(r"[0-9a-f]{32}", state)
    stored = store.recall(state)
    # The engine's own result, whole (per-head weights, settings), not a copy of some of its fields.
    assert stored.analysis.settings.max_new_tokens == 4 and stored.analysis.settings.trust is True
    assert stored.analysis.methods["attention"].per_head.ndim == 3
    assert json.loads(Path(analyzed["export:json"]).read_text(encoding="utf-8")) == json.loads(
        stored.analysis.to_json())
    assert stored.view.answer_tokens and stored.view.explained == 1 and stored.view.hide_special is True


def test_a_result_no_longer_kept_says_so(analyzed, monkeypatch):
    warnings = []
    monkeypatch.setattr(store.gr, "Warning", lambda message: warnings.append(message))
    assert store.recall(analyzed["state"]) is not None
    state = "0" * 32  # an id the store does not hold (any more)
    assert all(value == gr.update() for value in figures.draw_tab("compare", True, None, 1, state))
    assert warnings == [store.EXPIRED]
    with pytest.raises(gr.Error, match="no longer kept"):
        figures.export_pngs(state, True)
    # The other views leave the page as it is, and those a user starts say so too.
    assert method_tab.head_figure(state, "attention", 0) is None and len(warnings) == 2
    assert ui_analysis.scaled_views(state, False, "gradient", 1) == [gr.update()] * len(ui_analysis.SCALED_KEYS)
    assert ui_analysis.after_analysis(state, None) == [gr.update()] * 6 and len(warnings) == 2
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
        "attention_layers.png", "compare_heatmap.png", "compare_bars.png", "compare_agreement.png"} | {
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
    stored = store.recall(state)
    n_layers = stored.analysis.methods["attention"].per_head.shape[0]
    slider, heads = method_tab.head_views(stored, "attention")
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
     trust, hide_special, chat, system, auto, target_error, score, hold_context, answer_map_ig) = values[:21]
    assert prompt == "Hello there" and methods == ["gradient"] and steps == 120 and baseline == "pad"
    assert max_new == keep and aggregation == keep and model == keep and k == keep
    assert target == "text" and text == " Riga"
    assert contrast == keep and answer_map == keep and trust == keep and hide_special == keep
    assert chat == keep and system == keep  # no model named: the page's chat setting stays
    assert auto == keep and target_error == keep and score == keep and hold_context == keep
    assert answer_map_ig == keep and values[21:] == [keep] * len(values[21:])  # the settings added later
    values = controls.from_query({"contrast": " Tallinn", "answer_map": "0", "trust": "1", "hide_special": "yes"}, ["m"])
    assert values[10:21] == [" Tallinn", False, True, keep, keep, keep, keep, keep, keep, keep, keep]
    values = controls.from_query({"steps": "auto", "target_error": "1.5", "score": "energy", "hold_context": "2",
                                  "answer_map_ig": "0"}, ["m"])
    assert values[4] == keep and values[16:21] == [True, keep, keep, keep, False]  # steps=auto is auto=1


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
