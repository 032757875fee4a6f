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

Every model comparison and every scaling case runs in its own subprocess (`--worker`), so one model's
weights never sit in memory while another is measured.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import math
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("SPACE_ID", None)

from benchmarks import models as bench_models  # noqa: E402

METHOD_NAMES = ("gradient", "attention", "integrated_gradients")
STAGES = ("generate", *METHOD_NAMES)
TOLERANCES = {"gradient": 1e-4, "attention": 1e-4, "integrated_gradients": 1e-3}
GIB = 1024**3

# Targets printed by the benchmark (issue 5). GPU ones can only be measured on a lent GPU.
TARGET_SPEEDUP = 8.0
TARGET_DEMO_SECONDS = 0.5
TARGET_PEAK_OVER_WEIGHTS = 1.5
TARGET_MEMORY_LIMIT = 24 * GIB


def log(message: str = "") -> None:
    print(message, flush=True)


# --- memory ----------------------------------------------------------------------------------------


def proc_status_bytes(field: str) -> int | None:
    """A `kB` field of /proc/self/status (VmHWM: peak resident set, VmRSS: current) in bytes."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    if field == "VmRSS":
        try:
            import psutil

            return int(psutil.Process().memory_info().rss)
        except ImportError:
            return None
    return None


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
        return True
    except OSError:
        return False


# --- the project's way -----------------------------------------------------------------------------


def load_project(folder: Path):
    import attribution

    return attribution.load_model(str(folder), device="cpu", dtype="float32")


def tokenize(loaded, prompt: str):
    try:
        from attribution.prompts import encode_prompt

        return encode_prompt(loaded, prompt).ids
    except ImportError:  # the helper moved: plain tokenizer call (BOS added by the tokenizer)
        import torch

        return torch.tensor(loaded.tokenizer(prompt)["input_ids"])


def project_analyze(loaded, prompt: str, n_steps: int, max_new_tokens: int):
    """`attribution.analyze` with the seed's settings; returns (analysis, seconds)."""
    import attribution

    started = time.perf_counter()
    analysis = attribution.analyze(
        loaded, prompt, methods=METHOD_NAMES, max_new_tokens=max_new_tokens, n_steps=n_steps,
        baseline="zero", aggregation="l2",
    )
    return analysis, time.perf_counter() - started


def make_request(input_ids, target_id: int, n_steps: int, batch_size: int | None = None):
    import attribution

    return attribution.AttributionRequest(
        input_ids=input_ids, target_id=int(target_id), n_steps=n_steps, baseline="zero", aggregation="l2",
        internal_batch_size=batch_size,
    )


def project_staged(loaded, prompt: str, n_steps: int, max_new_tokens: int, methods=METHOD_NAMES):
    """The same work stage by stage: tokenize + `attribution.generate`, then `METHODS[name]`."""
    import attribution

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    prompt_ids = tokenize(loaded, prompt)
    generated = attribution.generate(loaded, prompt_ids, max_new_tokens)
    seconds["generate"] = time.perf_counter() - started
    if generated.numel():
        target_id = int(generated[0])
    else:
        from attribution.targets import greedy_next_token

        target_id = greedy_next_token(loaded, prompt_ids)
    request = make_request(prompt_ids, target_id, n_steps)
    results = {}
    for name in methods:
        mark = time.perf_counter()
        results[name] = attribution.METHODS[name](loaded, request)
        seconds[name] = time.perf_counter() - mark
    seconds["total"] = time.perf_counter() - started
    return {"input_ids": prompt_ids, "generated": generated, "target_id": target_id, "scores": results}, seconds


def chosen_batch_size(loaded, seq_len: int, n_steps: int, n_targets: int = 1) -> int:
    """The IG batch (rows per forward+backward) the engine picks for this input: each target runs its
    n_steps path points plus two rows, the input itself and the baseline."""
    from attribution.passes import choose_batch_size

    return int(choose_batch_size(loaded, seq_len, (n_steps + 2) * n_targets))


# --- the notebook's way ----------------------------------------------------------------------------


def shared_weight_view(model, attn_implementation: str):
    """A second model object on the same weight storage, as `from_pretrained` would hand it over:
    parameters requiring grad (not frozen), the given attention implementation. No weight is copied,
    so the 1B comparison needs one copy of the weights (plus the notebook's parameter .grad)."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(model.config)
    with torch.device("meta"):
        view = AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation)
    state = model.state_dict(keep_vars=False)  # detached tensors sharing storage with `model`
    view.load_state_dict(state, strict=True, assign=True)
    # Non-persistent buffers (rotary inv_freq) are not in the state dict: share them too.
    for name, buffer in model.named_buffers():
        owner_name, _, leaf = name.rpartition(".")
        owner = view.get_submodule(owner_name) if owner_name else view
        owner._buffers[leaf] = buffer
    for name in ("original_inv_freq",):  # plain attributes some rotary modules keep
        for (_, source), (_, target) in zip(model.named_modules(), view.named_modules()):
            if hasattr(source, name) and isinstance(getattr(source, name), torch.Tensor):
                setattr(target, name, getattr(source, name))
    if getattr(config, "tie_word_embeddings", False):
        view.tie_weights()
    view.requires_grad_(True)
    view.eval()
    view.generation_config = copy.deepcopy(model.generation_config)
    if any(parameter.is_meta for parameter in view.parameters()) or any(b.is_meta for b in view.buffers()):
        raise RuntimeError("shared_weight_view left a tensor on the meta device")
    view.config._attn_implementation = attn_implementation
    return view


def notebook_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tokenizer.pad_token = tokenizer.eos_token  # as the notebook
    return tokenizer


def load_notebook_model(folder: Path):
    """The model exactly as the notebook loads it on CPU: fp32, eager attention, not frozen."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, attn_implementation="eager")
    model.eval()
    return model


def run_notebook(model, tokenizer, prompt: str, n_steps: int, max_new_tokens: int):
    from benchmarks import notebook_reference

    return notebook_reference.notebook_pipeline(
        model, tokenizer, prompt, n_steps=n_steps, max_new_tokens=max_new_tokens, baseline_type="zero"
    )


