"""Frozen result objects holding CPU numpy arrays, their JSON contract, and normalisation.

Nothing here touches torch: results are what crosses from the engine to plotting, the CLI and the UI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

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
class Target:
    """The token being explained: its text, vocabulary id, and index in prompt + generated tokens."""

    text: str
    id: int
    position: int

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "id": int(self.id), "position": int(self.position)}


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
        for name, result in self.methods.items():
            if result.n_tokens != ids.shape[0]:
                raise ValueError(f"{name} has {result.n_tokens} scores for {ids.shape[0]} input tokens")

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
        if self.answer_map:
            result["answer_map"] = {name: table.to_dict() for name, table in self.answer_map.items()}
        if self.trust is not None:
            result.update(self.trust.to_dict())
        if self.settings is not None:
            result["settings"] = self.settings.to_dict()
        return result

    def to_json(self) -> str:
        """`to_dict()` as the JSON file the CLI and the app export (indented, UTF-8 kept, final newline)."""
        import json

        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def to_csv(self) -> str:
        """Token × method table of raw scores."""
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer)
        names = list(self.methods)
        writer.writerow(["position", "token", "token_id", *names])
        for position, (token, token_id) in enumerate(zip(self.input_tokens, self.input_ids)):
            writer.writerow(
                [position, token, int(token_id)]
                + [repr(float(self.methods[name].scores[position])) for name in names]
            )
        return buffer.getvalue()


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
