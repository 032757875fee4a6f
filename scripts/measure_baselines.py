"""Measure IG's relative completeness error per setting, on the demo model, random Llama shapes and
the real SmolLM2-135M-Instruct (raw prompts and chat prompts): the evidence behind the presets.

    python scripts/measure_baselines.py [--prompts N] [--models demo,random,smollm2] [--settings ...]

Prints a markdown table: median and worst relative completeness error
|Σ attributions − (F(x) − F(x′))| / |F(x) − F(x′)| over the prompts (signed aggregation), the IG
path points used (median) and the seconds per prompt.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import attribution  # noqa: E402
from attribution.settings import PRESET_FIELDS  # noqa: E402
from attribution.testing import build_model_folder  # noqa: E402

COUNTRIES = ["Latvia", "France", "Japan", "Kenya", "Peru", "Norway", "Egypt", "Chile", "India", "Spain"]
RANDOM_SHAPES = {
    "random Llama h64 L2 4h/2kv": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2),
    "random Llama h128 L4 8h/2kv": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                                        num_attention_heads=8, num_key_value_heads=2),
}
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
#: name → analyze() settings for IG (aggregation is always "sum": completeness is about the signed sum)
SETTINGS = {
    "seed-zero-50": dict(baseline="zero", n_steps=50),
    "pad-50": dict(baseline="pad", n_steps=50),
    "zero-held-50": dict(baseline="zero", n_steps=50, hold_context=True),
    "pad-held-50": dict(baseline="pad", n_steps=50, hold_context=True),
    "mean-held-50": dict(baseline="mean", n_steps=50, hold_context=True),
    "mean-held-probability-50": dict(baseline="mean", n_steps=50, hold_context=True, score="probability"),
    "mean-held-logprob-50": dict(baseline="mean", n_steps=50, hold_context=True, score="log_probability"),
    "mean-held-probability-auto": dict(baseline="mean", n_steps="auto", hold_context=True, score="probability"),
    "recommended": {name: attribution.PRESETS["recommended"][name] for name in PRESET_FIELDS},
}


def random_model_folder(root: Path, name: str, shape: dict) -> Path:
    """A seeded random Llama that reuses the demo model's tokenizer (no download)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(attribution.DEMO_MODEL_PATH)
    folder = root / name.replace(" ", "_").replace("/", "-")
    return build_model_folder(folder, tokenizer, seed=0, tie_word_embeddings=True, **shape)


def cases(model_kind: str, count: int) -> list[tuple[str, dict]]:
    """(label, prompt settings) per model: raw prompts everywhere, chat prompts on the chat model."""
    countries = COUNTRIES[:count]
    if model_kind != "smollm2":
        return [("raw", dict(prompt=f"What is the Capital City of {country}?")) for country in countries]
    # Chat answers start "The capital city of X is ...": explain the token after "is" (the capital).
    raw = [("raw", dict(prompt=f"The capital city of {country} is")) for country in countries]
    chat = [("chat", dict(prompt=f"What is the Capital City of {country}?", chat=True)) for country in countries]
    return raw + chat


def capital_target(loaded, prompt: str) -> int:
    """The generated position (1-based) right after " is" in the chat answer "The capital ... is Riga"."""
    answer = attribution.analyze(loaded, prompt, chat=True, max_new_tokens=16, methods=["attention"])
    pieces = [loaded.tokenizer.decode([token]) for token in answer.generated_ids.tolist()]
    for index, piece in enumerate(pieces[:-1]):
        if piece.strip() == "is":
            return index + 2
    return 1


def measure(loaded, prompt_settings: dict, settings: dict) -> tuple[float, int, float]:
    options = {**settings, **{key: value for key, value in prompt_settings.items() if key != "prompt"}}
    if options.get("chat"):
        options["target"] = capital_target(loaded, prompt_settings["prompt"])
    options.update(methods=["integrated_gradients"], aggregation="sum")
    options.setdefault("max_new_tokens", 1 if "target" not in options else options["target"])
    start = time.perf_counter()
    analysis = attribution.analyze(loaded, prompt_settings["prompt"], **options)
    result = analysis.methods["integrated_gradients"]
    return result.relative_completeness_error, result.n_steps, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=4, help="countries per model and prompt kind")
    parser.add_argument("--models", default="demo,random,smollm2")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"from: {', '.join(SETTINGS)}")
    arguments = parser.parse_args()
    chosen = [name.strip() for name in arguments.settings.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SETTINGS]
    if unknown:
        parser.error(f"unknown settings {unknown}; valid: {', '.join(SETTINGS)}")
    kinds = arguments.models.split(",")
    with tempfile.TemporaryDirectory() as root:
        models: dict[str, tuple[str, str]] = {}
        if "demo" in kinds:
            models["demo model"] = ("demo", str(attribution.DEMO_MODEL_PATH))
        if "random" in kinds:
            models.update({name: ("random", str(random_model_folder(Path(root), name, shape)))
                           for name, shape in RANDOM_SHAPES.items()})
        if "smollm2" in kinds:
            models["SmolLM2-135M-Instruct"] = ("smollm2", SMOLLM2)
        print("| model | prompts | setting | error: median / worst | points (median) | s / prompt |")
        print("|---|---|---|---|---|---|")
        for model_name, (kind, path) in models.items():
            loaded = attribution.load_model(path, device="cpu")
            groups: dict[str, list] = {}
            for label, prompt_settings in cases(kind, arguments.prompts):
                groups.setdefault(label, []).append(prompt_settings)
            for label, prompts in groups.items():
                for name in chosen:
                    rows = [measure(loaded, prompt, SETTINGS[name]) for prompt in prompts]
                    errors, points, seconds = (np.array(column) for column in zip(*rows))
                    print(f"| {model_name} | {label} ×{len(prompts)} | {name} | {np.median(errors):.1%} / "
                          f"{errors.max():.1%} | {int(np.median(points))} | {seconds.mean():.1f} |", flush=True)


if __name__ == "__main__":
    main()
