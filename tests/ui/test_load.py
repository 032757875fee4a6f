"""Load: 16 concurrent gradio_client clients × 4 requests against the app on the shipped demo model.

Served in this process on a free 127.0.0.1 port (nothing else is contacted). Every request must
succeed with exactly the result the same prompt gives when asked alone, the queue must report
positions to waiting clients, and the process's resident memory must not keep growing from round to
round. Small settings keep it to about a minute on two shared CPU cores; everything is bounded by
OVERALL_TIMEOUT_S.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import httpx  # noqa: E402
import pytest  # noqa: E402

import attribution  # noqa: E402
from helpers import LOOPBACK, api_outputs, make_client, serve  # noqa: E402

N_CLIENTS = 16
N_ROUNDS = 4
PROMPTS = (
    "What is the Capital City of Latvia?",
    "The capital of France is",
    "Which city is the capital of Germany?",
    "The Eiffel Tower is located in the city of",
)
#: Small settings: Integrated Gradients with 4 steps, one generated token, no answer map or trust panel
#: (most of a request's time is drawing its three figures).
SETTINGS = {"methods": ["integrated_gradients"], "max_new_tokens": 1, "ig_steps": 4,
            "all_targets": False, "trust": False}
OVERALL_TIMEOUT_S = 420
#: Allowed growth of live resident memory from the end of the first round to the end of the last. The
#: first round warms everything up (matplotlib's caches, 16 sessions, gradio's worker threads); after
#: it, leaking one drawn figure per request (about 2 MiB of pixels) would add about 100 MiB over the
#: 48 requests of rounds 2-4. Measured: about 5-15 MiB on 2 shared cores.
LIVE_GROWTH_BOUND_MIB = 64
#: The same for the raw resident size, without returning freed memory to the system first: glibc keeps
#: an arena per worker thread and does not give freed pages back, so raw RSS climbs towards (arenas ×
#: peak request) before it levels off (measured: +60 to +180 MiB over rounds 2-4, +300 MiB over 8
#: rounds). Only a loose guard against a runaway leak.
RAW_GROWTH_BOUND_MIB = 384

_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def rss_mib() -> float:
    """This process's resident set size (the server runs in it), from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line in /proc/self/status")


def memory_after_round() -> tuple[float, float]:
    """(raw RSS, live RSS): after a full garbage collection, then after glibc hands the free pages of
    every thread's arena back (malloc_trim), which leaves what is really in use."""
    gc.collect()
    raw = rss_mib()
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)
    return raw, rss_mib()


def result_data(result, http: httpx.Client) -> dict:
    """What must match between runs: the JSON export (fetched through its download link, as a browser
    would; the figures are not downloaded) and the highlighted scores."""
    values = api_outputs(result)
    link = values["export:json"]
    url = link["url"] if isinstance(link, dict) else link.url
    assert url.startswith(f"http://{LOOPBACK}:"), url
    response = http.get(url)
    response.raise_for_status()
    highlights = {name: values[f"{name}:highlight"] for name in SETTINGS["methods"]}
    return {"export": response.json(), "highlights": highlights, "answer": values["answer"]}


@pytest.fixture(scope="module")
def demo_url():
    if not (attribution.DEMO_MODEL_PATH / "config.json").exists():
        pytest.fail("the shipped demo model is missing from assets/demo-model")
    with serve(str(attribution.DEMO_MODEL_PATH)) as server:
        assert server.url.startswith(f"http://{LOOPBACK}:")
        yield server.url


def test_sixteen_concurrent_clients_get_the_serial_results_in_bounded_memory(demo_url):
    begin = time.monotonic()
    deadline = begin + OVERALL_TIMEOUT_S

    def remaining() -> float:
        left = deadline - time.monotonic()
        assert left > 0, f"the load test ran past {OVERALL_TIMEOUT_S} s"
        return left

    clients = [make_client(demo_url, False) for _index in range(N_CLIENTS)]
    http = httpx.Client(timeout=60, trust_env=False)
    try:
        # Serial reference: each prompt asked alone (this also loads the model and warms up).
        serial = {}
        for prompt in PROMPTS:
            job = clients[0].submit(prompt, **SETTINGS, api_name="/analyze")
            serial[prompt] = result_data(job.result(timeout=remaining()), http)
        serial_s = time.monotonic() - begin

        ranks: list[int] = []
        errors: list[str] = []
        mismatches: list[str] = []
        lock = threading.Lock()

        def one_request(index: int, round_number: int) -> None:
            prompt = PROMPTS[(index + round_number) % len(PROMPTS)]
            try:
                job = clients[index].submit(prompt, **SETTINGS, api_name="/analyze")
                while not job.done():
                    status = job.status()
                    if status.code.name == "IN_QUEUE" and status.rank is not None:
                        with lock:
                            ranks.append(status.rank)
                    if time.monotonic() > deadline:
                        raise TimeoutError("request still running at the overall deadline")
                    time.sleep(0.02)
                got = result_data(job.result(timeout=max(remaining(), 1)), http)
            except Exception as error:  # noqa: BLE001 - every failure is reported below
                with lock:
                    errors.append(f"client {index}, round {round_number}: {type(error).__name__}: {error}")
                return
            if got != serial[prompt]:
                with lock:
                    mismatches.append(f"client {index}, round {round_number}, prompt {prompt!r}")

        memory = []
        round_times = []
        with ThreadPoolExecutor(max_workers=N_CLIENTS) as pool:
            for round_number in range(N_ROUNDS):
                started = time.monotonic()
                futures = [pool.submit(one_request, index, round_number) for index in range(N_CLIENTS)]
                for future in futures:
                    future.result(timeout=remaining())
                round_times.append(time.monotonic() - started)
                memory.append(memory_after_round())
        total_s = time.monotonic() - begin
    finally:
        http.close()
        for client in clients:
            client.close()

    summary = (f"load: {N_CLIENTS} clients × {N_ROUNDS} rounds = {N_CLIENTS * N_ROUNDS} requests; serial "
               f"reference {serial_s:.1f} s; rounds {', '.join(f'{t:.1f}' for t in round_times)} s; total "
               f"{total_s:.1f} s; RSS after each round (raw/live) "
               f"{', '.join(f'{raw:.0f}/{live:.0f}' for raw, live in memory)} MiB; "
               f"highest queue rank seen {max(ranks, default=None)}")
    print(summary)
    assert not errors, "\n".join(errors)
    assert not mismatches, "results differ from the serial ones:\n" + "\n".join(mismatches)
    assert ranks and max(ranks) > 0, "no waiting client was told its queue position"
    assert memory[-1][1] - memory[0][1] < LIVE_GROWTH_BOUND_MIB, summary
    assert memory[-1][0] - memory[0][0] < RAW_GROWTH_BOUND_MIB, summary
    assert total_s < OVERALL_TIMEOUT_S
