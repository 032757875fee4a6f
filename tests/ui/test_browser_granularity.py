""""Scores per" in a real browser: after an analysis, choosing sentence redraws the highlighted prompt per
sentence, and token brings the tokens back (that no model runs is `test_granularity.py`'s check); changed
while an analysis streams, or before it has a stage, the choice holds for everything it shows after."""

from __future__ import annotations

import threading
import time

from test_browser import TIMEOUT_MS, browser, open_page, page_url, wait_until_idle  # noqa: F401 (fixtures)

PROMPT = "Paris is in France. Berlin is in Germany. The capital of"


def test_scores_per_sentence_redraws_the_highlights(page_url, browser):  # noqa: F811
    page, errors = open_page(browser, page_url, PROMPT)
    tokens = page.locator("#highlight-gradient .token")
    tokens.first.wait_for(timeout=TIMEOUT_MS)
    page.wait_for_function("() => document.querySelectorAll('#highlight-gradient .token').length > 8",
                           timeout=TIMEOUT_MS)
    per_token = tokens.count()
    # Switched while the analysis may still run: its later stages keep the choice.
    page.locator("#granularity label", has_text="sentence").click()
    # BOS (held, a group of its own) and the three sentences.
    page.wait_for_function("() => document.querySelectorAll('#highlight-gradient .token').length === 4",
                           timeout=TIMEOUT_MS)
    # Still per sentence once the analysis is done: no stage drawn per token lands after the switch.
    wait_until_idle(page)
    texts = settled_texts(page)
    assert texts[1:] == ["Paris is in France.", "Berlin is in Germany.", "The capital of"]
    page.locator("#granularity label", has_text="token").click()
    page.wait_for_function(f"() => document.querySelectorAll('#highlight-gradient .token').length === {per_token}",
                           timeout=TIMEOUT_MS)
    assert not errors
    page.close()


def test_scores_per_changed_right_after_analyze_is_applied_to_that_analysis(page_url, browser,  # noqa: F811
                                                                            monkeypatch):
    # Changed after Analyze, before the new analysis has a stage to change (a real model is still generating
    # its answer): its stages, which come per token, are redrawn per sentence, as the page says.
    from ui import analysis as ui_analysis
    from ui import store

    compute, end_run = ui_analysis.compute, store.end_run
    started, switched, ended = threading.Event(), threading.Event(), threading.Event()

    def held_start(*arguments, **keywords):  # the analysis's settings are read: it waits for the switch
        started.set()
        switched.wait(TIMEOUT_MS / 1000)
        return compute(*arguments, **keywords)

    def end(result_id):  # the stream has sent its last stage
        end_run(result_id)
        ended.set()

    monkeypatch.setattr(ui_analysis, "compute", held_start)
    monkeypatch.setattr(store, "end_run", end)
    page, errors = open_page(browser, page_url, PROMPT)  # analyzed per token, the page's default
    assert started.wait(TIMEOUT_MS / 1000)
    page.locator("#granularity label", has_text="sentence").click()
    page.wait_for_function("() => document.querySelector('#granularity input[value=\"sentence\"]').checked",
                           timeout=TIMEOUT_MS)
    switched.set()
    assert ended.wait(TIMEOUT_MS / 1000)
    assert settled_texts(page)[1:] == ["Paris is in France.", "Berlin is in Germany.", "The capital of"]
    assert not errors
    page.close()


def settled_texts(page, settle_s: float = 1.0) -> list[str]:
    """The highlighted prompt's texts once they have not changed for `settle_s` (a stage and the redraw that
    follows it can land a moment apart)."""
    tokens = page.locator("#highlight-gradient .token")
    texts, since, started = None, time.monotonic(), time.monotonic()
    while time.monotonic() - started < TIMEOUT_MS / 1000:
        now = [text.strip() for text in tokens.all_inner_texts()]
        if now != texts:
            texts, since = now, time.monotonic()
        elif time.monotonic() - since >= settle_s:
            return texts
        time.sleep(0.1)
    raise AssertionError(f"the highlights kept changing: {texts}")
