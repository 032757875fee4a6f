"""Which sentence supports the whole answer? The page's Documents mode explains the whole reply
(`Settings.target = REPLY_TARGET`); this measures how often its Top sources table (`attribution.top_sources`)
ranks the answer's sentence first, on the documents of scripts/measure_documents.py.

    ATTRIBUTION_THREADS=1 python scripts/measure_documents_reply.py [--documents N] [--out FILE.json]

For each document of scripts/documents.py (five sentences, a blank line, a question whose answer sits in one
sentence; exactly `attribution.document_prompt([text], question)`) through SmolLM2's chat template: only
questions the model answers correctly count (`evaluate.answer_target`, as measure_documents.py decides it);
then one analysis as the page's Ask button runs it — sources per sentence, the whole answer explained
(20 new tokens, the page's default), context ablation (32 ablations, the default) and the gradient — and a
hit is the answer's sentence ranked first by each method among the document's five (the question is never a
source). Hit rates with 95% bootstrap intervals over documents; rows written to FILE.json after each document.
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

import attribution  # noqa: E402
from attribution.bootstrap import mean_interval  # noqa: E402
from attribution.files import atomic_write_text  # noqa: E402
from attribution.settings import REPLY_TARGET, Settings  # noqa: E402
from attribution.threads import cpu_threads_for  # noqa: E402
from documents import documents  # noqa: E402
from evaluate import MODEL, answer_target  # noqa: E402

METHODS = ("context_ablation", "gradient")
SETTINGS = Settings(methods=METHODS, chat=True, granularity="sentence", target=REPLY_TARGET, max_new_tokens=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=28)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("documents_reply_measurement.json"))
    options = parser.parse_args()
    loaded = attribution.load_model(MODEL, device="cpu")
    import torch

    rows, started = [], time.perf_counter()
    for index, item in enumerate(documents(options.documents)):
        with cpu_threads_for(loaded):  # the direct generation too, not only analyze's (ATTRIBUTION_THREADS=1)
            k, reply = answer_target(loaded, item.prompt, (item.answer,), chat=True)
        row = {"document": index, "fact": item.fact, "answer": item.answer, "answer_sentence": item.answer_sentence,
               "correct": k is not None, "reply": reply}
        if k is not None:
            began = time.perf_counter()
            analysis = attribution.analyze(loaded, attribution.document_prompt([item.text], item.question), SETTINGS)
            row["seconds"] = time.perf_counter() - began
            row["explained"] = analysis.span.text
            wanted = item.sentences[item.answer_sentence]
            for name in METHODS:
                sources = attribution.top_sources(analysis, by=name)
                if sorted(source.text for source in sources) != sorted(item.sentences):
                    raise ValueError(f"document {index}: the sources {[s.text for s in sources]} are not its sentences")
                row[f"{name}_first"] = sources[0].text
                row[f"{name}_hit"] = sources[0].text == wanted
        rows.append(row)
        print(json.dumps(row), flush=True)
        atomic_write_text(options.out, json.dumps({"model": MODEL, "threads": torch.get_num_threads(),
                                                   "elapsed_seconds": time.perf_counter() - started,
                                                   "load_average": os.getloadavg(), "rows": rows}, indent=1))
    answered = [row for row in rows if row["correct"]]
    print(f"{len(answered)} of {len(rows)} answered correctly")
    for name in METHODS:
        hits = np.array([row[f"{name}_hit"] for row in answered], dtype=float)
        interval = mean_interval(hits)
        print(f"{name}: answer's sentence first {interval.mean:.0%} [{interval.low:.0%}, {interval.high:.0%}] "
              f"({int(hits.sum())} of {len(hits)})")
    print(f"seconds per document (median): {np.median([row['seconds'] for row in answered]):.1f}")


if __name__ == "__main__":
    main()
