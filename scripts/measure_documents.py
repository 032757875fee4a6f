"""Which sentence answered? How often each method ranks the sentence that holds the answer first.

    ATTRIBUTION_THREADS=1 python scripts/measure_documents.py [--documents N] [--out FILE.json]
                                                              [--resume] [--retime N] [--summary-only]

For each document of scripts/documents.py (five sentences, then a blank line and a question whose answer
sits in exactly one sentence), sent through SmolLM2's chat template: the greedy reply must give the answer
(`evaluate.answer_target`: the accepted answer where the reply names it), and the explained token is the
generated token that starts it (the earlier reply tokens teacher-forced). Then

- every method of the comparison runs once (IG with the page's chat settings, which converge there: mean
  baseline, held context, signed sum, 50 steps), its token scores combined per sentence by the catalog's
  rule (sum for signed shares and attention, l2 for gradient norms);
- context ablation runs with 16, 32, 64 and 128 ablations (each timed on its own; the masks of n ablations
  are the first n of 128), its sentence weights taken as they are;
- for the choice of what it explains and how it removes: the logit-probability log(p / (1 − p)) that
  ContextCite regresses, fitted on the same 128 ablations, and 64 ablations hidden by the attention mask
  instead of dropped.

A hit: the answer's sentence has the largest score among the document's five (the question is left out).
Hit rates and the surrogate's held-out LDS are given with 95% bootstrap intervals over documents. The
rows are written to FILE.json after each document (atomically), so a stopped run still has its figures;
`--summary-only` prints the table from that file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import attribution  # noqa: E402
from attribution import context_ablation as ablation  # noqa: E402
from attribution.bootstrap import mean_interval  # noqa: E402
from attribution.catalog import CATALOG  # noqa: E402
from attribution.faithfulness import removed_log_probabilities  # noqa: E402
from attribution.files import atomic_write_text  # noqa: E402
from attribution.groups import grouping_for  # noqa: E402
from attribution.passes import AttributionRequest  # noqa: E402
from attribution.settings import Settings  # noqa: E402
from attribution.surrogate import fit  # noqa: E402
from attribution.threads import cpu_threads_for  # noqa: E402
from documents import documents  # noqa: E402
from evaluate import MODEL, answer_target  # noqa: E402

# Occlusion (one forward pass per token) is left out: on 2 busy cores it cost more than IG here.
METHODS = ("gradient", "attention", "input_x_gradient", "attention_rollout", "integrated_gradients")
ABLATION_COUNTS = (16, 32, 64, 128)
COMPARED_ABLATIONS = 64  # the attention-mask removal is compared at this count
#: IG as the page runs it on a chat model (ui.settings.CHAT_MODEL_DEFAULTS), where it converges.
IG = dict(n_steps=50, baseline="mean", aggregation="sum", hold_context=True)


def combine(name: str, scores: np.ndarray, groups: list[tuple[int, ...]]) -> np.ndarray:
    """A method's token scores → one per group: the catalog's rule where it has one, else sum for signed
    scores and attention shares, l2 for the gradient's norms."""
    rule_of = getattr(attribution.catalog, "combine_rule", None)
    rule = rule_of(name, IG["aggregation"]) if rule_of else ("l2" if name == "gradient" else "sum")
    values = [scores[list(group)] for group in groups]
    return np.array([np.sqrt(np.square(value).sum()) if rule == "l2" else value.sum() for value in values])


def hit(group_scores: np.ndarray, document_groups: list[int], answer_group: int) -> bool:
    among = group_scores[document_groups]
    return bool(document_groups[int(np.argmax(among))] == answer_group)


def sentences(loaded, analysis, item):
    """The removable tokens [seq], the prompt's sentences (token positions and text), the document's five
    among them (ValueError if the grouping splits them otherwise) and the answer's."""
    removable = analysis.user_tokens & ~analysis.held_tokens
    grouping = grouping_for(loaded.tokenizer, analysis.input_ids.tolist(), "sentence", held=~removable)
    text = [group for group in grouping.groups if group.kind == "text"]
    labels = [group.label for group in text]
    document_groups = [labels.index(sentence) for sentence in item.sentences]
    return removable, [group.tokens for group in text], labels, document_groups, document_groups[item.answer_sentence]


