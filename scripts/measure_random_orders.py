"""How many random orders the trust panel's reference needs: what fewer would save, and what they would change.

    python scripts/measure_random_orders.py [--prompts 12] [--orders 8,12,16] [--json FILE]

The trust panel (attribution.faithfulness) judges each method against `RANDOM_ORDERS` random orders of the
same content tokens: a method beats random on a measure when it lies beyond the 95% bootstrap interval of
the random orders' mean. Fewer orders make the panel cheaper (each order adds up to 8 removal rows) and
its reference noisier. For each chat capital question (scripts/facts.py), with the page's chat defaults
(benchmarks/real_model.py reads them from ui/settings.py), every method's scores are computed once; then
for two seeds the methods' orders and the largest count of random orders are scored in one ERASER pass, and
each smaller count reads the first orders of the same draw (`random_orders` draws them in sequence). Per
count it prints how many of the method × measure "beats random" decisions differ from those of the
largest count drawn with the other seed. At the largest count that is the reference's own seed-to-seed
noise, the floor against which a smaller count is judged. It also prints the seconds of the trust
rows at each count (one pass of the methods' orders and that many random orders, seed 0).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import attribution  # noqa: E402
from attribution.faithfulness import DEFAULT_REMOVAL, DEFAULT_SCALE, aopc, content_order, judged, random_orders  # noqa: E402,E501
from attribution.files import atomic_write_text  # noqa: E402
from attribution.passes import AttributionRequest  # noqa: E402
from attribution.reports import RANDOM_ORDERS  # noqa: E402
from benchmarks.real_model import page_chat_defaults  # noqa: E402
from facts import COUNTRIES  # noqa: E402

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
SEEDS = (0, 1)


def decisions(scores, names: list[str], n_random: int) -> list[list[bool]]:
    """[methods][2]: whether each method beats the first `n_random` random orders on comprehensiveness and on
    sufficiency, as the trust panel decides (`attribution.faithfulness.judged`)."""
    report = judged(scores, names, n_random, removal=DEFAULT_REMOVAL, scale=DEFAULT_SCALE)
    return [[report[name].comprehensiveness_beats_random, report[name].sufficiency_beats_random] for name in names]


def measure(loaded, prompt: str, counts: list[int]) -> dict:
    settings = dict(page_chat_defaults(), trust=False, all_targets=False)
    analysis = attribution.analyze(loaded, prompt, **settings)
    request = AttributionRequest(input_ids=torch.tensor(analysis.input_ids, device=loaded.input_device),
                                 target_id=analysis.target.id)
    content = ~analysis.held_tokens
    names = list(analysis.methods)
    orders = [content_order(result.scores, content) for result in analysis.methods.values()]
    most = max(counts)
    by_seed = {seed: aopc(loaded, request, orders + random_orders(content, most, seed=seed), content)
               for seed in SEEDS}
    seconds = {}
    for count in counts:
        started = time.perf_counter()
        aopc(loaded, request, orders + random_orders(content, count, seed=0), content)
        seconds[count] = time.perf_counter() - started
    return {
        "prompt": prompt, "target": analysis.target.text, "methods": names,
        "decisions": {str(seed): {str(count): decisions(by_seed[seed], names, count) for count in counts}
                      for seed in SEEDS},
        "seconds": {str(count): value for count, value in seconds.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--orders", default=f"8,12,{RANDOM_ORDERS}", help="random-order counts, comma-separated")
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--json", help="write every prompt's decisions and seconds here")
    arguments = parser.parse_args()
    counts = sorted({int(value) for value in arguments.orders.split(",")})
    if counts[0] < 2:
        raise SystemExit("each count of random orders must be 2 or more (an interval needs two)")
    loaded = attribution.load_model(arguments.model)
    rows = []
    for country in COUNTRIES[: arguments.prompts]:
        row = measure(loaded, f"What is the Capital City of {country.name}?", counts)
        rows.append(row)
        print(f"{country.name}: explaining {row['target']!r}, trust rows "
              + ", ".join(f"{count} orders {row['seconds'][str(count)]:.2f} s" for count in counts), flush=True)
    most = str(counts[-1])
    print(f"\n{len(rows)} chat prompts, {len(rows[0]['methods'])} methods × 2 measures each; decisions that differ "
          f"from {most} orders drawn with the other seed:\n")
    print("| random orders | decisions that differ (seed 0 vs 1, seed 1 vs 0) | trust rows, median s |")
    print("|---|---|---|")
    for count in counts:
        differ = []
        for seed, other in ((SEEDS[0], SEEDS[1]), (SEEDS[1], SEEDS[0])):
            mine = np.concatenate([np.asarray(row["decisions"][str(seed)][str(count)]) for row in rows])
            theirs = np.concatenate([np.asarray(row["decisions"][str(other)][most]) for row in rows])
            differ.append(f"{int((mine != theirs).sum())} of {mine.size}")
        seconds = float(np.median([row["seconds"][str(count)] for row in rows]))
        print(f"| {count} | {', '.join(differ)} | {seconds:.2f} |")
    if arguments.json:
        atomic_write_text(Path(arguments.json), json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
