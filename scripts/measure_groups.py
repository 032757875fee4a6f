"""What scores per word, sentence and segment cost on SmolLM2: placing the tokens in the text and grouping
them (token_spans, groups_from_spans), and occlusion with its group rows (every word, sentence and segment
hidden) against occlusion per token only, on a document-and-question prompt, one thread.

    ATTRIBUTION_THREADS=1 python scripts/measure_groups.py
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import attribution  # noqa: E402
from attribution.groups import GRANULARITIES, groups_from_spans, token_spans  # noqa: E402
from attribution.methods import occlusion  # noqa: E402
from attribution.passes import AttributionRequest  # noqa: E402

DOCUMENT = (
    "Riga is the capital and largest city of Latvia. It lies on the Gulf of Riga at the mouth of the Daugava "
    "river. Tallinn is the capital of Estonia, and Vilnius is the capital of Lithuania.\n\n"
    "The old town of Riga is a UNESCO World Heritage Site, known for its Art Nouveau buildings. About 600,000 "
    "people live in the city. Its airport is the largest in the Baltic states.\n\n"
    "Question: Which river flows through the capital of Latvia? Answer:"
)


def best(function, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("ATTRIBUTION_THREADS", "1")))  # occlusion is called directly here
    loaded = attribution.load_model("HuggingFaceTB/SmolLM2-135M-Instruct", device="cpu")
    ids = loaded.tokenizer(DOCUMENT)["input_ids"]
    spans_s = best(lambda: token_spans(loaded.tokenizer, ids), 5)
    spans = token_spans(loaded.tokenizer, ids)
    held = [index == 0 for index in range(len(ids))]
    groupings = {g: groups_from_spans(spans, g, held=held) for g in GRANULARITIES[1:]}
    group_s = best(lambda: [groups_from_spans(spans, g, held=held) for g in GRANULARITIES[1:]], 5)

    with torch.inference_mode():
        target = int(loaded.model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
    request = AttributionRequest(input_ids=torch.tensor(ids), target_id=target)
    grouped = dataclasses.replace(request, groupings=groupings)
    rows = len({group.tokens for grouping in groupings.values() for group in grouping.groups} | {(i,) for i in range(len(ids))})
    tokens_s = best(lambda: occlusion(loaded, request))
    groups_s = best(lambda: occlusion(loaded, grouped))
    print(f"{len(ids)} tokens; groups: " + ", ".join(f"{g} {len(x)}" for g, x in groupings.items()))
    print(f"token_spans {spans_s * 1000:.1f} ms, three groupings {group_s * 1000:.1f} ms")
    print(f"occlusion per token only: {len(ids) + 1} rows, {tokens_s:.2f} s; with the group rows: {rows + 1} rows, "
          f"{groups_s:.2f} s (x{groups_s / tokens_s:.2f})")
    print(f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