def timed_ablation(loaded, request: AttributionRequest, groups, labels, count: int):
    """Context ablation with `count` ablations on the given sentences, and its seconds."""
    counted = AttributionRequest(input_ids=request.input_ids, target_id=request.target_id,
                                 removable=request.removable, settings=Settings(n_ablations=count))
    begun = time.perf_counter()
    result = ablation.context_ablation_scores(loaded, counted, groups, labels, "sentence")
    return result, time.perf_counter() - begun


def retime(loaded, rows: list[dict], count: int) -> None:
    """Time every ablation count on its own for the first `count` answered documents (their seconds in
    `rows` replaced; the weights must come out as measured)."""
    items = documents(max(row["document"] for row in rows) + 1)
    for row in [row for row in rows if row.get("correct") and "ablation" in row][:count]:
        item = items[row["document"]]
        settings = Settings(methods=("gradient",), chat=True, target=row["target"], max_new_tokens=row["target"])
        analysis = attribution.analyze(loaded, item.prompt, settings)
        removable, groups, labels, _, _ = sentences(loaded, analysis, item)
        request = AttributionRequest(input_ids=torch.tensor(analysis.input_ids, device=loaded.input_device),
                                     target_id=analysis.target.id, removable=torch.from_numpy(removable))
        for number in ABLATION_COUNTS:
            result, seconds = timed_ablation(loaded, request, groups, labels, number)
            cell = row["ablation"][str(number)]
            np.testing.assert_allclose(result.group_weights, cell["weights"], rtol=1e-4, atol=1e-6)
            cell["seconds"] = seconds
        row["retimed"] = list(os.getloadavg())
        print(f"document {row['document']} retimed, load {row['retimed'][0]:.2f}", flush=True)


def measure(loaded, index: int, item, *, timed: bool, compared: bool) -> dict:
    row = {"document": index, "fact": item.fact, "answer": item.answer, "answer_sentence": item.answer_sentence}
    k, reply = answer_target(loaded, item.prompt, (item.answer,), chat=True)
    row.update(reply=reply, correct=k is not None)
    if k is None:
        return row
    stages: list[tuple[str, float]] = []

    def progress(step) -> None:
        stages.append((step.method or step.kind, time.perf_counter()))

    settings = Settings(methods=METHODS, chat=True, target=k, max_new_tokens=k, **IG)
    analysis = attribution.analyze(loaded, item.prompt, settings, progress=progress)
    ended = time.perf_counter()
    times = {name: (stages[number + 1][1] if number + 1 < len(stages) else ended) - started
             for number, (name, started) in enumerate(stages)}
    removable, groups, labels, document_groups, answer_group = sentences(loaded, analysis, item)
    row.update(target=k, target_text=analysis.target.text, n_tokens=analysis.n_tokens, n_groups=len(groups),
               seconds={name: times[name] for name in METHODS}, hits={})
    for name in METHODS:
        row["hits"][name] = hit(combine(name, analysis.methods[name].scores, groups), document_groups, answer_group)
    request = AttributionRequest(input_ids=torch.tensor(analysis.input_ids, device=loaded.input_device),
                                 target_id=analysis.target.id, removable=torch.from_numpy(removable))

    def run(count: int):
        return timed_ablation(loaded, request, groups, labels, count)

    largest, seconds = run(ABLATION_COUNTS[-1])
    row["ablation"] = {}
    for count in ABLATION_COUNTS:
        # The masks of n ablations are the first n of the largest count's: the same rows, the same scores.
        surrogate = fit(largest.masks[:count], largest.ablation_scores[:count])
        cell = {"hit": hit(surrogate.weights, document_groups, answer_group), "lds": surrogate.heldout_lds,
                "weights": [float(value) for value in surrogate.weights]}
        if count == ABLATION_COUNTS[-1]:
            cell["seconds"] = seconds
        elif timed:
            result, cell["seconds"] = run(count)  # timed on its own, and the same weights
            np.testing.assert_allclose(result.group_weights, surrogate.weights, rtol=1e-6, atol=1e-9)
        row["ablation"][str(count)] = cell
    # ContextCite's logit-probability, on the same ablations: log p − log(1 − p).
    log_p = np.minimum(largest.ablation_scores, -1e-12)
    logit = fit(largest.masks, log_p - np.log1p(-np.exp(log_p)))
    row["logit_probability"] = {"hit": hit(logit.weights, document_groups, answer_group), "lds": logit.heldout_lds}
    if compared:
        # The same first ablations with the removed tokens hidden by the attention mask instead of dropped.
        masks = largest.masks[:COMPARED_ABLATIONS]
        hidden = np.zeros((len(masks), analysis.n_tokens), dtype=bool)
        for column, group in enumerate(groups):
            hidden[:, list(group)] = ~masks[:, [column]]
        begun = time.perf_counter()
        masked = fit(masks, removed_log_probabilities(loaded, request, hidden, "attention_mask"))
        dropped = fit(masks, largest.ablation_scores[:COMPARED_ABLATIONS])
        row["attention_mask"] = {"hit": hit(masked.weights, document_groups, answer_group),
                                 "lds": masked.heldout_lds, "seconds": time.perf_counter() - begun,
                                 "dropped_lds": dropped.heldout_lds}
    return row


