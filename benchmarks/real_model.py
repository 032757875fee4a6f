"""The page's default analysis on a real model, stage by stage: what a visitor of the Space waits for.

    python benchmarks/real_model.py [--model HuggingFaceTB/SmolLM2-135M-Instruct] [--repeats 1] [--json out.json]

Runs `attribution.analyze` with the page's default settings (every method, 20 new tokens, IG 50 steps
from the seed's zero baseline, the answer map and the trust panel; the chat template for a chat model) on
the seed prompt, with and without the chat template, and the gradient-only analysis of the same prompt
in the same run (the issue's 10× yardstick). Each stage's seconds come from the engine's own progress
events. Prints a Markdown table and the machine's load average before and after. Settings are passed as
keywords, so the same script times an older checkout (PYTHONPATH=that checkout).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if os.environ.get("PYTHONPATH") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import attribution  # noqa: E402

SEED_PROMPT = "What is the Capital City of Latvia?"
#: The page's defaults (ui/settings.py SETTINGS), as library keywords.
PAGE_DEFAULTS = dict(
    methods=list(attribution.METHODS), max_new_tokens=20, n_steps=50, baseline="zero", aggregation="l2",
    score="logit", hold_context=False, all_targets=True, trust=True,
)


#: What the page computes by default for a chat model (ui/settings.py): IG that converges there (mean
#: baseline, held context, signed sum, 50 steps) and the answer map without IG (one click adds it).
CHAT_DEFAULTS = dict(chat=True, baseline="mean", hold_context=True, aggregation="sum",
                     answer_map_methods=["gradient", "attention", "input_x_gradient"])


def timed_stages(loaded, prompt: str, settings: dict) -> dict[str, float]:
    """Seconds per stage (from the progress events) and in all."""
    marks: list[tuple[float, str]] = []

    def progress(stage) -> None:
        marks.append((time.perf_counter(), stage.description))

    started = time.perf_counter()
    attribution.analyze(loaded, prompt, progress=progress, **settings)
    ended = time.perf_counter()
    marks.append((ended, "end"))
    stages = {name: later - at for (at, name), (later, _) in zip(marks, marks[1:])}
    return {**stages, "total": ended - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    arguments = parser.parse_args()
    loaded = attribution.load_model(arguments.model)
    load_before = os.getloadavg()[0]
    cases = {
        "chat, page defaults": (SEED_PROMPT, dict(PAGE_DEFAULTS, chat=True)),
        "chat, affordable defaults": (SEED_PROMPT, dict(PAGE_DEFAULTS, **CHAT_DEFAULTS)),
        "raw, page defaults": (SEED_PROMPT, dict(PAGE_DEFAULTS, chat=False)),
        "chat, gradient only": (SEED_PROMPT, dict(methods=["gradient"], max_new_tokens=20, chat=True)),
    }
    rows = {}
    for name, (prompt, settings) in cases.items():
        try:
            runs = [timed_stages(loaded, prompt, settings) for _ in range(arguments.repeats)]
        except (TypeError, ValueError) as error:  # an older checkout without a setting this case uses
            print(f"{name}: not supported by this checkout ({error})", flush=True)
            continue
        rows[name] = {key: min(run[key] for run in runs) for key in runs[0]}
        print(f"{name}: " + ", ".join(f"{key} {value:.2f} s" for key, value in rows[name].items()), flush=True)
    print(f"\nload average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; torch threads "
          f"{__import__('torch').get_num_threads()}; code: {Path(attribution.__file__).parent}")
    if arguments.json is not None:
        arguments.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
