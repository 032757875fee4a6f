"""The numeric limits of an analysis (torch-free): what `Settings` validates against, and what the
engine, the CLI and the page quote in their messages."""

from __future__ import annotations

#: No prompt is longer than this whatever the model (the check by characters before tokenizing). The
#: limit with a model is its context and the memory the analysis needs (`attribution.budget`), or
#: ATTRIBUTION_MAX_PROMPT_TOKENS where an operator sets one.
MAX_PROMPT_TOKENS_ANY_MODEL = 131_072
MAX_NEW_TOKENS_LIMIT = 256
MAX_STEPS = 1000  # IG's fixed step count, and the trust panel's rerun at twice the steps, stay within it
MAX_AUTO_STEPS = 10_000  # n_steps="auto": the largest budget of path points one may allow
DEFAULT_TARGET_ERROR = 0.01  # n_steps="auto": relative completeness error aimed for
#: IG counts as converged when its relative completeness error is at most this; above it the trust panel
#: reruns IG once with twice the steps.
COMPLETENESS_TOLERANCE = 0.05
#: n_steps="auto" starts from this many intervals (`auto_levels`), so a budget below it cannot be met.
AUTO_FIRST_INTERVALS = 9
#: Context ablation (`Settings.n_ablations`): random ablations the surrogate is fitted on. The default is
#: the smallest count of `scripts/measure_documents.py` (SmolLM2, 21 answered six-sentence prompts; README,
#: "Which sentence answered") that ranks the answer's sentence first as often as 128 ablations do (every
#: time) with a held-out LDS within 0.05 of theirs (paired: 0.037 short; 16 ablations: 0.078 short), at
#: half of ContextCite's 64. Prompts of many more sentences need more.
MIN_ABLATIONS = 8
MAX_ABLATIONS = 1024
DEFAULT_ABLATIONS = 32
