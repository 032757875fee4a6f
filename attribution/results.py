"""Frozen result objects holding CPU numpy arrays, their JSON contract, and normalisation.

Nothing here touches torch: results are what crosses from the engine to plotting, the CLI and the UI.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .catalog import combine_rule
from .groups import GRANULARITIES, Group, Grouping, TokenSpans, groups_from_spans, validate_granularity
from .reports import TrustReport
from .settings import COMPLETENESS_TOLERANCE, Settings


def _as_float_array(values: Any, name: str, ndim: int) -> np.ndarray:
    array = np.array(values, dtype=np.float64, copy=True)
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {array.shape}")
    array.setflags(write=False)
    return array


def _check_finite(array: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(array)):
        raise ValueError(
            f"{name} contains NaN or infinite values; the model's numbers overflowed "
            "(try float32 weights or fewer integration steps) and the result is not shown"
        )


@dataclass(frozen=True)
class MethodScores:
    """One score per input token for one attribution method (raw, not normalised)."""

    method: str
    scores: np.ndarray  # [n_tokens]

    def __post_init__(self) -> None:
        object.__setattr__(self, "scores", _as_float_array(self.scores, f"{self.method} scores", 1))
        _check_finite(self.scores, f"{self.method} scores")

    @property
    def n_tokens(self) -> int:
        return int(self.scores.shape[0])

    def to_dict(self) -> dict[str, Any]:
        return {"scores": [float(value) for value in self.scores]}


@dataclass(frozen=True)
class AttentionScores(MethodScores):
    """Attention of the target position, averaged over heads and layers as the seed notebook does."""

    per_layer: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # [n_layers, n_tokens]
    per_head: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)))  # [n_layers, n_heads, n_tokens]

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "per_layer", _as_float_array(self.per_layer, "per_layer", 2))
        object.__setattr__(self, "per_head", _as_float_array(self.per_head, "per_head", 3))
        n_layers, n_heads, n_tokens = self.per_head.shape
        if self.per_layer.shape != (n_layers, n_tokens) or n_tokens != self.n_tokens:
            raise ValueError(
                f"attention shapes disagree: scores {self.scores.shape}, per_layer "
                f"{self.per_layer.shape}, per_head {self.per_head.shape}"
            )
        _check_finite(self.per_head, "attention weights")

    def to_dict(self) -> dict[str, Any]:
        result = super().to_dict()
        result["per_layer"] = [[float(value) for value in row] for row in self.per_layer]
        return result


@dataclass(frozen=True)
class IntegratedGradientsScores(MethodScores):
    """Integrated Gradients scores plus what is needed to judge whether the integral converged.

    `convergence_delta` is always Σ(raw attributions) − (F(input) − F(baseline)), whichever aggregation
    is displayed, so a non-converged integral is visible even in the L2 view.
    """

    convergence_delta: float = 0.0
    input_output: float = 0.0  # F(input): the target logit at the real input
    baseline_output: float = 0.0  # F(baseline)
    n_steps: int = 50  # path points evaluated (with n_steps="auto": the points it took)
    baseline: str = "zero"
    aggregation: str = "l2"
    score: str = "logit"  # what F is: logit, probability or log_probability
    held: bool = False  # the baseline kept the held context at its real embeddings
    target_error: float | None = None  # n_steps="auto": the completeness error it aimed for

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("convergence_delta", "input_output", "baseline_output"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ValueError(f"integrated gradients {name} is not finite ({value})")
            object.__setattr__(self, name, value)

    @property
    def converged(self) -> bool:
        """Its completeness error is within COMPLETENESS_TOLERANCE (the trust panel's rule, `Completeness`)."""
        return self.relative_completeness_error <= COMPLETENESS_TOLERANCE

    @property
    def reached_target(self) -> bool | None:
        """n_steps="auto": whether the completeness error got under the target within the budget."""
        return None if self.target_error is None else self.relative_completeness_error <= self.target_error

    @property
    def output_difference(self) -> float:
        """F(input) − F(baseline): what the raw attributions should add up to."""
        return self.input_output - self.baseline_output

    @property
    def relative_completeness_error(self) -> float:
        """|Σ attributions − (F(x) − F(x′))| / |F(x) − F(x′)|."""
        return abs(self.convergence_delta) / max(abs(self.output_difference), 1e-12)

    def to_dict(self) -> dict[str, Any]:
        result = super().to_dict()
        result.update(
            convergence_delta=self.convergence_delta,
            # F(input) and F(baseline), so that a result read back (`attribution.result_json`) keeps its
            # completeness error in every aggregation.
            input_output=self.input_output,
            baseline_output=self.baseline_output,
            n_steps=int(self.n_steps),
            baseline=self.baseline,
            aggregation=self.aggregation,
            score=self.score,
            held_context=self.held,
        )
        if self.target_error is not None:
            result.update(auto_steps=True, target_error=self.target_error, reached_target=self.reached_target,
                          relative_completeness_error=self.relative_completeness_error)
        if self.aggregation == "sum":
            result["relative_completeness_error"] = self.relative_completeness_error
        return result


@dataclass(frozen=True)
class OcclusionScores(MethodScores):
    """Occlusion's token scores plus its drops when whole groups are hidden (a perturbation's scores do
    not add up: `Analysis.grouped_scores` reads these): granularity → [n_groups], for the groupings of the
    analysis (its token spans and separator)."""

    groups: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        groups = {}
        for granularity, values in dict(self.groups).items():
            validate_granularity(granularity)
            groups[granularity] = _as_float_array(values, f"{self.method} scores per {granularity}", 1)
            _check_finite(groups[granularity], f"{self.method} scores per {granularity}")
        object.__setattr__(self, "groups", groups)

    def to_dict(self) -> dict[str, Any]:
        result = super().to_dict()
        if self.groups:
            result["groups"] = {name: [float(value) for value in values] for name, values in self.groups.items()}
        return result


@dataclass(frozen=True)
class ContextAblationScores(MethodScores):
    """Context attribution by ablation (ContextCite's surrogate): random subsets of the removable groups
    (sentences, segments, ...) are removed, and a lasso of the target's log-probability over which groups
    were kept gives each group a weight. Every token of a group scores its group's weight (held tokens 0),
    so the per-token figures draw it; the groups, their weights and the surrogate's fit are kept here."""

    granularity: str = "sentence"
    group_labels: tuple[str, ...] = ()  # [groups] each group's text
    groups: tuple[tuple[int, ...], ...] = ()  # [groups] the input positions of each removable group
    group_weights: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [groups]
    intercept: float = 0.0  # the surrogate's prediction with every group removed
    heldout_lds: float | None = None  # Spearman(predicted, actual) over held-out ablations; None: undefined
    masks: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=bool))  # [ablations, groups] kept
    ablation_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [ablations] log p(target)
    full_score: float = 0.0  # log p(target) with nothing removed
    empty_score: float = 0.0  # log p(target) with every removable group removed

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "group_labels", tuple(str(label) for label in self.group_labels))
        object.__setattr__(self, "groups", tuple(tuple(int(index) for index in group) for group in self.groups))
        object.__setattr__(self, "group_weights", _as_float_array(self.group_weights, "group weights", 1))
        object.__setattr__(self, "ablation_scores", _as_float_array(self.ablation_scores, "ablation scores", 1))
        masks = np.array(self.masks, dtype=bool, copy=True)
        masks.setflags(write=False)
        object.__setattr__(self, "masks", masks)
        n_groups = len(self.groups)
        if (masks.ndim != 2 or len(self.group_labels) != n_groups or self.group_weights.shape != (n_groups,)
                or masks.shape[1] != n_groups or self.ablation_scores.shape != (masks.shape[0],)):
            raise ValueError(
                f"context ablation shapes disagree: {len(self.group_labels)} labels, {n_groups} groups, weights "
                f"{self.group_weights.shape}, masks {masks.shape}, ablation scores {self.ablation_scores.shape}")
        positions = [index for group in self.groups for index in group]
        if len(set(positions)) != len(positions) or any(not 0 <= index < self.n_tokens for index in positions):
            raise ValueError(f"context ablation groups must be disjoint positions of the {self.n_tokens} input tokens")
        if any(not group for group in self.groups):
            raise ValueError("context ablation groups must not be empty")
        expected = np.zeros(self.n_tokens)
        for group, weight in zip(self.groups, self.group_weights):
            expected[list(group)] = weight
        if not np.array_equal(expected, self.scores):
            raise ValueError("context ablation token scores must be their group's weight (0 outside the groups)")
        for name in ("intercept", "full_score", "empty_score"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ValueError(f"context ablation {name} is not finite ({value})")
            object.__setattr__(self, name, value)
        _check_finite(self.ablation_scores, "ablation scores")

    @property
    def n_ablations(self) -> int:
        return int(self.masks.shape[0])

    def weights_per(self, groups: Sequence[Sequence[int]], granularity: str) -> np.ndarray:
        """[len(groups)] the surrogate's weight of each of another grouping's groups (token positions): a
        group made of whole ablated groups weighs their sum (the surrogate is linear in which groups are
        kept: removing them together is predicted to cost the sum); a group inside one ablated group shows
        that group's weight, as its tokens do; a group of held context 0. ValueError for a group that cuts
        across an ablated one (a word grouping would, at sentence ablation, never: words lie in sentences)."""
        owner = {index: number for number, group in enumerate(self.groups) for index in group}
        values = []
        for group in groups:
            touched = {owner[index] for index in group if index in owner}
            whole = all(set(self.groups[number]) <= set(group) for number in touched)
            if len(touched) == 1 and not whole and all(index in owner for index in group):
                values.append(float(self.group_weights[touched.pop()]))  # inside one ablated group
            elif whole:
                values.append(float(sum(self.group_weights[number] for number in touched)))
            else:
                raise ValueError(f"context ablation removed whole {self.granularity}s; a {granularity} that cuts "
                                 f"across them has no weight: analyse again with granularity {granularity!r}")
        return np.array(values)

    def to_dict(self) -> dict[str, Any]:
        result = super().to_dict()
        result.update(
            granularity=self.granularity,
            groups=[{"label": label, "tokens": list(group), "weight": float(weight)}
                    for label, group, weight in zip(self.group_labels, self.groups, self.group_weights)],
            intercept=self.intercept,
            heldout_lds=self.heldout_lds,
            n_ablations=self.n_ablations,
            full_score=self.full_score,
            empty_score=self.empty_score,
            masks=[[int(kept) for kept in row] for row in self.masks],
            ablation_scores=[float(value) for value in self.ablation_scores],
        )
        return result


@dataclass(frozen=True)
class Target:
    """The token being explained: its text, vocabulary id, and index in prompt + generated tokens."""

    text: str
    id: int
    position: int

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "id": int(self.id), "position": int(self.position)}


