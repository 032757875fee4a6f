"""Every default, limit and named choice of `analyze`, defined once and importable without torch.

The engine validates against these, the CLI and the app offer them, and the display layer names them;
none of those keeps its own copy.
"""

from __future__ import annotations

import os
from typing import Any

#: The methods `analyze` runs when none are named: the seed notebook's three.
DEFAULT_METHODS = ("gradient", "attention", "integrated_gradients")

DEFAULT_MAX_PROMPT_TOKENS = 512  # ATTRIBUTION_MAX_PROMPT_TOKENS overrides it
MAX_NEW_TOKENS_LIMIT = 256
MAX_STEPS = 1000  # IG's fixed step count, and the trust panel's rerun at twice the steps, stay within it
MAX_AUTO_STEPS = 10_000  # n_steps="auto": the largest budget of path points one may allow
DEFAULT_TARGET_ERROR = 0.01  # n_steps="auto": relative completeness error aimed for
#: IG counts as converged when its relative completeness error is at most this; above it the trust panel
#: reruns IG once with twice the steps.
COMPLETENESS_TOLERANCE = 0.05

#: What the gradient methods and IG explain, and each one's contrastive form (with a foil).
SCORES = {
    "logit": "the target's logit (the seed's); contrastive: logit(target) − logit(foil)",
    "probability": "the target's probability; contrastive: p(target) − p(foil)",
    "log_probability": "the target's log-probability; contrastive: log p(target) − log p(foil), "
                       "which equals the logit difference (the softmax normaliser cancels)",
}

#: How IG's [seq, d_model] attributions become one score per token.
AGGREGATIONS = {
    "l2": "L2 norm over the embedding dimension (the seed's; always ≥ 0)",
    "sum": "signed sum over the embedding dimension (keeps completeness)",
}

#: IG's baselines (the engine's builders are `attribution.integrated_gradients.BASELINES`, same keys).
BASELINE_LABELS = {
    "zero": "zero embeddings (the seed's default; often does not converge on Llama)",
    "pad": "pad-token embedding at every position — the EOS token, as the seed sets pad = eos (the seed's option)",
    "mean": "the mean token embedding at every position",
    "pad_keep_special": "pad embedding, BOS/special tokens kept at their own",
    "mean_keep_special": "mean embedding, BOS/special tokens kept at their own",
}

# The recommended preset's baseline (chosen by `python scripts/measure_baselines.py`, README): with the
# context held, the mean embedding gave the lowest errors on SmolLM2's raw prompts.
RECOMMENDED_BASELINE = "mean"

#: name → `analyze` keyword arguments. `seed` is the default: the notebook's numbers, exactly.
PRESETS: dict[str, dict[str, Any]] = {
    "seed": dict(
        methods=DEFAULT_METHODS, n_steps=50, baseline="zero", aggregation="l2", score="logit", hold_context=False,
    ),
    # Chosen by measurement on the demo model, random Llama shapes and SmolLM2-135M-Instruct (raw and
    # chat prompts): holding the context (the attention sink, special and template tokens) keeps IG's
    # path on ordinary inputs; the mean embedding is a neutral start; auto steps stop at 1% error.
    "recommended": dict(
        methods=DEFAULT_METHODS, n_steps="auto", target_error=DEFAULT_TARGET_ERROR, baseline=RECOMMENDED_BASELINE,
        aggregation="sum", score="logit", hold_context=True,
    ),
}


def preset(name: object) -> dict[str, Any]:
    """A copy of the named preset's settings; ValueError listing the valid names otherwise."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid choices: {', '.join(PRESETS)}")
    return dict(PRESETS[name])


def allowed_models() -> list[str]:
    """The hub ids a hosted Space may load besides its default and the built-in models:
    `ALLOWED_MODELS`, comma-separated."""
    return [item.strip() for item in os.environ.get("ALLOWED_MODELS", "").split(",") if item.strip()]
