"""IG with the held chat-template prefix run once (the default) against every path row running it.

    python scripts/measure_prefix_reuse.py [--model HuggingFaceTB/SmolLM2-135M-Instruct] [--steps 50] [--repeats 3]

Prints, per prompt, the held prefix's length, the seconds of each (medians of alternating runs, model
loaded, one process) and the largest score difference, with the machine's load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import attribution  # noqa: E402
from attribution.integrated_gradients import integrate, special_token_mask  # noqa: E402
from attribution.prompts import encode_prompt, held_context  # noqa: E402

PROMPTS = ("What is the Capital City of Latvia?", "Why is the sky blue?",
           "Which planet is known as the Red Planet?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    loaded = attribution.load_model(arguments.model)
    settings = attribution.Settings(n_steps=arguments.steps, baseline="mean", aggregation="sum", hold_context=True)
    print(f"model {loaded.name}, IG {arguments.steps} steps, mean baseline, chat template held; "
          f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")
    print("| prompt | tokens | prefix | with reuse (s) | without (s) | speed-up | max |Δ| / max |score| |")
    print("|---|---|---|---|---|---|---|")
    for prompt in PROMPTS:
        encoded = encode_prompt(loaded, prompt, chat=True)
        ids = encoded.ids
        special = special_token_mask(loaded, ids).cpu().numpy()
        held = torch.from_numpy(held_context(special, encoded.user_tokens, ids.numel(), True))
        last, target = torch.tensor([ids.numel() - 1]), torch.tensor([int(attribution.generate(loaded, ids, 1)[0])])
        times = {True: [], False: []}
        results = {}
        for _ in range(arguments.repeats):
            for reuse in (True, False):  # alternating, so drifting load hits both alike
                started = time.perf_counter()
                results[reuse] = integrate(loaded, ids, settings, last, target, held=held, reuse_prefix=reuse)
                times[reuse].append(time.perf_counter() - started)
        scores = {reuse: result.attributions.sum(dim=-1) for reuse, result in results.items()}
        difference = float((scores[True] - scores[False]).abs().max() / scores[False].abs().max())
        fast, slow = statistics.median(times[True]), statistics.median(times[False])
        print(f"| {prompt} | {ids.numel()} | {results[True].prefix_length} | {fast:.2f} | {slow:.2f} | "
              f"{slow / fast:.2f}× | {difference:.1e} |")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
