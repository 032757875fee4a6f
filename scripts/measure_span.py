"""A stretch of the answer against one token: IG's seconds on SmolLM2-135M-Instruct (chat, the seed prompt,
the page's chat IG settings: mean baseline, held context, signed sum, 50 steps; score log_probability),
for the answer's first token, its last, the whole answer as one span, and the answer as a continuation.

    ATTRIBUTION_THREADS=1 python scripts/measure_span.py

Prints, for each, the best of `REPEATS` runs of IG alone (the generation timed apart), the input length,
F(x) and the completeness error, and the load average when it ran.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import attribution  # noqa: E402

REPEATS = 2
PROMPT = "What is the Capital City of Latvia?"


def main() -> None:
    loaded = attribution.load_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    base = attribution.Settings(methods=("integrated_gradients",), max_new_tokens=20, chat=True, baseline="mean",
                                hold_context=True, aggregation="sum", n_steps=50, score="log_probability")
    answer = attribution.analyze(loaded, PROMPT, base.replace(methods=("gradient",)))
    n = int(answer.generated_ids.size)
    print(f"answer: {answer.generated_text!r} ({n} tokens)", flush=True)
    cases = {
        "token 1 (the next token)": base.replace(target=1),
        f"token {n} (the last)": base.replace(target=n),
        f"span 1-{n} (the whole answer)": base.replace(target=(1, n)),
        "continuation (the answer's text)": base.replace(continuation=answer.generated_text),
    }
    for label, settings in cases.items():
        times = []
        for _ in range(REPEATS):
            started: dict[str, float] = {}
            analysis = attribution.analyze(loaded, PROMPT, settings,
                                           progress=lambda event: started.setdefault(event.kind, time.perf_counter()))
            times.append(time.perf_counter() - started["method"])  # the IG stage: from its start to the end
        result = analysis.methods["integrated_gradients"]
        print(f"{label:36s} IG {min(times):6.2f} s  input {analysis.n_tokens:3d} tokens  "
              f"F(x) {result.input_output:9.4f}  completeness error {result.relative_completeness_error:.2e}  "
              f"load {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
