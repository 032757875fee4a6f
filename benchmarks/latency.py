#!/usr/bin/env python
"""Page latency: the engine's own time against what an API caller and a browser user wait for.

    python benchmarks/latency.py                                  # demo (10 repeats) + SmolLM2 (3)
    python benchmarks/latency.py --models demo --repeats 5        # a few minutes
    python benchmarks/latency.py --models demo,smollm2 --repeats 5,2 --write --note "before ..."

For each model, in this one process and alternating, after one warm-up of each:

* engine: `attribution.analyze(attribution.load_model(name), prompt, ...)` with the app's default
  settings (read from the app's DEFAULTS, mapped to the engine's arguments as the app maps them);
* API: `gradio_client.Client(url).predict(prompt, api_name="/analyze")` against `python app.py --port P
  --model NAME` started here as a subprocess (killed on exit, also on errors);
* browser: headless Debian chromium via Playwright; a fresh page per run, click #analyze-button, then
  (a) first highlight: the open tab's scored prompt tokens and the answer tokens are shown, (b) complete:
  the open tab's bar chart image is shown and no progress indicator is left, (c) the Compare tab's
  heatmap shown after clicking its tab button. Times are taken in the page (performance.now(), from the
  click event to the first animation frame where the condition holds).

The report (benchmarks/latency_report.py) prints a markdown table; --write replaces or adds the section
"## Page latency" in benchmarks/RESULTS.md and nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("SPACE_ID", None)

from benchmarks import latency_report  # noqa: E402

MODELS = {"demo": None, "smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}  # None: the app's default model
DEFAULT_REPEATS = {"demo": 10, "smollm2": 3}
PROMPTS = ("What is the Capital City of Latvia?", "Why is the sky blue?")
CHROMIUM = "/usr/bin/chromium"
#: app DEFAULTS name -> attribution.analyze argument (as the app's analyze passes them).
ENGINE_ARGUMENTS = {"methods": "methods", "max_new_tokens": "max_new_tokens", "ig_steps": "n_steps",
                    "ig_baseline": "baseline", "aggregation": "aggregation", "score": "score",
                    "hold_context": "hold_context", "target_error": "target_error", "all_targets": "all_targets",
                    "trust": "trust"}
NEEDED = (*ENGINE_ARGUMENTS, "target", "contrast_text", "system", "ig_auto")

# In-page conditions (gradio 6.31's DOM). HighlightedText renders each token as span.token.score-token,
# with .highlighted (and a background colour) when it has a score; a Plot renders <img> in
# div[data-testid=matplotlib]; a progress indicator is a [data-testid=status-tracker] without .hide; a
# Tab's elem_id names its panel, its button is [role=tab][aria-controls=<elem_id>].
SHOWN_IMG = "(s) => { const i = document.querySelector(s); return !!i && i.complete && i.naturalWidth > 0 && i.offsetParent !== null; }"
NO_PROGRESS = "() => ![...document.querySelectorAll('[data-testid=status-tracker]')].some(e => !e.classList.contains('hide'))"
FIRST_JS = """(tab) => document.querySelector(`#highlight-${tab} .score-token.highlighted`)
    && document.querySelector('#answer-tokens .token') ? performance.now() : false"""
COMPLETE_JS = f"(tab) => ({SHOWN_IMG})(`#bars-${{tab}} img`) && ({NO_PROGRESS})() ? performance.now() : false"
COMPARE_JS = f"() => ({SHOWN_IMG})('#compare-heatmap img') ? performance.now() : false"
MARK_CLICK_JS = """(selector) => { window.__clicked = null; document.querySelector(selector).addEventListener(
    'click', () => { window.__clicked = performance.now(); }, {capture: true, once: true}); }"""
OPEN_TAB = "#method-tabs [role=tab][aria-selected=true]"


def log(message: str) -> None:
    print(f"[latency {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def app_defaults() -> tuple[dict, str]:
    """The page's default settings (`ui.settings.DEFAULTS`) and where they came from."""
    from ui.settings import DEFAULTS

    missing = [key for key in NEEDED if key not in DEFAULTS]
    if missing:
        raise SystemExit(f"latency.py: ui.settings.DEFAULTS lacks {', '.join(missing)} (needed to run the engine "
                         "with the app's settings; update ENGINE_ARGUMENTS in benchmarks/latency.py)")
    return dict(DEFAULTS), "ui.settings"


def engine_settings(defaults: dict, model: str) -> dict:
    """attribution.analyze's keyword arguments for what the app runs with its defaults on `model`."""
    from ui.inputs import chat_default  # the page's Chat template default for a model

    if defaults["target"] != "next":
        raise SystemExit(f"latency.py: the app's default target is {defaults['target']!r}; only 'next' is mapped")
    settings = {engine: defaults[key] for key, engine in ENGINE_ARGUMENTS.items()}
    settings["methods"] = list(settings["methods"])
    if defaults["ig_auto"]:
        settings["n_steps"] = "auto"
    chat = chat_default(model)
    settings.update(target=None, contrast=defaults["contrast_text"] or None, chat=chat,
                    system=(defaults["system"] or None) if chat else None)
    settings["all_targets"] = settings["all_targets"] and settings["max_new_tokens"] != 0
    return settings


