"""The CPU thread count: one thread for small models, the fastest of a few counts (by a timed matmul) for
larger ones, the environment's count when it fixes one; torch's own setting restored afterwards."""

from __future__ import annotations

import pytest
import torch

from attribution import threads


def _inside(loaded) -> int:
    with threads.cpu_threads_for(loaded):
        return torch.get_num_threads()


def test_small_models_run_on_one_thread_and_the_setting_is_restored(tiny_loaded, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("ATTRIBUTION_THREADS", raising=False)
    before = torch.get_num_threads()
    assert _inside(tiny_loaded) == 1
    assert torch.get_num_threads() == before


def test_larger_models_take_the_faster_count_measured(tiny_loaded, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("ATTRIBUTION_THREADS", raising=False)
    monkeypatch.setattr(threads, "SINGLE_THREAD_PARAMETERS", 0)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    torch.set_num_threads(2)
    for faster in (1, 2):
        threads._choices.clear()
        monkeypatch.setattr(threads, "_probe_seconds", lambda _loaded, count, faster=faster: 0.1 if count == faster else 0.3)
        assert _inside(tiny_loaded) == faster
    # The real probe runs the model and picks one of the two counts.
    monkeypatch.undo()
    monkeypatch.setattr(threads, "SINGLE_THREAD_PARAMETERS", 0)
    threads._choices.clear()
    assert threads.measured_threads(tiny_loaded, 2) in (1, 2)


def test_the_counts_probed_include_all_cores_but_one():
    # Beside one busy job on a many-core machine, every core makes the team wait for the thread that
    # shares a core and one thread leaves the rest idle: all but one is what such a machine wants.
    assert threads.thread_counts(1) == (1,)
    assert threads.thread_counts(2) == (2, 1)
    assert threads.thread_counts(4) == (4, 3, 2, 1)
    assert threads.thread_counts(16) == (16, 15, 8, 1)


def test_the_fastest_probed_count_is_chosen_on_more_cores(tiny_loaded, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("ATTRIBUTION_THREADS", raising=False)
    monkeypatch.setattr(threads, "SINGLE_THREAD_PARAMETERS", 0)
    monkeypatch.setattr(threads, "available_cores", lambda: 16)
    previous = torch.get_num_threads()
    torch.set_num_threads(16)
    probed = []
    try:
        for fastest in (16, 15, 8, 1):
            threads._choices.clear()
            probed.clear()

            def seconds(_loaded, count, fastest=fastest):
                probed.append(count)
                return 0.1 if count == fastest else 0.3

            monkeypatch.setattr(threads, "_probe_seconds", seconds)
            assert _inside(tiny_loaded) == fastest
            assert sorted(probed) == [1, 8, 15, 16]
        # Equal times: the fewer threads (they leave cores to other work and wait for fewer).
        threads._choices.clear()
        monkeypatch.setattr(threads, "_probe_seconds", lambda _loaded, count: 0.1)
        assert _inside(tiny_loaded) == 1
    finally:
        torch.set_num_threads(previous)
        threads._choices.clear()


def test_a_count_fixed_by_the_environment_is_kept(tiny_loaded, monkeypatch):
    monkeypatch.setattr(threads, "SINGLE_THREAD_PARAMETERS", 0)
    monkeypatch.setattr(threads, "_probe_seconds", lambda *_: (_ for _ in ()).throw(AssertionError("probed")))
    torch.set_num_threads(2)
    monkeypatch.setenv("ATTRIBUTION_THREADS", "1")
    assert _inside(tiny_loaded) == 1
    monkeypatch.delenv("ATTRIBUTION_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert _inside(tiny_loaded) == 2
    monkeypatch.setenv("ATTRIBUTION_THREADS", "none")
    try:
        _inside(tiny_loaded)
    except ValueError as error:
        assert "ATTRIBUTION_THREADS must be a whole number" in str(error)
    else:
        raise AssertionError("a bad ATTRIBUTION_THREADS was accepted")


def test_one_lucky_run_does_not_decide_the_probe(tiny_loaded, monkeypatch):
    """Beside another busy process a single two-thread matmul sometimes finds both cores free (measured:
    2.7 ms against a typical 7 ms): the probe reads the median of its runs, not the best."""
    durations = iter([0.001] + [0.009] * (threads.PROBE_RUNS - 1))  # one lucky run, the rest slow
    clock = {"now": 0.0, "started": False}

    def fake_clock():
        if clock["started"]:
            clock["now"] += next(durations)
        clock["started"] = not clock["started"]
        return clock["now"]

    monkeypatch.setattr(threads.time, "perf_counter", fake_clock)
    assert threads._probe_seconds(tiny_loaded, 1) == pytest.approx(0.009)
