#!/usr/bin/env python
"""Benchmark: the project's `attribution.analyze` against the seed notebook's way, same model, same run.

    python benchmarks/run.py                      # demo, SmolLM-135M shape, Llama-3.2-1B shape (~16 min on 2 quiet cores)
    python benchmarks/run.py --quick              # tiny + demo only, a few minutes: a smoke test
    python benchmarks/run.py --models smollm-135m --repeats 5 --output /tmp/RESULTS.md

What is timed (CPU, fp32, random weights of the real shapes, built offline by benchmarks/models.py):

* full analysis = tokenize + generate 20 greedy tokens + gradient + attention + IG-50 (zero baseline,
  L2 aggregation, the greedy next token as target), (a) through `attribution.analyze` and, stage by
  stage, through `attribution.generate` and `attribution.METHODS[...]` with an `AttributionRequest`;
  (b) the notebook's way (benchmarks/notebook_reference.py: eager attention, parameters not frozen,
  full-vocabulary logits, IG with internal_batch_size=1). Both run in one process on the same weights,
  alternating, after a warm-up; medians and the ratio are reported, and both runs' scores are checked
  against each other (relative L2 error ≤ 1e-4 gradient/attention, ≤ 1e-3 IG).
* Inseq's IG on the same weights with matching settings (logit target, zero baseline, 50 steps), when
  Inseq is installed (`pip install -r requirements-bench.txt`).
* scaling with prompt length (8 → 512 tokens), IG steps (16 → 128) and the answer map (20 targets vs 1),
  each case in a fresh subprocess so that its peak resident memory (VmHWM) is its own.

Every model comparison and every scaling case runs in its own subprocess (benchmarks/worker.py), so
one model's weights never sit in memory while another is measured.

The parts: plan.py (what runs), worker.py (one measurement per process), project.py (the project's
way, public API only), peers.py (the notebook's way, Inseq), hardware.py (the machine and its
limits), summary.py, report.py and plots.py (RESULTS.md and scaling.png from the raw numbers).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("SPACE_ID", None)

from benchmarks import models as bench_models  # noqa: E402
from benchmarks.hardware import machine_info, machine_load  # noqa: E402
from benchmarks.plan import log, merge_runs, plan_runs  # noqa: E402
from benchmarks.plots import plot_scaling  # noqa: E402
from benchmarks.report import evaluate_targets, render_markdown  # noqa: E402
from benchmarks.summary import fmt_gib, fmt_s, summarize_comparison, was_shared  # noqa: E402
from benchmarks.worker import json_default, run_worker  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=None,
                        help=f"comma-separated, from: {', '.join(bench_models.MODEL_NAMES)} "
                             "(default demo,smollm-135m,llama-3.2-1b; --quick: tiny,demo)")
    parser.add_argument("--quick", action="store_true", help="tiny + demo only, short scaling on tiny (a few minutes)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="measured alternating runs per model (default 5 small, 3 SmolLM, 1 for the 1B shape)")
    parser.add_argument("--scaling-model", default=None, help="model for the scaling sweeps (default smollm-135m; "
                        "--quick: tiny)")
    parser.add_argument("--no-scaling", action="store_true", help="only the project-vs-notebook comparisons")
    parser.add_argument("--no-inseq", action="store_true", help="skip the Inseq peer row")
    parser.add_argument("--output", type=Path, default=None,
                        help="markdown report (default benchmarks/RESULTS.md; --quick: /tmp/bench-quick/RESULTS.md)")
    parser.add_argument("--json", type=Path, default=Path(tempfile.gettempdir()) / "attribution-bench-results.json",
                        help="every raw number (default: /tmp/attribution-bench-results.json)")
    parser.add_argument("--cache-dir", type=Path, default=bench_models.DEFAULT_CACHE,
                        help="where random-weight models are built once and kept")
    parser.add_argument("--ig512", choices=("sample", "full"), default="sample",
                        help="Llama-3.2-1B IG-50 at 512 tokens: 'sample' runs the first 2 batches of the engine's "
                             "batch size (same peak memory, time scaled; minutes) — 'full' runs all 50 steps "
                             "(~20+ min on 2 cores)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads in every worker (default: torch's own choice, one per core)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed per worker process")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="re-render RESULTS.md and scaling.png from a saved raw-numbers file, without running")
    parser.add_argument("--merge-json", type=Path, action="append", default=[],
                        help="with --from-json: pool the measured runs of another saved run into the same model rows "
                             "(e.g. extra 1B repeats taken later); repeatable")
    args = parser.parse_args(argv)
    default_models = "tiny,demo" if args.quick else "demo,smollm-135m,llama-3.2-1b"
    args.models = [m.strip() for m in (args.models or default_models).split(",") if m.strip()]
    unknown = [m for m in args.models if m not in bench_models.MODEL_NAMES]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(bench_models.MODEL_NAMES)}")
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    args.scaling_model = args.scaling_model or ("tiny" if args.quick else "smollm-135m")
    if args.scaling_model not in bench_models.MODEL_NAMES:
        parser.error(f"unknown --scaling-model {args.scaling_model}")
    if args.output is None:
        args.output = Path("/tmp/bench-quick/RESULTS.md") if args.quick else REPO_ROOT / "benchmarks" / "RESULTS.md"
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.from_json:
        report = json.loads(args.from_json.read_text(encoding="utf-8"))
        for extra in args.merge_json:
            merge_runs(report, json.loads(extra.read_text(encoding="utf-8")))
        return write_report(report, args)
    started = time.perf_counter()
    command = "python benchmarks/run.py" + ("" if not argv else " " + " ".join(shlex.quote(a) for a in argv))
    machine, load = machine_info(), machine_load()
    log(f"machine: {machine['cpu']}, {machine['cores']} cores, {fmt_gib(machine['memory_bytes'])}, {machine['gpu']}")
    log(f"load average {load['loadavg']}; other busy processes: {load['busy'] or 'none'}")
    comparisons_plan, cases_plan = plan_runs(args)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()

    folders: dict[str, Path | str] = {}
    for name in dict.fromkeys([c["model"] for c in comparisons_plan] + [c["model"] for c in cases_plan]):
        try:
            folders[name] = bench_models.model_folder(name, args.cache_dir, log=log)
        except FileNotFoundError as error:
            folders[name] = f"not available: {error}"
            log(f"  {name}: {folders[name]}")

    comparisons, cases = [], []

    def save_partial() -> None:  # so a crash late in a long run keeps what was measured
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"partial": True, "command": command, "machine": machine, "load": load,
                                         "comparisons": comparisons, "cases": cases},
                                        indent=1, default=json_default), encoding="utf-8")

    for spec in comparisons_plan:
        folder = folders[spec["model"]]
        if isinstance(folder, str):
            comparisons.append({**spec, "error": folder})
            continue
        log(f"\n== {spec['label']}: project vs notebook ({spec['repeats']} measured run(s) each"
            + (f", {spec['threads']} torch thread(s)" if spec.get("threads") else "") + ") ==")
        result = run_worker("compare", {**spec, "folder": str(folder)}, args.timeout)
        if "error" in result:
            log(f"  failed: {result['error']}")
        else:
            s = summarize_comparison(result)
            log(f"  median: analyze {fmt_s(s['analyze'])}, notebook {fmt_s(s['notebook']['total'])} -> "
                f"{s['ratio']:.2f}× faster; scores equal: {s['scores_equal']}")
        comparisons.append(result)
        save_partial()

    if cases_plan:
        log("\n== scaling and memory (each case in a fresh process) ==")
    for spec in cases_plan:
        folder = folders[spec["model"]]
        if isinstance(folder, str):
            cases.append({**spec, "error": folder})
            continue
        label = (f"{spec['model']} {spec['kind']} {spec['prompt_tokens']} tokens, IG-{spec['n_steps']}"
                 + (f", {spec['n_targets']} targets" if "n_targets" in spec else ""))
        result = run_worker("case", {**spec, "folder": str(folder)}, args.timeout)
        if "error" in result or "unavailable" in result:
            log(f"  {label}: {result.get('error') or result.get('unavailable')}")
        else:
            log(f"  {label}: " + ", ".join(f"{k} {fmt_s(v)}" for k, v in result["seconds"].items())
                + f"; peak RSS {fmt_gib(result['peak_rss_bytes'])} (weights {fmt_gib(result['weight_bytes'])})")
        cases.append(result)
        save_partial()

    load_after = machine_load()
    report = {
        "command": command, "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine, "load": load, "load_after": load_after,
        "threads": next((c.get("threads") for c in comparisons + cases if c.get("threads")), None),
        "comparisons": comparisons, "cases": cases, "elapsed": time.perf_counter() - started,
        "output": str(args.output), "json": str(args.json),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1, default=json_default), encoding="utf-8")
    return write_report(report, args)


def write_report(report: dict, args) -> int:
    """Targets, markdown and plot from the raw numbers (also `--from-json` to re-render a saved run)."""
    report["shared_machine"] = was_shared(report)
    comparisons, cases = report["comparisons"], report["cases"]
    comparisons_by_model = {c.get("label", c["model"]): c for c in comparisons}
    targets = evaluate_targets(comparisons_by_model, cases, args)
    report["targets"] = targets
    args.output.parent.mkdir(parents=True, exist_ok=True)
    plot_path = args.output.parent / "scaling.png"
    report.pop("plot", None)
    note = "machine shared with other work during the run: times are noisy" if report.get("shared_machine") else ""
    if plot_scaling(cases, plot_path, note):
        report["plot"] = plot_path.name
    args.output.write_text(render_markdown(report), encoding="utf-8")

    log("\n== targets ==")
    for target, verdict, evidence in targets:
        log(f"  {verdict:>13}  {target}  [{evidence}]")
    log(f"\nwrote {args.output}" + (f" and {plot_path}" if report.get("plot") else "")
        + f" (raw numbers: {report.get('json')}); the run took {fmt_s(report['elapsed'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