SPAN_SOURCES = ("answer", "continuation")


@dataclass(frozen=True)
class Span:
    """A stretch of tokens explained as one score: the sum of its tokens' scores, each token with the
    earlier ones teacher-forced (its last token is the analysis's `target`, the others end its input)."""

    tokens: tuple[str, ...]  # [S] display strings, in order
    ids: tuple[int, ...]  # [S]
    start: int  # index of its first token in input tokens + target (its last token sits at target.position)
    text: str  # the stretch decoded
    # "answer": the generated tokens first..last (1-based, Settings.target (k, m)); "continuation": the
    # text of Settings.continuation, teacher-forced right after the prompt (first and last None).
    source: str = "answer"
    first: int | None = None
    last: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", tuple(self.tokens))
        object.__setattr__(self, "ids", tuple(int(value) for value in self.ids))
        if not self.ids or len(self.tokens) != len(self.ids):
            raise ValueError(f"a span needs one or more tokens, each with an id: {len(self.tokens)} tokens, "
                             f"{len(self.ids)} ids")
        if self.source not in SPAN_SOURCES:
            raise ValueError(f"unknown span source {self.source!r}; valid choices: {', '.join(SPAN_SOURCES)}")
        numbered = self.source == "answer"
        if numbered and (self.first is None or self.last is None or self.last - self.first + 1 != len(self.ids)):
            raise ValueError(f"an answer span's tokens {self.first}..{self.last} must number its {len(self.ids)} tokens")
        if not numbered and (self.first is not None or self.last is not None):
            raise ValueError("a continuation span has no generated-token numbers (first and last are None)")

    @property
    def end(self) -> int:
        """Index of its last token (the target's position)."""
        return self.start + len(self.ids) - 1

    @property
    def label(self) -> str:
        """In words: 'generated tokens 2-5' or 'the continuation'."""
        return f"generated tokens {self.first}-{self.last}" if self.source == "answer" else "the continuation"

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": list(self.tokens), "ids": list(self.ids), "start": int(self.start), "text": self.text,
                "source": self.source, "first": self.first, "last": self.last}


