"""Which input tokens drove a language model's prediction: gradient, attention and Integrated Gradients.

    import attribution
    loaded = attribution.load_model("assets/demo-model")
    analysis = attribution.analyze(loaded, "What is the Capital City of Latvia?")
    analysis.to_dict()["methods"]["gradient"]["scores"]
"""

from .answer_map import ANSWER_MAP_METHODS
from .engine import DEFAULT_METHODS, analyze, generate, top_predictions
from .integrated_gradients import BASELINE_LABELS, BASELINES, RECOMMENDED_BASELINE
from .methods import AGGREGATIONS, METHOD_DESCRIPTIONS, METHOD_LABELS, METHODS
from .passes import SCORES, AttributionRequest, choose_batch_size
from .presets import PRESETS, preset
from .models import DEMO_MODEL_PATH, LoadedModel, clear_cache, default_model_name, load_model
from .trust import Completeness, Faithfulness, TrustReport
from .results import (
    Analysis,
    AnswerMap,
    Prediction,
    AttentionScores,
    IntegratedGradientsScores,
    MethodScores,
    Target,
    normalize_max_abs,
    normalize_min_max,
    top_k,
)

__all__ = [
    "ANSWER_MAP_METHODS", "AnswerMap", "Completeness", "Faithfulness", "Prediction", "TrustReport",
    "top_predictions", "PRESETS", "SCORES", "choose_batch_size", "preset",
    "AGGREGATIONS", "BASELINES", "BASELINE_LABELS", "METHOD_DESCRIPTIONS", "RECOMMENDED_BASELINE", "DEFAULT_METHODS", "DEMO_MODEL_PATH", "METHODS", "METHOD_LABELS",
    "Analysis", "AttentionScores", "AttributionRequest", "IntegratedGradientsScores", "LoadedModel",
    "MethodScores", "Target", "analyze", "clear_cache", "default_model_name", "generate", "load_model",
    "normalize_max_abs", "normalize_min_max", "top_k",
]
