"""The app's stored result: what its views redraw from without running the model again.

The per-head heatmaps, the colour scaling, the answer map and the contrast picker all read this JSON
text. It is text, not an object, because gradio's example cache stores outputs as text. It holds only
what those views need; `Analysis.to_dict()` is the full result for export.
"""

from __future__ import annotations

import json
from typing import Any

from .answer_map_figures import answer_map_signed
from .labels import prediction_label, quoted_token
from .method_figures import LAYERED_METHODS
from .results import Analysis, AnswerMap, MethodScores, Prediction, Target


def dump_view_state(analysis: Analysis) -> str:
    """The analysis as the views' JSON text: tokens, ids, special tokens, target, foil, scores,
    per-head attention ([layers][heads][tokens], rounded), answer maps, predictions and IG settings."""
    per_head = {
        name: [[[round(float(value), 6) for value in head] for head in layer] for layer in result.per_head]
        for name, result in analysis.methods.items()
        if name in LAYERED_METHODS and getattr(result, "per_head", None) is not None
    }
    ig = analysis.methods.get("integrated_gradients")
    return json.dumps({
        "tokens": list(analysis.input_tokens),
        "ids": [int(value) for value in analysis.input_ids],
        "special": [bool(value) for value in analysis.special_tokens],
        "target": analysis.target.text,
        "target_id": int(analysis.target.id),
        "foil": None if analysis.foil is None else analysis.foil.text,
        "foil_id": None if analysis.foil is None else int(analysis.foil.id),
        "scores": {name: [float(value) for value in result.scores] for name, result in analysis.methods.items()},
        "per_head": per_head,
        "answer_map": {name: table.to_dict() for name, table in analysis.answer_map.items()},
        "answer_map_signed": {name: answer_map_signed(analysis, name) for name in analysis.answer_map},
        "predictions": [prediction.to_dict() for prediction in analysis.top_predictions],
        "ig": None if ig is None else [getattr(ig, "baseline", None), getattr(ig, "aggregation", None)],
    })


def load_view_state(state: str | None) -> dict[str, Any]:
    """The stored JSON text as a dict; {} before the first analysis."""
    return json.loads(state) if state else {}


def analysis_from_view_state(data: dict[str, Any]) -> Analysis | None:
    """The stored result as an Analysis for redrawing (scores, tokens, special tokens, target, foil)."""
    if not data.get("scores"):
        return None
    tokens = data["tokens"]
    position = len(tokens)
    foil = None
    if data.get("foil") is not None:
        foil = Target(data["foil"], int(data.get("foil_id") or 0), position)
    return Analysis(
        model="", prompt="", input_tokens=tokens, input_ids=data["ids"], generated_text="", generated_ids=[],
        target=Target(data["target"], int(data.get("target_id") or 0), position),
        methods={name: MethodScores(name, scores) for name, scores in data["scores"].items()},
        foil=foil, special_tokens=data["special"],
    )


def answer_map_from_view_state(data: dict[str, Any], method: Any) -> AnswerMap | None:
    """One method's stored answer map, or None when there is none for it."""
    stored = data.get("answer_map", {}).get(method) if isinstance(method, str) else None
    if not stored:
        return None
    return AnswerMap(method=method, targets=stored["targets"], sources=stored["sources"], matrix=stored["matrix"])


def contrast_options(data: dict[str, Any]) -> list[tuple[str, Any]]:
    """The contrast picker's choices: none, then the model's likeliest alternatives at the explained
    position with their probabilities (the explained token itself left out), values are token ids."""
    options: list[tuple[str, Any]] = [("(none)", "")]
    for item in data.get("predictions", []):
        if item["id"] == data.get("target_id"):
            continue
        options.append((prediction_label(Prediction(item["text"], item["id"], item["probability"])), item["id"]))
    foil_id = data.get("foil_id")
    if foil_id is not None and all(value != foil_id for _label, value in options):
        options.append((f"{quoted_token(data['foil'])} (the current contrast)", foil_id))
    return options