def interval_text(values, percent: bool = False) -> str:
    interval = mean_interval(values)
    if interval is None:
        return "–"
    if percent:
        return f"{interval.mean:.0%} [{interval.low:.0%}, {interval.high:.0%}]"
    return interval.text(2)


def _seconds(values: list[float]) -> str:
    """The median (a shared machine stalls a run now and then: one 64-ablation run took 30× its usual time)."""
    return f"{np.median(values):.1f} (n={len(values)})" if values else "–"


def summary(rows: list[dict]) -> str:
    done = [row for row in rows if row.get("correct") and "ablation" in row]
    if not done:
        return "no document answered correctly yet"
    lines = [f"{len(done)} documents answered correctly (of {len(rows)} asked); a hit: the answer's sentence "
             "ranked first among the document's five (chance 20%); 95% bootstrap intervals over documents; "
             "seconds: median per document (n: documents timed).", "",
             "| method | answer sentence ranked first | seconds |", "|---|---|---|"]
    for name in METHODS:
        lines.append(f"| {CATALOG[name].label} | {interval_text([row['hits'][name] for row in done], True)} | "
                     f"{_seconds([row['seconds'][name] for row in done])} |")
    default = str(attribution.Settings().n_ablations)
    retimed = [row for row in done if "retimed" in row] or done
    lines.append(f"| Context ablation ({default} ablations, the default) | "
                 f"{interval_text([row['ablation'][default]['hit'] for row in done], True)} | "
                 f"{_seconds([row['ablation'][default]['seconds'] for row in retimed if 'seconds' in row['ablation'][default]])} |")
    largest = str(ABLATION_COUNTS[-1])
    # Seconds from the documents whose counts were all timed in one go (--retime), when there are any: the
    # same load for every count.
    timed = [row for row in done if "retimed" in row] or done
    lines += ["", f"| context ablation | answer sentence ranked first | held-out LDS | LDS short of {largest}'s "
              "(paired) | seconds |", "|---|---|---|---|---|"]
    for count in ABLATION_COUNTS:
        cells = [row["ablation"][str(count)] for row in done]
        short = [row["ablation"][largest]["lds"] - row["ablation"][str(count)]["lds"] for row in done
                 if row["ablation"][largest]["lds"] is not None and row["ablation"][str(count)]["lds"] is not None]
        lines.append(f"| {count} ablations | {interval_text([cell['hit'] for cell in cells], True)} | "
                     f"{interval_text([cell['lds'] for cell in cells])} | "
                     f"{interval_text(short) if str(count) != largest else ''} | "
                     f"{_seconds([row['ablation'][str(count)]['seconds'] for row in timed if 'seconds' in row['ablation'][str(count)]])} |")
    cells = [row["logit_probability"] for row in done]
    lines.append(f"| {ABLATION_COUNTS[-1]} ablations, ContextCite's logit-probability instead of the log-probability | "
                 f"{interval_text([cell['hit'] for cell in cells], True)} | {interval_text([cell['lds'] for cell in cells])} "
                 "| | (the same ablations) |")
    compared = [row for row in done if "attention_mask" in row]
    if compared:
        cells = [row["attention_mask"] for row in compared]
        dropped = [row["ablation"][str(COMPARED_ABLATIONS)] for row in compared]
        lines.append(f"| {COMPARED_ABLATIONS} ablations hidden by the attention mask instead of dropped "
                     f"({len(compared)} documents) | {interval_text([cell['hit'] for cell in cells], True)} | "
                     f"{interval_text([cell['lds'] for cell in cells])} | | {_seconds([cell['seconds'] for cell in cells])} |")
        lines.append(f"| {COMPARED_ABLATIONS} ablations dropped, the same {len(compared)} documents | "
                     f"{interval_text([cell['hit'] for cell in dropped], True)} | "
                     f"{interval_text([cell['lds'] for cell in dropped])} | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "documents_measurement.json")
    parser.add_argument("--timed", type=int, default=3,
                        help="the first N answered documents also time each smaller ablation count on its own")
    parser.add_argument("--compared", type=int, default=8,
                        help=f"the first N answered documents also hide {COMPARED_ABLATIONS} ablations by the "
                             "attention mask")
    parser.add_argument("--resume", action="store_true", help="keep the documents FILE.json already has")
    parser.add_argument("--retime", type=int, default=0,
                        help="only time each ablation count on its own for the first N answered documents of FILE.json")
    parser.add_argument("--summary-only", action="store_true")
    arguments = parser.parse_args()
    if arguments.summary_only:
        print(summary(json.loads(arguments.out.read_text())["rows"]))
        return
    loaded = attribution.load_model(MODEL, device="cpu")
    if arguments.retime:
        record = json.loads(arguments.out.read_text())
        with cpu_threads_for(loaded):
            retime(loaded, record["rows"], arguments.retime)
        atomic_write_text(arguments.out, json.dumps(record, indent=1) + "\n")
        print(summary(record["rows"]))
        return
    rows: list[dict] = []
    spent = 0.0
    if arguments.resume and arguments.out.exists():  # a stopped run goes on from its last written document
        record = json.loads(arguments.out.read_text())
        rows, spent = record["rows"], record["elapsed_seconds"]
    started = time.perf_counter() - spent
    for index, item in enumerate(documents(arguments.documents)):
        if index < len(rows):
            continue
        answered = sum(row["correct"] for row in rows)
        with cpu_threads_for(loaded):  # the direct calls too, not only analyze's (ATTRIBUTION_THREADS=1)
            rows.append(measure(loaded, index, item, timed=answered < arguments.timed,
                                compared=answered < arguments.compared))
            threads = torch.get_num_threads()
        load = os.getloadavg()
        record = {"model": MODEL, "threads": threads, "load_average": load,
                  "elapsed_seconds": time.perf_counter() - started, "rows": rows}
        atomic_write_text(arguments.out, json.dumps(record, indent=1) + "\n")
        print(f"document {index}: correct={rows[-1]['correct']} elapsed {record['elapsed_seconds']:.0f} s, "
              f"load {load[0]:.2f}", flush=True)
    print(summary(rows))
    print(f"\nload average (1, 5, 15 min) at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
