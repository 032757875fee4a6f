"""The project's way, through the public API only: `attribution.analyze`, and the same work stage by
stage with `attribution.generate` and `attribution.METHODS[...]` on an `AttributionRequest`."""

from __future__ import annotations

import math
import time
from pathlib import Path

from .plan import METHOD_NAMES, relative_error


def load_project(folder: Path):
    import attribution

    return attribution.load_model(str(folder), device="cpu", dtype="float32")


def tokenize(loaded, prompt: str):
    """The prompt's ids [seq] as `attribution.analyze` encodes a raw prompt: the tokenizer's own call,
    BOS included (`check_scores` compares them with the analysis's `input_ids`)."""
    import torch

    return torch.tensor(loaded.tokenizer(prompt)["input_ids"], device=loaded.input_device)


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
        input_ids=input_ids, target_id=int(target_id),
        settings=attribution.Settings(n_steps=n_steps, baseline="zero", aggregation="l2"), internal_batch_size=batch_size,
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
    else:  # max_new_tokens=0: the greedy next token all the same
        target_id = attribution.top_predictions(loaded, prompt_ids, 1)[0].id
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
    from attribution import choose_batch_size

    return int(choose_batch_size(loaded, seq_len, (n_steps + 2) * n_targets))


def ig_alone(loaded, prompt: str, n_tokens: int, n_steps: int, sample_batches: int | None = None):
    """The IG stage alone, target = the greedy next token, in the batches the engine picks for
    IG-n_steps: (seconds, notes). `sample_batches`: run only that many full batches and scale the time
    to all of them (peak memory is reached in every full batch alike)."""
    import attribution

    mark = time.perf_counter()
    prompt_ids = tokenize(loaded, prompt)
    target_id = int(attribution.generate(loaded, prompt_ids, 1)[0])  # the greedy next token
    generate_seconds = time.perf_counter() - mark
    batch = chosen_batch_size(loaded, n_tokens, n_steps)  # what the engine picks for this IG-n_steps
    notes = {"ig_batch_size": batch}
    run_steps, batch_arg = n_steps, None
    batches_total = math.ceil((n_steps + 2) / batch)
    if sample_batches and sample_batches < batches_total:
        # IG with fewer steps, in batches of exactly the size the engine picks for IG-n_steps.
        run_steps, batch_arg = sample_batches * batch, batch
    mark = time.perf_counter()
    attribution.METHODS["integrated_gradients"](loaded, make_request(prompt_ids, target_id, run_steps, batch_arg))
    ig_seconds = time.perf_counter() - mark
    if run_steps != n_steps:
        batches_run = math.ceil((run_steps + 2) / batch)
        notes["sampled"] = {"steps_run": run_steps, "batches_run": batches_run,
                            "batches_total": batches_total, "seconds_run": ig_seconds}
        ig_seconds *= batches_total / batches_run
    seconds = {"generate": generate_seconds, "integrated_gradients": ig_seconds}
    seconds["total"] = seconds["generate"] + seconds["integrated_gradients"]
    return seconds, notes


def answer_map(loaded, prompt: str, n_targets: int, n_steps: int):
    """`attribution.analyze(..., all_targets=True)`: IG for every generated token in one batched pass.
    Returns (analysis, seconds); the stages are timed from analyze's own progress reports: "generate"
    up to the first method, "integrated_gradients" the answer map alone (not the single-target IG
    that analyze runs before it)."""
    import attribution

    starts = {}  # stage kind ("generate", "method", "answer_map") → when it started
    started = time.perf_counter()
    analysis = attribution.analyze(
        loaded, prompt, methods=["integrated_gradients"], max_new_tokens=n_targets, n_steps=n_steps,
        baseline="zero", aggregation="l2", all_targets=True,
        progress=lambda stage: starts.setdefault(stage.kind, time.perf_counter()),
    )
    finished = time.perf_counter()
    seconds = {"generate": starts["method"] - started, "integrated_gradients": finished - starts["answer_map"]}
    seconds["total"] = seconds["generate"] + seconds["integrated_gradients"]
    return analysis, seconds


def answer_map_check(loaded, analysis, n_steps: int) -> dict:
    """The answer map's first and last rows against one IG call each (relative error), and the largest
    score past each row's own input (causal: exactly 0)."""
    import attribution
    import numpy as np
    import torch

    matrix = np.asarray(analysis.answer_map["integrated_gradients"].matrix)
    n_prompt = analysis.n_prompt_tokens
    prompt_ids = torch.tensor(analysis.input_ids[:n_prompt], device=loaded.input_device)
    generated = torch.tensor(analysis.generated_ids, device=loaded.input_device)
    errors = {}
    for row in sorted({0, int(generated.numel()) - 1}):
        input_ids = torch.cat([prompt_ids, generated[:row]])
        single = attribution.METHODS["integrated_gradients"](
            loaded, make_request(input_ids, int(generated[row]), n_steps)).scores
        errors[f"target {row + 1}"] = relative_error(matrix[row, : n_prompt + row], single)
        errors[f"target {row + 1} beyond"] = float(np.abs(matrix[row, n_prompt + row:]).max(initial=0.0))
    return errors


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
