"""Every setting of an analysis, in one frozen type (`Settings`), with every default, limit and named
choice it validates against; importable without torch.

The engine reads a `Settings`, the CLI, the dataset mode and the page each build one from their own
input, and the result records the one it was computed with (`Analysis.settings`); none of them keeps its
own copy of a default or a check.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from .catalog import CATALOG
from .groups import validate_granularity, validate_separator
from .limits import (  # noqa: F401 (re-exported: the limits are settings' facts)
    AUTO_FIRST_INTERVALS,
    COMPLETENESS_TOLERANCE,
    DEFAULT_ABLATIONS,
    MAX_PROMPT_TOKENS_ANY_MODEL,
    DEFAULT_TARGET_ERROR,
    MAX_ABLATIONS,
    MAX_AUTO_STEPS,
    MAX_NEW_TOKENS_LIMIT,
    MAX_STEPS,
    MIN_ABLATIONS,
)
from .validation import (
    check_control_characters,
    validate_choice,
    validate_flag,
    validate_fraction,
    validate_integer,
    validate_methods,
    validate_optional_text,
    validate_prompt,
    validate_steps,
)

#: The methods `analyze` runs when none are named: the seed notebook's three.
DEFAULT_METHODS = ("gradient", "attention", "integrated_gradients")

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

#: `Settings.target` for the answer's content token: the first generated token of the reply's first word
#: that is neither in the prompt nor a function word (`attribution.content`), e.g. " Riga" in "The capital
#: of Latvia is Riga." — what the reply is about, where its first token is often filler ("The").
ANSWER_TARGET = "<answer>"
#: `Settings.target` for the whole reply as a stretch: generated tokens 1..n (a last end-of-sequence token
#: left out), what "which passage supports this answer" asks (ContextCite explains the whole response too).
REPLY_TARGET = "<reply>"


def _validate_target(value: object) -> None | str | int | tuple[int, int]:
    """None (the predicted next token), ANSWER_TARGET (the answer's content token), REPLY_TARGET (the whole
    reply as a stretch), text (its first
    token), k ≥ 1 (the k-th generated token), or a pair (k, m), 1 ≤ k ≤ m: the stretch of generated
    tokens k..m (the engine checks k and m against what was generated)."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        return _validate_span(value)
    if isinstance(value, str):
        if value == "":
            raise ValueError("target text is empty: give the word the model should produce, e.g. ' Riga'")
        check_control_characters(value, "target text")
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= MAX_NEW_TOKENS_LIMIT:
            raise ValueError(f"target {value} is out of range: choose a generated token from 1 to max_new_tokens "
                             f"(at most {MAX_NEW_TOKENS_LIMIT})")
        return value
    raise ValueError(
        f"target must be None (the predicted next token), text such as ' Riga', or the number "
        f"of a generated token (1 = first); got {value!r}"
    )


def _validate_span(value: tuple | list) -> tuple[int, int]:
    """A span target (k, m) of generated tokens, 1 ≤ k ≤ m ≤ MAX_NEW_TOKENS_LIMIT (a JSON list too)."""
    if len(value) != 2 or not all(isinstance(end, int) and not isinstance(end, bool) for end in value):
        raise ValueError(f"a span target is a pair of generated-token numbers (k, m), e.g. (2, 5); got {value!r}")
    first, last = int(value[0]), int(value[1])
    if 1 <= last < first:  # typed the wrong way round: say so, not "out of range"
        raise ValueError(f"span target {first}-{last} runs backwards: give its first generated token, then its "
                         f"last, e.g. {last}-{first} (1 ≤ k ≤ m)")
    if not 1 <= first <= last <= MAX_NEW_TOKENS_LIMIT:
        raise ValueError(f"span target {first}-{last} is out of range: choose generated tokens k..m with "
                         f"1 ≤ k ≤ m ≤ max_new_tokens (at most {MAX_NEW_TOKENS_LIMIT})")
    return first, last


def span_from_text(text: str) -> tuple[int, int] | None:
    """"K-M" (digits, a hyphen, digits: "2-5", spaces around allowed) → (K, M), for Settings to validate
    (the CLI's --target and the page's stretch box); None for any other text."""
    first, hyphen, last = text.strip().partition("-")
    first, last = first.strip(), last.strip()
    if hyphen and first.isascii() and first.isdigit() and last.isascii() and last.isdigit():
        return int(first), int(last)
    return None


def _validate_continuation(value: object) -> str | None:
    """None, or the text whose tokens are explained as a span, teacher-forced right after the prompt."""
    value = validate_optional_text(value, "continuation", empty_name="continuation text", none_means="for none",
                                   example="' Riga is the capital'", what="the text the model should continue with")
    if value is None:
        return None
    check_control_characters(value, "continuation text")
    return value


