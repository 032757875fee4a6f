"""The page in a real browser: Playwright drives Debian's chromium against the app on a free port.

The page serves the shipped demo model (it answers " Riga" for the seed prompt, so the screenshots show
what a visitor sees). Screenshots land in test-artifacts/ at the repository root. Without chromium the
test skips locally and fails under CI (CI installs it, see .ci/run).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402

from conftest import REPO_ROOT, SEED_PROMPT  # noqa: E402
from ui import settings as ui_settings  # noqa: E402
from attribution import catalog  # noqa: E402

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
ARTIFACTS = REPO_ROOT / "test-artifacts"
TIMEOUT_MS = 90_000


def _require_browser():
    if CHROMIUM is not None:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            pass
        else:
            return
    reason = "needs Debian's chromium (apt-get install -y chromium) and the playwright package"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser test: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def page_url():
    """The page as `python app.py` serves it on the demo model (styled, examples cached lazily)."""
    _require_browser()
    import attribution
    from helpers import serve

    with serve(str(attribution.DEMO_MODEL_PATH), cache_examples=True, styled=True) as server:
        yield server.url


@pytest.fixture(scope="module")
def browser(page_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()


def wait_for_plot_image(page, selector: str) -> None:
    """Until the plot at `selector` shows a figure. While the analysis streams, each later stage redraws
    the open tab's figures, and for a moment between the old image and the new one there is none (CI saw
    a count of 0 right after an image had been found), so a plot is awaited, not counted once."""
    page.locator(f"{selector} img, {selector} svg.main-svg, {selector} canvas").first.wait_for(timeout=TIMEOUT_MS)


def open_page(browser, url: str, prompt: str | None = None) -> tuple[Any, list[str]]:
    """A new 1400×1000 page at `url`, the page errors it raises collected in the list; with `prompt`, typed
    and analyzed."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    if prompt is not None:
        page.locator("#prompt textarea").fill(prompt)
        page.locator("#analyze-button").click()
    return page, errors


