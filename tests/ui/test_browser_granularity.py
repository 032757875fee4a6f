""""Scores per" in a real browser: after an analysis, choosing sentence redraws the highlighted prompt per
sentence, and token brings the tokens back (that no model runs is `test_granularity.py`'s check)."""

from __future__ import annotations

from test_browser import TIMEOUT_MS, browser, page_url  # noqa: F401 (the page and the browser fixtures)

PROMPT = "Paris is in France. Berlin is in Germany. The capital of"


def test_scores_per_sentence_redraws_the_highlights(page_url, browser):  # noqa: F811
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(page_url)
    page.locator("#prompt textarea").fill(PROMPT)
    page.locator("#analyze-button").click()
    tokens = page.locator("#highlight-gradient .token")
    tokens.first.wait_for(timeout=TIMEOUT_MS)
    page.wait_for_function("() => document.querySelectorAll('#highlight-gradient .token').length > 8",
                           timeout=TIMEOUT_MS)
    # The analysis's later stages draw per the granularity it was started with: switch once it has ended
    # (the progress line over the answer is gone, and the final result's redraw, which comes just after it,
    # is in: the drawn tokens stay the same for 2 s).
    page.wait_for_function("() => !document.querySelector('#answer-tokens .progress-level')", timeout=TIMEOUT_MS)
    page.wait_for_function(
        """() => {
          const now = [...document.querySelectorAll('#highlight-gradient .token')].map(t => t.textContent).join('|');
          const seen = window.__tokensSeen;
          if (!seen || seen.text !== now) { window.__tokensSeen = {text: now, at: Date.now()}; return false; }
          return Date.now() - seen.at > 2000;
        }""", polling=250, timeout=TIMEOUT_MS)
    per_token = tokens.count()
    page.locator("#granularity label", has_text="sentence").click()
    # BOS (held, a group of its own) and the three sentences.
    page.wait_for_function("() => document.querySelectorAll('#highlight-gradient .token').length === 4",
                           timeout=TIMEOUT_MS)
    texts = [text.strip() for text in tokens.all_inner_texts()]
    assert texts[1:] == ["Paris is in France.", "Berlin is in Germany.", "The capital of"]
    page.locator("#granularity label", has_text="token").click()
    page.wait_for_function(f"() => document.querySelectorAll('#highlight-gradient .token').length === {per_token}",
                           timeout=TIMEOUT_MS)
    assert not errors
    page.close()