@dataclass(frozen=True)
class Prediction:
    """One candidate next token with its probability (for picking a contrastive foil)."""

    text: str
    id: int
    probability: float

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "id": int(self.id), "probability": float(self.probability)}


@dataclass(frozen=True)
class AnswerMap:
    """Attributions for every generated token: row t explains generated token t from all sources
    before it (prompt tokens, then earlier generated tokens); entries after its input are 0 (a causal
    model cannot be influenced by tokens that come later)."""

    method: str
    targets: tuple[str, ...]  # [T] generated tokens explained
    sources: tuple[str, ...]  # [S] = prompt tokens + generated tokens but the last
    matrix: np.ndarray  # [T, S]

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(self.targets))
        object.__setattr__(self, "sources", tuple(self.sources))
        object.__setattr__(self, "matrix", _as_float_array(self.matrix, f"{self.method} answer map", 2))
        if self.matrix.shape != (len(self.targets), len(self.sources)):
            raise ValueError(
                f"answer map {self.matrix.shape} does not match {len(self.targets)} targets × "
                f"{len(self.sources)} sources"
            )
        _check_finite(self.matrix, f"{self.method} answer map")

    @property
    def n_prompt(self) -> int:
        """Sources that belong to the prompt: S − (T − 1)."""
        return len(self.sources) - len(self.targets) + 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "targets": list(self.targets),
            "sources": list(self.sources),
            "matrix": [[float(value) for value in row] for row in self.matrix],
        }