def test_analyze_in_the_browser_and_open_every_tab(page_url, browser):
    import attribution

    ARTIFACTS.mkdir(exist_ok=True)
    page, errors = open_page(browser, page_url, SEED_PROMPT)
    tokens = page.locator("#highlight-gradient .token")
    tokens.first.wait_for(timeout=TIMEOUT_MS)
    page.locator("#answer-tokens .token").first.wait_for(timeout=TIMEOUT_MS)  # so the screenshots show the answer
    assert "Latvia" in page.locator("#highlight-gradient").inner_text()
    # The open tab's figure follows the highlighted tokens; the other tabs' are drawn when opened.
    page.locator("#bars-gradient img").first.wait_for(timeout=TIMEOUT_MS)
    assert page.locator("#explained textarea, #explained input").first.input_value().endswith(")")

    for name in attribution.METHODS:
        page.locator(f"#tab-{name}-button").click()
        if name in ui_settings.DEFAULTS["methods"]:
            wait_for_plot_image(page, f"#bars-{name}")
            assert page.locator(f"#highlight-{name} .token").count() >= 9
            assert page.locator(f"#top-{name}").get_by_role("row").count() >= 6  # header + 5
        if name in catalog.LAYERED_METHODS and name in ui_settings.DEFAULTS["methods"]:
            wait_for_plot_image(page, f"#layers-{name}")
            page.locator(f"#heads-{name} img").first.wait_for(timeout=TIMEOUT_MS)  # its src is compared below
            # Another layer for the per-head view: redrawn from the stored result.
            before = page.locator(f"#heads-{name} img").first.get_attribute("src")
            page.locator(f"#layer-{name} input[type=range]").focus()
            page.keyboard.press("ArrowLeft")
            page.wait_for_function(
                "([selector, before]) => document.querySelector(selector)?.getAttribute('src') !== before",
                arg=[f"#heads-{name} img", before], timeout=TIMEOUT_MS)
        page.screenshot(path=str(ARTIFACTS / f"tab-{name}.png"), full_page=True)

    # The answer map: a heatmap, and one generated token's sources redrawn when another is picked.
    page.locator("#tab-answer_map-button").click()
    wait_for_plot_image(page, "#answer-map-heatmap")
    sources = page.locator("#answer-map-highlight .token")
    before = sources.all_inner_texts()
    # Token 1 sees the prompt only: its sources are the prompt's tokens, each as the demo model's own
    # tokenizer decodes it (BOS first), and nothing generated.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(attribution.DEMO_MODEL_PATH))
    prompt_tokens = [tokenizer.decode([token_id]) for token_id in tokenizer(SEED_PROMPT).input_ids]
    assert before == prompt_tokens, (before, prompt_tokens)
    page.locator("#answer-map-token input").click()
    page.get_by_role("option").nth(1).click()
    page.wait_for_function(
        "(count) => document.querySelectorAll('#answer-map-highlight .token').length > count",
        arg=len(before), timeout=TIMEOUT_MS)
    assert "Riga" in sources.all_inner_texts()[-1]  # token 2 also sees the generated " Riga"
    assert "generated token 2" in page.locator("#answer-map-highlight").inner_text()
    page.screenshot(path=str(ARTIFACTS / "tab-answer_map.png"), full_page=True)

    page.locator("#tab-compare-button").click()
    for selector in ("#compare-heatmap", "#compare-bars", "#agreement-heatmap"):
        wait_for_plot_image(page, selector)
    verdict = page.locator("#verdict").inner_text()
    assert verdict.startswith("Verdict:") and "Latvia" in verdict
    assert page.locator("#faithfulness").get_by_role("row").count() >= 1 + len(ui_settings.DEFAULTS["methods"])
    assert "completeness" in page.locator("#completeness").inner_text()
    page.screenshot(path=str(ARTIFACTS / "tab-compare.png"), full_page=True)

    # Putting the held context (BOS) back into the colour scaling, the seed's view, redraws the comparison
    # from the stored result.
    before = [page.locator(f"{selector} img").first.get_attribute("src")
              for selector in ("#compare-heatmap", "#compare-bars")]
    page.locator("#hide-special input").uncheck()
    page.wait_for_function(
        "(before) => ['#compare-heatmap', '#compare-bars'].every((selector, index) => {"
        "  const image = document.querySelector(selector + ' img');"
        "  return image !== null && image.getAttribute('src') !== before[index]; })",
        arg=before, timeout=TIMEOUT_MS)
    # Before the screenshot: nothing is pending any more and the pending overlay's fade (a CSS transition)
    # has run to its end.
    page.wait_for_function(
        "() => !document.querySelector('.pending')"
        "  && document.getAnimations().every((animation) => !(animation instanceof CSSTransition))",
        timeout=TIMEOUT_MS)
    page.screenshot(path=str(ARTIFACTS / "tab-compare-seed-view.png"), full_page=True)
    page.locator("#hide-special input").check()

    page.locator("#download-png-button").click()  # the PNG files are made when asked for
    page.locator("#download-png").get_by_text("compare_heatmap", exact=True).wait_for(timeout=TIMEOUT_MS)
    page.locator("#share-button").click()
    share_box = page.locator("#share-url textarea, #share-url input").first
    page.wait_for_function("el => el.value.includes('prompt=')", arg=share_box.element_handle(),
                           timeout=TIMEOUT_MS)
    link = share_box.input_value()
    assert link.startswith(page_url) and "What+is+the+Capital+City+of+Latvia" in link
    assert "methods=" not in link  # settings left at their defaults stay out of the link

    # Contrast: pick the likeliest alternative (its token id is used), analyze again.
    page.locator("#settings").click()
    page.locator("#contrast-choice input").click()
    option = page.get_by_role("option").nth(1)  # the likeliest alternative after "(none)"
    label = option.inner_text()
    assert label.endswith("%)")
    option.click()
    contrast_box = page.locator("#contrast-text textarea, #contrast-text input").first
    page.wait_for_function("el => el.value !== ''", arg=contrast_box.element_handle(), timeout=TIMEOUT_MS)
    foil = contrast_box.input_value()
    assert f'"{foil}"' in label
    page.locator("#analyze-button").click()
    explained = page.locator("#explained textarea, #explained input").first
    page.wait_for_function("el => el.value.includes('rather than')", arg=explained.element_handle(),
                           timeout=TIMEOUT_MS)
    assert f'rather than "{foil}"' in explained.input_value()
    page.locator("#tab-gradient-button").click()
    page.locator("#bars-gradient img").first.wait_for(timeout=TIMEOUT_MS)
    page.screenshot(path=str(ARTIFACTS / "full-page.png"), full_page=True)
    assert not errors, errors
    page.close()


