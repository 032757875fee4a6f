"""The server's stored results: one per session, read by every view.

The analyze event stores its full `Analysis` with its `View` under a random id (one user cannot guess
another's) and the session's state holds only that id. Every view after it (figures, colour scaling,
answer-map picks, per-head layers, the contrast picker, the clickable answer) reads the stored result: the
model never runs again and nothing is rebuilt from a copy. Each figure is also rendered to PNG bytes here
once per result, key, colour scaling and row, so that the page's image and the PNG download are the same
bytes.

An analysis is stored after each stage as its results come (`remember(..., replaces=)`): each stage's id
becomes the session's state, so that the views read what is done so far, and an earlier stage is swept soon
after the next is stored. Results are kept for EXPORT_TTL_S (as long as the session's state lives) and at
most MAX_RESULTS of them; the cached examples' results are pinned (`pin`), because gradio's example cache
hands their ids out for as long as the process runs. A result that has gone makes the views say so (`EXPIRED`).
"""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import gradio as gr

from attribution.display.plotting import draw_figure
from attribution.results import Analysis

from . import exports
from .view import View

MAX_RESULTS = 256  # a few MB at most each (per-head attention of a 1B model at 512 tokens is about 1 MB)
MAX_PNGS = 512
DPI = 100  # as the PNG downloads always were
SUPERSEDED_KEEP_S = 120  # a stage of an analysis kept after the next stage is stored
# How long a display change waits for the stage being sent (rendering a stage takes milliseconds; only a
# stream abandoned between its yield and its next step holds the turn longer).
TURN_WAIT_S = 10.0
EXPIRED = "This result is no longer kept on the server (results are kept for an hour): press **Analyze** again."


@dataclass(frozen=True)
class Stored:
    """One stored result: the analysis as the engine returned it, how it is shown, and its id."""

    id: str
    analysis: Analysis
    view: View
    stored_at: float
    # The id of the analysis's first stored stage (its own id when stored whole): a method's figures, which
    # do not change once the method is done, are rendered once per analysis, not once per stage.
    run: str = ""
    # The analysis per the view's granularity (`Analysis.regrouped`), what the method tabs and the comparison
    # show; the analysis itself at granularity "token".
    shown: Analysis | None = None

    def figure_source(self, key: str) -> Analysis:
        """The analysis a figure is drawn from: the answer map's per token, every other per the view's groups."""
        return self.analysis if key.startswith("answer_map") or self.shown is None else self.shown


_lock = threading.Lock()
_results: OrderedDict[str, Stored] = OrderedDict()
_pinned: dict[str, str] = {}  # slot → the id of a result never swept (a cached example's)
_pngs: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
_superseded: dict[str, float] = {}  # id → when a later stage of the same analysis was stored
# run → the view a display change ("Scores per", the colour scaling) made of it: its later stages keep it.
_display: dict[str, View] = {}
_latest: dict[str, str] = {}  # run → the id of its newest stored stage (or display change)
_turns: dict[str, threading.Lock] = {}  # run → whose turn it is to change the page (`turn`)
_ended: set[str] = set()  # runs whose stream has ended (done, stopped or failed)


def remember(analysis: Analysis, view: View, replaces: str | None = None, shown: Analysis | None = None,
             display_change: bool = False) -> str:
    """Store a result; returns its id (random), what the session's state holds. `replaces`: the id of the same
    analysis as it was a stage earlier (results as they come), or as it was shown before a display change
    (`display_change`: its `view` is what the analysis's later stages are shown with, `changed_view`); swept
    SUPERSEDED_KEEP_S later (the figures asked for it in the meantime are still drawn)."""
    result_id = uuid.uuid4().hex
    now = time.time()
    # The analysis per the view's groups (`shown`: made by the caller); a ValueError before anything is stored.
    shown = analysis.regrouped(view.granularity) if shown is None else shown
    with _lock:
        earlier = _results.get(replaces) if replaces is not None else None
        run = earlier.run if earlier else result_id
        _results[result_id] = Stored(result_id, analysis, view, now, run, shown)
        _latest[run] = result_id
        if display_change:
            _display[run] = view
        if replaces is not None:
            _superseded.setdefault(replaces, now)
        pinned = set(_pinned.values())
        for old_id in [key for key, stored in _results.items()
                       if key not in pinned and (now - stored.stored_at > exports.EXPORT_TTL_S
                                                 or (key in _superseded
                                                     and now - _superseded[key] > SUPERSEDED_KEEP_S))]:
            del _results[old_id]
        for old_id in [key for key in _superseded if key not in _results]:
            del _superseded[old_id]
        runs = {stored.run for stored in _results.values()}
        for kept in (_display, _latest, _turns):
            for old_run in [key for key in kept if key not in runs]:
                del kept[old_run]
        _ended.intersection_update(runs)
        unpinned = [key for key in _results if key not in pinned]  # oldest first
        for old_id in unpinned[:max(len(unpinned) - MAX_RESULTS, 0)]:
            del _results[old_id]
    return result_id