@dataclass(frozen=True)
class Analysis:
    """Everything one `attribution.analyze` call produced, ready for plotting and export."""

    model: str
    prompt: str
    input_tokens: tuple[str, ...]  # display strings of the tokens preceding the target
    input_ids: np.ndarray  # [n_tokens]
    generated_text: str
    generated_ids: np.ndarray  # [n_generated]
    target: Target
    methods: Mapping[str, MethodScores]
    foil: Target | None = None  # contrastive: the alternative the target is compared against
    top_predictions: tuple[Prediction, ...] = ()  # the model's most likely tokens at the target position
    special_tokens: np.ndarray | None = None  # [n_tokens] bool: BOS/EOS/pad (attention sinks)
    # [n_tokens] bool: the token covers characters the user typed (None: every non-special token)
    user_tokens: np.ndarray | None = None
    # [n_tokens] bool: context held fixed (first position, special and template tokens); None: special only
    held_tokens: np.ndarray | None = None
    chat: bool = False  # the prompt went through the model's chat template
    # input tokens that come from the prompt; the rest are generated tokens before the target (target=k)
    n_prompt_tokens: int | None = None
    system: str | None = None  # the system prompt given with chat (None: the template's default)
    answer_map: Mapping[str, AnswerMap] = field(default_factory=dict)
    trust: TrustReport | None = None  # when requested
    settings: Settings | None = None  # what it was computed with (None: a result built by hand)
    # A span target (Settings.target (k, m) or continuation): the stretch whose summed score is explained.
    span: Span | None = None
    # Each input token's characters in the decoded text (attribution.groups), so that the result regroups
    # into words, sentences or segments without the tokenizer; None: a result built by hand.
    token_spans: TokenSpans | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_tokens", tuple(self.input_tokens))
        ids = np.array(self.input_ids, dtype=np.int64, copy=True).reshape(-1)
        ids.setflags(write=False)
        object.__setattr__(self, "input_ids", ids)
        generated = np.array(self.generated_ids, dtype=np.int64, copy=True).reshape(-1)
        generated.setflags(write=False)
        object.__setattr__(self, "generated_ids", generated)
        object.__setattr__(self, "methods", dict(self.methods))
        object.__setattr__(self, "answer_map", dict(self.answer_map))
        object.__setattr__(self, "top_predictions", tuple(self.top_predictions))
        special = np.zeros(ids.shape[0], dtype=bool) if self.special_tokens is None else self.special_tokens
        special = np.array(special, dtype=bool, copy=True).reshape(-1)
        special.setflags(write=False)
        object.__setattr__(self, "special_tokens", special)
        if special.shape[0] != ids.shape[0]:
            raise ValueError(f"{special.shape[0]} special-token flags for {ids.shape[0]} input tokens")
        user = ~special if self.user_tokens is None else self.user_tokens
        user = np.array(user, dtype=bool, copy=True).reshape(-1)
        user.setflags(write=False)
        object.__setattr__(self, "user_tokens", user)
        if user.shape[0] != ids.shape[0]:
            raise ValueError(f"{user.shape[0]} user-token flags for {ids.shape[0]} input tokens")
        held = special if self.held_tokens is None else self.held_tokens
        held = np.array(held, dtype=bool, copy=True).reshape(-1)
        held.setflags(write=False)
        object.__setattr__(self, "held_tokens", held)
        if held.shape[0] != ids.shape[0]:
            raise ValueError(f"{held.shape[0]} held-token flags for {ids.shape[0]} input tokens")
        if len(self.input_tokens) != ids.shape[0]:
            raise ValueError(f"{len(self.input_tokens)} token strings for {ids.shape[0]} input ids")
        if self.target.position != ids.shape[0]:
            raise ValueError(
                f"target position {self.target.position} must follow the {ids.shape[0]} input tokens"
            )
        if self.span is not None:
            self._check_span(ids)
        for name, result in self.methods.items():
            if result.n_tokens != ids.shape[0]:
                raise ValueError(f"{name} has {result.n_tokens} scores for {ids.shape[0]} input tokens")
        if self.token_spans is not None and len(self.token_spans) != ids.shape[0]:
            raise ValueError(f"{len(self.token_spans)} token spans for {ids.shape[0]} input tokens")
        object.__setattr__(self, "_groupings", {})

    def _check_span(self, ids: np.ndarray) -> None:
        span = self.span
        if span.end != self.target.position or span.ids[-1] != self.target.id:
            raise ValueError(f"the span's last token (position {span.end}, id {span.ids[-1]}) must be the target "
                             f"(position {self.target.position}, id {self.target.id})")
        if [int(value) for value in ids[span.start:]] != list(span.ids[:-1]):
            raise ValueError("the span's tokens before its last must be the last input tokens (teacher-forced)")

    @property
    def n_tokens(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def template_tokens(self) -> np.ndarray:
        """[n_tokens] bool: what the chat template added (role markers, system text), not special tokens."""
        if not self.chat:
            return np.zeros(self.n_tokens, dtype=bool)
        in_prompt = np.arange(self.n_tokens) < (self.n_tokens if self.n_prompt_tokens is None else self.n_prompt_tokens)
        return ~self.user_tokens & ~self.special_tokens & in_prompt

    @property
    def context_tokens(self) -> np.ndarray:
        """[n_tokens] bool: the held context (first position, special and template tokens), shown
        greyed and left out of the colour scaling, the top-5 tables, agreement and the verdict by default."""
        return self.held_tokens | self.special_tokens | self.template_tokens

    @property
    def granularity(self) -> str:
        """What the scores are shown and exported per (the settings'; "token" for a result built by hand)."""
        return "token" if self.settings is None else self.settings.granularity

    def grouping(self, granularity: str | None = None) -> Grouping:
        """The input tokens grouped per `granularity` (default: the analysis's), with the analysis's
        separator; the held context (first position, special and template tokens) stays one group per token.
        ValueError when the result keeps no token spans (built by hand) or the text has no such groups."""
        granularity = validate_granularity(self.granularity if granularity is None else granularity)
        if granularity not in self._groupings:
            template = self.template_tokens
            if granularity == "token":
                kinds = ["template" if template[index] else "held" if self.context_tokens[index] else "text"
                         for index in range(self.n_tokens)]
                grouping = Grouping("token", tuple(Group(token, (index,), kind, token) for index, (token, kind)
                                                   in enumerate(zip(self.input_tokens, kinds))))
            elif self.token_spans is None:
                raise ValueError(f"this result keeps no token spans, so its scores cannot be shown per "
                                 f"{granularity}; valid choices: token")
            else:
                prompt_end = self.n_tokens if self.n_prompt_tokens is None else self.n_prompt_tokens
                grouping = groups_from_spans(self.token_spans, granularity,
                                             separator=None if self.settings is None else self.settings.separator,
                                             held=self.context_tokens & ~template, template=template,
                                             breaks=(prompt_end,))
            self._groupings[granularity] = grouping
        return self._groupings[granularity]

    def grouped_scores(self, granularity: str | None = None) -> dict[str, np.ndarray]:
        """Method → [n_groups] scores per `granularity` (default: the analysis's): each method's token scores
        combined by its catalog rule (`combine_rule`), occlusion's measured by hiding whole groups."""
        grouping = self.grouping(granularity)
        scores: dict[str, np.ndarray] = {}
        for name, result in self.methods.items():
            if grouping.granularity == "token":
                scores[name] = np.array(result.scores)
                continue
            rule = combine_rule(name, getattr(result, "aggregation", None))
            if rule != "remove":
                scores[name] = grouping.combine(result.scores, rule)
            elif isinstance(result, ContextAblationScores):
                scores[name] = result.weights_per([group.tokens for group in grouping.groups], grouping.granularity)
            elif isinstance(result, OcclusionScores) and grouping.granularity in result.groups:
                scores[name] = np.array(result.groups[grouping.granularity])
                if scores[name].shape != (len(grouping),):
                    raise ValueError(f"{name} has {scores[name].shape[0]} scores per {grouping.granularity} "
                                     f"for {len(grouping)} groups")
            else:
                raise ValueError(f"{name} hides whole groups and was not run per {grouping.granularity}; "
                                 f"analyse again with granularity {grouping.granularity!r}")
        return scores

    def regrouped(self, granularity: str | None = None) -> "Analysis":
        """This result seen per `granularity` (default: the analysis's), for display and the trust panel:
        one "token" per group — its text (leading spaces kept) as the token's, its first token's id, a group's flags set
        when any of its tokens has them —, each method's scores per group (`grouped_scores`; attention's
        layers and heads summed over the group: they are shares). The answer map, the trust report and a span
        target's stretch are kept as they are. At granularity "token", this result itself."""
        grouping = self.grouping(granularity)
        if grouping.granularity == "token":
            return self
        scores = self.grouped_scores(grouping.granularity)
        members = grouping.token_group
        methods: dict[str, MethodScores] = {}
        for name, result in self.methods.items():
            changes: dict[str, Any] = {"scores": scores[name]}
            if isinstance(result, AttentionScores):
                changes["per_layer"] = _sum_groups(result.per_layer, members, len(grouping))
                changes["per_head"] = _sum_groups(result.per_head, members, len(grouping))
            if isinstance(result, OcclusionScores):
                changes["groups"] = {}
            if isinstance(result, ContextAblationScores):  # its ablations are of token positions: the weights only
                methods[name] = MethodScores(method=name, scores=scores[name])
                continue
            methods[name] = dataclasses.replace(result, **changes)
        prompt_end = self.n_tokens if self.n_prompt_tokens is None else self.n_prompt_tokens
        seen = dataclasses.replace(
            self,
            span=None,  # checked against token positions: set back below
            input_tokens=tuple(group.text or group.label for group in grouping.groups),
            input_ids=[int(self.input_ids[group.tokens[0]]) for group in grouping.groups],
            target=dataclasses.replace(self.target, position=len(grouping)),
            methods=methods,
            special_tokens=grouping.any_of(self.special_tokens),
            user_tokens=grouping.any_of(self.user_tokens),
            held_tokens=grouping.any_of(self.held_tokens),
            n_prompt_tokens=sum(group.tokens[0] < prompt_end for group in grouping.groups),
            token_spans=None,
        )
        # A span target's stretch stays the one explained (its text, ids, numbers; its `start` a token
        # position): the teacher-forced tokens it ends the input with may be grouped, so it cannot be
        # checked against the groups, and the display reads only its text and ids.
        object.__setattr__(seen, "span", self.span)
        return seen

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract shared by the CLI's --json and the app's export (keys never renamed)."""
        result: dict[str, Any] = {
            "model": self.model,
            "prompt": self.prompt,
            "input_tokens": list(self.input_tokens),
            "input_ids": [int(value) for value in self.input_ids],
            "generated_text": self.generated_text,
            "generated_ids": [int(value) for value in self.generated_ids],
            "target": self.target.to_dict(),
            "methods": {name: scores.to_dict() for name, scores in self.methods.items()},
            "special_tokens": [bool(value) for value in self.special_tokens],
            "user_tokens": [bool(value) for value in self.user_tokens],
            "held_tokens": [bool(value) for value in self.held_tokens],
            "chat": bool(self.chat),
            "top_predictions": [prediction.to_dict() for prediction in self.top_predictions],
        }
        if self.n_prompt_tokens is not None:  # which input tokens are the prompt's (the rest: generated)
            result["n_prompt_tokens"] = int(self.n_prompt_tokens)
        if self.chat and self.system is not None:
            result["system"] = self.system
        if self.foil is not None:
            result["contrast"] = {"foil": {"text": self.foil.text, "id": int(self.foil.id)}}
        if self.span is not None:
            result["span"] = self.span.to_dict()
        if self.token_spans is not None:  # so that a result read back regroups (attribution.result_json)
            result["token_spans"] = self.token_spans.to_dict()
        if self.answer_map:
            result["answer_map"] = {name: table.to_dict() for name, table in self.answer_map.items()}
        if self.trust is not None:
            result.update(self.trust.to_dict())
        if self.settings is not None:
            result["settings"] = self.settings.to_dict()
        if self.granularity != "token":
            grouping, scores = self.grouping(), self.grouped_scores()
            result["groups"] = {
                **grouping.to_dict(),
                "separator": self.settings.separator,
                "scores": {name: [float(value) for value in values] for name, values in scores.items()},
            }
        return result

    def to_json(self) -> str:
        """`to_dict()` as the JSON file the CLI and the app export (indented, UTF-8 kept, final newline)."""
        import json

        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def to_csv(self) -> str:
        """Token × method table of raw scores; per group (its label, first and last token) when the
        analysis's granularity is not "token"."""
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer)
        names = list(self.methods)
        if self.granularity != "token":
            grouping, scores = self.grouping(), self.grouped_scores()
            writer.writerow([self.granularity, "text", "first_token", "last_token", "kind", *names])
            for number, group in enumerate(grouping.groups):
                writer.writerow([number, group.label, group.tokens[0], group.tokens[-1], group.kind]
                                + [repr(float(scores[name][number])) for name in names])
            return buffer.getvalue()
        writer.writerow(["position", "token", "token_id", *names])
        for position, (token, token_id) in enumerate(zip(self.input_tokens, self.input_ids)):
            writer.writerow(
                [position, token, int(token_id)]
                + [repr(float(self.methods[name].scores[position])) for name in names]
            )
        return buffer.getvalue()


