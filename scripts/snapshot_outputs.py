"""Record what the library and the page return for a fixed set of prompts and settings, and compare two
records: the check that a refactoring changed no output.

    python scripts/snapshot_outputs.py record /tmp/before.json     # on the old code
    python scripts/snapshot_outputs.py record /tmp/after.json      # on the new code
    python scripts/snapshot_outputs.py compare /tmp/before.json /tmp/after.json

Recorded per case: the library's JSON (`attribution.analyze(...).to_dict()`), every output of the page's
`/analyze` handler in order (text and tables as values, download files as the SHA-256 of their bytes, as
their paths differ per request), every figure the page draws for it when each tab is opened (the SHA-256 of
the PNG shown), and the session's stored result (its View and settings; the state itself is a random id).
Timings are left out of the JSON.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import attribution  # noqa: E402

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"

#: (model, prompt, page settings). Page settings use the /analyze parameter names.
CASES: list[tuple[str | None, str, dict[str, Any]]] = [
    (None, "What is the Capital City of Latvia?", {}),
    (None, "The capital of France is", {"hide_special": False, "target": "generated", "target_k": 2}),
    (None, "Which city is the capital of Germany?", {"contrast_text": " Paris", "ig_baseline": "mean",
                                                    "ig_auto": True, "target_error": 0.01, "hold_context": True}),
    (None, "The Eiffel Tower is located in the city of", {"methods": ["gradient", "attention"], "trust": False,
                                                         "all_targets": False, "score": "log_probability"}),
    (SMOLLM2, "What is the Capital City of Latvia?", {"chat": True, "max_new_tokens": 4, "ig_steps": 8,
                                                     "methods": ["gradient", "attention", "integrated_gradients"]}),
]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def plain(value: Any) -> Any:
    """A page output as comparable JSON."""
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, str) and os.path.isfile(value):
            return {"file": digest(Path(value).read_bytes())}
        return value
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # a pandas DataFrame
        return {"columns": [str(column) for column in value.columns], "rows": value.astype(str).values.tolist()}
    if getattr(value, "type", None) == "matplotlib" and hasattr(value, "plot"):  # gradio PlotData
        return {"png": digest(base64.b64decode(value.plot.split(",", 1)[1]))}
    if hasattr(value, "savefig"):  # a matplotlib Figure
        import io
        buffer = io.BytesIO()
        value.savefig(buffer, format="png", dpi=100)
        return {"png": digest(buffer.getvalue())}
    return {"repr": type(value).__name__}


def without_timings(data: Any) -> Any:
    if isinstance(data, dict):
        return {key: without_timings(item) for key, item in data.items() if "time" not in key and key != "seconds"}
    if isinstance(data, list):
        return [without_timings(item) for item in data]
    return data


def library_settings(page: dict[str, Any]) -> dict[str, Any]:
    """The library's arguments for the same case (the app's defaults otherwise)."""
    settings: dict[str, Any] = {"methods": page.get("methods", list(attribution.METHODS)),
                                "max_new_tokens": page.get("max_new_tokens", 20),
                                "all_targets": page.get("all_targets", True), "trust": page.get("trust", True),
                                "chat": page.get("chat", False), "score": page.get("score", "logit"),
                                "hold_context": page.get("hold_context", False),
                                "baseline": page.get("ig_baseline", "zero")}
    settings["n_steps"] = "auto" if page.get("ig_auto") else page.get("ig_steps", 50)
    if page.get("ig_auto"):
        settings["target_error"] = page["target_error"]
    if page.get("contrast_text"):
        settings["contrast"] = page["contrast_text"]
    if page.get("target") == "generated":
        settings["target"] = page["target_k"]
    return settings


def page_record(outputs: list[Any]) -> dict[str, Any]:
    """The page's outputs for one case, each tab's figures as drawn when it is opened, and what the session
    stores (the state is a random id: its stored View and settings stand in for it)."""
    from app import OUTPUT_KEYS  # the Space's API outputs, before and after the move
    from ui import figures, store

    values = dict(zip(OUTPUT_KEYS, outputs))
    stored = store.recall(values["state"])
    values["state"] = {"view": dataclasses.asdict(stored.view), "settings": stored.analysis.settings.to_dict()}
    for tab in figures.TAB_FIGURES:  # the answer map at its first method and row, as the page opens it
        drawn = figures.stored_figures(stored, tab, stored.view.hide_special)
        values |= {key: drawn[key] for key in figures.TAB_FIGURES[tab]}
    return {key: without_timings(plain(value)) for key, value in values.items()}


def record(path: Path) -> None:
    from app import analyze  # the Space's API function, before and after the move

    cases = []
    for model, prompt, page in CASES:
        name = model or attribution.default_model_name()
        loaded = attribution.load_model(name)
        library = attribution.analyze(loaded, prompt, **library_settings(page)).to_dict()
        cases.append({"model": name, "prompt": prompt, "settings": page,
                      "library": without_timings(library), "page": page_record(analyze(prompt, model, **page))})
        print(f"recorded {name} · {prompt!r} · {page}", flush=True)
    path.write_text(json.dumps(cases, indent=1, sort_keys=True), encoding="utf-8")


def differences(old: Any, new: Any, path: str = "") -> list[str]:
    """Where two recorded values differ: each path, with the largest numeric difference where both are
    numbers (so float rounding and real changes read apart)."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new), key=str):
            if key not in old or key not in new:
                found.append(f"{path}/{key}: only {'after' if key in new else 'before'}")
            else:
                found += differences(old[key], new[key], f"{path}/{key}")
        return found
    numbers = (int, float)
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        flat_old, flat_new = _numbers(old), _numbers(new)
        if flat_old is not None and flat_new is not None:
            gaps = [abs(a - b) for a, b in zip(flat_old, flat_new)]
            largest = max(gaps, default=0.0)
            if largest:
                scale = max((abs(value) for value in flat_old), default=0.0)
                return [f"{path}: numbers differ by at most {largest:.3g} (largest |value| {scale:.3g})"]
            return []
        return [item for index, (a, b) in enumerate(zip(old, new)) for item in differences(a, b, f"{path}[{index}]")]
    if isinstance(old, numbers) and isinstance(new, numbers) and not isinstance(old, bool) and not isinstance(new, bool):
        return [] if old == new else [f"{path}: {old!r} → {new!r} (Δ {abs(old - new):.3g})"]
    return [] if old == new else [f"{path}: {_short(old)} → {_short(new)}"]


