"""How fast the page's default analysis could be on one core: its matrix products counted, stage by stage,
against this core's own matmul speed, beside the 10× yardstick (the gradient-only analysis) timed here.

    python scripts/measure_compute_floor.py [--model HuggingFaceTB/SmolLM2-135M-Instruct]

Beside another busy process the analysis runs on one thread (`attribution.threads`), so one core's speed
bounds it. The products are counted with torch's own FLOP formulas (`torch.utils.flop_counter`) by a
dispatch mode around the whole analysis. Tensors made under `torch.inference_mode` skip Python dispatch
modes, so the count runs with `inference_mode` standing in as `no_grad` (the same products). Attention
kernels (sdpa) are not in that registry and are left out, so the floor printed is a lower bound. The
core's speed is the best of repeated fp32 matmuls of the model's MLP shape on one thread.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_map  # noqa: E402
from torch.utils.flop_counter import flop_registry  # noqa: E402

import attribution  # noqa: E402
import real_model  # noqa: E402 (benchmarks/real_model.py: the page's settings and the yardstick's)


def _shape(value):
    return value.shape if isinstance(value, torch.Tensor) else value


class ProductCounter(TorchDispatchMode):
    """FLOPs of every operation torch's flop registry knows (mm, addmm, bmm, convolutions), in all."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.flops += formula(*tree_map(_shape, args), **tree_map(_shape, kwargs), out_val=tree_map(_shape, out))
        return out


def counted_stages(loaded, settings: dict) -> dict[str, float]:
    """GFLOPs of each stage of one analysis (the engine's progress events mark the stages)."""
    counter, stages, current = ProductCounter(), {}, {"name": None, "start": 0}

    def progress(stage) -> None:
        if current["name"] is not None:
            stages[current["name"]] = (counter.flops - current["start"]) / 1e9
        current.update(name=stage.description, start=counter.flops)

    inference_mode = torch.inference_mode
    torch.inference_mode = lambda mode=True: torch.no_grad()
    try:
        with counter:
            attribution.analyze(loaded, real_model.SEED_PROMPT, progress=progress, **settings)
    finally:
        torch.inference_mode = inference_mode
    stages[current["name"]] = (counter.flops - current["start"]) / 1e9
    return stages


def core_speed(loaded, repeats: int = 50) -> float:
    """GFLOP/s of the best of `repeats` fp32 [512, hidden] × [hidden, intermediate] matmuls on one thread."""
    config = loaded.model.config
    hidden = int(config.hidden_size)
    inner = int(getattr(config, "intermediate_size", None) or 4 * hidden)
    left, right = torch.randn(512, hidden), torch.randn(hidden, inner)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        left @ right
        best = min(best, time.perf_counter() - started)
    return 2 * 512 * hidden * inner / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    arguments = parser.parse_args()
    loaded = attribution.load_model(arguments.model)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    os.environ["ATTRIBUTION_THREADS"] = "1"
    try:
        timed = [real_model.timed_stages(loaded, real_model.SEED_PROMPT, real_model.page_chat_gradient())
                 for _ in range(3)]
        yardstick = min(stages["total"] for stages in timed)
        generation = min(stages["generating the answer"] for stages in timed)
        speed = core_speed(loaded)
        page = counted_stages(loaded, real_model.page_chat_defaults())
    finally:
        torch.set_num_threads(previous)
    print(f"one core's fp32 matmul: {speed:.1f} GFLOP/s (best of 50, the model's MLP shape)")
    print("| stage | GFLOP | seconds at that speed |\n|---|---|---|")
    for name, gflops in page.items():
        print(f"| {name} | {gflops:.1f} | {gflops / speed:.2f} |")
    products = sum(page.values()) / speed
    floor = products - page.get("generating the answer", 0.0) / speed + generation  # generation: as timed
    print(f"\nthe page's products on one core: {products:.2f} s; with generation as timed ({generation:.2f} s, "
          f"bound by memory traffic): {floor:.2f} s")
    print(f"the yardstick (gradient-only analysis, one thread, best of 3): {yardstick:.2f} s; "
          f"10x is {10 * yardstick:.2f} s; the floor is {floor / yardstick:.1f}x, before attention kernels, "
          "elementwise work and Python")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
