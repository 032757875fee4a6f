"""Figures drawn on demand never mix results between users: two clients, each with its own session,
open tabs while the other's analysis runs, and each gets exactly the figures its own result gives alone."""

from __future__ import annotations

import os
import threading

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

from helpers import make_client  # noqa: E402
from ui import figures  # noqa: E402

PROMPTS = ("What is the Capital City of Latvia?", "The Eiffel Tower is located in the city of")
TABS = ("gradient", "attention", "compare", "answer_map")


def tab_figures(client, tab: str) -> dict:
    """One tab's figure outputs (PNG data URLs; None where the result has no such figure)."""
    values = dict(zip(figures.FIGURE_KEYS, client.predict(tab, api_name="/figures")))
    return {key: value["plot"] for key, value in values.items()
            if key in figures.TAB_FIGURES[tab] and isinstance(value, dict) and "plot" in value}


@pytest.fixture(scope="module")
def alone(served, tmp_path_factory):
    """Each prompt's figures for every tab, asked for by one client with nothing else running."""
    figures_alone = {}
    for prompt in PROMPTS:
        client = make_client(served.url, tmp_path_factory.mktemp("alone"))
        client.predict(prompt, max_new_tokens=6, api_name="/analyze")
        figures_alone[prompt] = {tab: tab_figures(client, tab) for tab in TABS}
    return figures_alone


def test_two_clients_opening_tabs_during_each_others_analysis_get_their_own_figures(served, alone,
                                                                                     tmp_path_factory):
    first, second = (make_client(served.url, tmp_path_factory.mktemp(f"client{i}")) for i in range(2))
    first.predict(PROMPTS[0], max_new_tokens=6, api_name="/analyze")
    assert alone[PROMPTS[0]]["gradient"] != alone[PROMPTS[1]]["gradient"]  # the two results do differ
    seen: dict[str, list] = {"first": [], "second": []}
    errors: list[BaseException] = []
    started = threading.Event()

    def second_client() -> None:
        try:
            job = second.submit(PROMPTS[1], max_new_tokens=6, api_name="/analyze")
            started.set()
            job.result(timeout=300)
            seen["second"] += [(tab, tab_figures(second, tab)) for tab in TABS]
        except BaseException as error:  # reported by the main thread
            errors.append(error)
            started.set()

    worker = threading.Thread(target=second_client)
    worker.start()
    started.wait(timeout=300)
    # The first client opens every tab, twice, while the second client's analysis is queued or running.
    for _round in range(2):
        seen["first"] += [(tab, tab_figures(first, tab)) for tab in TABS]
    worker.join(timeout=300)
    assert not worker.is_alive() and not errors, errors
    for name, prompt in (("first", PROMPTS[0]), ("second", PROMPTS[1])):
        for tab, drawn in seen[name]:
            assert drawn == alone[prompt][tab], (name, tab)
            assert drawn, (name, tab)  # every tab here has at least one figure
