"""How often does removing a method's top 3 words change SmolLM2's answer, against 3 random words?

    ATTRIBUTION_THREADS=1 python scripts/measure_whatif.py [--prompts 20] [--random 3] [--ig-max-steps 81]
                                                           [--methods occlusion,...] [--out FILE.jsonl]

The README's table ("What-if: removing the top words on SmolLM2"): the defaults, on one thread.

For each prompt (chat questions of scripts/facts.py — capital, then language, then continent, taking the
countries from the top — that the greedy reply answers correctly; target: the answer's first token, as
scripts/evaluate.py picks it) every method of the catalog but context ablation (it weighs sentences) runs
once (IG as scripts/evaluate.py runs it: the recommended preset — mean baseline, held context, signed sum,
auto steps to 1% completeness error — with at most --ig-max-steps path points). Then, per method, the
method's top 3 words of the question are removed from the prompt (`attribution.whatif.remove_top`, unit
"word") and the model answers again (`attribution.whatif.edit`); and --random draws of 3 random words.
Three outcomes per edit: the reply no longer gives an accepted answer ("answer lost"), the explained token is
no longer the likeliest at its place ("token lost"), and the explained token's probability there (mean
drop). Each rate is a mean over prompts (a random draw counts as the mean of its draws on that prompt)
with a 95% bootstrap interval over prompts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import attribution  # noqa: E402
from attribution.bootstrap import mean_interval  # noqa: E402
from attribution.whatif import edit, remove_random, remove_top  # noqa: E402
from evaluate import ANSWER_TOKENS, MODEL, answer_target, ig_settings  # noqa: E402
from facts import COUNTRIES, FACT_TYPES, Case  # noqa: E402

TOP = 3  # words removed
# Every method of the catalog but context ablation, which weighs whole sentences: a one-sentence question gives
# every word the same weight, so its "top 3 words" would be the first three.
METHODS = tuple(name for name in attribution.METHODS if name != "context_ablation")


def cases(loaded, count: int) -> list[tuple[Case, int]]:
    """Correctly answered chat questions with the generated token that starts the answer."""
    chosen: list[tuple[Case, int]] = []
    for fact in FACT_TYPES:
        for country in COUNTRIES:
            if len(chosen) >= count:
                return chosen
            if sum(case.fact == fact for case, _k in chosen) >= -(-count // len(FACT_TYPES)):
                break
            case = Case(fact, country)
            k, _reply = answer_target(loaded, case.question, case.answers, chat=True)
            if k is not None:
                chosen.append((case, k))
    return chosen


def names_answer(reply: str, answers: tuple[str, ...]) -> bool:
    """Whether the reply names an accepted answer anywhere, as a whole word (an edited question may be
    answered in another order: "Riga is the capital", which `answer_offset` would not read)."""
    return any(re.search(rf"\b{re.escape(answer)}\b", reply, re.IGNORECASE) for answer in answers)


def outcome(result, answers: tuple[str, ...]) -> dict:
    return {"removed": list(result.removed), "answer_after": result.answer_after,
            "answer_lost": not names_answer(result.answer_after, answers),
            "token_lost": not result.still_predicted,
            "probability_drop": result.probability_before - result.probability_after}


def measure(loaded, case: Case, k: int, n_random: int, ig_max_steps: int, methods: tuple[str, ...] = METHODS) -> dict:
    started = time.perf_counter()
    analysis = attribution.analyze(
        loaded, case.question, chat=True, target=k, max_new_tokens=ANSWER_TOKENS, methods=methods,
        **ig_settings(ig_max_steps))
    analysed = time.perf_counter() - started
    ig = analysis.methods.get("integrated_gradients")
    row = {"question": case.question, "target": analysis.target.text, "answer": analysis.generated_text,
           "ig_completeness_error": None if ig is None else ig.relative_completeness_error,
           "ig_steps": None if ig is None else ig.n_steps,
           "analysis_seconds": analysed, "methods": {},
           "random": []}
    for name in analysis.methods:
        row["methods"][name] = outcome(edit(loaded, analysis, remove=remove_top(analysis, name, TOP), unit="word"),
                                       case.answers)
    for seed in range(n_random):
        row["random"].append(outcome(edit(loaded, analysis, remove=remove_random(analysis, TOP, seed=seed),
                                          unit="word"), case.answers))
    row["edit_seconds"] = time.perf_counter() - started - analysed
    return row


def rates(rows: list[dict], pick) -> dict[str, str]:
    """Each outcome's mean over prompts with its interval; `pick(row)` gives a prompt's outcomes."""
    table = {}
    for key in ("answer_lost", "token_lost", "probability_drop"):
        values = [sum(float(item[key]) for item in pick(row)) / len(pick(row)) for row in rows]
        interval = mean_interval(values)
        table[key] = f"{interval.mean:.2f} [{interval.low:.2f}, {interval.high:.2f}]"
    return table


def markdown(rows: list[dict]) -> str:
    lines = [f"| words removed ({TOP}) | answer lost | explained token no longer top | mean drop of p(explained) |",
             "|---|---|---|---|"]
    for name in rows[0]["methods"]:
        cells = rates(rows, lambda row, _name=name: [row["methods"][_name]])
        lines.append(f"| top {TOP} of {attribution.METHOD_LABELS.get(name, name)} | {cells['answer_lost']} | "
                     f"{cells['token_lost']} | {cells['probability_drop']} |")
    if not rows[0]["random"]:  # --random 0
        return "\n".join(lines)
    cells = rates(rows, lambda row: row["random"])
    lines.append(f"| {TOP} random ({len(rows[0]['random'])} draws per prompt) | {cells['answer_lost']} | "
                 f"{cells['token_lost']} | {cells['probability_drop']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--random", type=int, default=3, help="random draws of 3 words per prompt")
    parser.add_argument("--ig-max-steps", type=int, default=81, help="IG's most path points (auto steps)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated methods to run and edit by (default: all but context ablation)")
    parser.add_argument("--out", type=Path, default=None, help="write each prompt's row here (JSON lines)")
    arguments = parser.parse_args()
    methods = tuple(name.strip() for name in arguments.methods.split(",") if name.strip())
    unknown = [name for name in methods if name not in attribution.METHODS]
    if unknown or not methods:
        parser.error(f"unknown methods {unknown}; valid: {', '.join(attribution.METHODS)}")
    print(f"load average at the start: {os.getloadavg()}", flush=True)
    if os.environ.get("ATTRIBUTION_THREADS"):  # the prompts' selection too (analyze and edit set it themselves)
        torch.set_num_threads(int(os.environ["ATTRIBUTION_THREADS"]))
    started = time.perf_counter()
    loaded = attribution.load_model(MODEL, device="cpu")
    chosen = cases(loaded, arguments.prompts)
    rows = []
    for index, (case, k) in enumerate(chosen):
        rows.append(measure(loaded, case, k, arguments.random, arguments.ig_max_steps, methods))
        print(f"{index + 1}/{len(chosen)} {case.question!r}: {time.perf_counter() - started:.0f} s", flush=True)
        if arguments.out is not None:
            with arguments.out.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(rows[-1], ensure_ascii=False) + "\n")
    errors = sorted(row["ig_completeness_error"] for row in rows if row["ig_completeness_error"] is not None)
    print(f"\n{len(rows)} prompts ({', '.join(sorted({case.fact for case, _k in chosen}))}), "
          f"threads {os.environ.get('ATTRIBUTION_THREADS', 'auto')}, {time.perf_counter() - started:.0f} s in all", flush=True)
    if errors:
        print(f"IG (auto, at most {arguments.ig_max_steps} points) completeness error median "
              f"{errors[len(errors) // 2]:.2%}, max {errors[-1]:.2%}, within 5% in "
              f"{sum(error <= 0.05 for error in errors)} of {len(errors)}")
    print(f"load average at the end: {os.getloadavg()}\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
