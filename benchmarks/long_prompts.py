"""Long prompts on the real model: time and peak memory of each method from ~250 to ~4,000 tokens.

    ATTRIBUTION_THREADS=1 python -m benchmarks.long_prompts [--lengths 250,1000,2000,4000] [--cells ...]

The prompt is a document (numbered facts about made-up towns) and a question about one of them, in
SmolLM2-135M-Instruct's chat template, as a user attributing a retrieval answer would write it. Each
cell (methods × length) runs in a fresh process, so its peak resident memory (VmHWM, reset after the
model is loaded) is its own; the figure reported is that peak, and the growth over the loaded model.
The analysis is `attribution.analyze` with one generated token, the defaults otherwise (so the prompt
limit, the batch sizes and layer checkpointing are chosen as a user would get them; context ablation
scores sentences, the document's facts). Occlusion runs one
forward per token, so at lengths over `--occlusion-cap` it is estimated from the largest measured length
(time × (n/m)², a lower bound; peak as measured there), and the table says so; IG runs up to `--ig-cap`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from .hardware import machine_load, proc_status_bytes, reset_peak_rss

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
CELLS = {
    "gradient+attention": dict(methods=["gradient", "input_x_gradient", "attention"]),
    "gradient": dict(methods=["gradient"]),
    "attention": dict(methods=["attention"]),
    "rollout": dict(methods=["attention_rollout"]),
    "ig-10": dict(methods=["integrated_gradients"], n_steps=10),
    "occlusion": dict(methods=["occlusion"]),
    # Sentence ablation (ContextCite) with its default ablation count: the document's facts are its sentences.
    "context-ablation": dict(methods=["context_ablation"], granularity="sentence"),
}
TOWNS = ["Arlen", "Brisk", "Coval", "Dunmere", "Eskar", "Fallow", "Gorran", "Hestia", "Ilvar", "Jossen"]
GOODS = ["salt", "copper", "wool", "glass", "amber", "timber", "honey", "linen", "iron", "barley"]
GIB = 1024**3


def document_prompt(tokenizer, n_tokens: int) -> str:
    """A document of numbered facts and a question whose answer is in the middle, about n_tokens long
    (counted with the chat template, as the analysis encodes it)."""
    question = "\n\nQuestion: Which good is Fact 7's town known for? Answer in one word."
    facts: list[str] = []

    def text() -> str:
        return "Document:\n" + "\n".join(facts) + question

    def length() -> int:
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": text()}], add_generation_prompt=True,
                                                 tokenize=False)
        return len(tokenizer(rendered, add_special_tokens=False)["input_ids"])

    index = 0
    while True:
        town, good = TOWNS[index % len(TOWNS)], GOODS[(index * 3 + 7) % len(GOODS)]
        facts.append(f"Fact {index + 1}: The town of {town} {index // len(TOWNS) + 1} trades mostly in {good}, "
                     f"and its market opens on day {(index * 7) % 28 + 1} of each month.")
        if length() > n_tokens:
            facts.pop()
            return text()
        index += 1


def cpu_seconds() -> float:
    """This process's user + system CPU time: with one thread, the time a quiet core would take."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_cell(cell: str, n_tokens: int) -> dict:
    """One cell in this process: load, build the prompt, reset the peak, analyze, measure."""
    import torch

    import attribution

    loaded = attribution.load_model(MODEL, device="cpu")
    prompt = document_prompt(loaded.tokenizer, n_tokens)
    settings = dict(CELLS[cell], max_new_tokens=1, chat=True)
    loaded_rss = proc_status_bytes("VmRSS")
    marks: list[tuple[str, float, float]] = []  # (stage, wall, CPU seconds) as each stage starts

    threads: list[int] = []  # as the analysis runs (it restores the caller's count when it returns)

    def mark(stage) -> None:
        marks.append((stage.method or stage.kind, time.perf_counter(), cpu_seconds()))
        threads.append(torch.get_num_threads())

    reset_peak_rss()
    started, started_cpu = time.perf_counter(), cpu_seconds()
    analysis = attribution.analyze(loaded, prompt, progress=mark, **settings)
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - started_cpu
    peak = proc_status_bytes("VmHWM")
    ends = marks[1:] + [("end", started + seconds, started_cpu + cpu)]
    stages = {name: {"seconds": end[1] - wall, "cpu_seconds": end[2] - used}
              for (name, wall, used), end in zip(marks, ends)}
    result = {"cell": cell, "tokens": analysis.n_prompt_tokens, "seconds": seconds, "cpu_seconds": cpu,
              "stages": stages, "peak_bytes": peak, "loaded_bytes": loaded_rss, "growth_bytes": peak - loaded_rss,
              "threads": max(threads), "answer": analysis.generated_text, "load": os.getloadavg()}
    if cell == "ig-10":
        ig = analysis.methods["integrated_gradients"]
        result["ig_delta"] = ig.convergence_delta
    if "context_ablation" in analysis.methods:
        ablation = analysis.methods["context_ablation"]
        result.update(groups=len(ablation.groups), ablations=int(ablation.masks.shape[0]),
                      heldout_lds=ablation.heldout_lds)
    return result


