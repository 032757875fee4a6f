"""One measurement in a fresh process: a project-vs-notebook comparison on one model, or one scaling
case, so that one model's weights never sit in memory while another is measured and each case's
peak resident memory (VmHWM) is its own.

    python -m benchmarks.worker --worker compare|case --spec JSON --result-file PATH   (run by run.py)
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import models as bench_models
from .hardware import HARDWARE_LIMIT_MIN_WEIGHTS, measure_hardware, package_version, proc_status_bytes, reset_peak_rss
from .peers import (
    check_scores, inseq_unavailable_reason, load_notebook_model, make_inseq, notebook_tokenizer, run_inseq,
    run_notebook, shared_weight_view,
)
from .plan import GIB, STAGES, log, relative_error
from .project import (
    answer_map, answer_map_by_loop, answer_map_check, chosen_batch_size, ig_alone, load_project, project_analyze,
    project_staged, tokenize,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


def weights_info(model) -> dict:
    return {"parameters": bench_models.parameter_count(model), "weight_bytes": bench_models.weight_bytes(model)}


def worker_compare(spec: dict) -> dict:
    """Project vs notebook (vs Inseq) on one model: warm-up, then alternating measured runs."""
    import torch

    folder = Path(spec["folder"])
    n_steps, new_tokens, repeats = spec["n_steps"], spec["max_new_tokens"], spec["repeats"]
    loaded = load_project(folder)
    info = weights_info(loaded.model)
    log(f"  {spec['model']}: {info['parameters']:,} parameters ({info['weight_bytes'] / GIB:.2f} GiB fp32), "
        f"torch threads {torch.get_num_threads()}")
    prompt = spec.get("prompt") or bench_models.prompt_with_tokens(loaded.tokenizer, spec["prompt_tokens"])
    n_tokens = int(tokenize(loaded, prompt).numel())
    result = {"model": spec["model"], "label": spec.get("label", spec["model"]), **info, "prompt": prompt,
              "n_tokens": n_tokens, "n_steps": n_steps,
              "max_new_tokens": new_tokens, "repeats": repeats, "threads": torch.get_num_threads(),
              "ig_batch_size": chosen_batch_size(loaded, n_tokens, n_steps)}
    notebook_model = shared_weight_view(loaded.model, "eager")
    tokenizer = notebook_tokenizer(folder)

    # Warm-up: every code path once (short settings for big models: kernels and allocator warm all the same).
    warm_steps, warm_tokens = (n_steps, new_tokens) if spec["warmup"] == "full" else (4, 3)
    log(f"  warm-up ({spec['warmup']}: IG-{warm_steps}, {warm_tokens} new tokens) ...")
    mark = time.perf_counter()
    project_analyze(loaded, prompt, warm_steps, warm_tokens)
    project_staged(loaded, prompt, warm_steps, warm_tokens)
    run_notebook(notebook_model, tokenizer, prompt, warm_steps, warm_tokens)
    result["warmup_seconds"] = time.perf_counter() - mark
    if info["weight_bytes"] >= HARDWARE_LIMIT_MIN_WEIGHTS:
        result["hardware"] = measure_hardware(loaded, n_tokens, n_steps)

    analyze_times, staged, notebook, checks = [], {k: [] for k in (*STAGES, "total")}, \
        {k: [] for k in (*STAGES, "total")}, []
    cpu_use = {"project": [], "notebook": []}  # CPU seconds per wall second: ≈ threads when the cores are ours
    for repeat in range(repeats):
        order = ("project", "notebook") if repeat % 2 == 0 else ("notebook", "project")
        for side in order:
            if side == "project":
                cpu = time.process_time()
                analysis, seconds = project_analyze(loaded, prompt, n_steps, new_tokens)
                analyze_times.append(seconds)
                cpu_use["project"].append((time.process_time() - cpu) / seconds)
                _, stage_seconds = project_staged(loaded, prompt, n_steps, new_tokens)
                for key, value in stage_seconds.items():
                    staged[key].append(value)
                log(f"    run {repeat + 1}/{repeats} project: analyze {seconds:.3f} s, staged "
                    + ", ".join(f"{k} {v:.3f}" for k, v in stage_seconds.items()))
            else:
                cpu = time.process_time()
                notebook_results, stage_seconds = run_notebook(notebook_model, tokenizer, prompt, n_steps, new_tokens)
                cpu_use["notebook"].append((time.process_time() - cpu) / stage_seconds["total"])
                for key, value in stage_seconds.items():
                    notebook[key].append(value)
                log(f"    run {repeat + 1}/{repeats} notebook: " + ", ".join(f"{k} {v:.3f}" for k, v in stage_seconds.items()))
        check = check_scores(analysis, notebook_results)
        checks.append(check)
        log("    scores: " + ", ".join(f"{k} rel.err {v:.2e}" for k, v in check["relative_error"].items())
            + f"; same target: {check['target_equal']}, same generation: {check['generated_equal']}"
            + f" -> {'OK' if check['ok'] else 'MISMATCH'}")
    result.update(analyze=analyze_times, staged=staged, notebook=notebook, checks=checks, cpu_use=cpu_use,
                  target_id=int(analysis.target.id), target_text=analysis.target.text,
                  ig_convergence_delta=float(analysis.methods["integrated_gradients"].convergence_delta))
    project_ig = analysis.methods["integrated_gradients"].scores
    del notebook_model
    gc.collect()

    if spec.get("inseq"):
        result["inseq"] = worker_inseq_part(loaded, folder, prompt, analysis, project_ig, n_steps, spec)
    result["peak_rss_bytes"] = proc_status_bytes("VmHWM")
    return result


def worker_inseq_part(loaded, folder, prompt, analysis, project_ig, n_steps, spec) -> dict:
    reason = inseq_unavailable_reason()
    if reason:
        log(f"  Inseq: {reason}")
        return {"unavailable": reason}
    try:
        import inseq

        version = package_version("inseq")
        # As `inseq.load_model(name)` would hold it: default (sdpa) attention, parameters not frozen.
        view = shared_weight_view(loaded.model, loaded.model.config._attn_implementation)
        tokenizer = notebook_tokenizer(folder)
        model = make_inseq(view, tokenizer)
        target_text = tokenizer.decode([analysis.target.id])
        batch_size = min(n_steps, chosen_batch_size(loaded, analysis.n_tokens, n_steps))
        warm_steps = n_steps if spec["warmup"] == "full" else 4
        run_inseq(model, prompt, target_text, warm_steps, min(batch_size, warm_steps))
        times = []
        for repeat in range(spec["repeats"]):
            scores, seconds, output = run_inseq(model, prompt, target_text, n_steps, batch_size)
            times.append(seconds)
            log(f"    run {repeat + 1}/{spec['repeats']} Inseq IG-{n_steps}: {seconds:.3f} s")
        error = relative_error(scores, project_ig)
        target_ids = [token.id for token in output.sequence_attributions[0].target]
        same_target = int(target_ids[-1]) == int(analysis.target.id)
        log(f"    Inseq IG vs project IG: rel.err {error:.2e}, same target: {same_target}")
        return {"version": version or getattr(inseq, "__version__", "?"), "ig": times, "batch_size": batch_size,
                "relative_error": error, "target_equal": same_target}
    except Exception as error:  # noqa: BLE001 — a peer's failure must not sink the benchmark
        traceback.print_exc()
        first = (str(error).splitlines() or [""])[0][:300]
        return {"unavailable": f"not available: Inseq failed on this model ({type(error).__name__}: {first})"}


def worker_case(spec: dict) -> dict:
    """One scaling case in this fresh process: load, warm up briefly, reset the RSS peak, measure."""
    import torch

    folder = Path(spec["folder"])
    kind = spec["kind"]
    load_started = time.perf_counter()
    if kind == "notebook":
        model = load_notebook_model(folder)
        tokenizer = notebook_tokenizer(folder)
        info = weights_info(model)
    else:
        loaded = load_project(folder)
        tokenizer = loaded.tokenizer
        info = weights_info(loaded.model)
    load_seconds = time.perf_counter() - load_started
    prompt = bench_models.prompt_with_tokens(tokenizer, spec["prompt_tokens"])
    n_tokens = len(tokenizer(prompt)["input_ids"])
    n_steps, new_tokens = spec["n_steps"], spec["max_new_tokens"]
    result = {**spec, **info, "n_tokens": n_tokens, "load_seconds": load_seconds,
              "load_peak_rss_bytes": proc_status_bytes("VmHWM"), "threads": torch.get_num_threads()}

    # Brief warm-up on a short prompt (every code path, tiny settings), so one-time costs are not timed.
    short = bench_models.prompt_with_tokens(tokenizer, min(8, spec["prompt_tokens"]))
    if kind == "notebook":
        run_notebook(model, tokenizer, short, 2, 2)
        model.zero_grad(set_to_none=True)  # a fresh notebook kernel has no parameter gradients yet
    else:
        project_analyze(loaded, short, 2, 2)
        result["ig_batch_size"] = chosen_batch_size(loaded, n_tokens, n_steps, spec.get("n_targets", 1))
    gc.collect()
    result["rss_before_bytes"] = proc_status_bytes("VmRSS")
    result["peak_reset"] = reset_peak_rss()
    cpu_started, wall_started = time.process_time(), time.perf_counter()

    if kind == "analyze":
        _, seconds = project_staged(loaded, prompt, n_steps, new_tokens)
    elif kind == "notebook":
        _, seconds = run_notebook(model, tokenizer, prompt, n_steps, new_tokens)
    elif kind == "ig":
        seconds, notes = ig_alone(loaded, prompt, n_tokens, n_steps, spec.get("sample_batches"))
        result.update(notes)
    elif kind == "answer_map_loop":
        seconds = answer_map_by_loop(loaded, prompt, spec["n_targets"], n_steps)
    elif kind == "answer_map":
        analysis, seconds = answer_map(loaded, prompt, spec["n_targets"], n_steps)
    else:
        raise ValueError(f"unknown case kind {kind!r}")
    result["seconds"] = seconds
    result["peak_rss_bytes"] = proc_status_bytes("VmHWM")
    result["cpu_use"] = (time.process_time() - cpu_started) / max(time.perf_counter() - wall_started, 1e-9)
    if kind == "answer_map":  # same numbers as one IG call per target? (not timed)
        result["check"] = answer_map_check(loaded, analysis, n_steps)
    return result


def worker_main(kind: str, spec_json: str, result_path: str) -> int:
    """Measure one spec (kind "compare" or "case") and write its result as JSON to `result_path`."""
    import torch
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    import warnings

    warnings.filterwarnings("ignore")
    spec = json.loads(spec_json)
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    try:
        result = worker_compare(spec) if kind == "compare" else worker_case(spec)
    except Exception as error:  # noqa: BLE001
        traceback.print_exc()
        result = {**spec, "error": f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:300]}"}
    Path(result_path).write_text(json.dumps(result, default=json_default), encoding="utf-8")
    return 0


def json_default(value):
    """numpy scalars and arrays as plain JSON; anything else as its string."""
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:
        pass
    return str(value)


def run_worker(kind: str, spec: dict, timeout: float, python: str = sys.executable) -> dict:
    """Run one worker in a fresh interpreter; a crash or kill (e.g. out of memory) becomes an error row."""
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as handle:
        result_path = handle.name
    command = [python, "-m", "benchmarks.worker", "--worker", kind, "--spec", json.dumps(spec),
               "--result-file", result_path]
    started = time.perf_counter()
    try:
        completed = subprocess.run(command, timeout=timeout, cwd=REPO_ROOT)
        returncode = completed.returncode
    except subprocess.TimeoutExpired:
        returncode = None
    elapsed = time.perf_counter() - started
    try:
        text = Path(result_path).read_text(encoding="utf-8")
        result = json.loads(text) if text.strip() else None
    except (OSError, json.JSONDecodeError):
        result = None
    finally:
        Path(result_path).unlink(missing_ok=True)
    if result is None:
        if returncode is None:
            why = f"timed out after {timeout:.0f} s"
        elif returncode in (-9, 137):
            why = "killed (SIGKILL: most likely out of memory)"
        else:
            why = f"worker exited with status {returncode}"
        result = {**spec, "error": why}
    result["wall_seconds"] = elapsed
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="one benchmark measurement in this process (run.py starts these)")
    parser.add_argument("--worker", required=True, choices=("compare", "case"))
    parser.add_argument("--spec", required=True, help="the measurement's settings, JSON")
    parser.add_argument("--result-file", required=True, help="where the result is written, JSON")
    args = parser.parse_args(argv)
    return worker_main(args.worker, args.spec, args.result_file)


if __name__ == "__main__":
    sys.exit(main())
