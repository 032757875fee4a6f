"""Stopping a running analysis: the page's Stop button sets an event, and the engine checks it between
stages and between batches, so the analysis ends within one batch's time and frees the model's lock."""

from __future__ import annotations

import contextvars
import threading
from contextlib import contextmanager
from typing import Iterator


class Cancelled(RuntimeError):
    """The analysis was stopped by its caller (`analyze(..., cancel=event)` with the event set)."""


_current: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("attribution_cancel", default=None)


@contextmanager
def cancellable(event: threading.Event | None) -> Iterator[None]:
    """Within this block, `check()` raises Cancelled once `event` is set."""
    token = _current.set(event)
    try:
        yield
    finally:
        _current.reset(token)


def check() -> None:
    """Raise Cancelled when the running analysis was asked to stop (a no-op outside one)."""
    event = _current.get()
    if event is not None and event.is_set():
        raise Cancelled("the analysis was stopped")


def requested() -> bool:
    event = _current.get()
    return event is not None and event.is_set()
