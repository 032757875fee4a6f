"""The numeric limits of an analysis (torch-free): what `Settings` validates against, and what the
engine, the CLI and the page quote in their messages."""

from __future__ import annotations

DEFAULT_MAX_PROMPT_TOKENS = 512  # ATTRIBUTION_MAX_PROMPT_TOKENS overrides it
MAX_NEW_TOKENS_LIMIT = 256
MAX_STEPS = 1000  # IG's fixed step count, and the trust panel's rerun at twice the steps, stay within it
MAX_AUTO_STEPS = 10_000  # n_steps="auto": the largest budget of path points one may allow
DEFAULT_TARGET_ERROR = 0.01  # n_steps="auto": relative completeness error aimed for
#: IG counts as converged when its relative completeness error is at most this; above it the trust panel
#: reruns IG once with twice the steps.
COMPLETENESS_TOLERANCE = 0.05
#: n_steps="auto" starts from this many intervals (`auto_levels`), so a budget below it cannot be met.
AUTO_FIRST_INTERVALS = 9
#: Context ablation (`Settings.n_ablations`): random ablations the surrogate is fitted on. Its default is
#: ContextCite's 64 until `scripts/measure_documents.py` measures the choice on SmolLM2 (README, "Which
#: sentence answered").
MIN_ABLATIONS = 8
MAX_ABLATIONS = 1024
DEFAULT_ABLATIONS = 64
