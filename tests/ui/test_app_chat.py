"""Chat templates, the system prompt and the clickable answer, through the page's handlers."""

from __future__ import annotations

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import app  # noqa: E402
import attribution  # noqa: E402
from ui import inputs as ui_inputs  # noqa: E402
from conftest import SEED_PROMPT, SMOLLM2  # noqa: E402
from ui import settings as ui_settings  # noqa: E402
from ui import analysis as ui_analysis  # noqa: E402
from ui import controls  # noqa: E402
from ui import figures  # noqa: E402
from ui import store  # noqa: E402
from attribution.display.plotting import draw_figure  # noqa: E402
from helpers import QUICK, exported, png_bytes_of, png_of, template_flags  # noqa: E402

RUN = tuple(ui_settings.DEFAULTS["methods"])  # the methods the app runs unless told otherwise


# --- chat templates, the system prompt and the clickable answer -------------------------------------


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
    kept = store.recall(values["state"]).analysis
    drawn = dict(zip(figures.FIGURE_KEYS, figures.draw_tab("compare", True, None, 1, values["state"])))
    figure = draw_figure(kept, "compare:heatmap", True)
    assert png_of(drawn["compare:heatmap"]) == png_bytes_of(figure, store.DPI)
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
    assert ui_analysis.explain_answer_token(None, "next", "", click) == [gr.update()] * 3  # no answer yet: nothing to pick
    target, k, span = ui_analysis.explain_answer_token(first["state"], "next", "", click)
    assert (target, k, span) == ("generated", 3, gr.update())
    second = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.analyze(SEED_PROMPT, str(tiny_folder), target=target, target_k=k,
                                                   **QUICK)))
    assert "generated token 3" in second["explained"] and second["answer"] == first["answer"]
    assert store.recall(second["state"]).analysis.target.text == answer[2][0]  # the clicked token is explained
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
    assert ui_analysis.explain_answer_token(values["state"], "next", "", click)[:2] == ["generated", riga + 1]