def relative_error(actual, expected) -> float:
    import numpy as np

    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return math.inf
    norm = float(np.linalg.norm(expected))
    return float(np.linalg.norm(actual - expected) / norm) if norm > 0 else float(np.linalg.norm(actual))


def check_scores(analysis, notebook_results) -> dict:
    """Project vs notebook on one prompt: same ids, same target, scores within tolerance."""
    import numpy as np

    check = {
        "input_ids_equal": bool(np.array_equal(analysis.input_ids, notebook_results["input_ids"])),
        "generated_equal": bool(np.array_equal(analysis.generated_ids, notebook_results["generated_ids"])),
        "target_equal": int(analysis.target.id) == int(notebook_results["predicted_id"])
        == int(notebook_results["ig_predicted_id"]),
        "relative_error": {
            name: relative_error(analysis.methods[name].scores, notebook_results[name]) for name in METHOD_NAMES
        },
    }
    check["relative_error"]["attention_per_layer"] = relative_error(
        analysis.methods["attention"].per_layer, notebook_results["attention_per_layer"]
    )
    check["ok"] = (
        check["input_ids_equal"] and check["target_equal"]
        and all(check["relative_error"][name] <= TOLERANCES[name] for name in METHOD_NAMES)
        and check["relative_error"]["attention_per_layer"] <= TOLERANCES["attention"]
    )
    return check


# --- Inseq (optional peer) -------------------------------------------------------------------------


def inseq_unavailable_reason() -> str | None:
    try:
        import inseq  # noqa: F401
    except Exception as error:  # ImportError, or an import-time incompatibility
        first = (str(error).splitlines() or [type(error).__name__])[0]
        return f"not available: inseq does not import here ({type(error).__name__}: {first}); " \
               "install it with `pip install -r requirements-bench.txt`"
    return None


def make_inseq(model_view, tokenizer):
    """An Inseq IG model on the given weights, its baseline set to zero embeddings.

    Inseq has no baseline argument: it always uses the UNK token's embedding. The seed's (and the
    project's) zero baseline is substituted where Inseq hands Captum its arguments."""
    import inseq
    import torch
    from inseq.models.decoder_only import DecoderOnlyInputFormatter

    original = DecoderOnlyInputFormatter.format_attribution_args
    if not getattr(original, "_zero_baseline", False):
        def format_with_zero_baseline(*args, **kwargs):
            arguments = original(*args, **kwargs)
            if "baselines" in arguments:
                arguments["baselines"] = tuple(torch.zeros_like(x) for x in arguments["inputs"])
            return arguments

        format_with_zero_baseline._zero_baseline = True
        DecoderOnlyInputFormatter.format_attribution_args = staticmethod(format_with_zero_baseline)
    return inseq.load_model(model_view, "integrated_gradients", tokenizer=tokenizer)


def run_inseq(inseq_model, prompt: str, target_text: str, n_steps: int, batch_size: int):
    """IG of the logit of the token after `prompt` (forced to `target_text`); returns (L2 scores, seconds)."""
    started = time.perf_counter()
    output = inseq_model.attribute(
        prompt, prompt + target_text, n_steps=n_steps, attributed_fn="logit",
        internal_batch_size=batch_size, show_progress=False,
    )
    seconds = time.perf_counter() - started
    attributions = output.sequence_attributions[0].target_attributions  # [prefix + 1, 1, d_model]
    scores = attributions[:-1, 0, :].double().norm(dim=-1).numpy()
    return scores, seconds, output


# --- workers (each in a fresh process) -------------------------------------------------------------


def weights_info(model) -> dict:
    return {"parameters": bench_models.parameter_count(model), "weight_bytes": bench_models.weight_bytes(model)}


def linear_parameters(model) -> int:
    """Weights of the decoder's linear layers: each input token costs 2 FLOPs per weight forward."""
    import torch

    decoder = model.get_decoder()
    return sum(module.weight.numel() for module in decoder.modules() if isinstance(module, torch.nn.Linear))


READ_BUFFER_BYTES = 1024**3
# Below this, weights sit in the caches and per-op overhead, not the hardware, bounds the time.
HARDWARE_LIMIT_MIN_WEIGHTS = 256 * 1024**2


