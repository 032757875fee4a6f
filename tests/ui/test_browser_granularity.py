""""Scores per" in a real browser: after an analysis, choosing sentence redraws the highlighted prompt per
sentence, and token brings the tokens back (that no model runs is `test_granularity.py`'s check)."""

from __future__ import annotations

from test_browser import TIMEOUT_MS, browser, open_page, page_url, wait_until_idle  # noqa: F401 (the fixtures)

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
    texts = [text.strip() for text in tokens.all_inner_texts()]
    assert texts[1:] == ["Paris is in France.", "Berlin is in Germany.", "The capital of"]
    page.locator("#granularity label", has_text="token").click()
    page.wait_for_function(f"() => document.querySelectorAll('#highlight-gradient .token').length === {per_token}",
                           timeout=TIMEOUT_MS)
    assert not errors
    page.close()