def _validate_contrast(value: object) -> None | str | int:
    """None, text whose first token is the foil, or the foil's vocabulary id (checked against the
    vocabulary by the engine)."""
    if value is None:
        return None
    if isinstance(value, str):
        if value == "":
            raise ValueError("contrast text is empty: give the alternative, e.g. ' Tallinn', or None for none")
        check_control_characters(value, "contrast text")
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"contrast token id must be 0 or more, got {value}")
        return value
    raise ValueError(f"contrast must be None, text such as ' Tallinn', or a token id; got {value!r}")


def _validate_separator(value: object) -> str | None:
    separator = validate_separator(value)
    if separator is not None:
        check_control_characters(separator, "separator")
    return separator


@dataclass(frozen=True)
class Settings:
    """Every setting of one analysis, validated when built (a `ValueError` names the setting and its
    valid choices). `replace(**changes)` gives a validated copy; `to_dict`/`from_dict` are its JSON form
    (deep links, the dataset mode's settings.json, `Analysis.to_dict()["settings"]`).

    The defaults are the seed notebook's: its three methods, 50 IG steps from a zero baseline, L2 norm,
    the logit, nothing held. `PRESETS` holds the named bundles.
    """

    methods: tuple[str, ...] = DEFAULT_METHODS  # registered names (attribution.catalog), run in this order
    max_new_tokens: int = 20  # greedy tokens generated (0..MAX_NEW_TOKENS_LIMIT)
    # What is explained: None = the predicted next token, " Riga" = that text's first token, k = the
    # k-th generated token (attributed over the prompt and the k − 1 tokens before it), ANSWER_TARGET =
    # the generated token that starts the answer's first content word, (k, m) = the stretch of generated
    # tokens k..m: the sum of their scores, each token with the earlier ones teacher-forced (a span),
    # REPLY_TARGET = that stretch over the whole reply.
    target: None | str | int | tuple[int, int] = None
    # Contrastive: explain score(target) − score(foil); text whose first token is the foil, or its id.
    contrast: None | str | int = None
    score: str = "logit"  # a key of SCORES: what the gradient methods and IG explain
    n_steps: int | str = 50  # IG path points, or "auto": refine until the error is under target_error
    target_error: float = DEFAULT_TARGET_ERROR  # n_steps="auto": the relative completeness error to reach
    max_steps: int = MAX_STEPS  # n_steps="auto": the most path points to spend
    baseline: str = "zero"  # a key of BASELINE_LABELS
    aggregation: str = "l2"  # a key of AGGREGATIONS: how IG's [seq, d_model] becomes one score per token
    hold_context: bool = False  # IG's baseline keeps the held context (first position, special, template)
    all_targets: bool = False  # also the answer map (every generated token × its sources)
    # The answer map's methods: None = every method of `methods` that has one (catalog `answer_map`).
    answer_map_methods: tuple[str, ...] | None = None
    trust: bool = False  # also the trust panel (completeness, faithfulness, agreement, verdict)
    chat: bool = False  # the prompt is the user message of the model's chat template
    system: str | None = None  # with chat: this system prompt instead of the template's default
    # A span of text teacher-forced right after the prompt (after the chat template's reply header with
    # chat), explained as the sum of its tokens' scores; replaces the target (which must then be None).
    continuation: str | None = None
    # Scores per token, word, sentence or segment (attribution.groups.GRANULARITIES): what the exports and
    # the trust panel use; each method combines its token scores by its catalog `combine`, occlusion hides
    # whole groups. The token scores are always kept, so a result regroups without the model.
    granularity: str = "token"
    separator: str | None = None  # segments: split at this text instead of at blank lines
    n_ablations: int = DEFAULT_ABLATIONS  # context ablation: random ablations its surrogate is fitted on

    def __post_init__(self) -> None:
        checked = {
            "methods": validate_methods(self.methods, CATALOG),
            "max_new_tokens": validate_integer(self.max_new_tokens, "max_new_tokens", 0, MAX_NEW_TOKENS_LIMIT),
            "target": _validate_target(self.target),
            "contrast": _validate_contrast(self.contrast),
            "score": validate_choice(self.score, "score", SCORES),
            "n_steps": validate_steps(self.n_steps),
            "target_error": validate_fraction(self.target_error, "target_error"),
            "max_steps": validate_integer(self.max_steps, "max_steps", AUTO_FIRST_INTERVALS, MAX_AUTO_STEPS),
            "baseline": validate_choice(self.baseline, "baseline", BASELINE_LABELS),
            "aggregation": validate_choice(self.aggregation, "aggregation", AGGREGATIONS),
            "hold_context": validate_flag(self.hold_context, "hold_context"),
            "all_targets": validate_flag(self.all_targets, "all_targets"),
            "answer_map_methods": None if self.answer_map_methods is None else validate_methods(
                self.answer_map_methods, [name for name, info in CATALOG.items() if info.answer_map is not False],
                what="answer-map method"),
            "trust": validate_flag(self.trust, "trust"),
            "chat": validate_flag(self.chat, "chat"),
            "system": None if self.system is None else validate_prompt(self.system, what="system prompt"),
            "continuation": _validate_continuation(self.continuation),
            "granularity": validate_granularity(self.granularity),
            "separator": _validate_separator(self.separator),
            "n_ablations": validate_integer(self.n_ablations, "n_ablations", MIN_ABLATIONS, MAX_ABLATIONS),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        self._check_span()

    def _check_span(self) -> None:
        """A span (target (k, m) or a continuation) is one score over several positions: no foil."""
        if self.continuation is not None and self.target is not None:
            raise ValueError("give either a target or a continuation, not both: the continuation's tokens are "
                             "the explained stretch (set target to None)")
        if self.has_span and self.contrast is not None:
            raise ValueError("a contrast compares two tokens at one position; it cannot go with a span target "
                             "or a continuation (set contrast to None)")

    @property
    def has_span(self) -> bool:
        """The explained score is a span's: generated tokens (k, m), the whole reply, or the continuation's."""
        return isinstance(self.target, tuple) or self.target == REPLY_TARGET or self.continuation is not None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(item.name for item in dataclasses.fields(cls))

    @classmethod
    def _check_names(cls, names: Iterator[str] | Any) -> None:
        unknown = [name for name in names if name not in cls.names()]
        if unknown:
            raise ValueError(f"unknown setting {', '.join(map(repr, unknown))}; valid choices: {', '.join(cls.names())}")

    def replace(self, **changes: Any) -> "Settings":
        """A validated copy with `changes` (setting names as keywords)."""
        self._check_names(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON values, every setting (methods as a list)."""
        return {name: (list(value) if isinstance(value, tuple) else value)
                for name, value in ((name, getattr(self, name)) for name in self.names())}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Settings":
        """`to_dict`'s inverse; missing settings take their defaults, unknown ones are refused."""
        if not isinstance(data, Mapping):
            raise ValueError(f"settings must be a mapping of setting names to values, got {type(data).__name__}")
        cls._check_names(data)
        return cls(**data)

    @property
    def mapped_methods(self) -> tuple[str, ...]:
        """The methods the answer map explains every generated token with."""
        if self.answer_map_methods is not None:
            return self.answer_map_methods
        return tuple(name for name in self.methods if CATALOG[name].answer_map is not False)

    def differences(self, other: "Settings") -> dict[str, tuple[Any, Any]]:
        """Setting name → (this value, the other's) for every setting that differs."""
        return {name: (getattr(self, name), getattr(other, name))
                for name in self.names() if getattr(self, name) != getattr(other, name)}

    # A mapping's two methods, so that scripts written when presets were keyword dicts keep working:
    # `analyze(loaded, prompt, max_new_tokens=4, **PRESETS["recommended"])` and `PRESETS["seed"]["n_steps"]`.
    # As a mapping a Settings gives only what a preset decides (PRESET_FIELDS), as those dicts did, so that
    # the other keywords beside it do not collide.
    def keys(self) -> tuple[str, ...]:
        return PRESET_FIELDS

    def __getitem__(self, name: str) -> Any:
        self._check_names([name])
        return getattr(self, name)


#: Named bundles of settings. `seed` is the default: the notebook's numbers, exactly.
PRESETS: dict[str, Settings] = {
    "seed": Settings(),
    # Chosen by measurement on the demo model, random Llama shapes and SmolLM2-135M-Instruct (raw and
    # chat prompts): holding the context (the attention sink, special and template tokens) keeps IG's
    # path on ordinary inputs; the mean embedding is a neutral start; auto steps stop at 1% error.
    "recommended": Settings(
        n_steps="auto", target_error=DEFAULT_TARGET_ERROR, baseline=RECOMMENDED_BASELINE, aggregation="sum",
        hold_context=True,
    ),
}

#: The settings a preset decides (the rest — prompt-specific ones such as target and chat — it leaves).
PRESET_FIELDS = ("methods", "n_steps", "target_error", "baseline", "aggregation", "score", "hold_context")


def preset(name: object) -> Settings:
    """The named preset; ValueError listing the valid names otherwise."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid choices: {', '.join(PRESETS)}")
    return PRESETS[name]

def allowed_models() -> list[str]:
    """The hub ids a hosted Space may load besides its default and the built-in models:
    `ALLOWED_MODELS`, comma-separated."""
    return [item.strip() for item in os.environ.get("ALLOWED_MODELS", "").split(",") if item.strip()]
