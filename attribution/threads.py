"""How many CPU threads an analysis runs on, chosen by measurement.

Torch's threads wait for each other at every operation: when another job holds one of the cores, two
threads run at the pace of the slower one. The issue's measurement on SmolLM2 (2 cores): the page's
default analysis took 200 s on a quiet machine and 869 s with one other job running; the dataset mode
measured 1.3 rows/min with two threads and 2.0 with one on a busy machine. So before an analysis the
engine times a matmul of the model's own shape on a few thread counts (`thread_counts`: every core, all
but one, half of them, one; on 2 cores that is two and one) and runs on the fastest; the choice is kept
for a few seconds, so that a burst of calls measures once.
"""

from __future__ import annotations

import os
import statistics
import time
from contextlib import contextmanager
from typing import Iterator

import torch

from .models import LoadedModel
from .validation import validate_integer

# Below this size a CPU forward is a few small matmuls, and thread start-up and synchronisation cost
# more than they save: measured on the 2.7M-parameter demo model on 2 cores, a full analysis took
# 155 ms on one thread and 716 ms on two (benchmarks/RESULTS.md has the controlled figures).
SINGLE_THREAD_PARAMETERS = 20_000_000
PROBE_FLOPS = 4e8  # the timed matmul's size: ~10 ms on one core, far below an analysis's cost
PROBE_RUNS = 7  # timed runs per thread count (their median decides)
CHOICE_SECONDS = 10.0  # how long one measurement stands
_choices: dict[int, tuple[float, int]] = {}  # id(model) → (when measured, threads)


def _probe_seconds(loaded: LoadedModel, threads: int) -> float:
    """The median of PROBE_RUNS runs of one matmul of the model's own MLP shape on `threads` threads. A
    matmul, not a forward: under contention two threads can be 16× slower than one (a 32-token SmolLM2
    forward: 2.2 s against 0.13 s beside another job), and the probe must stay cheap exactly then. The
    median, not the best: beside one busy process (`yes`, 2 cores) the best of 3 two-thread runs read 2.7 ms
    in 2 of 6 probes, against 4.1 ms on one thread, when two threads ran 50 such matmuls in 410 ms against
    264 ms; the median of 30 runs read 7.1 ms against 5.5 ms. One count's runs back to back, not the counts
    in turn: taken in turn beside `yes`, two threads read faster in 6 of 10 probes (e.g. 3.7 ms against 4.5 ms;
    a thread woken after the one-thread run gets its core for a moment), where back to back they read
    slower in 10 of 10 (6.8-7.8 ms against 5.0-5.3 ms), as the analysis itself runs."""
    torch.set_num_threads(threads)
    config = loaded.model.config
    hidden = int(config.hidden_size)
    inner = int(getattr(config, "intermediate_size", None) or 4 * hidden)
    rows = max(16, int(PROBE_FLOPS / (2 * hidden * inner)))
    generator = torch.Generator().manual_seed(0)
    left = torch.randn(rows, hidden, generator=generator, dtype=torch.float32).to(loaded.dtype)
    right = torch.randn(hidden, inner, generator=generator, dtype=torch.float32).to(loaded.dtype)
    left @ right  # warms the thread pool and the allocator
    seconds = []
    for _ in range(PROBE_RUNS):
        started = time.perf_counter()
        left @ right
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def thread_counts(available: int) -> tuple[int, ...]:
    """The counts the probe times, most first: all `available` cores, all but one (beside one busy job:
    the team then never waits for a thread that shares its core), half, and one."""
    return tuple(sorted({available, max(1, available - 1), max(1, -(-available // 2)), 1}, reverse=True))


def measured_threads(loaded: LoadedModel, available: int) -> int:
    """Whichever of `thread_counts(available)` ran the probe fastest just now (kept CHOICE_SECONDS); the
    fewer threads of equal times."""
    now = time.monotonic()
    cached = _choices.get(id(loaded.model))
    if cached is not None and now - cached[0] < CHOICE_SECONDS:
        return cached[1]
    timings = {threads: _probe_seconds(loaded, threads) for threads in thread_counts(available)}
    threads = min(sorted(timings), key=timings.get)
    _choices[id(loaded.model)] = (time.monotonic(), threads)
    return threads


def _whole(text: str) -> int | str:
    return int(text) if text.strip().isdigit() else text


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def cpu_threads_for(loaded: LoadedModel) -> Iterator[None]:
    """Small CPU models on one thread; larger ones on the count a probe finds fastest
    (`measured_threads`); ATTRIBUTION_THREADS fixes the count, and so does OMP_NUM_THREADS (torch's own);
    GPUs untouched."""
    if loaded.input_device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    n_parameters = sum(parameter.numel() for parameter in loaded.model.parameters())
    if os.environ.get("ATTRIBUTION_THREADS"):
        threads = validate_integer(_whole(os.environ["ATTRIBUTION_THREADS"]), "ATTRIBUTION_THREADS", 1, 4096)
    elif os.environ.get("OMP_NUM_THREADS"):  # torch already runs the count it gives (torchrun sets 1)
        threads = previous
    elif n_parameters < SINGLE_THREAD_PARAMETERS:
        threads = 1
    else:
        threads = measured_threads(loaded, min(previous, available_cores()))
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