def test_deep_link_fills_the_settings_and_runs(page_url, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{page_url}?prompt=The+capital+of+France+is&methods=gradient&steps=7&max_new_tokens=3")
    page.locator("#highlight-gradient .token").first.wait_for(timeout=TIMEOUT_MS)
    assert page.locator("#prompt textarea").input_value() == "The capital of France is"
    assert "France" in page.locator("#highlight-gradient").inner_text()
    page.close()


def test_preset_buttons_fill_the_settings_and_the_link_carries_them(page_url, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(page_url)
    page.locator("#settings").click()
    checked = {name: page.locator(f"#{name} input") for name in ("ig-auto", "hold-context", "hide-special")}
    page.locator("#preset-recommended").click()
    page.wait_for_function("() => document.querySelector('#ig-auto input')?.checked", timeout=TIMEOUT_MS)
    assert checked["hold-context"].is_checked() and checked["hide-special"].is_checked()
    page.locator("#target-error input").first.wait_for(state="visible", timeout=TIMEOUT_MS)  # auto: it counts
    assert page.locator("#ig-baseline input[value='mean']").is_checked()
    page.locator("#share-button").click()
    share_box = page.locator("#share-url textarea, #share-url input").first
    page.wait_for_function("el => el.value.includes('auto=1')", arg=share_box.element_handle(), timeout=TIMEOUT_MS)
    assert "hold_context=1" in share_box.input_value() and "baseline=mean" in share_box.input_value()
    page.locator("#preset-seed").click()
    page.wait_for_function("() => !document.querySelector('#ig-auto input')?.checked", timeout=TIMEOUT_MS)
    assert not checked["hold-context"].is_checked() and not checked["hide-special"].is_checked()
    assert page.locator("#ig-baseline input[value='zero']").is_checked()
    page.locator("#target-error").wait_for(state="hidden", timeout=TIMEOUT_MS)
    page.close()


def test_bad_input_shows_an_error_and_the_page_keeps_working(page_url, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(page_url)
    page.locator("#prompt textarea").fill("   ")
    page.locator("#analyze-button").click()
    page.get_by_text("prompt is empty").first.wait_for(timeout=TIMEOUT_MS)
    page.screenshot(path=str(ARTIFACTS / "error.png"))
    page.locator("#prompt textarea").fill("Which city is the capital of Germany?")
    page.locator("#analyze-button").click()
    page.locator("#highlight-gradient .token").first.wait_for(timeout=TIMEOUT_MS)
    assert "Germany" in page.locator("#highlight-gradient").inner_text()
    page.close()


def test_clicking_an_example_runs_it_and_caches_it(page_url, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(page_url)
    for _ in range(2):  # the first click computes and caches (lazily), the second reads the cache
        page.get_by_text("The capital of France is", exact=True).click()
        page.wait_for_function(
            "() => document.querySelector('#highlight-gradient')?.innerText.includes('France')",
            timeout=TIMEOUT_MS)
        assert page.locator("#prompt textarea").input_value() == "The capital of France is"
        page.get_by_text("Which city is the capital of Germany?", exact=True).click()
        page.wait_for_function(
            "() => document.querySelector('#highlight-gradient')?.innerText.includes('Germany')",
            timeout=TIMEOUT_MS)
    # A cached example's state is the id of its result, kept on the server: its figures and the clickable
    # answer are drawn from that result as from any other.
    page.locator("#bars-gradient img").first.wait_for(timeout=TIMEOUT_MS)
    before = page.locator("#bars-gradient img").first.get_attribute("src")
    page.get_by_text("The capital of France is", exact=True).click()
    page.wait_for_function(
        "(before) => { const image = document.querySelector('#bars-gradient img');"
        "  return image !== null && image.getAttribute('src') !== before; }", arg=before, timeout=TIMEOUT_MS)
    page.locator("#answer-tokens .token").first.wait_for(timeout=TIMEOUT_MS)
    page.close()



def test_clicking_an_answer_token_explains_it_and_the_link_keeps_it(page_url, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(page_url)
    # Picking a chat model ticks Chat template; picking the demo model again unticks it (no model is loaded).
    chat = page.locator("#chat input")
    assert not chat.is_checked()
    page.locator("#model input").click()
    page.get_by_role("option", name="SmolLM2-135M-Instruct", exact=False).click()
    page.wait_for_function("() => document.querySelector('#chat input').checked", timeout=TIMEOUT_MS)
    page.locator("#model input").click()
    page.get_by_role("option", name="demo model", exact=False).click()
    page.wait_for_function("() => !document.querySelector('#chat input').checked", timeout=TIMEOUT_MS)

    page.locator("#analyze-button").click()
    answer = page.locator("#answer-tokens .token")
    answer.nth(1).wait_for(timeout=TIMEOUT_MS)  # the demo model answers " Riga" and then its end token
    assert "Riga" in answer.nth(0).inner_text() and "highlighted" in answer.nth(0).get_attribute("class")
    answer.nth(1).click()
    explained = page.locator("#explained textarea, #explained input").first
    page.wait_for_function("el => el.value.includes('generated token 2')", arg=explained.element_handle(),
                           timeout=TIMEOUT_MS)
    page.wait_for_function(
        "() => document.querySelectorAll('#answer-tokens .token')[1]?.classList.contains('highlighted')",
        timeout=TIMEOUT_MS)
    assert "highlighted" not in answer.nth(0).get_attribute("class")

    # Tokens left out of the colour scaling are drawn grey (here BOS, the held first position, by default).
    first = page.locator("#highlight-gradient .score-token").first
    page.wait_for_function("el => !el.classList.contains('highlighted')", arg=first.element_handle(),
                           timeout=TIMEOUT_MS)
    assert float(first.evaluate("el => getComputedStyle(el).opacity")) < 1

    page.locator("#share-button").click()
    share_box = page.locator("#share-url textarea, #share-url input").first
    page.wait_for_function("el => el.value.includes('prompt=')", arg=share_box.element_handle(), timeout=TIMEOUT_MS)
    link = share_box.input_value()
    assert "target=generated" in link and "k=2" in link
    assert "chat=" not in link and "system=" not in link  # the default model with its own chat default
    opened = browser.new_page(viewport={"width": 1400, "height": 1000})
    opened.goto(link)
    explained = opened.locator("#explained textarea, #explained input").first
    opened.wait_for_function("el => el.value.includes('generated token 2')", arg=explained.element_handle(),
                             timeout=TIMEOUT_MS)
    opened.close()
    assert not errors, errors
    page.close()


@pytest.fixture(scope="module")
def chat_page_url(chat_folder):
    """The page on the tiny chat model (a chat model's page: its affordable IG defaults)."""
    _require_browser()
    from helpers import serve

    with serve(str(chat_folder), styled=True) as server:
        yield server.url


def wait_for_stage(page, words: str) -> str:
    """The progress line over the answer once it names a stage with `words` (the analysis runs)."""
    return page.wait_for_function(
        "(words) => { const line = document.querySelector('#answer-tokens .progress-level')?.textContent ?? '';"
        "  return line.includes(words) ? line : null; }", arg=words, timeout=TIMEOUT_MS).json_value()


def wait_until_idle(page) -> None:
    page.wait_for_function(
        "() => !document.querySelector('.generating, .pending')"
        "  && !document.querySelector('#answer-tokens .progress-level')", timeout=TIMEOUT_MS)


def test_a_chat_model_shows_each_method_as_it_is_done_and_stop_ends_the_analysis(chat_page_url, browser):
    import time

    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # A slow analysis on the tiny chat model: IG at its most fixed steps (auto steps, a chat model's default,
    # off), and in the answer map of 20 tokens too
    # (seconds here; a minute on SmolLM2). The deep link runs it.
    page.goto(f"{chat_page_url}?prompt=What+is+the+Capital+City+of+Latvia%3F&auto=0&steps=1000&answer_map_ig=1"
              "&max_new_tokens=20")
    # The first tab's highlighted tokens come while the analysis still runs (the answer map with IG), and the
    # progress line says which stage runs and how long is left.
    page.locator("#highlight-gradient .token").first.wait_for(timeout=TIMEOUT_MS)
    stage = wait_for_stage(page, "answer map")
    assert "Building the answer map" in stage and (" left" in stage or "not known yet" in stage), stage
    assert page.locator("#highlight-gradient .token").count() > 9  # (the tiny model's answer: blank lines)
    page.screenshot(path=str(ARTIFACTS / "streaming.png"), full_page=True)
    # A chat model's page starts with IG settings that converge (the deep link changed only the steps).
    page.locator("#settings").click()
    assert page.locator("#ig-baseline input[value='mean']").is_checked()
    assert page.locator("#hold-context input").is_checked() and page.locator("#answer-map-ig input").is_checked()

    # Stop: the analysis ends at once, what was done stays, and what was not says it was stopped.
    started = time.monotonic()
    page.locator("#stop-button").click()
    wait_until_idle(page)
    assert time.monotonic() - started < 5
    assert page.locator("#highlight-gradient .token").count() > 9
    page.locator("#tab-answer_map-button").click()
    page.get_by_text("was not computed: the analysis was stopped").first.wait_for(timeout=TIMEOUT_MS)
    assert page.locator(".toast-body").count() == 0  # no error (nor any other message) for a stop

    # The page serves the next request: the chat page's answer map without IG, which it offers with its cost.
    page.locator("#answer-map-ig input").uncheck()
    page.locator("#analyze-button").click()
    offer = page.locator("#answer-map-add-ig")
    offer.wait_for(state="visible", timeout=TIMEOUT_MS)
    wait_until_idle(page)
    assert page.locator("#answer-map-highlight .token").count() > 9
    assert offer.inner_text().startswith("Add Integrated Gradients to the answer map") and "about" in offer.inner_text()
    assert "left out of the answer map" in page.locator("#tab-answer_map").inner_text()
    page.screenshot(path=str(ARTIFACTS / "answer-map-offer.png"), full_page=True)
    # The offer ticks IG in the answer map and runs again; stopped again, the model still serves.
    offer.click()
    page.wait_for_function("() => document.querySelector('#answer-map-ig input')?.checked", timeout=TIMEOUT_MS)
    wait_for_stage(page, "answer map")
    page.locator("#stop-button").click()
    wait_until_idle(page)
    page.locator("#answer-map-ig input").uncheck()
    page.locator("#analyze-button").click()
    offer.wait_for(state="visible", timeout=TIMEOUT_MS)
    wait_until_idle(page)
    assert page.locator(".toast-body").count() == 0
    assert not errors, errors
    page.close()