def measure_hardware(loaded, n_tokens: int, n_steps: int) -> dict:
    """What this machine can do at most, measured here (fp32, this process's threads):

    - matmul peak: the fastest of the largest matmul of an IG batch (rows·tokens × hidden →
      intermediate) at the engine's own batch and at 512, 1024 and 2048 rows;
    - memory read rate: summing a 1 GiB buffer; reading every weight once at that rate is the least
      each greedy decode step costs (for weights far larger than the caches).

    and the project's work: IG-n_steps's linear-layer FLOPs (forward, then backward to the inputs
    only: 2 + 2 FLOPs per weight and token; attention scores and the one-position vocabulary
    projection are left out, so this is a lower bound)."""
    import torch

    config = loaded.model.config
    batch = chosen_batch_size(loaded, n_tokens, n_steps)
    own_rows = max(1, batch * n_tokens)
    right = torch.randn(config.hidden_size, config.intermediate_size)
    rates = {}
    for rows in sorted({own_rows, 512, 1024, 2048}):  # the engine's own batch shape and larger ones
        left = torch.randn(rows, config.hidden_size)
        torch.mm(left, right)
        repeats, mark = 0, time.perf_counter()
        while time.perf_counter() - mark < 0.5:
            torch.mm(left, right)
            repeats += 1
        rates[rows] = 2 * rows * config.hidden_size * config.intermediate_size * repeats / (time.perf_counter() - mark) / 1e9
    peak_rows = max(rates, key=rates.get)
    # Memory read rate on a buffer far larger than any cache (summing is lighter than reading).
    buffer = torch.ones(READ_BUFFER_BYTES // 4)
    buffer.sum()
    reads, mark = 0, time.perf_counter()
    while reads == 0 or time.perf_counter() - mark < 1.0:
        buffer.sum()
        reads += 1
    read_gbps = READ_BUFFER_BYTES * reads / (time.perf_counter() - mark) / 1e9
    del buffer
    ig_rows = n_steps + 2
    return {
        "matmul_gflops": rates[peak_rows],
        "matmul_shape": [peak_rows, config.hidden_size, config.intermediate_size],
        "own_shape_gflops": rates[own_rows],
        "own_shape": [own_rows, config.hidden_size, config.intermediate_size],
        "weight_read_seconds": bench_models.weight_bytes(loaded.model) / (read_gbps * 1e9),
        "weight_read_gbps": read_gbps,
        "ig_linear_gflop": 4 * linear_parameters(loaded.model) * n_tokens * ig_rows / 1e9,
    }


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

        version = _package_version("inseq")
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


def answer_map_call(loaded, prompt_ids, generated_ids, n_steps: int):
    """The project's answer map (IG for every generated token in one batched pass) → [T, S] matrix.

    The answer-map API is young; when its entry point or signature changes, this is the line to adjust."""
    from attribution.answer_map import compute_answer_map

    maps = compute_answer_map(loaded, prompt_ids, generated_ids, ("integrated_gradients",), n_steps=n_steps,
                              baseline="zero", aggregation="l2")
    return maps["integrated_gradients"].matrix


def answer_map_by_loop(loaded, prompt: str, n_targets: int, n_steps: int) -> dict:
    """What the answer map replaces: one IG call per generated token (prompt + earlier tokens as input)."""
    import attribution
    import torch

    seconds = {}
    started = time.perf_counter()
    prompt_ids = tokenize(loaded, prompt)
    generated = attribution.generate(loaded, prompt_ids, n_targets)
    seconds["generate"] = time.perf_counter() - started
    mark = time.perf_counter()
    for k in range(int(generated.numel())):
        input_ids = torch.cat([prompt_ids, generated[:k]])
        attribution.METHODS["integrated_gradients"](loaded, make_request(input_ids, int(generated[k]), n_steps))
    seconds["integrated_gradients"] = time.perf_counter() - mark
    seconds["total"] = time.perf_counter() - started
    return seconds


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
        import attribution

        mark = time.perf_counter()
        prompt_ids = tokenize(loaded, prompt)
        target_id = int(attribution.generate(loaded, prompt_ids, 1)[0])  # the greedy next token
        generate_seconds = time.perf_counter() - mark
        batch = chosen_batch_size(loaded, n_tokens, n_steps)  # what the engine picks for this IG-n_steps
        result["ig_batch_size"] = batch
        run_steps, batch_arg = n_steps, None
        batches_total = math.ceil((n_steps + 2) / batch)
        if spec.get("sample_batches") and spec["sample_batches"] < batches_total:
            # Peak memory is reached in every full batch alike: run a few batches of exactly the size the
            # engine picks for IG-n_steps (IG with fewer steps), and scale the time to all the batches.
            run_steps, batch_arg = spec["sample_batches"] * batch, batch
        mark = time.perf_counter()
        attribution.METHODS["integrated_gradients"](loaded, make_request(prompt_ids, target_id, run_steps, batch_arg))
        ig_seconds = time.perf_counter() - mark
        if run_steps != n_steps:
            batches_run = math.ceil((run_steps + 2) / batch)
            result["sampled"] = {"steps_run": run_steps, "batches_run": batches_run,
                                 "batches_total": batches_total, "seconds_run": ig_seconds}
            ig_seconds *= batches_total / batches_run
        seconds = {"generate": generate_seconds, "integrated_gradients": ig_seconds}
        seconds["total"] = seconds["generate"] + seconds["integrated_gradients"]
    elif kind == "answer_map_loop":
        seconds = answer_map_by_loop(loaded, prompt, spec["n_targets"], n_steps)
    elif kind == "answer_map":
        import attribution
        import numpy as np

        mark = time.perf_counter()
        prompt_ids = tokenize(loaded, prompt)
        generated = attribution.generate(loaded, prompt_ids, spec["n_targets"])
        seconds = {"generate": time.perf_counter() - mark}
        mark = time.perf_counter()
        try:
            matrix = np.asarray(answer_map_call(loaded, prompt_ids, generated, n_steps))
        except (ImportError, AttributeError, TypeError) as error:
            result["unavailable"] = f"not available yet: the answer-map API is not usable here ({error})"
            return result
        seconds["integrated_gradients"] = time.perf_counter() - mark
        seconds["total"] = seconds["generate"] + seconds["integrated_gradients"]
        result["seconds"] = seconds
        result["peak_rss_bytes"] = proc_status_bytes("VmHWM")
        result["cpu_use"] = (time.process_time() - cpu_started) / max(time.perf_counter() - wall_started, 1e-9)
        # Same numbers as one IG call per target? Check the first and the last row (not timed).
        errors = {}
        n_prompt = int(prompt_ids.numel())
        for row in sorted({0, int(generated.numel()) - 1}):
            input_ids = torch.cat([prompt_ids, generated[:row]])
            single = attribution.METHODS["integrated_gradients"](
                loaded, make_request(input_ids, int(generated[row]), n_steps)).scores
            errors[f"target {row + 1}"] = relative_error(matrix[row, : n_prompt + row], single)
            errors[f"target {row + 1} beyond"] = float(np.abs(matrix[row, n_prompt + row:]).max(initial=0.0))
        result["check"] = errors
        return result
    else:
        raise ValueError(f"unknown case kind {kind!r}")
    result["seconds"] = seconds
    result["peak_rss_bytes"] = proc_status_bytes("VmHWM")
    result["cpu_use"] = (time.process_time() - cpu_started) / max(time.perf_counter() - wall_started, 1e-9)
    return result


def _package_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001
        return None


def worker_main(kind: str, spec_json: str, result_path: str) -> int:
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
    Path(result_path).write_text(json.dumps(result, default=_json_default), encoding="utf-8")
    return 0


def _json_default(value):
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
    command = [python, str(Path(__file__).resolve()), "--worker", kind, "--spec", json.dumps(spec),
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


# --- the plan --------------------------------------------------------------------------------------


def median(values) -> float | None:
    values = [v for v in values or [] if v is not None]
    return statistics.median(values) if values else None


def plan_runs(args) -> tuple[list[dict], list[dict]]:
    """(comparisons, scaling cases) for the chosen models and mode."""
    comparisons = []
    for name in args.models:
        big = name == "llama-3.2-1b"
        repeats = args.repeats if args.repeats is not None else \
            (1 if big else 3 if name == "smollm-135m" or args.quick else 5)
        spec = {"model": name, "label": name, "prompt": bench_models.SEED_PROMPT, "n_steps": 50,
                "max_new_tokens": 20, "repeats": repeats, "warmup": "short" if big else "full",
                "inseq": not args.no_inseq and not (args.quick and name == "tiny"), "threads": args.threads}
        comparisons.append(spec)
        if name == "demo" and args.threads is None:
            # Small models are all per-op overhead: show what one thread does (no OpenMP hand-offs).
            comparisons.append({**spec, "label": f"{name}, 1 thread", "threads": 1, "inseq": False})
    cases = []
    if args.no_scaling:
        return comparisons, cases
    base = {"model": args.scaling_model, "n_steps": 50, "max_new_tokens": 20, "threads": args.threads}
    if args.quick:  # a smoke test of every kind of case on the tiny model
        lengths, notebook_lengths, step_counts = (8, 32), (32,), (128,)
        maps = (("answer_map_loop", 5), ("answer_map", 5))
    else:
        lengths, notebook_lengths, step_counts = (8, 32, 128, 512), (8, 32, 128), (16, 50, 128)
        maps = (("answer_map_loop", 1), ("answer_map_loop", 20), ("answer_map", 20))
    for length in lengths:
        cases.append({**base, "group": "length", "kind": "analyze", "prompt_tokens": length})
        if length in notebook_lengths:
            cases.append({**base, "group": "length", "kind": "notebook", "prompt_tokens": length})
    for steps in step_counts:
        cases.append({**base, "group": "steps", "kind": "ig", "prompt_tokens": 32, "n_steps": steps,
                      "max_new_tokens": 1})
    for kind, n_targets in maps:
        cases.append({**base, "group": "answer_map", "kind": kind, "prompt_tokens": 12, "n_targets": n_targets,
                      "max_new_tokens": n_targets})
    if "llama-3.2-1b" in args.models and not args.quick:
        big = {"model": "llama-3.2-1b", "n_steps": 50, "max_new_tokens": 20, "threads": args.threads}
        cases.append({**big, "group": "length", "kind": "analyze", "prompt_tokens": 8})
        cases.append({**big, "group": "memory", "kind": "analyze", "prompt_tokens": 128})
        cases.append({**big, "group": "memory", "kind": "ig", "prompt_tokens": 512, "max_new_tokens": 1,
                      "sample_batches": None if args.ig512 == "full" else 2})
    return comparisons, cases


# --- reporting -------------------------------------------------------------------------------------


def machine_info() -> dict:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
    except OSError:
        pass
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_bytes": memory, "gpu": gpu, "interpreter": sys.executable,
            "python": platform.python_version(), "platform": platform.platform(),
            "versions": {name: _package_version(name) for name in
                         ("torch", "transformers", "captum", "tokenizers", "numpy", "inseq", "psutil")}}


def machine_load() -> dict:
    """What else is running: load averages and the busiest other processes (the machine may be shared)."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    busy = []
    try:
        output = subprocess.run(["top", "-bn1", "-w", "200"], capture_output=True, text=True, timeout=20).stdout
        lines = output.splitlines()
        header = next((i for i, line in enumerate(lines) if line.strip().startswith("PID")), None)
        if header is not None:
            for line in lines[header + 1:]:
                fields = line.split(None, 11)
                if len(fields) >= 12 and fields[0] != str(os.getpid()):
                    try:
                        cpu = float(fields[8])
                    except ValueError:
                        continue
                    if cpu >= 5.0 and fields[11] != "top":
                        busy.append(f"{fields[11][:40]} {cpu:.0f}% CPU, RES {fields[5]}")
    except (OSError, subprocess.SubprocessError):
        pass
    return {"loadavg": load, "busy": busy[:8]}


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 100:
        return f"{seconds:.2f} s"
    return f"{seconds:.0f} s"


def fmt_gib(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value / GIB:.2f} GiB" if value >= GIB / 2 else f"{value / 1024**2:.0f} MiB"


def fmt_use(result: dict, side: str | None = None) -> str:
    """CPU seconds per wall second of a run (≈ the thread count when the cores were the run's own)."""
    value = median(result.get("cpu_use", {}).get(side)) if side else result.get("cpu_use")
    return "—" if value is None else f"{value:.2f}"


def summarize_comparison(result: dict) -> dict:
    summary = {"model": result["model"]}
    if "error" in result:
        summary["error"] = result["error"]
        return summary
    summary["analyze"] = median(result["analyze"])
    summary["staged"] = {k: median(v) for k, v in result["staged"].items()}
    summary["notebook"] = {k: median(v) for k, v in result["notebook"].items()}
    summary["ratio"] = summary["notebook"]["total"] / summary["analyze"] if summary["analyze"] else None
    project_rest = summary["staged"]["total"] - summary["staged"]["generate"]
    notebook_rest = summary["notebook"]["total"] - summary["notebook"]["generate"]
    summary["ratio_without_generate"] = notebook_rest / project_rest if project_rest > 0 else None
    summary["stage_ratio"] = {
        k: (summary["notebook"][k] / summary["staged"][k]) if summary["staged"].get(k) else None for k in STAGES
    }
    worst = {name: max(check["relative_error"][name] for check in result["checks"])
             for name in result["checks"][0]["relative_error"]}
    summary["worst_error"] = worst
    summary["scores_equal"] = all(check["ok"] for check in result["checks"])
    summary["same_generation"] = all(check["generated_equal"] for check in result["checks"])
    inseq = result.get("inseq")
    if inseq and "ig" in inseq:
        summary["inseq"] = median(inseq["ig"])
    hardware = result.get("hardware")
    if hardware:
        # The least any implementation of the same numbers needs here: each greedy step reads every
        # weight once, and IG's linear layers at the measured matmul peak.
        generate_floor = result["max_new_tokens"] * hardware["weight_read_seconds"]
        ig_floor = hardware["ig_linear_gflop"] / hardware["matmul_gflops"]
        summary["floor"] = {"generate": generate_floor, "integrated_gradients": ig_floor,
                            "total": generate_floor + ig_floor,
                            "best_ratio": summary["notebook"]["total"] / (generate_floor + ig_floor),
                            "ig_gflops": hardware["ig_linear_gflop"] / summary["staged"]["integrated_gradients"]}
    return summary


def floor_text(label: str, result: dict, summary: dict) -> str:
    hardware, floor = result["hardware"], summary["floor"]
    return (f"{label}: IG-{result['n_steps']} ran at {floor['ig_gflops']:.0f} GFLOP/s of linear-layer work, "
            f"{100 * floor['ig_gflops'] / hardware['matmul_gflops']:.0f}% of the fp32 matmul peak measured "
            f"here ({hardware['matmul_gflops']:.0f} GFLOP/s at {tuple(hardware['matmul_shape'])}"
            + (f"; {hardware['own_shape_gflops']:.0f} at the engine's batch shape {tuple(hardware['own_shape'])}"
               if "own_shape" in hardware else "") + "); "
            f"generating {result['max_new_tokens']} tokens took {fmt_s(summary['staged']['generate'])} against "
            f"{fmt_s(floor['generate'])} to read the weights {result['max_new_tokens']} times "
            f"({hardware['weight_read_gbps']:.1f} GB/s). Generate + IG alone cannot take less than "
            f"{fmt_s(floor['total'])} here, so no implementation with the same numbers beats the notebook's "
            f"{fmt_s(summary['notebook']['total'])} by more than **{floor['best_ratio']:.1f}×** on this machine")


def evaluate_targets(comparisons: dict, cases: list[dict], args) -> list[tuple[str, str, str]]:
    """(target, PASS/FAIL/not evaluated, evidence) rows."""
    rows = []
    big = comparisons.get("llama-3.2-1b")
    if big and "error" not in big:
        s = summarize_comparison(big)
        ok = s["ratio"] is not None and s["ratio"] >= TARGET_SPEEDUP and s["scores_equal"]
        rows.append(("Llama-3.2-1B shape, 2-core CPU, fp32: full analysis ≥ 8× faster than the notebook's way "
                     "at equal scores", "PASS" if ok else "FAIL",
                     f"median {s['ratio']:.2f}× ({fmt_s(s['notebook']['total'])} notebook vs {fmt_s(s['analyze'])} "
                     f"analyze, {len(big['analyze'])} run(s)); fastest runs {min(big['notebook']['total']) / min(big['analyze']):.2f}× "
                     f"({fmt_s(min(big['notebook']['total']))} vs {fmt_s(min(big['analyze']))}); without the "
                     f"20-token generation {s['ratio_without_generate']:.1f}×; scores equal: {s['scores_equal']}"
                     + (f"; the hardware floor measured here (generate + IG-50 at the machine's own weight-read "
                        f"rate and matmul peak) is {fmt_s(s['floor']['total'])}, at most "
                        f"{s['floor']['best_ratio']:.1f}× over the notebook" if s.get("floor") else "")))
    else:
        rows.append(("Llama-3.2-1B shape: full analysis ≥ 8× faster than the notebook's way", "not evaluated",
                     big["error"] if big else "llama-3.2-1b not in this run"))
    ig512 = next((c for c in cases if c["model"] == "llama-3.2-1b" and c["kind"] == "ig"
                  and c["prompt_tokens"] == 512), None)
    if ig512:
        peak = ig512.get("peak_rss_bytes")
        ok = "error" not in ig512 and peak is not None and peak <= TARGET_MEMORY_LIMIT
        sampled = ig512.get("sampled")
        if "error" in ig512:
            evidence = ig512["error"]
        elif sampled:
            evidence = (f"peak RSS {fmt_gib(peak)} over the first {sampled['batches_run']} of "
                        f"{sampled['batches_total']} batches of {ig512.get('ig_batch_size')} rows (every full "
                        f"batch is the same size, so this is IG-50's peak); IG-50 time scaled from "
                        f"{fmt_s(sampled['seconds_run'])}: ≈ {fmt_s(ig512['seconds']['integrated_gradients'])} "
                        "(`--ig512 full` runs all 50 steps)")
        else:
            evidence = (f"completed in {fmt_s(ig512['seconds']['integrated_gradients'])}, peak RSS {fmt_gib(peak)} "
                        f"(batch {ig512.get('ig_batch_size')} rows)")
        rows.append(("Llama-3.2-1B shape: IG-50 at 512 tokens completes within 24 GiB (no OOM)",
                     "PASS" if ok else "FAIL", evidence))
    else:
        rows.append(("Llama-3.2-1B shape: IG-50 at 512 tokens within 24 GiB", "not evaluated",
                     "not in this run"))
    demo = comparisons.get("demo")
    if demo and "error" not in demo:
        s = summarize_comparison(demo)
        evidence = f"median {fmt_s(s['analyze'])} over {len(demo['analyze'])} runs (default threads)"
        single = comparisons.get("demo, 1 thread")
        if single and "error" not in single:
            evidence += f"; with 1 torch thread: median {fmt_s(median(single['analyze']))}"
        rows.append(("demo model: full analysis ≤ 0.5 s", "PASS" if s["analyze"] <= TARGET_DEMO_SECONDS else "FAIL",
                     evidence))
    else:
        rows.append(("demo model: full analysis ≤ 0.5 s", "not evaluated",
                     demo["error"] if demo else "demo not in this run"))
    mem = next((c for c in cases if c["model"] == "llama-3.2-1b" and c["kind"] == "analyze"
                and c["prompt_tokens"] == 128), None)
    if mem and "error" not in mem:
        ratio = mem["peak_rss_bytes"] / mem["weight_bytes"]
        rows.append(("Llama-3.2-1B shape: peak memory ≤ 1.5× the weights for a 128-token prompt",
                     "PASS" if ratio <= TARGET_PEAK_OVER_WEIGHTS else "FAIL",
                     f"peak RSS {fmt_gib(mem['peak_rss_bytes'])} = {ratio:.2f}× weights "
                     f"{fmt_gib(mem['weight_bytes'])} (whole process; IG batch {mem.get('ig_batch_size')})"))
    else:
        rows.append(("Llama-3.2-1B shape: peak memory ≤ 1.5× weights at 128 tokens", "not evaluated",
                     mem["error"] if mem else "not in this run"))
    rows.append(("GPU: Llama-3.2-1B shape bf16 on an H100, full analysis ≤ 150 ms", "not measured",
                 "no GPU was lent to this task"))
    rows.append(("GPU: Llama-3.2-1B shape bf16 on an H100, 20-target IG answer map ≤ 1 s", "not measured",
                 "no GPU was lent to this task"))
    return rows


def plot_scaling(cases: list[dict], path: Path, note: str = "") -> bool:
    rows = [c for c in cases if c.get("group") in ("length", "memory") and c["kind"] in ("analyze", "notebook")
            and "seconds" in c]
    if not rows:
        return False
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from matplotlib.ticker import FuncFormatter

    figure = Figure(figsize=(9, 5.5), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    lengths = set()
    for index, model in enumerate(dict.fromkeys(c["model"] for c in rows)):
        colour = colours[index % len(colours)]
        for kind in ("analyze", "notebook"):
            points = sorted((c["n_tokens"], c["seconds"]) for c in rows if c["model"] == model and c["kind"] == kind)
            if not points:
                continue
            xs = [p[0] for p in points]
            lengths.update(xs)
            if kind == "analyze":
                axes.plot(xs, [p[1]["total"] for p in points], "-", marker="o", color=colour,
                          label=f"{model}: attribution (project), full analysis")
                axes.plot(xs, [p[1]["integrated_gradients"] for p in points], ":", marker=".", color=colour,
                          label=f"{model}: attribution, IG-50 stage alone")
            else:
                axes.plot(xs, [p[1]["total"] for p in points], "--", marker="s", color=colour,
                          label=f"{model}: the notebook's way, full analysis")
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xticks(sorted(lengths))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.set_xlabel("prompt length (tokens, BOS included)")
    axes.set_ylabel("wall time (s), one run in a fresh process")
    axes.set_title("Full analysis (generate 20 + gradient + attention + IG-50), CPU fp32"
                   + (f"\n{note}" if note else ""), fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(path)
    return True


def fmt_map_check(case: dict) -> str:
    check = case.get("check")
    if not check:
        return "—"
    rows = [key for key in check if not key.endswith("beyond")]
    worst = max(check[key] for key in rows)
    beyond = max((check[key] for key in check if key.endswith("beyond")), default=0.0)
    verdict = "yes" if worst <= TOLERANCES["integrated_gradients"] and beyond == 0.0 else "NO"
    return f"{verdict} (rows {', '.join(k.split()[1] for k in rows)} vs single IG: rel. err ≤ {worst:.1e})"


def render_markdown(report: dict) -> str:
    machine, load = report["machine"], report["load"]
    lines = [
        "# Benchmark results",
        "",
        f"Produced by `{report['command']}` on {report['date']} (took {fmt_s(report['elapsed'])}).",
        "",
        "## Machine",
        "",
        f"- CPU: {machine['cpu']}, {machine['cores']} cores; memory {fmt_gib(machine['memory_bytes'])}; "
        f"GPU: {machine['gpu']}",
        f"- Python {machine['python']} (`{machine.get('interpreter', '?')}`), " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v),
        f"- torch threads: {report.get('threads')}; all runs fp32 on CPU, random weights of the real shapes "
        "(built offline by `benchmarks/models.py`).",
        f"- Load before the run: load average {', '.join(f'{x:.2f}' for x in load['loadavg'] or [])}"
        + (f"; other busy processes: {'; '.join(load['busy'])}" if load["busy"] else "; no other busy process"),
    ]
    if report.get("load_after"):
        after = report["load_after"]
        lines.append(f"- Load after the run: load average {', '.join(f'{x:.2f}' for x in after['loadavg'] or [])}"
                     + (f"; other busy processes: {'; '.join(after['busy'])}" if after["busy"] else ""))
    for merged in report.get("merged", []):
        load_text = ", ".join(f"{x:.2f}" for x in ((merged.get("load") or {}).get("loadavg") or []))
        lines.append(f"- Pooled into the rows of the same model: the measured runs of `{merged['command']}` "
                     f"({merged.get('date')}; load average before it {load_text}).")
    if report.get("shared_machine"):
        lines.append("- **The machine was shared with other work during this run** (see the load above): absolute "
                     "times are inflated and noisy (compare `analyze` with the staged sum below: the same work). "
                     "Both ways alternate, but contention hurts the notebook's many small batch-1 passes more "
                     "than the project's few large ones, so ratios taken under load lean in the project's favour. "
                     "CPU use = CPU seconds per wall second of the run (the thread count when the cores were free).")
    else:
        lines.append("- No other work competed for the cores: no other process used a quarter of a core or more "
                     "before or after the run, and "
                     "every notebook run used at least 80% of its threads' CPU time (CPU use below = CPU seconds "
                     "per wall second; the project runs models under 20M parameters on one thread by design).")
    lines += ["", "## Targets", "", "| target | result | evidence |", "| --- | --- | --- |"]
    lines += [f"| {t} | **{r}** | {e} |" for t, r, e in report["targets"]]

    lines += ["", "## Full analysis: project vs the notebook's way (same weights, same process, alternating)", "",
              "Seed prompt, 20 new tokens, gradient + attention + IG-50 (zero baseline, L2), greedy next token. "
              "Medians; warm-up excluded. `analyze` is `attribution.analyze`; stages come from calling "
              "`attribution.generate` and `attribution.METHODS[...]` directly.", ""]
    lines += ["| model | params | tokens | runs | analyze | notebook | speed-up | generate (proj / nb) | "
              "gradient (proj / nb) | attention (proj / nb) | IG-50 (proj / nb) | IG batch | Inseq IG-50 | "
              "scores equal (max rel. err grad / attn / IG) | CPU use (proj / nb) |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- | ---: | ---: | --- | --- |"]
    for result in report["comparisons"]:
        if "error" in result:
            lines.append(f"| {result.get('label', result['model'])} | — | — | — | {result['error']} |"
                         + " |" * 11)
            continue
        s = summarize_comparison(result)
        inseq = result.get("inseq") or {}
        inseq_cell = fmt_s(s.get("inseq")) if "inseq" in s else (inseq.get("unavailable", "not run"))
        stage = lambda k: f"{fmt_s(s['staged'][k])} / {fmt_s(s['notebook'][k])}"  # noqa: E731
        errors = s["worst_error"]
        lines.append(
            f"| {result['label']} | {result['parameters'] / 1e6:,.1f} M | {result['n_tokens']} | "
            f"{len(result['analyze'])} | {fmt_s(s['analyze'])} | {fmt_s(s['notebook']['total'])} | "
            f"**{s['ratio']:.2f}×** | {stage('generate')} | {stage('gradient')} | {stage('attention')} | "
            f"{stage('integrated_gradients')} | {result['ig_batch_size']} | {inseq_cell} | "
            f"{'yes' if s['scores_equal'] else 'NO'} ({errors['gradient']:.1e} / {errors['attention']:.1e} / "
            f"{errors['integrated_gradients']:.1e}) | {fmt_use(result, 'project')} / {fmt_use(result, 'notebook')} |")
    rest = [(r["label"], summarize_comparison(r)) for r in report["comparisons"] if "error" not in r]
    if rest:
        lines += ["", "The 20-token generation is the same work both ways (greedy decode with a KV cache) and bounds "
                  "the full-analysis ratio; without it (gradient + attention + IG-50, stage sums) the project is "
                  + ", ".join(f"{model} **{s['ratio_without_generate']:.1f}×**" for model, s in rest
                              if s.get("ratio_without_generate")) + " faster. Per stage (notebook / project): "
                  + "; ".join(f"{model}: " + ", ".join(f"{k} {v:.1f}×" for k, v in s["stage_ratio"].items() if v)
                              for model, s in rest) + ".",
                  "", "Hardware limit (measured in the same process: see Method): " + "; ".join(
                      floor_text(r["label"], r, summarize_comparison(r)) for r in report["comparisons"]
                      if "error" not in r and r.get("hardware")) + ".",
                  "", "Same work timed twice on the project side — `analyze` vs the sum of its stages called "
                  "directly (medians): " + "; ".join(
                      f"{r['label']} {fmt_s(median(r['analyze']))} vs {fmt_s(median(r['staged']['total']))}"
                      for r in report["comparisons"] if "error" not in r) + ".",
                  "", "Every measured run, in order (analyze / staged sum / notebook, seconds): " + "; ".join(
                      f"{r['label']}: " + ", ".join(
                          f"{a:.3g}/{b:.3g}/{c:.3g}" for a, b, c in
                          zip(r["analyze"], r["staged"]["total"], r["notebook"]["total"]))
                      for r in report["comparisons"] if "error" not in r) + ".",
                  "", "Fastest run of each (medians above can be inflated by other load): "
                  + "; ".join(f"{r['label']} analyze {fmt_s(min(r['analyze']))}, notebook "
                              f"{fmt_s(min(r['notebook']['total']))}" for r in report["comparisons"] if "error" not in r)
                  + "."]
    inseq_notes = [(r["label"], r["inseq"]) for r in report["comparisons"] if r.get("inseq")]
    if inseq_notes:
        lines += ["", "Inseq row: " + "; ".join(
            f"{model}: " + (info["unavailable"] if "unavailable" in info else
                            f"Inseq {info['version']} IG-50, batch {info['batch_size']}, rel. err vs project IG "
                            f"{info['relative_error']:.1e}, same target: {info['target_equal']}")
            for model, info in inseq_notes) + ". Inseq always uses the UNK embedding as IG baseline; the "
            "benchmark substitutes zero embeddings where Inseq hands Captum its arguments, so the settings match."]
    lines += ["", "Peak resident memory of each comparison process (project + notebook on shared weights, "
              "plus the notebook's parameter gradients): "
              + ", ".join(f"{r['label']} {fmt_gib(r.get('peak_rss_bytes'))}" for r in report["comparisons"]
                          if "error" not in r) + "."]

    cases = report["cases"]

    def case_rows(group_cases, columns):
        out = []
        for c in group_cases:
            if "error" in c or "unavailable" in c:
                out.append(f"| {c['model']} | {c.get('label', c['kind'])} | {c.get('error') or c.get('unavailable')} |"
                           + " |" * (len(columns) - 3))
                continue
            out.append("| " + " | ".join(column(c) for column in columns) + " |")
        return out

    def stage_time(name):
        return lambda c: fmt_s(c["seconds"].get(name))

    length = [c for c in cases if c.get("group") in ("length", "memory") and c["kind"] in ("analyze", "notebook")]
    if length:
        lines += ["", "## Scaling with prompt length (one run each, fresh process; peak = whole-process VmHWM)", "",
                  "| model | way | tokens | total | generate 20 | gradient | attention | IG-50 | IG batch | "
                  "peak RSS | weights | CPU use |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        lines += case_rows(length, [
            lambda c: c["model"], lambda c: "attribution" if c["kind"] == "analyze" else "notebook",
            lambda c: str(c["n_tokens"]), stage_time("total"), stage_time("generate"), stage_time("gradient"),
            stage_time("attention"), stage_time("integrated_gradients"),
            lambda c: str(c.get("ig_batch_size", "1 (internal_batch_size=1)")),
            lambda c: fmt_gib(c.get("peak_rss_bytes")), lambda c: fmt_gib(c.get("weight_bytes")), fmt_use])
        if report.get("plot"):
            lines += ["", f"![time vs prompt length]({report['plot']})"]
    steps = [c for c in cases if c.get("group") == "steps" or (c.get("group") == "memory" and c["kind"] == "ig")]
    if steps:
        lines += ["", "## Integrated Gradients: steps and long prompts (IG stage alone, target = greedy token)", "",
                  "| model | tokens | IG steps | IG time | per step | IG batch | peak RSS | weights | CPU use |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        lines += case_rows(steps, [
            lambda c: c["model"], lambda c: str(c["n_tokens"]), lambda c: str(c["n_steps"]),
            lambda c: fmt_s(c["seconds"]["integrated_gradients"]) + (
                f" (scaled from {c['sampled']['batches_run']} of {c['sampled']['batches_total']} batches)"
                if c.get("sampled") else ""),
            lambda c: fmt_s(c["seconds"]["integrated_gradients"] / c["n_steps"]),
            lambda c: str(c.get("ig_batch_size")), lambda c: fmt_gib(c.get("peak_rss_bytes")),
            lambda c: fmt_gib(c.get("weight_bytes")), fmt_use])
    amap = [c for c in cases if c.get("group") == "answer_map"]
    if amap:
        for c in amap:
            c["label"] = ("attribution.answer_map" if c["kind"] == "answer_map"
                          else f"{c['n_targets']} × METHODS['integrated_gradients']")
        lines += ["", "## Answer map: IG-50 for every generated token (prompt + earlier tokens as input)", "",
                  "| model | how | targets | tokens | generate | IG total | per target | peak RSS | same scores | "
                  "CPU use |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
        lines += case_rows(amap, [
            lambda c: c["model"], lambda c: c["label"], lambda c: str(c["n_targets"]), lambda c: str(c["n_tokens"]),
            stage_time("generate"), lambda c: fmt_s(c["seconds"].get("integrated_gradients", c["seconds"]["total"])),
            lambda c: fmt_s(c["seconds"].get("integrated_gradients", c["seconds"]["total"]) / c["n_targets"]),
            lambda c: fmt_gib(c.get("peak_rss_bytes")), fmt_map_check, fmt_use])
    lines += ["", "## GPU", "",
              "| target | result |", "| --- | --- |",
              "| Llama-3.2-1B shape, bf16, H100: full analysis ≤ 150 ms | not measured — no GPU was lent to this task |",
              "| Llama-3.2-1B shape, bf16, H100: 20-target IG answer map ≤ 1 s | not measured — no GPU was lent to "
              "this task |"]
    lines += ["", "## Method", "",
              "- Models: random weights (seed 0) in the exact configs of SmolLM-135M and Llama-3.2-1B (parameter "
              "counts checked), with a small offline BPE tokenizer padded to the real vocabulary size; the demo "
              "model is `assets/demo-model` as shipped. Speed does not depend on the weights' values.",
              "- Project: `attribution.load_model(folder, device='cpu')` (fp32, frozen, default sdpa attention). "
              "Notebook: `benchmarks/notebook_reference.py` in the notebook's cell order on a second model object "
              "sharing the same weight storage, with eager attention and parameters requiring grad, as "
              "`from_pretrained` gives them to the notebook.",
              "- Comparison: warm-up (full settings; for the 1B shape IG-4 and 3 new tokens), then alternating "
              "measured runs (project first on even runs, notebook first on odd ones). Every measured pair is "
              "checked: same input ids and target, relative L2 error of the scores ≤ 1e-4 (gradient, attention "
              "and its per-layer map) and ≤ 1e-3 (IG).",
              "- Scaling/memory cases: each in a fresh process (load, a small warm-up, reset VmHWM via "
              "/proc/self/clear_refs, one measured run); peak is the whole process's resident set, weights "
              "included.",
              "- Hardware limit: after the warm-up, in the comparison's own process and threads, one fp32 "
              "`torch.mm` of the largest matmul in an IG batch (rows by hidden, times hidden by intermediate) is "
              "repeated for half a second at the engine's own rows (batch × tokens) and at 512, 1024 and 2048 "
              "rows; the fastest is the matmul peak. A 1 GiB buffer is summed for a "
              "second (the memory read rate; reading every weight once at that rate is the least a greedy "
              "decode step costs). Only for models of 256 MiB or more: smaller ones live in the caches and "
              "are bound by per-op overhead. IG's work counts only the "
              "decoder's linear layers, 2 FLOPs per weight and token forward and 2 backward to the inputs (no "
              "weight gradients), for the n_steps + 2 rows (path points, input, baseline): a lower bound.",
              ]
    return "\n".join(lines) + "\n"


# --- main ------------------------------------------------------------------------------------------


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
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--spec", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result-file", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return args
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
    if args.worker:
        return worker_main(args.worker, args.spec, args.result_file)

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
                                        indent=1, default=_json_default), encoding="utf-8")

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
    args.json.write_text(json.dumps(report, indent=1, default=_json_default), encoding="utf-8")
    return write_report(report, args)


