"""Path points and seconds IG needs to reach a completeness target, by rule: the adaptive panels of
n_steps="auto" (attribution/ig_adaptive.py), the uniform Romberg rule it replaced, and Captum's fixed
Gauss–Legendre rule at the first of 16, 32, 64, ... steps that reaches the target.

    ATTRIBUTION_THREADS=1 python scripts/measure_auto_steps.py [--prompts 12] [--models smollm2,random]
        [--rules adaptive,romberg,gausslegendre] [--target-error 0.01] [--max-steps 1000]

Settings: the recommended preset (mean baseline, context held, signed sum, logit). SmolLM2: raw prompts
"The capital city of X is" explaining the next token, and chat prompts "What is the Capital City of X?"
explaining the answer's content token (target ANSWER_TARGET, as the chat page does); random Llama
shapes: raw prompts. Prints one line per prompt and rule, then a markdown table (median and worst over
the prompts) with the load average before and after. Seconds are the one IG run that reached the target
(for Gauss–Legendre, the run at the step count that reached it, not the search).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import attribution  # noqa: E402
from attribution.integrated_gradients import (  # noqa: E402
    held_prefix, integrate, integrate_to_accuracy, path_endpoints,
)
from attribution.threads import cpu_threads_for  # noqa: E402
from scripts.facts import COUNTRIES  # noqa: E402
from scripts.measure_baselines import RANDOM_SHAPES, SMOLLM2, random_model_folder  # noqa: E402

RULES = ("adaptive", "romberg", "gausslegendre")
GAUSS_LEGENDRE_STEPS = (16, 32, 64, 128, 256, 512, 1000)


def cases(kind: str, count: int) -> list[tuple[str, str, dict]]:
    """(label, prompt, analyze() keywords) per prompt."""
    countries = [country.name for country in COUNTRIES[:count]]
    if kind != "smollm2":
        return [("raw", f"What is the Capital City of {name}?", dict(max_new_tokens=1)) for name in countries]
    raw = [("raw", f"The capital city of {name} is", dict(max_new_tokens=1)) for name in countries]
    chat = [("chat", f"What is the Capital City of {name}?",
             dict(chat=True, max_new_tokens=16, target=attribution.ANSWER_TARGET)) for name in countries]
    return raw + chat


def problem(loaded, prompt: str, keywords: dict, settings: attribution.Settings):
    """What IG explains in the engine's own analysis: the tokens before the target, the held context, the target."""
    analysis = attribution.analyze(loaded, prompt, settings, methods=["gradient"], **keywords)
    ids = torch.tensor(analysis.input_ids, device=loaded.device)
    held = torch.from_numpy(analysis.held_tokens.copy())
    token = loaded.tokenizer.decode([analysis.target.id])
    return ids, held, analysis.target.id, token


def timed(compute):
    started = time.perf_counter()
    result = compute()
    return result, time.perf_counter() - started


def measure(loaded, ids, held, target_id: int, rule: str, settings, max_steps: int):
    """(points, seconds, relative error) of `rule` reaching settings.target_error on one prompt."""
    positions, targets = torch.tensor([ids.numel() - 1]), torch.tensor([target_id])
    if rule == "gausslegendre":
        for steps in GAUSS_LEGENDRE_STEPS:
            fixed = settings.replace(n_steps=steps)
            result, seconds = timed(lambda: integrate(loaded, ids, fixed, positions, targets, held=held))
            if float(result.relative_errors[0]) <= settings.target_error:
                break
        return steps, seconds, float(result.relative_errors[0])
    inputs, baseline = path_endpoints(loaded, ids, settings.baseline, held)

    def run():
        prefix = held_prefix(loaded, inputs, baseline, positions)  # as `integrate` does, timed with the rule
        return integrate_to_accuracy(loaded, inputs, baseline, positions, targets, None, settings.score,
                                     target_error=settings.target_error, max_steps=max_steps, prefix=prefix,
                                     rule=rule)

    result, seconds = timed(run)
    return result.n_points, seconds, float(result.relative_errors[0])


def summary(rows: list[tuple[int, float, float]], target_error: float) -> str:
    points, seconds, errors = zip(*rows)
    reached = sum(error <= target_error for error in errors)
    return (f"{statistics.median(points):g} / {max(points)} | {statistics.median(seconds):.3g} / {max(seconds):.3g} | "
            f"{reached}/{len(rows)} | {statistics.median(errors):.2%} / {max(errors):.2%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--models", default="smollm2,random")
    parser.add_argument("--rules", default=",".join(RULES))
    parser.add_argument("--target-error", type=float, default=0.01)
    parser.add_argument("--max-steps", type=int, default=1000)
    arguments = parser.parse_args()
    rules = arguments.rules.split(",")
    unknown = sorted(set(rules) - set(RULES))
    if unknown:
        parser.error(f"unknown rules {unknown}; valid choices: {', '.join(RULES)}")
    settings = attribution.PRESETS["recommended"].replace(target_error=arguments.target_error)
    print(f"recommended settings, target {arguments.target_error:.0%}, at most {arguments.max_steps} points; "
          f"threads {os.environ.get('ATTRIBUTION_THREADS', 'by the probe')}; load average before {os.getloadavg()[0]:.2f}", flush=True)
    table = []
    with tempfile.TemporaryDirectory() as root:
        models = []
        for kind in arguments.models.split(","):
            if kind == "smollm2":
                models.append(("SmolLM2-135M-Instruct", kind, attribution.load_model(SMOLLM2, device="cpu")))
            elif kind == "random":
                models += [(name, kind, attribution.load_model(str(random_model_folder(Path(root), name, shape)),
                                                               device="cpu"))
                           for name, shape in RANDOM_SHAPES.items()]
            else:
                parser.error(f"unknown model kind {kind!r}; valid choices: smollm2, random")
        for name, kind, loaded in models:
            results: dict[tuple[str, str], list] = {}
            for label, prompt, keywords in cases(kind, arguments.prompts):
                ids, held, target_id, token = problem(loaded, prompt, keywords, settings)
                for rule in rules:
                    with cpu_threads_for(loaded):  # the engine's threads (ATTRIBUTION_THREADS), as analyze runs
                        row = measure(loaded, ids, held, target_id, rule, settings, arguments.max_steps)
                    results.setdefault((label, rule), []).append(row)
                    print(f"# {name} {label} {prompt!r} → {token!r} ({ids.numel()} tokens) {rule}: {row[0]} points, "
                          f"{row[1]:.1f} s, {row[2]:.2%}; load {os.getloadavg()[0]:.2f}", flush=True)
            for (label, rule), rows in results.items():
                table.append(f"| {name} | {label} ×{len(rows)} | {rule} | {summary(rows, arguments.target_error)} |")
    print()
    print("| model | prompts | rule | path points: median / worst | seconds: median / worst | reached | "
          "error: median / worst |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(table))
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
