"""Measure IG completeness error per baseline and step count, on the demo model and random Llama shapes.

    python scripts/measure_baselines.py [--prompts N] [--steps 50,300]

Prints a markdown table: median and worst relative completeness error
|Σ attributions − (F(x) − F(x′))| / |F(x) − F(x′)| over the prompts, signed (sum) aggregation.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import attribution  # noqa: E402
from attribution.methods import integrated_gradients  # noqa: E402
from attribution.passes import AttributionRequest  # noqa: E402
from attribution.targets import greedy_next_token  # noqa: E402

COUNTRIES = ["Latvia", "France", "Japan", "Kenya", "Peru", "Norway", "Egypt", "Chile", "India", "Spain"]
RANDOM_SHAPES = {
    "random Llama h64 L2 4h/2kv": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2),
    "random Llama h128 L4 8h/2kv": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                                        num_attention_heads=8, num_key_value_heads=2),
}


def random_model_folder(root: Path, name: str, shape: dict) -> Path:
    """A seeded random Llama that reuses the demo model's tokenizer (no download)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(attribution.DEMO_MODEL_PATH)
    folder = root / name.replace(" ", "_").replace("/", "-")
    config = LlamaConfig(vocab_size=len(tokenizer), tie_word_embeddings=True, **shape,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def measure(loaded, prompts, baseline, n_steps) -> list[float]:
    errors = []
    for prompt in prompts:
        ids = loaded.tokenizer(prompt, return_tensors="pt")["input_ids"][0]
        request = AttributionRequest(ids, greedy_next_token(loaded, ids), n_steps=n_steps, baseline=baseline, aggregation="sum")
        errors.append(integrated_gradients(loaded, request).relative_completeness_error)
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("--steps", default="50,300")
    arguments = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    prompts = [f"What is the Capital City of {country}?" for country in COUNTRIES[: arguments.prompts]]
    steps = [int(value) for value in arguments.steps.split(",")]
    with tempfile.TemporaryDirectory() as root:
        models = {"demo model": str(attribution.DEMO_MODEL_PATH)}
        models.update({name: str(random_model_folder(Path(root), name, shape)) for name, shape in RANDOM_SHAPES.items()})
        print("| model | baseline | " + " | ".join(f"{n} steps: median / worst" for n in steps) + " |")
        print("|---|---|" + "---|" * len(steps))
        for model_name, path in models.items():
            loaded = attribution.load_model(path, device="cpu")
            for baseline in attribution.BASELINES:
                cells = []
                for n_steps in steps:
                    errors = measure(loaded, prompts, baseline, n_steps)
                    cells.append(f"{np.median(errors):.1%} / {max(errors):.1%}")
                print(f"| {model_name} | {baseline} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
