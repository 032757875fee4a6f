"""Results as they come and Stop: /analyze yields the answer, then each method as it is done (the cheap ones
first, IG last), then the answer map and the trust panel, and last exactly what it returns; a cancelled
analysis stops the engine, frees the model for the next request and shows no error."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import replace

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import pytest  # noqa: E402

import attribution  # noqa: E402
from attribution import methods as methods_module  # noqa: E402
from attribution.catalog import CATALOG  # noqa: E402
from attribution.reports import Progress  # noqa: E402
from attribution.settings import Settings  # noqa: E402
from conftest import SEED_PROMPT  # noqa: E402
from helpers import api_outputs, call, make_analysis  # noqa: E402
from ui import analysis as ui_analysis  # noqa: E402
from ui import streaming as ui_streaming  # noqa: E402
from ui import store, timing  # noqa: E402
from ui.tabs import answer_map  # noqa: E402

CHEAP = [name for name in CATALOG if not CATALOG[name].costly]
#: A real analysis slow enough to stop on the tiny model: IG at its most steps in the answer map of 20
#: generated tokens (about 6 s on one CPU core; each batch checks the cancel event).
SLOW = {"ig_steps": 1000, "max_new_tokens": 20, "all_targets": True, "answer_map_ig": True, "trust": False}
TIMEOUT_S = 120


def first(outputs: list[dict], key: str) -> int:
    """The index of the first yielded output where `key` has a value."""
    return next(index for index, values in enumerate(outputs) if values[key] not in (None, "", []))


def test_submit_yields_the_answer_then_each_method_then_ig_and_last_what_predict_returns(client, monkeypatch):
    integrated_gradients = methods_module.METHODS["integrated_gradients"]

    def slow_ig(loaded, request):  # IG takes its time, as on a real model (the tiny one takes 0.01 s)
        time.sleep(0.6)
        return integrated_gradients(loaded, request)

    monkeypatch.setitem(methods_module.METHODS, "integrated_gradients", slow_ig)
    arguments = dict(max_new_tokens=4, all_targets=True, trust=True, api_name="/analyze")
    job = client.submit(SEED_PROMPT, **arguments)
    result = api_outputs(job.result(timeout=TIMEOUT_S))
    outputs = [api_outputs(values) for values in job.outputs()]  # every yield has every output
    assert len(outputs) >= 3
    # The answer comes first, before any tab; IG last of the methods, each cheap method before it.
    assert outputs[0]["answer"] and outputs[0]["integrated_gradients:highlight"] is None
    ig = first(outputs, "integrated_gradients:highlight")
    assert all(first(outputs, f"{name}:highlight") < ig for name in CHEAP)
    before = outputs[ig - 1]
    assert "is being computed" in before["integrated_gradients:notes"]
    assert "is being computed" in before["answer_map:notes"] and "being computed" in before["compare:verdict"]
    assert before["export:json"] is None  # the downloads are the whole result's
    # The answer map and the trust panel after IG; the last yield is the result, as predict returns it.
    assert first(outputs, "answer_map:highlight") >= ig and first(outputs, "compare:completeness") >= ig
    assert outputs[-1] == result
    again = api_outputs(client.predict(SEED_PROMPT, **arguments))
    assert again.keys() == result.keys()
    for key in result:
        assert type(again[key]) is type(result[key]), key
        if "highlight" in key or key in ("answer", "explained", "compare:verdict"):
            assert again[key] == result[key], key


def analysis_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "analysis"]


def wait_for(condition, timeout: float = TIMEOUT_S, what: str = "") -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.02)
    return time.monotonic() - started


def test_a_cancelled_analysis_stops_the_engine_frees_the_model_and_the_next_request_runs(client, tiny_folder):
    from gradio_client.utils import Status

    job = client.submit(SEED_PROMPT, **SLOW, api_name="/analyze")
    wait_for(lambda: any(api_outputs(values)["gradient:highlight"] for values in job.outputs()), what="gradient")
    assert not job.done()  # the answer map with IG is still running
    job.cancel()
    # The engine stops within one batch: its thread ends and the model's lock is free.
    stopped = wait_for(lambda: not analysis_threads(), timeout=30, what="the analysis thread to end")
    assert stopped < 10, stopped  # about a second on a quiet machine; generous for shared CPUs
    loaded = attribution.load_model(str(tiny_folder))
    assert loaded.lock.acquire(timeout=5)
    loaded.lock.release()
    wait_for(job.done, timeout=30, what="the job to end")
    assert job.status().code == Status.CANCELLED
    last = api_outputs(job.outputs()[-1])  # the answer map never came: the analysis stopped before it
    assert last["gradient:highlight"] and last["answer_map:highlight"] is None and last["export:json"] is None
    # The queue serves the next request, on the same model, right away.
    started = time.monotonic()
    values = call(client, max_new_tokens=2)
    assert values["gradient:highlight"] and time.monotonic() - started < 30


async def _stream(*arguments, **keywords) -> list[list]:
    """Drives `analyze_stream` as gradio does, stopping (closing it, as gradio's reset does) once the cheap
    methods are shown."""
    iterator = ui_streaming.analyze_stream(*arguments, **keywords)
    yielded = []
    async for values in iterator:
        yielded.append(values)
        if dict(zip(ui_analysis.OUTPUT_KEYS, values))["gradient:highlight"]:
            break
    await iterator.aclose()
    return yielded


def test_a_stopped_stream_keeps_its_stage_stored_and_the_model_serves_the_next_analysis(tiny_folder):
    yielded = asyncio.run(_stream(SEED_PROMPT, str(tiny_folder), **SLOW))
    wait_for(lambda: not analysis_threads(), timeout=30, what="the analysis thread to end")
    shown = dict(zip(ui_analysis.OUTPUT_KEYS, yielded[-1]))
    stored = store.recall(shown["state"])  # the stage shown is the session's result: its views work
    assert stored is not None and "gradient" in stored.analysis.methods and not stored.analysis.answer_map
    # Stop: what was not done says so, what was done stays.
    notes = dict(zip(ui_streaming.STOPPED_KEYS, ui_streaming.stopped_notes(shown["state"], shown["answer"], None,
                                                                         True, False)))
    assert "was stopped" in notes["answer_map:notes"] and notes["gradient:notes"] == gr.update()
    assert notes["compare:verdict"] == gr.update()  # the trust panel was not asked for
    # The next analysis on the same model runs to the end.
    values = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.analyze(SEED_PROMPT, str(tiny_folder), max_new_tokens=2,
                                                                   trust=False)))
    assert values["integrated_gradients:highlight"] and values["answer_map:highlight"]


def test_the_streams_last_yield_is_what_analyze_returns(tiny_folder):
    async def run():
        return [values async for values in ui_streaming.analyze_stream(SEED_PROMPT, str(tiny_folder), max_new_tokens=3)]

    yielded = asyncio.run(run())
    returned = ui_analysis.analyze(SEED_PROMPT, str(tiny_folder), max_new_tokens=3)
    last = dict(zip(ui_analysis.OUTPUT_KEYS, yielded[-1]))
    expected = dict(zip(ui_analysis.OUTPUT_KEYS, returned))
    for key in ui_analysis.OUTPUT_KEYS:
        if key in ("state", "export:json", "export:csv"):  # a new id and new files each time
            assert type(last[key]) is type(expected[key])
        elif hasattr(expected[key], "equals"):  # the tables
            assert last[key].equals(expected[key]), key
        else:
            assert last[key] == expected[key], key
    # Bad input is refused before anything is yielded, as by analyze.
    async def refused():
        return [values async for values in ui_streaming.analyze_stream("   ", str(tiny_folder))]

    with pytest.raises(gr.Error, match="prompt is empty"):
        asyncio.run(refused())


def test_a_chat_models_answer_map_leaves_ig_out_and_offers_it_with_its_cost(chat_folder):
    values = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.analyze(
        SEED_PROMPT, str(chat_folder), chat=True, max_new_tokens=4, ig_baseline="mean", aggregation="sum",
        hold_context=True, answer_map_ig=False, trust=False)))
    kept = store.recall(values["state"])
    assert set(kept.analysis.answer_map) == {"gradient", "attention", "input_x_gradient"}  # no IG
    assert kept.view.left_out_of_map == ("integrated_gradients",) and kept.view.map_rerun_s > 0
    assert "**Integrated Gradients** is left out of the answer map" in values["answer_map:notes"]
    offer = answer_map.offer(values["state"])
    assert offer["visible"] is True and offer["value"].startswith("Add Integrated Gradients to the answer map")
    assert "about " in offer["value"] and "on this model" in offer["value"]
    with_ig = dict(zip(ui_analysis.OUTPUT_KEYS, ui_analysis.analyze(
        SEED_PROMPT, str(chat_folder), chat=True, max_new_tokens=4, answer_map_ig=True, trust=False)))
    assert "integrated_gradients" in store.recall(with_ig["state"]).analysis.answer_map
    assert answer_map.offer(with_ig["state"])["visible"] is False


def test_the_time_left_comes_from_the_models_measured_speed():
    settings = Settings(methods=("gradient", "integrated_gradients"), n_steps=10, max_new_tokens=1)
    analysis = make_analysis()  # 10 tokens, IG at 50 steps
    stages = [Progress("generate", 0, 3), Progress("method", 1, 3, "gradient"),
              Progress("method", 2, 3, "integrated_gradients")]
    model = f"timing-test-{time.time()}"
    clock = timing.Clock(model, settings, now=0.0)
    for step, at in zip(stages, (0.0, 1.0, 1.5)):
        clock.stage(step, at)
        if step.kind == "method":
            clock.partial(analysis)
    # Never run on this model: IG is estimated from this run's gradient (its rows are batched), roughly.
    assert clock.left(1.5) == pytest.approx(0.5 * 50 * timing.ROW_PER_GRADIENT)
    clock.finish(analysis, now=11.5)
    assert clock.measured == {"generate": 1.0, "method:gradient": 0.5, "method:integrated_gradients": 10.0}
    # The next analysis on the model: each stage from its measured speed, before anything has run.
    later = timing.Clock(model, settings.replace(n_steps=100), now=0.0)
    later.partial(analysis)
    later.stage(Progress("method", 2, 3, "integrated_gradients"), 0.0)
    assert later.left(4.0) == pytest.approx(10.0 - 4.0)  # its speed per token × path point, 4 s in
    fraction, line = ui_analysis.progress_line(later, now=4.0)
    assert line.startswith("Computing Integrated Gradients") and "about 6 s left" in line and 0 < fraction < 1
    assert timing.seconds_text(0.4) == "under a second" and timing.seconds_text(200) == "3 min 20 s"
    unknown = timing.Clock(f"{model}-other", settings, now=0.0)
    unknown.stage(stages[0], 0.0)
    assert unknown.left(0.5) is None and ui_analysis.progress_line(unknown, 0.5)[1] == (
        "Generating the answer… (0 of up to 1 tokens)")
    unknown.partial(analysis)
    unknown.stage(stages[1], 1.0)  # nothing measured on this model that would tell the gradient's time
    assert unknown.left(1.5) is None and "not known yet" in ui_analysis.progress_line(unknown, 1.5)[1]


def clock_after_the_gradient(model: str, settings: Settings, analysis) -> timing.Clock:
    """A clock of 4 stages: generation 0-1 s, then the gradient from 1 s (the result's sizes known)."""
    clock = timing.Clock(model, settings, now=0.0)
    clock.stage(Progress("generate", 0, 4), 0.0)
    clock.stage(Progress("method", 1, 4, "gradient"), 1.0)
    clock.partial(analysis)
    return clock


def test_context_ablation_is_timed_by_its_ablations_and_ig_by_its_own_steps():
    # Both are costly; only IG's cost grows with the path points, context ablation's with its ablations.
    settings = Settings(methods=("gradient", "context_ablation", "integrated_gradients"), n_steps=10,
                        n_ablations=16, max_new_tokens=1)
    analysis = make_analysis()  # 10 tokens, IG at 50 steps
    model = f"timing-ablation-{time.time()}"
    clock = clock_after_the_gradient(model, settings, analysis)
    clock.stage(Progress("method", 2, 4, "context_ablation"), 1.5)
    gradient = 0.5
    ablation = gradient * 16 * timing.ROW_PER_GRADIENT
    ig = gradient * 50 * timing.ROW_PER_GRADIENT
    assert clock.left(1.5) == pytest.approx(ablation + ig)
    clock.stage(Progress("method", 3, 4, "integrated_gradients"), 3.5)
    clock.finish(analysis, now=13.5)
    # Kept per ablation: twice the ablations, twice the estimate; IG's per path point, from IG's n_steps.
    later = timing.Clock(model, settings.replace(n_ablations=32), now=0.0)
    later.partial(analysis)
    assert later.units("method:context_ablation") == 10 * 32
    assert later.units("method:integrated_gradients") == 10 * 50
    later.stage(Progress("method", 2, 4, "context_ablation"), 0.0)
    assert later.left(0.0) == pytest.approx(2 * 2.0 + 10.0)


def test_on_zerogpu_the_stream_yields_the_whole_result_once(tiny_folder, monkeypatch):
    # No callback reaches the ZeroGPU worker process: the analysis runs there whole and comes back once.
    monkeypatch.setattr(ui_analysis, "spaces", object())

    async def run():
        return [values async for values in ui_streaming.analyze_stream(SEED_PROMPT, str(tiny_folder),
                                                                      max_new_tokens=2, trust=False)]

    (values,) = asyncio.run(run())
    values = dict(zip(ui_analysis.OUTPUT_KEYS, values))
    assert values["integrated_gradients:highlight"] and values["answer_map:highlight"] and values["export:json"]


def test_the_trust_panels_time_grows_with_the_path_points_only_when_ig_may_rerun():
    """With n_steps="auto" the trust panel never reruns IG: its kept speed is per token, so a prompt whose
    IG took fewer points is not promised a faster panel; with fixed steps a rerun may double IG's points."""
    analysis = make_analysis()  # 10 tokens, IG at 50 steps
    for n_steps, grows in (("auto", False), (10, True)):
        settings = Settings(methods=("gradient", "integrated_gradients"), n_steps=n_steps, max_new_tokens=1,
                            trust=True)
        model = f"timing-trust-{n_steps}-{time.time()}"
        clock = clock_after_the_gradient(model, settings, analysis)
        clock.stage(Progress("method", 2, 4, "integrated_gradients"), 1.5)
        clock.stage(Progress("trust", 3, 4), 11.5)
        # Never run on this model: from this run's gradient (auto) or its methods' times (fixed steps).
        expected = 0.5 * timing.TRUST_PER_GRADIENT if not grows else 0.5 + 10.0 * timing.TRUST_RERUN_FACTOR
        assert clock.left(11.5) == pytest.approx(expected)
        clock.finish(analysis, now=14.5)  # the panel took 3 s
        later = timing.Clock(model, settings, now=0.0)
        later.partial(analysis)
        fewer = replace(analysis, methods={**analysis.methods, "integrated_gradients": replace(
            analysis.methods["integrated_gradients"], n_steps=25)})
        later.partial(fewer)  # this prompt's IG took half the points
        assert later._seconds("trust") == pytest.approx(1.5 if grows else 3.0)
