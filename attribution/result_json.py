"""Reading a result back: `read_analysis(path)` and `analysis_from_dict(data)`, the inverse of
`Analysis.to_dict()` (the CLI's --json and the page's JSON export), so that saved results can be compared
(`attribution.diff`) without the model.

`analysis_from_dict(analysis.to_dict()).to_dict() == analysis.to_dict()` for every result. What the JSON
does not hold is not invented: attention's per-head weights are not exported (the result read back has
per-layer weights and no heads), and a file that lacks a field a result needs is refused with a
`ValueError` naming it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .reports import Completeness, Faithfulness, TrustReport
from .groups import TokenSpans
from .results import (
    Analysis, AnswerMap, AttentionScores, ContextAblationScores, IntegratedGradientsScores, MethodScores,
    OcclusionScores, Prediction, Span, Target,
)
from .settings import Settings


def _field(data: Mapping[str, Any], name: str, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} must be a JSON object, got {type(data).__name__}")
    if name not in data:
        raise ValueError(f"{where} has no {name!r}: not an analysis written by this tool's --json or export")
    return data[name]


def _method(name: str, data: Mapping[str, Any]) -> MethodScores:
    where = f"method {name!r}"
    scores = _field(data, "scores", where)
    if "per_layer" in data:
        per_layer = np.array(data["per_layer"], dtype=np.float64).reshape(-1, len(scores))
        # Per-head weights are not part of the JSON: the layers are, with no heads.
        return AttentionScores(name, scores, per_layer=per_layer, per_head=np.zeros((per_layer.shape[0], 0, len(scores))))
    if "convergence_delta" in data:
        delta = float(data["convergence_delta"])
        if "input_output" in data:
            outputs = float(data["input_output"]), float(_field(data, "baseline_output", where))
        elif "relative_completeness_error" in data:
            # An older file: only the relative error was written; F(x) − F(x′) is recovered up to its sign.
            outputs = abs(delta) / max(float(data["relative_completeness_error"]), 1e-300), 0.0
        else:
            raise ValueError(f"{where} has no 'input_output' (F(input)): written by an older version of this "
                             "tool; its completeness cannot be read back, analyse the prompt again")
        return IntegratedGradientsScores(
            name, scores, convergence_delta=delta, input_output=outputs[0], baseline_output=outputs[1],
            n_steps=int(_field(data, "n_steps", where)), baseline=_field(data, "baseline", where),
            aggregation=_field(data, "aggregation", where), score=data.get("score", "logit"),
            held=bool(data.get("held_context", False)),
            target_error=float(data["target_error"]) if data.get("auto_steps") else None,
        )
    groups = data.get("groups")
    if isinstance(groups, list):  # context ablation: its removable groups with their weights
        weights = [float(_field(group, "weight", where)) for group in groups]
        return ContextAblationScores(
            name, scores, granularity=_field(data, "granularity", where),
            group_labels=tuple(group["label"] for group in groups), groups=tuple(tuple(group["tokens"]) for group in groups),
            group_weights=weights, intercept=float(data["intercept"]), heldout_lds=data.get("heldout_lds"),
            masks=np.array(data["masks"], dtype=bool).reshape(-1, len(groups)),
            ablation_scores=data["ablation_scores"], full_score=float(data["full_score"]),
            empty_score=float(data["empty_score"]),
        )
    if isinstance(groups, Mapping):  # occlusion with its drops per group
        return OcclusionScores(name, scores, groups=groups)
    return MethodScores(name, scores)


def _trust(data: Mapping[str, Any]) -> TrustReport:
    faithfulness = {}
    for name, item in data.get("faithfulness", {}).items():
        faithfulness[name] = Faithfulness(
            comprehensiveness=item["comprehensiveness"], sufficiency=item["sufficiency"],
            random_comprehensiveness=item["random_comprehensiveness"], random_sufficiency=item["random_sufficiency"],
            random_comprehensiveness_interval=tuple(item["random_comprehensiveness_interval"]),
            random_sufficiency_interval=tuple(item["random_sufficiency_interval"]),
            removal=item["removal"], random_orders=item["random_orders"], scale=item["scale"],
            comprehensiveness_vs_random=item["comprehensiveness_vs_random"],
            sufficiency_vs_random=item["sufficiency_vs_random"],
        )
    check = data.get("completeness")
    completeness = None if check is None else Completeness(
        check["relative_error"], check["n_steps"], check["baseline"], check["rerun_n_steps"],
        check["rerun_relative_error"])
    agreement = data.get("agreement", {})
    return TrustReport(
        faithfulness=faithfulness, spearman=agreement.get("spearman", {}), top3_overlap=agreement.get("top3_overlap", {}),
        completeness=completeness, verdict=data["verdict"], ks=tuple(data.get("faithfulness_ks", ())),
        verdict_positions=tuple(data.get("verdict_positions", ())), evidence=data.get("evidence", "none"),
    )


def analysis_from_dict(data: Mapping[str, Any]) -> Analysis:
    """`Analysis.to_dict()`'s inverse; ValueError naming what is missing or does not fit."""
    where = "the analysis"
    input_ids = _field(data, "input_ids", where)
    target = _field(data, "target", where)
    target = Target(target["text"], int(target["id"]), int(target["position"]))
    contrast = data.get("contrast")
    foil = None if contrast is None else Target(contrast["foil"]["text"], int(contrast["foil"]["id"]), target.position)
    settings = None if data.get("settings") is None else Settings.from_dict(data["settings"])
    try:
        return Analysis(
            model=_field(data, "model", where), prompt=_field(data, "prompt", where),
            input_tokens=tuple(_field(data, "input_tokens", where)), input_ids=np.array(input_ids, dtype=np.int64),
            generated_text=_field(data, "generated_text", where),
            # Files written before the ids were exported have only the text.
            generated_ids=np.array(data.get("generated_ids", []), dtype=np.int64),
            target=target,
            methods={name: _method(name, item) for name, item in _field(data, "methods", where).items()},
            foil=foil,
            top_predictions=tuple(Prediction(item["text"], int(item["id"]), float(item["probability"]))
                                  for item in data.get("top_predictions", ())),
            special_tokens=np.array(data["special_tokens"], dtype=bool) if "special_tokens" in data else None,
            user_tokens=np.array(data["user_tokens"], dtype=bool) if "user_tokens" in data else None,
            held_tokens=np.array(data["held_tokens"], dtype=bool) if "held_tokens" in data else None,
            chat=bool(data.get("chat", False)),
            n_prompt_tokens=data.get("n_prompt_tokens"),
            system=data.get("system"),
            answer_map={name: AnswerMap(name, tuple(item["targets"]), tuple(item["sources"]), item["matrix"])
                        for name, item in data.get("answer_map", {}).items()},
            trust=_trust(data) if "verdict" in data else None,
            settings=settings,
            span=None if data.get("span") is None else Span(**data["span"]),
            # Without them (files written before they were exported) the result shows per token only.
            token_spans=None if data.get("token_spans") is None else TokenSpans.from_dict(data["token_spans"]),
        )
    except (KeyError, TypeError) as error:
        raise ValueError(f"the analysis JSON does not fit the result type: {type(error).__name__} {error}") from None


def read_analysis(path: str | Path) -> Analysis:
    """The `Analysis` saved at `path` (the CLI's --json, the page's JSON download)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"cannot read {str(path)!r}: {error.strerror or error}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{str(path)!r} is not JSON: {error}") from None
    return analysis_from_dict(data)