def changed_view(result_id: str | None) -> View | None:
    """The view a display change made of the analysis `result_id` is a stage of (None: none was made)."""
    with _lock:
        stored = _results.get(result_id) if isinstance(result_id, str) else None
        return None if stored is None else _display.get(stored.run)


def keep_display(result_id: str, view: View) -> None:
    """A display change that stores no result (the colour scaling): the later stages of the analysis
    `result_id` is a stage of are shown with `view` too."""
    with _lock:
        stored = _results.get(result_id)
        if stored is not None:
            _display[stored.run] = view


def turn(result_id: Any) -> threading.Lock | None:
    """The lock by which the analysis `result_id` is a stage of and a display change of it take turns at the
    page: the stream holds it from before it renders a stage until that stage has been sent (gradio resumes a
    generator only after sending what it yielded), a display change while it makes and stores its view.
    Without it a stage rendered with the old choice could reach the page after the change and undo it: the
    highlights per token under "Scores per: sentence" (a browser test saw it once in CI). None: not stored."""
    with _lock:
        stored = _results.get(result_id) if isinstance(result_id, str) else None
        return None if stored is None else _turns.setdefault(stored.run, threading.Lock())


@contextmanager
def display_turn(result_id: str) -> Iterator[Stored | None]:
    """A display change's turn (`turn`): yields the newest stored stage of the analysis `result_id` is a
    stage of — a change the page asked for from an earlier stage's id must not bring that stage back —, or
    None when it has expired. Waits at most TURN_WAIT_S for the stage being sent; after that it goes on
    without the turn (the view is still right, only its order on the page against that stage is not kept)."""
    lock = turn(result_id)
    acquired = lock is not None and lock.acquire(timeout=TURN_WAIT_S)
    try:
        with _lock:
            stored = _results.get(result_id)
            newest = _latest.get(stored.run) if stored is not None else None
        yield recall(newest) if newest is not None else recall(result_id)
    finally:
        if acquired:
            lock.release()


def end_run(result_id: str | None) -> None:
    """The stream of the analysis `result_id` is a stage of has ended (done, stopped or failed)."""
    with _lock:
        stored = _results.get(result_id) if isinstance(result_id, str) else None
        if stored is not None:
            _ended.add(stored.run)


def running(stored: Stored) -> bool:
    """Whether the analysis `stored` is a stage of is still being streamed."""
    with _lock:
        return stored.run not in _ended


def pin(result_id: str, slot: str) -> None:
    """Keep a result for as long as the process runs, in `slot` (one per example row: a result pinned
    to the same slot before goes back to the usual sweep)."""
    with _lock:
        _pinned[slot] = result_id


def is_pinned(result_id: Any) -> bool:
    """Whether `result_id` is a stored result pinned by `pin` (a cached example's)."""
    with _lock:
        return isinstance(result_id, str) and result_id in _pinned.values() and result_id in _results


def recall(result_id: Any) -> Stored | None:
    """The stored result, or None when it has expired (or never was)."""
    with _lock:
        stored = _results.get(result_id) if isinstance(result_id, str) else None
        if stored is None:
            return None
        if result_id not in _pinned.values() and time.time() - stored.stored_at > exports.EXPORT_TTL_S:
            return None
        _results.move_to_end(result_id)
        return stored


def lookup(state: Any, *, warn: bool = True) -> Stored | None:
    """The session's stored result (`state`: its id). None before the first analysis, and None with a
    warning on the page (`warn`) when the result has expired."""
    if not state:
        return None
    stored = recall(state)
    if stored is None and warn:
        gr.Warning(EXPIRED)
    return stored


def png_bytes(stored: Stored, key: str, hide_special: bool, selected: int = 1) -> bytes:
    """One figure of a stored result (`attribution.display.plotting` key) as PNG bytes, rendered once
    and reused."""
    # A method's figure is the same at every later stage of its analysis: rendered once for all of them.
    owner = (stored.run or stored.id) if key.split(":", 1)[0] in stored.analysis.methods else stored.id
    cache_key = (owner, key, bool(hide_special), selected)
    with _lock:
        cached = _pngs.get(cache_key)
        if cached is not None:
            _pngs.move_to_end(cache_key)
            return cached
    buffer = io.BytesIO()
    draw_figure(stored.figure_source(key), key, bool(hide_special), selected).savefig(buffer, format="png", dpi=DPI)
    data = buffer.getvalue()
    with _lock:
        _pngs[cache_key] = data
        while len(_pngs) > MAX_PNGS:
            _pngs.popitem(last=False)
    return data