def merge_runs(report: dict, extra: dict) -> None:
    """Pool another run's measured comparison runs into this report's rows of the same label."""
    by_label = {c.get("label", c["model"]): c for c in report["comparisons"]}
    for other in extra.get("comparisons", []):
        label = other.get("label", other["model"])
        mine = by_label.get(label)
        if "error" in other:
            continue
        if mine is None or "error" in mine:
            report["comparisons"].append(other)
            continue
        mine["analyze"] += other["analyze"]
        for side in ("staged", "notebook"):
            for key, values in other[side].items():
                mine[side].setdefault(key, []).extend(values)
        mine["checks"] += other["checks"]
        for side, values in other.get("cpu_use", {}).items():
            mine.setdefault("cpu_use", {}).setdefault(side, []).extend(values)
        mine["repeats"] = len(mine["analyze"])
        mine.setdefault("merged_from", []).append(extra.get("command"))
    report.setdefault("merged", []).append({"command": extra.get("command"), "date": extra.get("date"),
                                           "load": extra.get("load"), "load_after": extra.get("load_after")})


def was_shared(report: dict) -> bool:
    """Whether other work competed for the cores: a process using a quarter of a core or more seen
    before or after the run, or the notebook's runs (always on every thread) getting under 80% of
    their threads' CPU time. The load average is no evidence: its minute-long memory still holds
    whatever ran before."""
    for snapshot in (report.get("load") or {}, report.get("load_after") or {}):
        for process in snapshot.get("busy") or []:
            # "name 94% CPU, RES …": a quarter of a core or more competes; a few % is a process idling.
            match = re.search(r" (\d+)% CPU", process)
            if match is None or int(match.group(1)) >= 25:
                return True
    for comparison in report.get("comparisons", []):
        threads = comparison.get("threads") or 1
        if any(use < 0.8 * threads for use in comparison.get("cpu_use", {}).get("notebook", [])):
            return True
    return False


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
