"""Named bundles of `analyze` settings: the seed notebook's, and the one measured to be trustworthy on
real models (`python scripts/measure_baselines.py`; README, "Presets")."""

from __future__ import annotations

from typing import Any

from .engine import DEFAULT_METHODS
from .targets import DEFAULT_TARGET_ERROR

#: name → `analyze` keyword arguments. `seed` is the default: the notebook's numbers, exactly.
PRESETS: dict[str, dict[str, Any]] = {
    "seed": dict(
        methods=DEFAULT_METHODS, n_steps=50, baseline="zero", aggregation="l2", score="logit", hold_context=False,
    ),
    # Chosen by measurement on the demo model, random Llama shapes and SmolLM2-135M-Instruct (raw and
    # chat prompts): holding the context (the attention sink, special and template tokens) keeps IG's
    # path on ordinary inputs; the mean embedding is a neutral start; auto steps stop at 1% error.
    "recommended": dict(
        methods=DEFAULT_METHODS, n_steps="auto", target_error=DEFAULT_TARGET_ERROR, baseline="mean",
        aggregation="sum", score="logit", hold_context=True,
    ),
}


def preset(name: object) -> dict[str, Any]:
    """A copy of the named preset's settings; ValueError listing the valid names otherwise."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid choices: {', '.join(PRESETS)}")
    return dict(PRESETS[name])
