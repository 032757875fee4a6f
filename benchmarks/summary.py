"""Numbers from a run's raw results: medians, speed-ups, the hardware floor, whether the machine was
shared, and how times and sizes are written."""

from __future__ import annotations

import re

from .plan import GIB, STAGES, median


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
