"""The public API, served for real on a free port and called with gradio_client."""

from __future__ import annotations

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402

import attribution  # noqa: E402
from conftest import SEED_PROMPT  # noqa: E402
from ui import settings as ui_settings  # noqa: E402
from ui import analysis as ui_analysis  # noqa: E402
from ui import figures  # noqa: E402
from helpers import exported  # noqa: E402

RUN = tuple(ui_settings.DEFAULTS["methods"])  # the methods the app runs unless told otherwise


# --- the public API, served for real on a free port ------------------------------------------------


@pytest.fixture(scope="module")
def client(served_app, tmp_path_factory):
    from gradio_client import Client

    return Client(served_app, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


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
    # The older parameters keep their positions; later ones (the stretch, the continuation, ...) come after.
    assert list(ui_settings.SETTING_KEYS[14:21]) == ["chat", "system", "ig_auto", "target_error", "score",
                                                     "hold_context", "answer_map_ig"]
    assert list(ui_settings.SETTING_KEYS[21:23]) == ["target_span", "continuation"]
    assert defaults["target_span"] == "" and defaults["continuation"] == ""
    keys = list(ui_settings.SETTING_KEYS)
    assert keys.index("n_ablations") < keys.index("granularity") == keys.index("separator") - 1
    assert defaults["granularity"] == "token" and defaults["separator"] == ""
    assert defaults["chat"] is False and defaults["system"] == ""
    seed = attribution.PRESETS["seed"]
    assert (defaults["ig_steps"], defaults["ig_baseline"], defaults["aggregation"], defaults["score"],
            defaults["hold_context"]) == (seed["n_steps"], seed["baseline"], seed["aggregation"], seed["score"],
                                          seed["hold_context"])
    assert defaults["ig_auto"] is False and defaults["target_error"] == 0.01
    # The answer map leaves IG out unless asked (IG per generated token: minutes on a real model).
    assert defaults["answer_map_ig"] is False


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