def check_api_defaults(client, defaults: dict, passed: dict) -> list[str]:
    """Where /analyze's parameter defaults (what predict(prompt, **passed) leaves to them) differ from the
    engine's settings."""
    expected = {key: value for key, value in defaults.items() if key not in passed}
    info = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/analyze"]["parameters"]
    return [f"{p['parameter_name']}: API {p.get('parameter_default')!r} vs app {expected[p['parameter_name']]!r}"
            for p in info if p["parameter_name"] in expected and p.get("parameter_default") != expected[p["parameter_name"]]]


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no obstacle
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_server(model: str, port: int, log_path: Path) -> subprocess.Popen:
    if not port_free(port):
        raise SystemExit(f"latency.py: port {port} is in use; pass --port")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(log_path, "w") as log_file:
        return subprocess.Popen([sys.executable, str(REPO_ROOT / "app.py"), "--port", str(port), "--model", model],
                                cwd=REPO_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)


def wait_http(url: str, server: subprocess.Popen, log_path: Path, timeout_s: float = 600) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        if server.poll() is not None:
            raise SystemExit(f"latency.py: the app exited ({server.returncode}) before answering; its log "
                             f"{log_path} ends:\n{log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return time.perf_counter() - start
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"latency.py: {url} did not answer within {timeout_s:.0f} s (log: {log_path})")


def stop_server(server: subprocess.Popen | None) -> None:
    if server is None or server.poll() is not None:
        return
    try:
        os.killpg(server.pid, signal.SIGTERM)  # its own session: the app and anything it started
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=15)
    except ProcessLookupError:
        pass