def measure(cell: str, n_tokens: int) -> dict:
    """`run_cell` in a fresh interpreter (its own peak memory)."""
    command = [sys.executable, "-m", "benchmarks.long_prompts", "--worker", cell, str(n_tokens)]
    environment = dict(os.environ, ATTRIBUTION_THREADS=os.environ.get("ATTRIBUTION_THREADS", "1"),
                       HF_HUB_OFFLINE="1")
    done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent,
                          env=environment)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"cell": cell, "tokens": n_tokens, "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(lines[-1])


def estimate_occlusion(measured: dict, n_tokens: int) -> dict:
    """Occlusion at n tokens from a measured length m: n + 1 forwards of n tokens, so time × (n/m)²."""
    scale = (n_tokens / measured["tokens"]) ** 2
    return {"cell": "occlusion", "tokens": n_tokens, "seconds": measured["seconds"] * scale,
            "cpu_seconds": measured["cpu_seconds"] * scale,
            "peak_bytes": measured["peak_bytes"], "growth_bytes": measured["growth_bytes"],
            "estimated_from": measured["tokens"]}


def table(results: list[dict]) -> str:
    lines = ["| method(s) | prompt tokens | CPU time (wall) | of which the methods | peak memory (growth over the "
             "loaded model) | load |", "|---|---|---|---|---|---|"]
    for row in results:
        if "error" in row:
            lines.append(f"| {row['cell']} | ~{row['tokens']:,} | failed: {row['error']} | | |")
            continue
        note = f" (estimated from {row['estimated_from']:,} tokens)" if "estimated_from" in row else ""
        load = f"{row['load'][0]:.1f}" if "load" in row else "–"
        if "estimated_from" in row:
            times, methods = f"{row['cpu_seconds']:.0f} s{note}", "–"
        else:
            method_cpu = sum(stage["cpu_seconds"] for name, stage in row["stages"].items() if name != "generate")
            times = f"{row['cpu_seconds']:.1f} s ({row['seconds']:.1f} s)"
            methods = ", ".join(f"{name} {stage['cpu_seconds']:.1f} s" for name, stage in row["stages"].items()
                                if name != "generate") + (f" = {method_cpu:.1f} s" if len(row["stages"]) > 2 else "")
            if "groups" in row:
                methods += f" ({row['groups']} sentences, {row['ablations']} ablations)"
        lines.append(f"| {row['cell']} | {row['tokens']:,} | {times} | {methods} | "
                     f"{row['peak_bytes'] / GIB:.2f} GB ({row['growth_bytes'] / GIB:.2f} GB) | {load} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=2, metavar=("CELL", "TOKENS"), help=argparse.SUPPRESS)
    parser.add_argument("--lengths", default="250,1000,2000,4000")
    parser.add_argument("--cells", default=",".join(CELLS), help=f"comma-separated, of {', '.join(CELLS)}")
    parser.add_argument("--occlusion-cap", type=int, default=1000,
                        help="longest prompt occlusion is run at; longer ones are estimated")
    parser.add_argument("--ig-cap", type=int, default=2000, help="longest prompt IG is run at; longer ones are not")
    parser.add_argument("--json", type=Path, help="also write the results here")
    arguments = parser.parse_args(argv)
    if arguments.worker:
        print(json.dumps(run_cell(arguments.worker[0], int(arguments.worker[1]))))
        return
    lengths = [int(part) for part in arguments.lengths.split(",")]
    results = []
    for cell in arguments.cells.split(","):
        if cell not in CELLS:
            raise SystemExit(f"unknown cell {cell!r}; valid choices: {', '.join(CELLS)}")
        for n_tokens in lengths:
            if cell == "ig-10" and n_tokens > arguments.ig_cap:
                continue
            if cell == "occlusion" and n_tokens > arguments.occlusion_cap:
                measured = [row for row in results if row["cell"] == cell and "error" not in row
                            and "estimated_from" not in row]
                if measured:
                    results.append(estimate_occlusion(measured[-1], n_tokens))
                    continue
            row = measure(cell, n_tokens)
            results.append(row)
            print(json.dumps(row), flush=True)
    print(f"machine load: {machine_load()}")
    print(table(results))
    if arguments.json:
        arguments.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
