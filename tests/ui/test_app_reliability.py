"""Reliability of the served app (issue 6, app side), through gradio_client on loopback (security: test_app_security.py).

Bad input gets one clear, specific message (never a traceback, never gradio's "the upstream app has
raised an exception") and the very next request succeeds; faults (a failed load, a client that goes
away mid-run, NaN scores) leave the app serving; nothing a user types reaches a shell or an export
path; exports are swept; the hub token never leaks. The library and CLI side is in test_reliability.py,
test_engine.py and test_models.py; the concurrent load test is test_load.py.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import httpx  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import attribution  # noqa: E402
import attribution.methods as methods_module  # noqa: E402
from ui import exports  # noqa: E402
import attribution.models as models_module  # noqa: E402
from helpers import (  # noqa: E402
    API_QUICK,
    REQUEST_TIMEOUT_S,
    assert_clear_error,
    assert_refused_then_serving,
    call,
    exported,
    make_client,
)
from conftest import SEED_PROMPT  # noqa: E402

def copy_model(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


@pytest.fixture(scope="module")
def odd_models(tiny_folder, tmp_path_factory) -> dict[str, Path]:
    """Model folders that must be refused (or that refuse a target), by name."""
    from transformers import BertConfig

    root = tmp_path_factory.mktemp("odd-models")
    missing = root / "missing-files"
    missing.mkdir()
    (missing / "config.json").write_text((tiny_folder / "config.json").read_text())

    bert = root / "bert"
    BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=32, architectures=["BertForMaskedLM"]).save_pretrained(bert)

    remote = root / "remote-code"
    remote.mkdir()
    config = json.loads((tiny_folder / "config.json").read_text())
    config.update(model_type="evil-remote",
                  auto_map={"AutoConfig": "configuration_evil.EvilConfig",
                            "AutoModelForCausalLM": "modeling_evil.Evil"})
    (remote / "config.json").write_text(json.dumps(config))
    marker = root / "remote-code-ran"
    (remote / "configuration_evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\nraise SystemExit('remote code ran')\n")

    # A tokenizer that strips whitespace: a target of spaces tokenizes to nothing at all.
    strip = copy_model(tiny_folder, root / "strip-tokenizer")
    tokenizer = json.loads((strip / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer["normalizer"] = {"type": "Strip", "strip_left": True, "strip_right": True}
    (strip / "tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    return {"missing": missing, "bert": bert, "remote": remote, "remote-marker": marker, "strip": strip}


# --- bad input: one clear message each, and the app keeps serving ----------------------------------

# 7,700 characters (under the check by characters) but more tokens than the tiny model's 1,024
# positions: refused by the token check, naming the context.
LONG_PROMPT = " Latvia" * 1100

BAD_INPUTS = [
    # (id, request fields, environment, expected message)
    ("empty-prompt", {"prompt": ""}, {}, "prompt is empty"),
    ("whitespace-prompt", {"prompt": " \n\t  \r\n"}, {}, "prompt is empty"),
    ("missing-prompt", {"prompt": None}, {}, "prompt must be text"),
    ("over-configured-token-limit", {}, {"ATTRIBUTION_MAX_PROMPT_TOKENS": "8"}, "the limit is 8 tokens"),
    ("over-the-models-context", {"prompt": LONG_PROMPT}, {},
     "the limit is 1,024 tokens (the model's context is 1,024 tokens)"),
    ("100k-characters", {"prompt": "x" * 100_000}, {}, "far over the limit of 1,024 tokens"),
    ("nul", {"prompt": "What is\x00 Latvia?"}, {}, "control character U+0000 at position 7"),
    ("bell", {"prompt": "ring \x07 ring"}, {}, "control character U+0007"),
    ("ansi-escape", {"prompt": "\x1b[31mred\x1b[0m Latvia"}, {}, "control character U+001B"),
    ("delete", {"prompt": "a\x7fb"}, {}, "control character U+007F"),
    ("c1-control", {"prompt": "a\x9bb"}, {}, "control character U+009B"),
    ("steps-zero", {"ig_steps": 0}, {}, "n_steps must be from 1 to 1000, got 0"),
    ("steps-negative", {"ig_steps": -1}, {}, "n_steps must be from 1 to 1000, got -1"),
    ("steps-million", {"ig_steps": 10**6}, {}, "n_steps must be from 1 to 1000, got 1000000"),
    ("steps-fraction", {"ig_steps": 2.5}, {}, "n_steps must be a whole number from 1 to 1000, got 2.5"),
    ("steps-text", {"ig_steps": "fifty"}, {}, "n_steps must be a whole number from 1 to 1000 or 'auto', got 'fifty'"),
    ("target-error-zero", {"target_error": 0}, {}, "target_error must be between 0 and 1 (e.g. 0.01 for 1%), got 0"),
    ("target-error-one", {"ig_auto": True, "target_error": 1}, {}, "target_error must be between 0 and 1"),
    ("target-error-percent-text", {"ig_auto": True, "target_error": "1%"}, {},
     "target_error must be a number between 0 and 1 (e.g. 0.01 for 1%), got '1%'"),
    ("target-error-missing", {"ig_auto": True, "target_error": None}, {}, "target_error must be a number"),
    ("ig-auto-not-boolean", {"ig_auto": "auto"}, {}, "ig_auto must be true or false, got 'auto'"),
    ("unknown-score", {"score": "energy"}, {}, "unknown score 'energy'; valid choices: logit, probability"),
    ("hold-context-not-boolean", {"hold_context": "yes"}, {}, "hold_context must be true or false, got 'yes'"),
    ("max-new-tokens-text", {"max_new_tokens": "ten"}, {}, "max_new_tokens must be a whole number"),
    ("max-new-tokens-negative", {"max_new_tokens": -1}, {}, "max_new_tokens must be from 0 to 256, got -1"),
    ("max-new-tokens-huge", {"max_new_tokens": 10**6}, {}, "max_new_tokens must be from 0 to 256"),
    ("k-text", {"target": "generated", "target_k": "two", "max_new_tokens": 2}, {},
     "generated token k must be a whole number"),
    ("k-fraction", {"target": "generated", "target_k": 1.5, "max_new_tokens": 2}, {},
     "generated token k must be a whole number from 1 to 256, got 1.5"),
    ("k-zero", {"target": "generated", "target_k": 0, "max_new_tokens": 2}, {},
     "generated token k must be from 1 to 256, got 0"),
    ("k-beyond-generated", {"target": "generated", "target_k": 9, "max_new_tokens": 2}, {},
     "out of range: choose a generated token from 1 to 2"),
    ("unknown-baseline", {"ig_baseline": "banana"}, {}, "unknown baseline 'banana'; valid choices: zero, pad"),
    ("unknown-aggregation", {"aggregation": "max"}, {}, "unknown aggregation 'max'; valid choices: l2, sum"),
    ("no-methods", {"methods": []}, {}, "choose at least one method"),
    ("unknown-method", {"methods": ["gradient", "lime"]}, {}, "unknown method 'lime'; valid choices"),
    ("unknown-target-kind", {"target": "sideways"}, {}, "unknown target 'sideways'; valid choices"),
    ("empty-target-text", {"target": "text", "target_text": ""}, {}, "target text is empty"),
    ("control-in-target-text", {"target": "text", "target_text": "\x01Riga"}, {},
     "target text contains the control character U+0001"),
    ("untokenizable-target-text", {"model": "@strip", "target": "text", "target_text": "   "}, {},
     "tokenizes to nothing with this model's tokenizer"),
    ("foil-not-text", {"contrast_text": 5}, {}, "contrast_text must be text"),
    ("control-in-foil", {"contrast_text": " Tal\x00linn"}, {}, "contrast text contains the control character U+0000"),
    ("untokenizable-foil", {"model": "@strip", "contrast_text": " \t "}, {},
     "contrast text ' \\t ' tokenizes to nothing"),
    ("foil-is-the-target", {"target": "text", "target_text": " Riga", "contrast_text": " Riga"}, {},
     "starts with the target token"),
    ("flag-not-boolean", {"trust": "yes"}, {}, "trust must be true or false, got 'yes'"),
    ("flag-out-of-range", {"all_targets": 2}, {}, "all_targets must be true or false, got 2"),
    ("unknown-model-id", {"model": "no-such-org/no-such-model"}, {},
     "could not load model 'no-such-org/no-such-model'"),
    ("no-such-folder", {"model": "/no/such/model/folder"}, {}, "no model folder at '/no/such/model/folder'"),
    ("folder-missing-files", {"model": "@missing"}, {}, "is not a complete model"),
    ("not-causal", {"model": "@bert"}, {}, "(bert) is not a causal language model"),
    ("remote-code", {"model": "@remote"}, {}, "requires running its own remote code, which this tool refuses"),
    ("model-not-text", {"model": ["a", "b"]}, {}, "model name must be"),
    ("model-name-with-nul", {"model": "/tmp/model\x00/../../etc"}, {},
     "model name contains the control character U+0000 at position 10"),
    ("model-name-part-too-long-for-the-file-system", {"model": "x" * 300}, {}, "could not load model 'xxx"),
    ("model-name-longer-than-any-path", {"model": "../" * 2000}, {},
     "model name is 6,000 characters long; a hub id or folder path has at most 4096"),
]


@pytest.mark.parametrize(("fields", "environment", "message"),
                         [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_gets_a_clear_message_and_the_next_request_succeeds(
        client, odd_models, monkeypatch, fields, environment, message):
    fields = dict(fields)
    if str(fields.get("model", "")).startswith("@"):
        fields["model"] = str(odd_models[fields["model"][1:]])
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    try:
        with pytest.raises(Exception) as raised:
            call(client, **fields)
    finally:
        monkeypatch.undo()
    assert_clear_error(raised.value, message)
    assert call(client)["gradient:highlight"], "the request after a refused one must succeed"
    if fields.get("model") == str(odd_models["remote"]):
        assert not odd_models["remote-marker"].exists(), "the model's own code must never run"


@pytest.mark.parametrize(("name", "message"), [
    ("x" * 300, "could not load model"),  # one path part longer than the file system allows (ENAMETOOLONG)
    ("/" + "y" * 300, "no model folder at"),
    ("a" * 5000, "a hub id or folder path has at most 4096"),
    ("org/model\x1b[2J", "control character U+001B"),
])
def test_the_library_refuses_model_names_no_file_system_can_hold(name, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        attribution.load_model(name, device="cpu")


def test_gated_model_without_a_token_says_how_to_set_hf_token(client, monkeypatch):
    gated_id = "meta-llama/Llama-Gated-Test"
    real = models_module.AutoConfig.from_pretrained

    def from_pretrained(name, *args, **kwargs):
        if name == gated_id:
            raise OSError(f"You are trying to access a gated repo.\nMake sure to have access to it at "
                          f"https://huggingface.co/{gated_id}.\n401 Client Error.")
        return real(name, *args, **kwargs)

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(models_module.AutoConfig, "from_pretrained", from_pretrained)
    text = assert_refused_then_serving(client, "is gated", model=gated_id)
    assert "HF_TOKEN" in text and "huggingface.co" in text


def test_nan_and_infinity_as_numbers_are_refused_with_a_message(served, client):
    # gradio_client refuses to send NaN at all (it is not JSON) ...
    with pytest.raises(ValueError, match="not JSON compliant"):
        call(client, ig_steps=float("nan"))
    # ... but a hand-written request can, and the app names the setting.
    for literal in ("NaN", "Infinity", "-Infinity"):
        event, data = raw_call(served.url, client, literals={"ig_steps": literal})
        assert event == "error", (event, data)
        message = json.loads(data)["error"]
        assert "n_steps must be a whole number from 1 to 1000" in message, message
    event, data = raw_call(served.url, client, {"target": "generated", "max_new_tokens": 2},
                           literals={"target_k": "NaN"})
    assert event == "error" and "generated token k must be a whole number" in json.loads(data)["error"]
    assert call(client)["gradient:highlight"]


def raw_call(url: str, client, fields: dict[str, Any] | None = None, literals: dict[str, str] | None = None,
             timeout: float = REQUEST_TIMEOUT_S) -> tuple[str, str]:
    """`/analyze` over plain HTTP (gradio's /call API): `fields` as JSON values, `literals` spliced
    into the JSON body verbatim (so NaN or Infinity can be sent). Returns the final SSE event and data."""
    literals = literals or {}
    parameters = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/analyze"]["parameters"]
    values = {p["parameter_name"]: p["parameter_default"] for p in parameters}
    values.update(prompt=SEED_PROMPT, **API_QUICK)
    values.update(fields or {})
    placeholders = {name: f"@@{name}@@" for name in literals}
    values.update(placeholders)
    body = json.dumps({"data": [values[p["parameter_name"]] for p in parameters]})
    for name, literal in literals.items():
        body = body.replace(json.dumps(placeholders[name]), literal)
    with httpx.Client(base_url=url, timeout=timeout, trust_env=False) as http:
        started = http.post("gradio_api/call/analyze", content=body, headers={"content-type": "application/json"})
        started.raise_for_status()
        event_id = started.json()["event_id"]
        event = None
        with http.stream("GET", f"gradio_api/call/analyze/{event_id}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    return event, line.split(":", 1)[1].strip()
    raise AssertionError("the event stream ended without a result")


# --- unusual but valid text works -----------------------------------------------------------------

WORKING_TEXTS = {
    "arabic-rtl": "ما هي عاصمة لاتفيا؟",
    "hebrew-rtl-with-latin": "שלום עולם, what is the capital of Latvia?",
    "rtl-override-mark": "Latvia \u202eaivtaL\u202c capital",
    "combining-marks": "Ca\u0301pital Ci\u0308ty of Latvia?",
    "zalgo": "L\u0336\u0317a\u0301\u0302\u0303t\u0334via",
    "emoji": "What is the capital of 🇱🇻 Latvia? 🤔🏰 👩\u200d👩\u200d👧",
    "mixed-scripts": "Столица Латвии — Рига; 拉脱维亚的首都? Latvia ελληνικά",
    "newlines-and-tabs": "line one\nline two\tTabbed\r\nend",
}


@pytest.mark.parametrize("text", list(WORKING_TEXTS.values()), ids=list(WORKING_TEXTS))
def test_unusual_scripts_work_through_the_app(client, text):
    values = call(client, prompt=text, methods=["gradient", "attention"], max_new_tokens=1)
    data = exported(values)
    assert data["prompt"] == text  # survives the API, the engine and the JSON export unchanged
    for name in ("gradient", "attention"):
        highlight = values[f"{name}:highlight"]
        assert len(highlight) == len(data["input_ids"]) == len(data["methods"][name]["scores"])
        # The held context (BOS here) is grey, without a score, by default; every other token has one.
        assert [item["class_or_confidence"] is None for item in highlight] == data["held_tokens"]
        assert all(math.isfinite(item["class_or_confidence"]) and -1 <= item["class_or_confidence"] <= 1
                   for item in highlight if item["class_or_confidence"] is not None)
        assert all(math.isfinite(value) for value in data["methods"][name]["scores"])


# --- faults ------------------------------------------------------------------------------------------


def test_failed_model_load_leaves_the_loaded_model_serving(client, tiny_folder, tmp_path, monkeypatch):
    before = exported(call(client))
    crashing = copy_model(tiny_folder, tmp_path / "crashes-while-loading")
    real = models_module.AutoModelForCausalLM.from_pretrained

    def from_pretrained(name, *args, **kwargs):
        if str(name) == str(crashing):
            raise OSError("Unable to load weights from safetensors file: read error")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(models_module.AutoModelForCausalLM, "from_pretrained", from_pretrained)
    assert_refused_then_serving(client, "is not a complete model", model=str(crashing))
    assert_refused_then_serving(client, "no model folder", model=str(tmp_path / "nothing-here"))
    after = exported(call(client))
    assert after["methods"] == before["methods"] and after["input_ids"] == before["input_ids"]
    assert not any(key[0] == str(crashing) for key in models_module._cache)


def test_clients_that_go_away_mid_run_do_not_wedge_the_queue(served, tmp_path, monkeypatch):
    """A running job whose client cancels and closes, a queued job cancelled, and a raw HTTP stream
    dropped mid-run: once the running work ends, a new client is answered within a bounded time."""
    started, release = threading.Event(), threading.Event()
    real_gradient = attribution.METHODS["gradient"]

    def held_gradient(loaded, request):
        started.set()
        release.wait(timeout=90)  # bounded even if the test fails before releasing it
        return real_gradient(loaded, request)

    monkeypatch.setitem(attribution.METHODS, "gradient", held_gradient)
    clients = [make_client(served.url, tmp_path / f"downloads-{index}") for index in range(3)]
    try:
        running = clients[0].submit(SEED_PROMPT, **API_QUICK, api_name="/analyze")
        assert started.wait(timeout=60), "the first job never started"
        queued = clients[1].submit("The capital of France is", **API_QUICK, api_name="/analyze")
        deadline = time.monotonic() + 30
        while queued.status().code.name not in ("IN_QUEUE", "PROCESSING") and time.monotonic() < deadline:
            time.sleep(0.05)
        queued.cancel()
        clients[1].close()
        running.cancel()
        clients[0].close()
        drop_raw_stream_mid_run(served.url, clients[2])
        # Every client has hung up by now (drop_raw_stream_mid_run returns after closing its connection) while
        # the first job is still held: release it at once. No sleep here: nothing the server exposes says when
        # it has noticed a hang-up (it finds out on its next write), and the queue must recover either way.
        release.set()

        fresh = make_client(served.url, tmp_path / "downloads-fresh")
        try:
            begin = time.monotonic()
            values = call(fresh, timeout=90)
            assert values["gradient:highlight"]
            assert time.monotonic() - begin < 90
            # and the queue keeps going: a second request right after
            assert call(fresh, prompt="The capital of France is", timeout=90)["gradient:highlight"]
        finally:
            fresh.close()
    finally:
        release.set()
        for client in clients:
            client.close()


def drop_raw_stream_mid_run(url: str, client) -> None:
    """Start a job through the plain HTTP API, read from its event stream briefly, hang up."""
    parameters = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/analyze"]["parameters"]
    values = {p["parameter_name"]: p["parameter_default"] for p in parameters}
    values.update(prompt="Which city is the capital of Germany?", **API_QUICK)
    with httpx.Client(base_url=url, timeout=httpx.Timeout(30, read=0.5), trust_env=False) as http:
        started = http.post("gradio_api/call/analyze", json={"data": [values[p["parameter_name"]] for p in parameters]})
        started.raise_for_status()
        try:
            with http.stream("GET", f"gradio_api/call/analyze/{started.json()['event_id']}") as stream:
                for _line in stream.iter_lines():
                    break
        except httpx.ReadTimeout:
            # The half-second read is the behaviour under test (a client that gives up), not a wait for an event.
            pass  # nothing arrived within half a second: the job is still waiting; hang up anyway


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_scores_are_refused_with_a_message_and_never_drawn(client, monkeypatch, value):
    call(client)  # the export folder exists
    export_root = exports._export_root
    before = set(export_root.iterdir())
    monkeypatch.setattr(methods_module, "input_gradients",
                        lambda loaded, request: torch.full((request.input_ids.numel(), 4), value))
    with pytest.raises(Exception) as raised:
        call(client)
    assert_clear_error(raised.value, "contains NaN or infinite values")
    assert set(export_root.iterdir()) == before, "nothing may be drawn or exported for non-finite scores"
    monkeypatch.undo()
    assert call(client)["gradient:highlight"]
