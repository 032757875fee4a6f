"""What a benchmark run measures: the comparisons and scaling cases for the chosen models and mode,
and the settings every part shares (methods, stages, the tolerance for "equal scores")."""

from __future__ import annotations

import math
import statistics

from . import models as bench_models

METHOD_NAMES = ("gradient", "attention", "integrated_gradients")
STAGES = ("generate", *METHOD_NAMES)
# Relative L2 error up to which two implementations' scores count as equal.
TOLERANCES = {"gradient": 1e-4, "attention": 1e-4, "integrated_gradients": 1e-3}
GIB = 1024**3


def log(message: str = "") -> None:
    print(message, flush=True)


def median(values) -> float | None:
    values = [v for v in values or [] if v is not None]
    return statistics.median(values) if values else None


def relative_error(actual, expected) -> float:
    """‖actual − expected‖ / ‖expected‖ (L2; inf when the shapes differ)."""
    import numpy as np

    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return math.inf
    norm = float(np.linalg.norm(expected))
    return float(np.linalg.norm(actual - expected) / norm) if norm > 0 else float(np.linalg.norm(actual))


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