def page_times(browser, url: str, prompt: str, timeout_ms: float) -> dict:
    """One fresh page: load, type the prompt, click Analyze; seconds to load, first highlight, complete,
    and the Compare tab's figure (from its button's click)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        start = time.perf_counter()
        page.goto(url)
        page.wait_for_selector("#analyze-button", state="visible", timeout=timeout_ms)
        load = time.perf_counter() - start
        page.fill("#prompt textarea", prompt)
        tab = page.get_attribute(OPEN_TAB, "data-tab-id")
        page.evaluate(MARK_CLICK_JS, "#analyze-button")
        page.click("#analyze-button")
        first = page.wait_for_function(FIRST_JS, arg=tab, polling="raf", timeout=timeout_ms).json_value()
        complete = page.wait_for_function(COMPLETE_JS, arg=tab, polling="raf", timeout=timeout_ms).json_value()
        clicked = page.evaluate("() => window.__clicked")
        compare_button = "[role=tab][aria-controls=tab-compare]"
        page.evaluate(MARK_CLICK_JS, compare_button)
        page.click(compare_button)
        shown = page.wait_for_function(COMPARE_JS, polling="raf", timeout=timeout_ms).json_value()
        compare_clicked = page.evaluate("() => window.__clicked")
        return {"load": load, "first": (first - clicked) / 1000, "complete": (complete - clicked) / 1000,
                "compare": (shown - compare_clicked) / 1000, "tab": tab}
    finally:
        page.close()


def timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def measure_model(key: str, model: str, repeats: int, prompts: list[str], port: int, defaults: dict,
                  browser, timeout_s: float, max_new_tokens: int | None = None) -> dict:
    import attribution
    from gradio_client import Client

    if max_new_tokens is not None:  # fewer generated tokens (a smaller answer map) for a slow model
        defaults = {**defaults, "max_new_tokens": max_new_tokens}
    settings = engine_settings(defaults, model)
    # The API is called with the settings the page starts with for this model (its chat default, and
    # --max-new-tokens); the page gets the latter from a deep link (without a prompt: nothing autoruns).
    api_settings = {"chat": settings["chat"], "max_new_tokens": defaults["max_new_tokens"]}
    query = "" if max_new_tokens is None else f"?max_new_tokens={max_new_tokens}"
    log(f"{key}: loading {model} here")
    load_s = timed(attribution.load_model, model)
    loaded = attribution.load_model(model)
    url = f"http://127.0.0.1:{port}/"
    log_path = Path(tempfile.gettempdir()) / f"attribution-latency-{key}-{port}.log"
    server = None
    try:
        server = start_server(model, port, log_path)
        ready_s = wait_http(url, server, log_path)
        log(f"{key}: app answering after {ready_s:.1f} s (log {log_path})")
        client = Client(url, verbose=False)
        mismatches = check_api_defaults(client, defaults, api_settings)
        if mismatches:
            log(f"{key}: WARNING the API's defaults differ from the engine's settings: {'; '.join(mismatches)}")
        runs = {prompt: {"engine": [], "api": [], "browser": []} for prompt in prompts}
        steps = {
            "engine": lambda p: timed(lambda: attribution.analyze(loaded, p, **settings)),
            "api": lambda p: timed(lambda: client.predict(p, **api_settings, api_name="/analyze")),
            "browser": lambda p: page_times(browser, url + query, p, timeout_s * 1000),
        }
        for step in steps.values():  # warm-up: every path once, on the first prompt, not recorded
            step(prompts[0])
        log(f"{key}: warmed up")
        for repeat in range(repeats):
            order = list(steps) if repeat % 2 == 0 else list(reversed(steps))  # alternate the order
            for prompt in prompts:
                for name in order:
                    runs[prompt][name].append(steps[name](prompt))
            last = {p: {n: r[n][-1] for n in ("engine", "api")} for p, r in runs.items()}
            log(f"{key}: repeat {repeat + 1}/{repeats} {json.dumps(last, default=lambda v: round(v, 3))}")
        return {"key": key, "model": model, "repeats": repeats, "settings": settings, "api_settings": api_settings,
                "load_s": load_s,
                "server_ready_s": ready_s, "api_default_mismatches": mismatches, "runs": runs}
    finally:
        stop_server(server)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="demo,smollm2", help=f"comma-separated, from: {', '.join(MODELS)}")
    parser.add_argument("--repeats", default=None,
                        help="measured runs per model and prompt: N for every model, or one N per model in --models "
                             f"order (default {', '.join(f'{k} {v}' for k, v in DEFAULT_REPEATS.items())})")
    parser.add_argument("--port", type=int, default=7990, help="port for the app subprocess (default 7990)")
    parser.add_argument("--prompts", default=None,
                        help="prompts separated by '|' (default: " + " | ".join(PROMPTS) + ")")
    parser.add_argument("--max-new-tokens", default=None,
                        help="generated tokens per model instead of the app's default: N, or one N per model in "
                             "--models order ('-' keeps the default; write it as --max-new-tokens=-,4)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds one page wait may take (default 600)")
    parser.add_argument("--write", action="store_true", help="replace/add '## Page latency' in --results")
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "benchmarks" / "RESULTS.md")
    parser.add_argument("--note", default=None, help="a line to print under the section heading")
    parser.add_argument("--json", type=Path, default=Path(tempfile.gettempdir()) / "attribution-latency.json",
                        help="every raw number (default /tmp/attribution-latency.json)")
    parser.add_argument("--report-only", type=Path, default=None, metavar="JSON",
                        help="print (and with --write, write) the section from a run's --json file; measure nothing")
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown or not args.models:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    counts = [int(n) for n in args.repeats.split(",")] if args.repeats else None
    if counts and len(counts) not in (1, len(args.models)) or any(n < 1 for n in counts or []):
        parser.error("--repeats: one positive N, or one per model")
    args.repeats = {m: (counts[0] if len(counts) == 1 else counts[i]) if counts else DEFAULT_REPEATS[m]
                    for i, m in enumerate(args.models)}
    tokens = [None if n.strip() == "-" else int(n) for n in args.max_new_tokens.split(",")] if args.max_new_tokens else None
    if tokens and len(tokens) not in (1, len(args.models)):
        parser.error("--max-new-tokens: one N, or one per model")
    args.max_new_tokens = {m: (tokens[0] if len(tokens) == 1 else tokens[i]) if tokens else None
                           for i, m in enumerate(args.models)}
    args.prompts = [p.strip() for p in args.prompts.split("|") if p.strip()] if args.prompts else list(PROMPTS)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.report_only:  # the section again from a run's raw numbers, nothing measured
        raw = json.loads(args.report_only.read_text())
        if args.note is not None:
            raw["meta"]["note"] = args.note
        return report(raw["meta"], raw["results"], args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` stops the app subprocess
    defaults, defaults_module = app_defaults()
    import attribution
    import torch
    from playwright.sync_api import sync_playwright

    from benchmarks.hardware import machine_info, machine_load

    started = time.time()
    words = list(sys.argv[1:] if argv is None else argv)
    words = ["…" if i and words[i - 1] == "--note" else w for i, w in enumerate(words)]  # the note is printed
    meta = {"command": "python benchmarks/latency.py " + shlex.join(words),
            "started": started, "defaults_module": defaults_module, "machine": machine_info(),
            "torch_threads": torch.get_num_threads(), "load_before": machine_load(),
            "git": latency_report.git_state(REPO_ROOT), "prompts": args.prompts, "note": args.note}
    results = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            for key in args.models:
                model = MODELS[key] or attribution.default_model_name()
                results.append(measure_model(key, model, args.repeats[key], args.prompts, args.port, defaults,
                                             browser, args.timeout, args.max_new_tokens[key]))
        finally:
            browser.close()
    meta.update(load_after=machine_load(), took_s=time.time() - started)
    args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=str))
    log(f"raw numbers: {args.json}; took {meta['took_s']:.0f} s")
    return report(meta, results, args)


def report(meta: dict, results: list[dict], args) -> int:
    section = latency_report.render(meta, results)
    print(section)
    if args.write:
        latency_report.write_section(args.results, section)
        log(f"wrote the '## Page latency' section of {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
