"""Results as they come: the page's analyze event (`analyze_stream`, also the API's /analyze), which runs the
engine in a worker thread and yields the page's outputs after each stage, and what Stop leaves on the page
(`stopped_notes`). The outputs themselves are `ui.analysis`'s."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
from typing import Any, AsyncIterator

import gradio as gr

import attribution
from attribution.catalog import CATALOG
from attribution.display.labels import method_label

from . import analysis as page, store



#: How often the progress line's time left is brought up to date while a stage runs (seconds).
TICK_S = 1.0
#: How often a stage waiting for its turn at the page looks again (a display change holds it for milliseconds).
TURN_POLL_S = 0.005


# `analyze` with results as they come (the page's and the API's /analyze event): yields every output
# (OUTPUT_KEYS order, the shapes `analyze` returns) each time something new is done — the answer as it is
# generated, then the result after each stage (each stored as the session's result) — and last exactly
# what `analyze` returns. The engine runs in a worker thread; when the event is cancelled (Stop, or an API
# client's cancel) the engine is told to stop (it raises `attribution.Cancelled` within one batch and frees
# the model) and what was yielded stays on the  On ZeroGPU, where no callback reaches the GPU
# process, it yields once, the whole result. (Its docstring is `analyze`'s: the API's documentation.)
async def analyze_stream(*arguments: Any, **keywords: Any) -> AsyncIterator[list[Any]]:
    try:
        request, progress = page.read_request(arguments, keywords)
        progress(0.05, desc=f"Loading {page.model_label(request.model)}…")
        loaded = await asyncio.to_thread(attribution.load_model, request.model)
    except ValueError as error:
        raise gr.Error(str(error)) from None
    settings = request.settings
    clock = page.clock_for(loaded, settings)
    if page.spaces is not None:
        progress(0.15, desc=f"Generating up to {page.display_number(settings.max_new_tokens)} tokens and computing "
                            "the attributions…")
        try:
            analysis = await asyncio.to_thread(page.compute, request.model, request.prompt, settings)
            clock.finish(analysis)
            view = page.page_view(loaded, analysis, request.hide_special, request.all_targets, clock)
        except ValueError as error:
            raise gr.Error(str(error)) from None
        yield await asyncio.to_thread(page.render, analysis, view)
        return

    loop = asyncio.get_running_loop()
    events: asyncio.Queue[tuple[str, Any, float]] = asyncio.Queue()
    cancel = threading.Event()

    def post(kind: str, value: Any) -> None:
        try:
            loop.call_soon_threadsafe(events.put_nowait, (kind, value, time.monotonic()))
        except RuntimeError:  # the event loop has closed (the server stopped): nobody is listening
            pass

    def work() -> None:
        try:
            result = page.compute(request.model, request.prompt, settings, lambda step: post("stage", step),
                             partial=lambda analysis: post("partial", analysis),
                             answer=lambda text: post("answer", text), cancel=cancel)
        except attribution.Cancelled:
            post("cancelled", None)
        except BaseException as error:  # handed to the event, which raises it there
            post("error", error)
        else:
            post("done", result)

    # The worker keeps the request's context (gradio's request and progress tracker).
    worker = threading.Thread(target=contextvars.copy_context().run, args=(work,), name="analysis", daemon=True)
    state: str | None = None  # the stored id of the last stage yielded
    view: page.View | None = None  # the partial results' view (the generated tokens are fixed after generation)
    answer_text, n_tokens, answered = None, 0, False
    try:
        worker.start()
        while True:
            try:
                batch = [await asyncio.wait_for(events.get(), TICK_S)]
            except asyncio.TimeoutError:
                progress(*page.progress_line(clock))
                continue
            while not events.empty():
                batch.append(events.get_nowait())
            latest, final = None, None
            for kind, value, at in batch:
                if kind == "stage":
                    clock.stage(value, at)
                elif kind == "answer":
                    answer_text, n_tokens, answered = value, n_tokens + 1, True
                    clock.tokens(n_tokens)
                elif kind == "partial":
                    clock.partial(value)
                    # The last partial is the result itself: it is yielded once, as the result ("done").
                    latest = None if page.complete(value) else value
                elif kind == "done":
                    final = value
                    clock.finish(value, at)
                elif kind == "cancelled":
                    return
                else:
                    raise value
            if final is not None:
                view = page.page_view(loaded, final, request.hide_special, request.all_targets, clock)
                async with turn_at_page(state):
                    yield await asyncio.to_thread(page.render, final, view, replaces=state)
                return
            progress(*page.progress_line(clock))
            if latest is not None:
                if view is None:
                    view = page.page_view(loaded, latest, request.hide_special, request.all_targets)
                async with turn_at_page(state):
                    values = await asyncio.to_thread(page.render, latest, view, running=True, replaces=state)
                    state = values[page.OUTPUT_KEYS.index("state")]
                    yield values
                progress(*page.progress_line(clock))  # the page hides the progress at each yield: shown again
            elif answered and state is None:
                answered = False
                yield page.render_waiting(settings, answer_text)
                progress(*page.progress_line(clock))
    except ValueError as error:  # the engine's, naming the problem (a model without a chat template…)
        raise gr.Error(str(error)) from None
    finally:
        cancel.set()  # stopped, failed or done: a running engine stops within one batch and frees the model
        clock.keep()  # what a stopped analysis measured still says how fast this model is
        store.end_run(state)  # a display change of its last stage now shows what is missing as not computed


@contextlib.asynccontextmanager
async def turn_at_page(state: str | None) -> AsyncIterator[None]:
    """A stage rendered and sent in its turn against a display change of this analysis (`store.turn`): held
    until the stream is resumed after its yield, i.e. once gradio has sent the stage. No turn before the
    first stage is stored (no display change can name it yet). Polled, not awaited in a thread: a cancelled
    stream must not leave a thread that takes the turn after it has gone."""
    turn = store.turn(state)
    if turn is not None:
        while not turn.acquire(blocking=False):
            await asyncio.sleep(TURN_POLL_S)
    try:
        yield
    finally:
        if turn is not None:
            turn.release()


analyze_stream.__signature__ = page.ANALYZE_SIGNATURE  # type: ignore[attr-defined]
analyze_stream.__doc__ = page.analyze.__doc__


async def analyze_unless_pending(*arguments: Any, **keywords: Any) -> AsyncIterator[list[Any]]:
    """`analyze_stream` after a click in the answer, but nothing (every output as it is) while only a
    stretch's first token has been clicked (`page.pending_start`): the second click runs it."""
    bound = page.ANALYZE_SIGNATURE.bind(*arguments, **keywords)
    bound.apply_defaults()
    values = bound.arguments
    if values["target"] == "span" and page.pending_start(values["target_span"]) is not None:
        yield [gr.update() for _key in page.OUTPUT_KEYS]
        return
    async for outputs in analyze_stream(*arguments, **keywords):
        yield outputs


