"""Which way of removing tokens lets faithfulness tell attribution methods from random token orders?

    python scripts/measure_removal.py [--prompts N] [--fact F] [--raw N] [--random R] [--out FILE.jsonl]
                                      [--markdown FILE.md] [--summary-only]

The README's table: `--prompts 24 --raw 12` (capitals), then `--fact language --prompts 16 --raw 0`
into the same FILE.jsonl (about 40 minutes each on 2 busy CPU cores).

For each prompt (chat questions of scripts/facts.py, capitals by default, target: the answer's first
token where the reply names it; plus raw "The capital city of X is" prompts, target: the capital's first token at
the next position) every method's scores are computed once, then each removal of
`attribution.faithfulness.REMOVALS` scores the methods' orders and R random orders (ERASER AOPC, held
context never removed). Raw rows go to FILE.jsonl (appended: a rerun resumes, and runs with other
settings add their prompts), and a markdown table of each removal's separation is printed (and
written to FILE.md): per method, the mean margin over random orders across prompts
with a 95% bootstrap interval, for comprehensiveness (method − random, higher is better) and
sufficiency (random − method, higher is better), and the share of the prediction that random removal
already destroys.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import attribution  # noqa: E402
from attribution.bootstrap import mean_interval  # noqa: E402
from attribution.faithfulness import REMOVALS, aopc, content_order, random_orders  # noqa: E402
from attribution.passes import AttributionRequest  # noqa: E402
from evaluate import MODEL, answer_target, ig_settings  # noqa: E402
from facts import COUNTRIES, FACT_TYPES, Case  # noqa: E402


def prompts(n_chat: int, n_raw: int, loaded, fact: str = "capital") -> list[dict]:
    """(prompt, chat, target) for correctly answered chat questions and raw prompts."""
    chosen = []
    for country in COUNTRIES:
        if sum(item["chat"] for item in chosen) >= n_chat:
            break
        case = Case(fact, country)
        k, _ = answer_target(loaded, case.question, case.answers, chat=True)
        if k is not None:
            chosen.append({"prompt": case.question, "chat": True, "target": k, "country": country.name})
    for country in COUNTRIES:
        if sum(not item["chat"] for item in chosen) >= n_raw:
            break
        prompt = f"The capital city of {country.name} is"
        k, _ = answer_target(loaded, prompt, country.capital, chat=False)
        if k == 1:  # the capital comes next: the setting of the measurement (target " Rig")
            chosen.append({"prompt": prompt, "chat": False, "target": 1, "country": country.name})
    return chosen


def measure(loaded, item: dict, n_random: int) -> dict:
    analysis = attribution.analyze(
        loaded, item["prompt"], chat=item["chat"], target=item["target"], max_new_tokens=item["target"],
        methods=list(attribution.METHODS), **ig_settings(),
    )
    request = AttributionRequest(
        input_ids=torch.tensor(analysis.input_ids, device=loaded.input_device), target_id=analysis.target.id
    )
    content = ~analysis.held_tokens
    orders = [content_order(result.scores, content) for result in analysis.methods.values()]
    orders += random_orders(content, n_random)
    row = {**item, "target_text": analysis.target.text, "methods": list(analysis.methods), "removals": {}}
    for removal in REMOVALS:
        started = time.perf_counter()
        scores = aopc(loaded, request, orders, content, removal)
        row["removals"][removal] = {
            "full": scores.full, "comprehensiveness": scores.comprehensiveness.tolist(),
            "sufficiency": scores.sufficiency.tolist(), "log_values": scores.log_values.tolist(),
            "ks": list(scores.ks), "seconds": time.perf_counter() - started,
        }
    return row


SCALES = {
    "probability": "drops in the target's probability (ERASER's; the trust panel's)",
    "log_probability": "drops in the target's log-probability (no floor at zero probability)",
}


def margins(rows: list[dict], removal: str, scale: str, index: int) -> tuple[list[float], list[float]]:
    """Per prompt: (method − random mean) comprehensiveness and (random mean − method) sufficiency, so
    that above 0 is better than random on both, on `scale`."""
    n_methods = len(rows[0]["methods"])
    comprehensiveness, sufficiency = [], []
    for row in rows:
        data = row["removals"][removal]
        values = np.array(data["log_values"])
        if scale == "probability":
            values = np.exp(values)
        drops = (values[0] - values[1:]).reshape(-1, len(data["ks"]), 2).mean(axis=1)  # [orders, 2]
        chance = drops[n_methods:].mean(axis=0)
        comprehensiveness.append(drops[index, 0] - chance[0])
        sufficiency.append(chance[1] - drops[index, 1])
    return comprehensiveness, sufficiency


def effect(values: list[float]) -> float:
    """Mean / standard deviation over prompts: scale-free, so removals and scales compare."""
    return float(np.mean(values) / max(np.std(values, ddof=1), 1e-12))


def summary(rows: list[dict]) -> str:
    methods = rows[0]["methods"]
    labels = [attribution.METHOD_LABELS[name] for name in methods]
    n_chat = sum(row["chat"] for row in rows)
    lines = [
        f"{len(rows)} prompts ({n_chat} chat questions at the answer's first token, {len(rows) - n_chat} raw "
        f"prompts at the next token), {len(rows[0]['removals'][next(iter(REMOVALS))]['comprehensiveness']) - len(methods)} "
        "random orders each. Per method: the effect size d = mean/sd over prompts of the margin over the random "
        "orders' mean (comprehensiveness C: method − random; sufficiency S: random − method; above 0 is better); "
        "✓ when its 95% bootstrap interval over prompts is above 0, ✗ when below. Beat random: methods with ✓ on "
        "both; apart from random: method × measure pairs whose interval excludes 0 (either side); mean |d| over "
        "those 12 pairs; spread: the standard deviation of d (C) across methods (how far apart it sets them).",
        "",
        "| removal | scale | random removal destroys | " + " | ".join(f"{label} C / S" for label in labels)
        + " | beat random | apart from random | mean abs(d) | spread |",
        "|---|---|---|" + "---|" * len(methods) + "---|---|---|---|",
    ]
    for removal in REMOVALS:
        destroyed = []
        for row in rows:
            data = row["removals"][removal]
            chance = np.array(data["comprehensiveness"][len(methods):])
            destroyed.append(chance.mean() / max(data["full"], 1e-12))
        for scale in SCALES:
            cells, separated, apart, effects = [], 0, 0, []
            for index in range(len(methods)):
                intervals = [mean_interval(values) for values in margins(rows, removal, scale, index)]
                signs = [1 if interval.low > 0 else -1 if interval.high < 0 else 0 for interval in intervals]
                separated += signs == [1, 1]
                apart += sum(sign != 0 for sign in signs)
                effects.append([effect(values) for values in margins(rows, removal, scale, index)])
                cells.append(" / ".join(f"{d:+.2f}{' ✓✗'[sign]}".rstrip() for d, sign in zip(effects[-1], signs)))
            share = f"{np.mean(destroyed):.0%}" if scale == "probability" else ""
            lines.append(
                f"| {removal} | {scale} | {share} | " + " | ".join(cells)
                + f" | {separated} of {len(methods)} | {apart} of {2 * len(methods)} "
                f"| {np.mean(np.abs(effects)):.2f} | {np.std([e[0] for e in effects], ddof=1):.2f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=24, help="chat capital questions (default 24)")
    parser.add_argument("--fact", choices=list(FACT_TYPES), default="capital", help="chat questions about (default capital)")
    parser.add_argument("--raw", type=int, default=12, help="raw 'The capital city of X is' prompts (default 12)")
    parser.add_argument("--random", type=int, default=10, help="random orders per prompt (default 10)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "removal_rows.jsonl",
                        help="the raw rows, appended (default: removal_rows.jsonl in the temporary folder)")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    parser.add_argument("--summary-only", action="store_true", help="summarise FILE.jsonl without measuring")
    arguments = parser.parse_args()
    done = [json.loads(line) for line in arguments.out.read_text().splitlines()] if arguments.out.exists() else []
    if not arguments.summary_only:
        loaded = attribution.load_model(MODEL)
        seen = {(row["prompt"], row["chat"]) for row in done}
        for item in prompts(arguments.prompts, arguments.raw, loaded, arguments.fact):
            if (item["prompt"], item["chat"]) in seen:
                continue
            started = time.perf_counter()
            row = measure(loaded, item, arguments.random)
            done.append(row)
            with arguments.out.open("a") as file:
                file.write(json.dumps(row) + "\n")
            print(f"{item['prompt']!r}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    text = summary(done)
    if arguments.markdown:
        arguments.markdown.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