def _sum_groups(values: np.ndarray, members: np.ndarray, n_groups: int) -> np.ndarray:
    """[..., n_tokens] → [..., n_groups]: the values of each group's tokens added."""
    membership = np.zeros((len(members), n_groups))  # [n_tokens, n_groups]
    membership[np.arange(len(members)), members] = 1.0
    return np.asarray(values, dtype=np.float64) @ membership


def _included(scores: np.ndarray, exclude: np.ndarray | None) -> np.ndarray:
    keep = np.ones(scores.shape, dtype=bool) if exclude is None else ~np.asarray(exclude, dtype=bool)
    if keep.shape != scores.shape:
        raise ValueError(f"exclude mask {keep.shape} does not match scores {scores.shape}")
    return keep


def normalize_min_max(scores: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """Scale to [0, 1] exactly as the seed notebook's comparison does (1e-10 guards a flat vector).

    `exclude` (bool per token, e.g. BOS as an attention sink) leaves those tokens out of the min and
    max and sets them to 0, so one sink token does not flatten every other score.
    """
    scores = np.asarray(scores, dtype=np.float64)
    keep = _included(scores, exclude)
    if not keep.any():
        return np.zeros_like(scores)
    low, high = scores[keep].min(), scores[keep].max()
    return np.where(keep, np.clip((scores - low) / (high - low + 1e-10), 0.0, 1.0), 0.0)


def normalize_max_abs(scores: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """Scale to [−1, 1] keeping the sign and zero: divide by the largest magnitude (excluded tokens → 0)."""
    scores = np.asarray(scores, dtype=np.float64)
    keep = _included(scores, exclude)
    largest = float(np.max(np.abs(scores[keep]))) if keep.any() else 0.0
    if largest == 0:
        return np.zeros_like(scores)
    return np.where(keep, np.clip(scores / largest, -1.0, 1.0), 0.0)


def top_k(scores: np.ndarray, k: int = 5, exclude: np.ndarray | None = None) -> list[int]:
    """Indices of the k largest scores, largest first (ties keep the earlier position first);
    positions flagged in `exclude` are left out."""
    scores = np.asarray(scores, dtype=np.float64)
    keep = _included(scores, exclude)
    order = [int(index) for index in np.argsort(-scores, kind="stable") if keep[index]]
    return order[: max(0, k)]
