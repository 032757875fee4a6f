"""Evaluate the attribution methods on a real chat model: plausibility, faithfulness against random
token orders, IG completeness and time, over many fact questions.

    python scripts/evaluate.py [--prompts N] [--quick] [--out FILE.md] [--json FILE.json] [--threads T] [--max-steps N]

Prompts (scripts/facts.py): "What is the Capital City of X?" with the chat template, the same with a
contrast foil (another country's capital), "What language is spoken in X?" and "Which continent is X
in?". The target is the answer's first token where the model's greedy reply names it (`target=k`);
prompts answered wrongly are recorded and skipped. Per method:

- plausibility: the share of prompts whose top typed token (`Analysis.user_tokens`, held context
  excluded) is one of the country's tokens;
- faithfulness: comprehensiveness and sufficiency against random orders (the trust panel's, with its
  removal), as mean margins over prompts with 95% bootstrap intervals, and the share of prompts where
  the trust panel found the method beating random on both measures;
- seconds per prompt (from the analysis's own progress stages);

plus the distribution of IG's completeness error and what the verdicts said. Writes a markdown report.
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

import numpy as np  # noqa: E402
import torch  # noqa: E402

import attribution  # noqa: E402
from attribution.bootstrap import mean_interval  # noqa: E402
from attribution.engine import generate  # noqa: E402
from attribution.faithfulness import DEFAULT_REMOVAL, DEFAULT_SCALE, RANDOM_ORDERS  # noqa: E402
from attribution.prompts import encode_prompt  # noqa: E402
from attribution.settings import COMPLETENESS_TOLERANCE, PRESET_FIELDS  # noqa: E402
from facts import Case, cases  # noqa: E402

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
ANSWER_TOKENS = 16  # generated to find the answer; chat replies name it within the first dozen tokens
DEFAULT_PROMPTS = 50
QUICK_PROMPTS = 6
# IG first: its integration also yields the input gradient that Gradient and Input × Gradient reuse,
# so each method's time is its own extra cost (the table still lists the methods in registry order).
RUN_ORDER = sorted(attribution.METHODS, key=lambda name: name != "integrated_gradients")
IG_MAX_STEPS = 81  # the recommended preset's auto steps, capped so that a CPU run stays short (1000 by default)


def ig_settings(max_steps: int = IG_MAX_STEPS) -> dict:
    """IG as the evaluation runs it: the "recommended" preset (held context kept, auto steps to 1%
    completeness error) with its step budget capped at `max_steps` path points."""
    recommended = attribution.preset("recommended")
    settings = {name: recommended[name] for name in PRESET_FIELDS if name != "methods"}
    return {**settings, "max_steps": max_steps}


def answer_offset(text: str, answers: tuple[str, ...]) -> int | None:
    """Where the reply names the answer: the earliest accepted spelling, as a whole word, between the
    first "is"/"are" and the end of that clause — so "Hoi An, also known as Hanoi" is wrong."""
    verb = re.search(r"\b(is|are)\b", text)
    start = verb.end() if verb else 0
    stop = re.search(r"[,.;:!?(]", text[start:])
    clause = text[start : start + stop.start()] if stop else text[start:]
    found = [re.search(rf"\b{re.escape(answer)}\b", clause, re.IGNORECASE) for answer in answers]
    offsets = [start + match.start() for match in found if match]
    return min(offsets) if offsets else None


def answer_target(loaded, prompt: str, answers: tuple[str, ...], *, chat: bool) -> tuple[int | None, str]:
    """(k, reply): k (1-based) of the generated token where the greedy reply's answer starts, None when
    the reply does not give one of `answers`."""
    prompt_ids = encode_prompt(loaded, prompt, chat=chat).ids
    generated = generate(loaded, prompt_ids, ANSWER_TOKENS).tolist()
    prefixes = [loaded.tokenizer.decode(generated[: index + 1], skip_special_tokens=True) for index in range(len(generated))]
    reply = prefixes[-1] if prefixes else ""
    offset = answer_offset(reply, answers)
    if offset is None:
        return None, reply
    return next(index + 1 for index, prefix in enumerate(prefixes) if len(prefix) > offset), reply


def name_positions(analysis, name: str, among: np.ndarray) -> np.ndarray:
    """[n_tokens] bool: the tokens flagged in `among` that overlap any occurrence of `name` in the text
    those tokens spell (in order)."""
    positions = np.flatnonzero(among)
    ends = np.cumsum([len(analysis.input_tokens[index]) for index in positions])
    text = "".join(analysis.input_tokens[index] for index in positions).lower()
    found = np.zeros(analysis.n_tokens, dtype=bool)
    for match in re.finditer(re.escape(name.lower()), text):
        for index, end in zip(positions, ends):
            begin = end - len(analysis.input_tokens[index])
            found[index] |= begin < match.end() and end > match.start()
    return found


def evaluate_case(loaded, case: Case, max_steps: int) -> dict:
    record = {"kind": case.kind, "question": case.question, "country": case.country.name, "contrast": case.contrast}
    started = time.perf_counter()
    k, reply = answer_target(loaded, case.question, case.answers, chat=True)
    record.update(answer_seconds=time.perf_counter() - started, reply=reply)
    if k is None:
        return {**record, "correct": False}
    stages: list[tuple[float, str]] = []
    started = time.perf_counter()
    analysis = attribution.analyze(
        loaded, case.question, chat=True, target=k, max_new_tokens=k, contrast=case.contrast,
        methods=RUN_ORDER, trust=True, progress=lambda stage: stages.append((time.perf_counter(), stage.description)),
        **ig_settings(max_steps),
    )
    stages.append((time.perf_counter(), "end"))
    seconds = {stage: later - at for (at, stage), (later, _) in zip(stages, stages[1:])}
    typed = analysis.user_tokens & ~analysis.held_tokens
    country = name_positions(analysis, case.country.name, typed)
    # The reply before the target often restates the country ("The capital city of Latvia is"): the
    # model may read it there rather than in the question.
    restated = name_positions(analysis, case.country.name, ~analysis.held_tokens)
    trust = analysis.trust
    methods = {}
    for name, result in analysis.methods.items():
        top = attribution.top_k(result.scores, 1, exclude=~typed)
        top_content = attribution.top_k(result.scores, 1, exclude=analysis.held_tokens)
        item = trust.faithfulness[name]
        methods[name] = {
            "top_token": analysis.input_tokens[top[0]] if top else None,
            "plausible": bool(top and country[top[0]]),
            "plausible_anywhere": bool(top_content and restated[top_content[0]]),
            "comprehensiveness_margin": item.comprehensiveness - item.random_comprehensiveness,
            "sufficiency_margin": item.random_sufficiency - item.sufficiency,
            "comprehensiveness_vs_random": item.comprehensiveness_vs_random,
            "sufficiency_vs_random": item.sufficiency_vs_random,
            "beats_random": item.beats_random,
            "evidence": item.evidence,
            "seconds": seconds.get(f"computing {name}", 0.0),
        }
    completeness = trust.completeness
    return {
        **record, "correct": True, "k": k, "target": analysis.target.text,
        "foil": None if analysis.foil is None else analysis.foil.text,
        "generated": analysis.generated_text, "country_found": bool(country.any()), "methods": methods,
        "ig_error": completeness.relative_error if completeness else None,
        "ig_error_after_rerun": (completeness.relative_error if completeness.rerun_relative_error is None
                                 else completeness.rerun_relative_error) if completeness else None,
        "ig_converged": completeness.converged if completeness else None,
        "ig_points": int(analysis.methods["integrated_gradients"].n_steps) if "integrated_gradients" in analysis.methods
        else None,
        "trust_seconds": seconds.get("assessing trust", 0.0), "seconds": time.perf_counter() - started,
        "verdict": trust.verdict, "evidence": trust.evidence,
        "verdict_quotes_country": any(country[index] for index in trust.verdict_positions),
    }


def _share(values: list[bool]) -> str:
    interval = mean_interval([float(value) for value in values])
    return "—" if interval is None else f"{interval.mean:.0%} [{interval.low:.0%}, {interval.high:.0%}]"


def _interval(values: list[float]) -> str:
    interval = mean_interval(values)
    return "—" if interval is None else interval.text(2)


def report(records: list[dict], settings: dict) -> str:
    done = [record for record in records if record["correct"]]
    wrong = [record for record in records if not record["correct"]]
    if not done:
        return "No prompt was answered correctly: nothing to evaluate.\n"
    names = [name for name in attribution.METHODS if name in done[0]["methods"]]
    counts = {kind: sum(record["kind"] == kind for record in done) for kind in dict.fromkeys(r["kind"] for r in done)}
    lines = [
        f"# Attribution methods on {settings['model']}", "",
        f"{len(records)} prompts, {len(done)} answered correctly and evaluated "
        f"({', '.join(f'{kind}: {count}' for kind, count in counts.items())}). "
        f"Faithfulness removes tokens by `{settings['removal']}`, measures drops on the `{settings['scale']}` scale, "
        f"against {settings['random_orders']} random orders per prompt; IG: {settings['ig']}. Intervals: 95% bootstrap over prompts. "
        f"{settings['threads']} CPU thread(s); {settings['seconds']:.0f} s in all.", "",
        "Plausible: the method's top typed token is one of the country's tokens (top content token, typed "
        "or restated in the reply, for the second column). Faithfulness per prompt: the share of the random "
        "orders the method beats (50% = chance; comprehensiveness: removing its top tokens hurts more; "
        "sufficiency: keeping only them preserves more), averaged over prompts; beats random: the trust "
        "panel's own decision (beyond the random orders' interval on both measures). Seconds: each method's "
        "own extra time; Gradient and Input × Gradient reuse the input gradient that IG's integration yields "
        "(alone, Gradient costs one forward and backward).", "",
        "| method | plausible (typed) | plausible (typed or restated) | comprehensiveness vs random "
        "| sufficiency vs random | beats random on both | seconds per prompt |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        items = [record["methods"][name] for record in done]
        lines.append(
            f"| {attribution.METHOD_LABELS.get(name, name)} | {_share([item['plausible'] for item in items])} "
            f"| {_share([item['plausible_anywhere'] for item in items])} "
            f"| {_share([item['comprehensiveness_vs_random'] for item in items])} "
            f"| {_share([item['sufficiency_vs_random'] for item in items])} "
            f"| {_share([item['beats_random'] for item in items])} "
            f"| {np.mean([item['seconds'] for item in items]):.2f} |"
        )
    kinds = list(dict.fromkeys(record["kind"] for record in done))
    lines += ["", "Comprehensiveness − random by prompt kind (mean drop in log p(target), log p(target) − log "
              "p(foil) with a foil; 95% interval):", "",
              "| method | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for name in names:
        cells = [_interval([r["methods"][name]["comprehensiveness_margin"] for r in done if r["kind"] == kind])
                 for kind in kinds]
        lines.append(f"| {attribution.METHOD_LABELS.get(name, name)} | " + " | ".join(cells) + " |")
    errors = np.array([record["ig_error_after_rerun"] for record in done if record["ig_error_after_rerun"] is not None])
    if errors.size:
        points = np.array([record["ig_points"] for record in done if record["ig_points"] is not None])
        lines += [
            "", "IG completeness error |Σ − (F(x) − F(x′))| / |F(x) − F(x′)| (after the trust panel's rerun at twice "
            f"the steps, where a fixed step count was above {COMPLETENESS_TOLERANCE:.0%}), and the path points it took:", "",
            f"| median | 90th percentile | worst | within {COMPLETENESS_TOLERANCE:.0%} | converged (trust panel) "
            "| path points: median / most |", "|---|---|---|---|---|---|",
            f"| {np.median(errors):.1%} | {np.quantile(errors, 0.9):.1%} | {errors.max():.1%} "
            f"| {np.mean(errors <= COMPLETENESS_TOLERANCE):.0%} "
            f"| {np.mean([bool(record['ig_converged']) for record in done]):.0%} "
            f"| {np.median(points):.0f} / {points.max():.0f} |",
        ]
    evidence = {level: np.mean([record["evidence"] == level for record in done]) for level in ("clear", "weak", "none")}
    lines += [
        "", f"Verdicts: evidence clear in {evidence['clear']:.0%} of prompts, weak in {evidence['weak']:.0%}, "
        f"\"no method beats random\" in {evidence['none']:.0%}; the verdict quotes the country in "
        f"{np.mean([record['verdict_quotes_country'] for record in done]):.0%}. Analysis (trust included) "
        f"{np.median([record['seconds'] for record in done]):.1f} s per prompt (median; mean "
        f"{np.mean([record['seconds'] for record in done]):.1f} s), of which the trust panel "
        f"{np.median([record['trust_seconds'] for record in done]):.1f} s.",
    ]
    separated = [name for name in names
                 if mean_interval([r["methods"][name]["comprehensiveness_vs_random"] for r in done]).low > 0.5
                 and mean_interval([r["methods"][name]["sufficiency_vs_random"] for r in done]).low > 0.5]
    lines += ["", "Beat random orders on both measures over the prompts (interval above 50%): "
              + (", ".join(attribution.METHOD_LABELS.get(name, name) for name in separated) or "none") + "."]
    if wrong:
        lines += ["", f"Answered wrongly, skipped ({len(wrong)}): "
                  + "; ".join(f"{record['question']}" + (f" (vs{record['contrast']})" if record["contrast"] else "")
                              for record in wrong) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=DEFAULT_PROMPTS, help=f"prompts to run (default {DEFAULT_PROMPTS})")
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK_PROMPTS} prompts")
    parser.add_argument("--max-steps", type=int, default=IG_MAX_STEPS,
                        help=f"IG's auto-step budget in path points (default {IG_MAX_STEPS})")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown report here (default: print it)")
    parser.add_argument("--json", type=Path, default=None, help="also write every prompt's record here")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's; 1 is faster on a busy machine)")
    parser.add_argument("--model", default=MODEL)
    arguments = parser.parse_args()
    if arguments.threads is not None:
        torch.set_num_threads(arguments.threads)
    n_prompts = QUICK_PROMPTS if arguments.quick else arguments.prompts
    if n_prompts < 1:
        parser.error("--prompts must be at least 1")
    started = time.perf_counter()
    loaded = attribution.load_model(arguments.model)
    records = []
    for index, case in enumerate(cases(n_prompts), start=1):
        record = evaluate_case(loaded, case, arguments.max_steps)
        records.append(record)
        status = f"{record['seconds']:.1f} s, {record['evidence']}" if record["correct"] else "answered wrongly"
        print(f"[{index}/{n_prompts}] {case.question}{' vs' + case.contrast if case.contrast else ''}: {status}",
              file=sys.stderr, flush=True)
    settings = {
        "model": arguments.model, "removal": DEFAULT_REMOVAL, "scale": DEFAULT_SCALE, "random_orders": RANDOM_ORDERS,
        "ig": f"the recommended preset (auto steps to 1% error, at most {arguments.max_steps} points)",
        "threads": torch.get_num_threads(), "seconds": time.perf_counter() - started,
    }
    text = report(records, settings)
    if arguments.json:
        arguments.json.write_text(json.dumps({"settings": settings, "records": records}, indent=1) + "\n")
    if arguments.out:
        arguments.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
