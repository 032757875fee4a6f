"""The What-if panel in a real browser, on the demo model: a word clicked is marked, Regenerate shows the
old and new answers, Replace with replaces it, the deletion curve is drawn, and Compare shows the diff and its
sentence (the handlers' results are `test_whatif_tab.py`'s check; this is the page's wiring)."""

from __future__ import annotations

from conftest import SEED_PROMPT
from test_browser import ARTIFACTS, TIMEOUT_MS, browser, open_page, page_url, wait_for_plot_image  # noqa: F401 (fixtures)


def _wait_for_text(page, selector: str, text: str) -> None:
    page.wait_for_function("([selector, text]) => (document.querySelector(selector)?.innerText || '').includes(text)",
                           arg=[selector, text], timeout=TIMEOUT_MS)


def test_the_whatif_panel_edits_draws_and_compares(page_url, browser):  # noqa: F811
    ARTIFACTS.mkdir(exist_ok=True)
    page, errors = open_page(browser, page_url, SEED_PROMPT)
    page.locator("#highlight-gradient .token").first.wait_for(timeout=TIMEOUT_MS)
    page.locator("#tab-whatif").get_by_text("What-if: edit the prompt").click()
    words = page.locator("#whatif-prompt .token")
    page.wait_for_function("() => document.querySelectorAll('#whatif-prompt .token').length === 8", timeout=TIMEOUT_MS)
    assert "".join(words.all_inner_texts()).replace("\n", "") == SEED_PROMPT
    words.nth(6).click()  # "Latvia?"'s word "Latvia"
    page.wait_for_function("() => document.querySelector('#whatif-indices textarea, #whatif-indices input').value === '6'",
                           timeout=TIMEOUT_MS)
    page.locator("#whatif-regenerate").click()
    _wait_for_text(page, "#whatif-edit", "Removed “Latvia”")
    assert "What is the Capital City of?" in page.locator("#whatif-edit").inner_text()
    page.locator("#whatif-replacement textarea, #whatif-replacement input").first.fill("Estonia")
    page.locator("#whatif-regenerate").click()
    _wait_for_text(page, "#whatif-edit", "Replaced “Latvia” by “Estonia”")
    assert "What is the Capital City of Estonia?" in page.locator("#whatif-edit").inner_text()
    page.get_by_role("button", name="Mark top k of the method").click()  # k = 3 of Gradient
    page.wait_for_function("() => (document.querySelector('#whatif-indices textarea, #whatif-indices input').value"
                           " || '').split(',').length === 3", timeout=TIMEOUT_MS)
    page.locator("#whatif-curve-button").click()
    wait_for_plot_image(page, "#whatif-curve")
    page.locator("#whatif-second-prompt textarea").fill("What is the Capital City of Estonia?")
    page.locator("#whatif-compare").click()
    _wait_for_text(page, "#whatif-summary", "Changing the prompt")
    _wait_for_text(page, "#whatif-memory", "Same model")
    assert page.locator("#whatif-table").get_by_role("row").count() > 8
    page.screenshot(path=str(ARTIFACTS / "whatif.png"), full_page=True)
    assert not errors
    page.close()