def _numbers(values: list) -> list[float] | None:
    flat: list[float] = []
    for value in values:
        if isinstance(value, list):
            inner = _numbers(value)
            if inner is None:
                return None
            flat += inner
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat.append(float(value))
        else:
            return None
    return flat


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 160 else text[:157] + "..."


def compare(before: Path, after: Path) -> int:
    old = json.loads(before.read_text(encoding="utf-8"))
    new = json.loads(after.read_text(encoding="utf-8"))
    count = 0
    for old_case, new_case in zip(old, new, strict=True):
        title = f"{old_case['model']} · {old_case['prompt']!r} · {old_case['settings']}"
        found = differences(old_case["library"], new_case["library"], "library")
        found += differences(old_case["page"], new_case["page"], "page")
        if found:
            print(f"\n{title}")
            for line in found:
                print(f"  {line}")
        count += len(found)
    print(f"\n{len(old)} cases compared, {count} differences")
    return 1 if count else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("record").add_argument("path", type=Path)
    both = commands.add_parser("compare")
    both.add_argument("before", type=Path)
    both.add_argument("after", type=Path)
    arguments = parser.parse_args()
    if arguments.command == "record":
        record(arguments.path)
        return 0
    return compare(arguments.before, arguments.after)


if __name__ == "__main__":
    raise SystemExit(main())
