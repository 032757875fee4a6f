#!/usr/bin/env python
"""Train the project's offline demo model: a tiny Llama that memorises world capitals.

One command, deterministic and seeded, CPU only::

    python scripts/train_demo_model.py                      # -> assets/demo-model
    python scripts/train_demo_model.py --output /tmp/demo --steps 150   # quick smoke run
    python scripts/train_demo_model.py --evaluate-only      # re-measure assets/demo-model, check eval.json

What it does (the parts live in scripts/demo_model/)

1. Builds a facts corpus from the literal table ``COUNTRIES`` (``data.py``: 193 UN member
   states + Vatican City): the capital of every country in many phrasings (including
   the seed phrasing ``"What is the Capital City of {country}?"``) and, as a second
   fact type, the continent of every country.  Target format: the answer follows the
   prompt after one space and is closed by ``<|end_of_text|>``, e.g.
   ``"<|begin_of_text|>What is the Capital City of Latvia? Riga<|end_of_text|>"``.
   Augmentation: every epoch, half of the examples get one random word (mostly a
   made-up word, sometimes a filler word) inserted at a random word boundary.
2. Trains a byte-level BPE tokenizer with Llama-3 style special tokens (``attribution.testing``,
   the project's builder of small models) and wraps it in ``transformers.PreTrainedTokenizerFast``.
3. Trains a ``LlamaForCausalLM`` from scratch (GQA, RoPE, tied embeddings) with a plain
   PyTorch loop (fixed number of steps, so re-running reproduces the result; ``train.py``).
4. Saves model (fp16 safetensors) + tokenizer + ``eval.json`` + model card README.md
   (``card.py``), after evaluating the *saved* checkpoint loaded with ``attribution.load_model``
   (float32; ``evaluate.py``): greedy accuracy on the seed phrasing, on all trained phrasings, on
   the held-out phrasings in ``HELDOUT_CAPITAL_TEMPLATES`` (never used for training nor for the
   tokenizer), the continent fact, and how often the gradient / attention / Integrated-Gradients
   scores of ``attribution.analyze`` put their top score on the country's tokens.

The module is import-safe: tests import ``COUNTRIES``, the templates and helpers from it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
if str(SCRIPTS.parent) not in sys.path:  # the attribution package
    sys.path.insert(0, str(SCRIPTS.parent))
if str(SCRIPTS) not in sys.path:  # demo_model/ beside this file (first on the path when run as a script)
    sys.path.append(str(SCRIPTS))

from demo_model.data import (  # noqa: E402,F401  (re-exported: tests read the table and templates here)
    CAPITALS, COUNTRIES, HELDOUT_CAPITAL_TEMPLATES, SEED_TEMPLATE, TRAIN_CAPITAL_TEMPLATES,
)
from demo_model.evaluate import country_token_mask, evaluate, saliency_country_top1  # noqa: E402,F401

DEFAULT_OUTPUT = SCRIPTS.parent / "assets" / "demo-model"


def measure(out_dir: Path, args) -> dict:
    """Every evaluation figure of the saved checkpoint in `out_dir`."""
    import attribution

    loaded = attribution.load_model(str(out_dir), device="cpu", dtype="float32")
    started = time.time()
    results = evaluate(loaded)
    results["saliency_country_top1"] = saliency_country_top1(loaded, [c for c, _, _ in COUNTRIES],
                                                             ig_steps=args.ig_steps)
    results["eval_seconds"] = round(time.time() - started, 1)
    return results


def print_results(results: dict) -> None:
    print(json.dumps({k: v for k, v in results.items() if not k.endswith("_wrong")}, indent=2), flush=True)
    print("wrong on seed phrasing:", results["seed_wrong"], flush=True)
    for t, wrong in results["heldout_wrong"].items():
        print(f"wrong on held-out {t!r}: {wrong}", flush=True)


def differences(stored: dict, measured: dict, path: str = "") -> list[str]:
    """Figures that `measured` holds and `stored` (eval.json) gives differently (floats to 1e-6)."""
    found = []
    for key, value in measured.items():
        if key not in stored or key == "eval_seconds":
            continue
        if isinstance(value, dict):
            found += differences(stored[key], value, f"{path}{key}.")
        elif isinstance(value, float) and isinstance(stored[key], (int, float)):
            if abs(value - stored[key]) > 1e-6:
                found.append(f"{path}{key}: eval.json {stored[key]!r}, measured {value!r}")
        elif value != stored[key]:
            found.append(f"{path}{key}: eval.json {stored[key]!r}, measured {value!r}")
    return found


def evaluate_only(args) -> int:
    """Re-measure a saved model and compare with the eval.json beside it; writes nothing."""
    import torch

    torch.set_num_threads(args.threads)
    out_dir = Path(args.output)
    results = measure(out_dir, args)
    print_results(results)
    stored_path = out_dir / "eval.json"
    if not stored_path.exists():
        print(f"{stored_path} does not exist: nothing to compare with", flush=True)
        return 0
    found = differences(json.loads(stored_path.read_text()), results)
    print("\n".join(["differs from eval.json:", *found]) if found else
          f"every figure equals {stored_path} (floats to 1e-6); evaluation took {results['eval_seconds']} s", flush=True)
    return 1 if found else 0


def train_and_save(args) -> int:
    from demo_model.card import write_card
    from demo_model.train import save, train

    started = time.time()
    out_dir = Path(args.output)
    model, tokenizer, figures = train(args)
    save(model, tokenizer, out_dir)
    results = measure(out_dir, args)
    eval_seconds = results.pop("eval_seconds")
    size_bytes = sum(f.stat().st_size for f in out_dir.iterdir() if f.is_file())
    results.update({"model_and_tokenizer_mib": round(size_bytes / 2**20, 2), **figures, "seed": args.seed,
                    "threads": args.threads, "eval_seconds": eval_seconds})
    print_results(results)
    (out_dir / "eval.json").write_text(json.dumps(results, indent=2) + "\n")
    write_card(out_dir, model.config, tokenizer, results, args)
    size_bytes = sum(f.stat().st_size for f in out_dir.iterdir() if f.is_file())
    print(f"saved to {out_dir} ({size_bytes / 2**20:.2f} MiB in all); total wall time "
          f"{(time.time() - started) / 60:.1f} min", flush=True)
    return 0


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--output", default=str(DEFAULT_OUTPUT), help="output folder (default: assets/demo-model)")
    ap.add_argument("--evaluate-only", action="store_true",
                    help="do not train: evaluate the model already in --output and compare with its eval.json")
    ap.add_argument("--steps", type=int, default=1100, help="optimizer steps (fixed, for reproducibility)")
    ap.add_argument("--minutes", type=float, default=20.0,
                    help="hard wall-clock cap for training; hitting it stops early (result then not reproducible). 0 = none")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--p-insert", type=float, default=0.5, help="fraction of examples with an inserted random word")
    ap.add_argument("--vocab-size", type=int, default=2048)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--intermediate", type=int, default=512)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ig-steps", type=int, default=50)
    ap.add_argument("--log-every", type=int, default=50)
    return ap.parse_args(argv)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parse_args()
    assert len(COUNTRIES) == 194 and len(set(CAPITALS)) == 194, len(COUNTRIES)
    assert not set(HELDOUT_CAPITAL_TEMPLATES) & set(TRAIN_CAPITAL_TEMPLATES)
    sys.exit(evaluate_only(args) if args.evaluate_only else train_and_save(args))
