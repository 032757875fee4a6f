"""The app's stored result: what its views redraw from without running the model again.

The per-head heatmaps, the colour scaling, the answer map, the contrast picker and the clickable answer
all read this JSON text. It is text, not an object, because gradio's example cache stores outputs as
text. It holds only what those views need; `Analysis.to_dict()` is the full result for export.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from attribution.display.answer_map_figures import answer_map_signed
from attribution.display.figure_style import excluded_tokens
from attribution.display.explanations import ig_preset
from attribution.display.labels import prediction_label, quoted_token
from attribution.catalog import LAYERED_METHODS
from attribution.results import Analysis, AnswerMap, MethodScores, Prediction, Target


@dataclass(frozen=True)
class View:
    """How one analysis is shown: the display choices, and what the handler knows besides the result
    (the generated tokens as the tokenizer splits them, the pad token's label)."""

    hide_special: bool = True  # leave the held context out of the colour scaling and the top 5
    all_targets: bool = True  # the answer map was asked for
    score: str = "logit"  # the score analyzed, for the notes
    pad_token: str | None = None  # `pad_token_label` with a pad baseline, for the notes
    target_description: str = "the predicted next token"
    answer_tokens: tuple[str, ...] = ()  # the generated tokens' display strings, for the clickable answer
    explained: int | None = None  # which of them is explained (1 = the first)

    def exclude(self, analysis: Analysis) -> np.ndarray:
        """[n_tokens] bool: the tokens left out of the colour scaling."""
        return excluded_tokens(analysis, self.hide_special)


#: The category of the explained token in the clickable answer (the others have none).
EXPLAINED = "explained"


def explained_answer_token(analysis: Analysis, target: None | int | str) -> int | None:
    """Which generated token (1 = the first) the analysis explains, for marking it in the answer:
    k for target k; the first for the next token or a text's first token when that is what the model
    generated there; None otherwise (nothing generated, or the text is not the model's token)."""
    if isinstance(target, int):
        return target
    generated = analysis.generated_ids
    return 1 if generated.size and int(generated[0]) == analysis.target.id else None


def dump_view_state(analysis: Analysis, answer_tokens: Sequence[str] = (), explained: int | None = None,
                    result_id: str | None = None) -> str:
    """The analysis as the views' JSON text: tokens, ids, special, user-typed, held and chat flags, target,
    foil, scores, per-head attention ([layers][heads][tokens], rounded), answer maps, predictions, the
    preset IG ran with, and the generated answer's tokens (`answer_tokens`, display strings) with the explained
    one (`explained`, 1 = the first; see `explained_answer_token`), and the id the full result is kept under
    for drawing its figures (`result_id`, `ui.figures.remember`)."""
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
        "user": [bool(value) for value in analysis.user_tokens],
        "held": [bool(value) for value in analysis.held_tokens],
        "chat": bool(analysis.chat),
        "n_prompt": analysis.n_prompt_tokens,
        "target": analysis.target.text,
        "target_id": int(analysis.target.id),
        "foil": None if analysis.foil is None else analysis.foil.text,
        "foil_id": None if analysis.foil is None else int(analysis.foil.id),
        "scores": {name: [float(value) for value in result.scores] for name, result in analysis.methods.items()},
        "per_head": per_head,
        "answer_map": {name: table.to_dict() for name, table in analysis.answer_map.items()},
        "answer_map_signed": {name: answer_map_signed(analysis, name) for name in analysis.answer_map},
        "predictions": [prediction.to_dict() for prediction in analysis.top_predictions],
        # Which preset's IG settings ran (None: others): the IG tab offers the recommended ones otherwise.
        "ig": None if ig is None else {"preset": ig_preset(ig)},
        "answer": list(answer_tokens),
        "explained": explained,
        "result": result_id,
    })


def load_view_state(state: str | None) -> dict[str, Any]:
    """The stored JSON text as a dict; {} before the first analysis."""
    return json.loads(state) if state else {}


def analysis_from_view_state(data: dict[str, Any]) -> Analysis | None:
    """The stored result as an Analysis for redrawing (scores, tokens, special, user-typed, held and
    chat flags, target, foil)."""
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
        foil=foil, special_tokens=data["special"], user_tokens=data.get("user"), held_tokens=data.get("held"),
        chat=bool(data.get("chat")), n_prompt_tokens=data.get("n_prompt"),
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


def answer_view(data: dict[str, Any]) -> list[tuple[str, str | None]]:
    """The generated answer as clickable tokens, the explained one marked EXPLAINED."""
    explained = data.get("explained")
    return [(token, EXPLAINED if index == explained else None)
            for index, token in enumerate(data.get("answer", []), start=1)]
