"""Which input tokens drove a language model's prediction: gradient, attention and Integrated Gradients.

    import attribution
    loaded = attribution.load_model("assets/demo-model")
    analysis = attribution.analyze(loaded, "What is the Capital City of Latvia?")
    analysis.to_dict()["methods"]["gradient"]["scores"]

The package is the engine (torch). Its public names load on first use, so that `attribution.display`
(figures, tables and text; no torch) and `attribution.settings` can be imported without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name → the submodule that defines it.
_EXPORTS = {
    "ANSWER_MAP_METHODS": "catalog", "CATALOG": "catalog", "METHOD_DESCRIPTIONS": "catalog",
    "METHOD_LABELS": "catalog",
    "AGGREGATIONS": "settings", "BASELINE_LABELS": "settings", "DEFAULT_METHODS": "settings",
    "PRESETS": "settings", "RECOMMENDED_BASELINE": "settings", "SCORES": "settings", "Settings": "settings", "ANSWER_TARGET": "settings",
    "REPLY_TARGET": "settings",
    "preset": "settings",
    "analyze": "engine", "Cancelled": "cancel", "generate": "engine", "top_predictions": "engine",
    "BASELINES": "integrated_gradients",
    "METHODS": "methods",
    "AttributionRequest": "passes", "choose_batch_size": "passes",
    "DEMO_MODEL_PATH": "models", "LoadedModel": "models", "clear_cache": "models",
    "default_model_name": "models", "is_chat_model_name": "models", "load_model": "models",
    "PACKAGED_MODELS": "gguf", "packaged_gguf": "gguf",
    "pad_baseline_token_id": "integrated_gradients",
    "display_tokens": "targets",
    "Completeness": "reports", "Faithfulness": "reports", "Progress": "reports", "TrustReport": "reports",
    "Analysis": "results", "AnswerMap": "results", "AttentionScores": "results",
    "ContextAblationScores": "results", "IntegratedGradientsScores": "results", "MethodScores": "results",
    "Prediction": "results",
    "Source": "documents", "document_prompt": "documents", "split_passages": "documents",
    "top_sources": "documents",
    "Target": "results", "normalize_max_abs": "results", "normalize_min_max": "results", "top_k": "results",
}

#: submodules that are public names themselves: `attribution.diff(a, b)` (the module is callable).
_MODULES = ("diff",)

__all__ = sorted([*_EXPORTS, *_MODULES])


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)  # the import sets it on the package
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'attribution' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
