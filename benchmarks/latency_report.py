"""The '## Page latency' section of RESULTS.md from benchmarks/latency.py's raw numbers."""

from __future__ import annotations

import datetime as _dt
import os
import subprocess
import tempfile
from pathlib import Path

from .plan import median
from .summary import fmt_gib, fmt_s

HEADING = "## Page latency"
#: What the page and the API run: a change here is a change in what was measured.
SOURCES = ("app.py", "ui", "attribution")


def percentile(values, q: float) -> float | None:
    """Linear interpolation between the closest ranks (numpy's default); with few runs p95 ≈ the slowest."""
    values = sorted(v for v in values or [] if v is not None)
    if not values:
        return None
    position = (len(values) - 1) * q
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def git_state(root: Path) -> dict:
    def git(*args):
        try:  # only the trailing newline goes: a status line starts with a meaningful space
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30).stdout.rstrip("\n")
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "--short", "HEAD"), "subject": git("log", "-1", "--format=%s")[:100],
            "dirty": [line[3:] for line in git("status", "--porcelain", "--", *SOURCES).splitlines()]}


def ratio(a, b) -> str:
    return f"{a / b:.1f}×" if a is not None and b else "—"


def spread(values) -> str:
    return f"{fmt_s(median(values))} / {fmt_s(percentile(values, 0.95))}" if values else "—"


def rows(result: dict) -> list[str]:
    lines = []
    for prompt, runs in result["runs"].items():
        engine, api = median(runs["engine"]), median(runs["api"])
        page = {part: [run[part] for run in runs["browser"]] for part in ("load", "first", "complete", "compare")}
        first = median(page["first"])
        lines.append(
            f"| {result['key']} | {prompt} | {len(runs['api'])} | {fmt_s(engine)} | {spread(runs['api'])} | "
            f"**{ratio(api, engine)}** | {spread(page['first'])} | "
            f"{fmt_s(first - engine) if first is not None and engine is not None else '—'} | "
            f"{spread(page['complete'])} | {ratio(median(page['complete']), engine)} | {spread(page['compare'])} | "
            f"{fmt_s(median(page['load']))} |")
    return lines


def raw_runs(result: dict) -> str:
    parts = []
    for prompt, runs in result["runs"].items():
        triples = [f"{e:.3g}/{a:.3g}/{b['first']:.3g}/{b['complete']:.3g}"
                   for e, a, b in zip(runs["engine"], runs["api"], runs["browser"])]
        parts.append(f"{result['key']} “{prompt}”: " + ", ".join(triples))
    return "; ".join(parts)


def load_text(load: dict) -> str:
    average = ", ".join(f"{v:.2f}" for v in load["loadavg"]) if load.get("loadavg") else "unknown"
    busy = "; other busy processes: " + ", ".join(load["busy"]) if load.get("busy") else "; no other busy process"
    return f"load average {average}{busy}"


def render(meta: dict, results: list[dict]) -> str:
    machine, git = meta["machine"], meta["git"]
    when = _dt.datetime.fromtimestamp(meta["started"], _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    tree = ("working tree clean in " + ", ".join(SOURCES) if not git["dirty"]
            else "with uncommitted changes in " + ", ".join(git["dirty"]))
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v and k in ("torch", "transformers"))
    out = [HEADING, ""]
    if meta.get("note"):
        out += [meta["note"], ""]
    out += [
        f"Produced by `{meta['command']}` on {when} at commit `{git['commit']}` ({git['subject']}), {tree}; "
        f"took {meta['took_s']:.0f} s.",
        "",
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, memory {fmt_gib(machine['memory_bytes'])}, "
        f"{machine['gpu']}; Python {machine['python']}, {versions}; torch threads {meta['torch_threads']} in the "
        "benchmark process (the app subprocess starts with the same environment and defaults).",
        f"- Load before: {load_text(meta['load_before'])}. After: {load_text(meta['load_after'])}.",
        f"- Settings: the app's defaults (`{meta['defaults_module']}.DEFAULTS`, mapped to `attribution.analyze` as "
        "the app maps them; Chat template as the page and the API default it for the model):",
    ]
    for result in results:
        s = result["settings"]
        out.append(f"  {result['key']} = `{result['model']}`: {len(s['methods'])} methods, {s['max_new_tokens']} "
                   f"new tokens, IG {s['n_steps']} steps {s['baseline']} baseline {s['aggregation']}, score "
                   f"{s['score']}, hold_context {s['hold_context']}, all_targets {s['all_targets']}, trust "
                   f"{s['trust']}, chat {s['chat']}; loaded here in {fmt_s(result['load_s'])}, app answered HTTP "
                   f"after {fmt_s(result['server_ready_s'])}"
                   + (f"; API defaults differ: {'; '.join(result['api_default_mismatches'])}"
                      if result["api_default_mismatches"] else "; the API's defaults match"))
    out += [
        "",
        "Median / 95th percentile (linear interpolation; with few runs p95 is close to the slowest run). "
        "Warm-up excluded (one run of each path, first prompt); engine, API and browser runs alternate.",
        "",
        "| model | prompt | runs | engine | API round-trip | API / engine | first highlight | first − engine "
        "| page complete | complete / engine | Compare tab | page load |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        out += rows(result)
    out += [
        "",
        "- engine: `attribution.analyze(loaded, prompt, **settings)` in the benchmark process (model loaded once).",
        "- API round-trip: `gradio_client.Client(url).predict(prompt, api_name=\"/analyze\")` against "
        "`python app.py --port P --model NAME` (queue, generation, drawing, serialising, downloading the exports).",
        "- first highlight: from the click on `#analyze-button` (fresh page) until the open tab's scored prompt "
        "tokens (`#highlight-<tab> .score-token.highlighted`) and the answer (`#answer-tokens .token`) are shown; "
        "page complete: until `#bars-<tab> img` is loaded and visible and no `[data-testid=status-tracker]` is "
        "left without `.hide`; Compare tab: from the click on its tab button until `#compare-heatmap img` is "
        "shown; page load: `goto` until the Analyze button is visible. Timed in the page (`performance.now()`, "
        "checked every animation frame) in headless Debian chromium through Playwright.",
        "",
        "Every measured run (seconds, engine/API/first highlight/complete): "
        + "; ".join(raw_runs(result) for result in results) + ".",
    ]
    return "\n".join(out) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace the section (up to the next '## ' heading) or append it; the rest of the file stays as it is.
    Written to a temporary file beside it, then os.replace."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == HEADING), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".RESULTS-", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(new)
        if path.exists():
            os.chmod(temporary, path.stat().st_mode & 0o777)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