analyze_unless_pending.__signature__ = page.ANALYZE_SIGNATURE  # type: ignore[attr-defined]


#: The notes of what an analysis still had to do, which say so once it is stopped (`stopped_notes`).
STOPPED_KEYS = [f"{name}:notes" for name in CATALOG] + ["answer_map:notes", "compare:verdict"]
STOPPED = "**{label}** was not computed: the analysis was stopped. Press **Analyze** to run it again."


def stopped_notes(state: str | None, answer_text: Any, methods: Any, all_targets: Any, trust: Any) -> list[Any]:
    """Stop pressed: the tabs of what the analysis had not done yet say it was stopped (STOPPED_KEYS order);
    what was done stays as it is. From the stored stage when there is one; stopped while generating (no
    stage yet, an answer shown), every chosen method, the answer map and the trust panel as asked."""
    stored = store.lookup(state, warn=False)
    if stored is not None:
        analysis = stored.analysis
        settings = page.result_settings(analysis)
        missing = [name for name in settings.methods if name not in analysis.methods]
        map_missing = settings.all_targets and not analysis.answer_map
        trust_missing = settings.trust and analysis.trust is None
    elif answer_text:
        missing = [name for name in methods if name in CATALOG] if isinstance(methods, list) else []
        map_missing, trust_missing = bool(all_targets), bool(trust)
    else:  # nothing was running
        return [gr.update() for _key in STOPPED_KEYS]
    values: dict[str, Any] = {key: gr.update() for key in STOPPED_KEYS}
    for name in missing:
        values[f"{name}:notes"] = STOPPED.format(label=method_label(name))
    if map_missing:
        values["answer_map:notes"] = STOPPED.format(label="Answer map")
    if trust_missing:
        values["compare:verdict"] = STOPPED.format(label="Verdict: the trust panel")
    return [values[key] for key in STOPPED_KEYS]


