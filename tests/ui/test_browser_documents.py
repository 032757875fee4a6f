"""Documents in a real browser: open "Ask about documents", fill it with the Example, ask, and the page shows
the prompt it composed, the highlights per sentence and the Top sources table of the example's sentences."""

from __future__ import annotations

from test_browser import ARTIFACTS, TIMEOUT_MS, browser, open_page, page_url  # noqa: F401 (the page and the browser fixtures)

from ui import documents


def test_ask_about_documents_lists_the_top_sources(page_url, browser):  # noqa: F811
    page, errors = open_page(browser, page_url)
    page.locator("#documents").get_by_text("Ask about documents").first.click()
    page.locator("#doc-example").click()
    page.wait_for_function(
        "() => (document.querySelector('#doc-passages textarea')?.value ?? '').includes('trumpet')",
        timeout=TIMEOUT_MS)
    page.locator("#doc-ask").click()
    sentences = [f"{sentence}." for sentence in documents.EXAMPLE_PASSAGES.rstrip(".").split(". ")]
    # The table lists the five sentences (not the question), ranked by context ablation once it is done.
    page.wait_for_function(
        "(wanted) => { const text = document.querySelector('#doc-table')?.innerText ?? '';"
        " return text.includes('Context ablation') && wanted.every((sentence) => text.includes(sentence)); }",
        arg=sentences, timeout=TIMEOUT_MS)
    page.wait_for_function("() => !(document.querySelector('#doc-note')?.innerText ?? '').includes('Still computing')",
                           timeout=TIMEOUT_MS)
    table = page.locator("#doc-table").inner_text()
    assert documents.EXAMPLE_QUESTION not in table
    assert "ranked by Context ablation" in page.locator("#doc-note").inner_text()
    prompt = page.locator("#prompt textarea").input_value()
    assert prompt == f"{documents.EXAMPLE_PASSAGES}\n\n{documents.EXAMPLE_QUESTION}"
    # The tabs show the prompt per sentence: each sentence one highlighted piece.
    pieces = [text.strip() for text in page.locator("#highlight-gradient .token").all_inner_texts()]
    assert all(sentence in pieces for sentence in sentences) and documents.EXAMPLE_QUESTION in pieces
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#documents").screenshot(path=str(ARTIFACTS / "documents.png"))
    assert not errors
    page.close()
