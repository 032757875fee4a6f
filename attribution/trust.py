"""How far to trust an attribution: IG completeness, faithfulness (ERASER comprehensiveness and
sufficiency as AOPC, against a random token order) and agreement between methods, with a one-line
plain-language verdict."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from itertools import combinations
from typing import Any, Mapping

import numpy as np
import torch

from .integrated_gradients import RECOMMENDED_BASELINE
from .methods import METHOD_LABELS, integrated_gradients
from .models import LoadedModel
from .passes import AttributionRequest, log_probability_scores
from .results import IntegratedGradientsScores, MethodScores

COMPLETENESS_TOLERANCE = 0.05  # above this relative error, IG is rerun once with twice the steps
RANDOM_ORDERS = 8  # random token orders averaged for the faithfulness reference


@dataclass(frozen=True)
class Faithfulness:
    """AOPC over k ∈ {1, 2, ⌈20%⌉, ⌈50%⌉} content tokens. Comprehensiveness: how much the target's
    probability drops when the top-k tokens are hidden (higher is better). Sufficiency: how much it
    drops when only the top-k are kept (lower is better). Random: the same for random orders."""

    comprehensiveness: float
    sufficiency: float
    random_comprehensiveness: float
    random_sufficiency: float

    def to_dict(self) -> dict[str, float]:
        return {key: float(value) for key, value in self.__dict__.items()}


@dataclass(frozen=True)
class Completeness:
    """|Σ attributions − (F(x) − F(x′))| / |F(x) − F(x′)| for IG, and the one rerun at twice the steps."""

    relative_error: float
    n_steps: int
    baseline: str
    rerun_n_steps: int | None = None
    rerun_relative_error: float | None = None

    @property
    def converged(self) -> bool:
        best = self.relative_error if self.rerun_relative_error is None else self.rerun_relative_error
        return best <= COMPLETENESS_TOLERANCE

    def to_dict(self) -> dict[str, Any]:
        return {
            "relative_error": self.relative_error, "n_steps": self.n_steps, "baseline": self.baseline,
            "rerun_n_steps": self.rerun_n_steps, "rerun_relative_error": self.rerun_relative_error,
            "converged": self.converged,
        }


@dataclass(frozen=True)
class TrustReport:
    faithfulness: Mapping[str, Faithfulness]
    spearman: Mapping[str, float]  # "a|b" → rank correlation over content tokens
    top3_overlap: Mapping[str, float]  # "a|b" → shared share of each method's top 3 content tokens
    completeness: Completeness | None
    verdict: str
    ks: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "faithfulness", dict(self.faithfulness))
        object.__setattr__(self, "spearman", dict(self.spearman))
        object.__setattr__(self, "top3_overlap", dict(self.top3_overlap))
        for name, value in [*self.spearman.items(), *self.top3_overlap.items()]:
            if not math.isfinite(value):
                raise ValueError(f"agreement {name} is not finite")

    def to_dict(self) -> dict[str, Any]:
        return {
            "faithfulness": {name: item.to_dict() for name, item in self.faithfulness.items()},
            "agreement": {"spearman": dict(self.spearman), "top3_overlap": dict(self.top3_overlap)},
            "completeness": None if self.completeness is None else self.completeness.to_dict(),
            "verdict": self.verdict,
        }


def removal_counts(n_content: int) -> tuple[int, ...]:
    """k ∈ {1, 2, ⌈20%⌉, ⌈50%⌉} of the content tokens, clipped to what exists, duplicates dropped."""
    counts = [1, 2, math.ceil(0.2 * n_content), math.ceil(0.5 * n_content)]
    return tuple(sorted({min(max(k, 1), n_content) for k in counts})) if n_content else ()


def rank_average(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties sharing their average rank (as Spearman's rho needs)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    start = 0
    while start < len(values):
        stop = start
        while stop + 1 < len(values) and sorted_values[stop + 1] == sorted_values[start]:
            stop += 1
        ranks[order[start : stop + 1]] = (start + stop) / 2 + 1
        start = stop + 1
    return ranks


def spearman(first: np.ndarray, second: np.ndarray) -> float | None:
    """Spearman's rank correlation; None when either vector is constant (undefined)."""
    first_ranks, second_ranks = rank_average(np.asarray(first)), rank_average(np.asarray(second))
    if np.ptp(first_ranks) == 0 or np.ptp(second_ranks) == 0:
        return None
    return float(np.corrcoef(first_ranks, second_ranks)[0, 1])


def _top(scores: np.ndarray, content: np.ndarray, k: int) -> list[int]:
    """Content-token positions of the k largest scores, largest first."""
    order = [int(index) for index in np.argsort(-scores, kind="stable") if content[index]]
    return order[:k]


def faithfulness(
    loaded: LoadedModel, request: AttributionRequest, methods: Mapping[str, MethodScores], content: np.ndarray
) -> tuple[dict[str, Faithfulness], tuple[int, ...]]:
    """ERASER scores for every method in one batched masked forward (special tokens always kept)."""
    n_tokens = len(content)
    content_positions = np.flatnonzero(content)
    ks = removal_counts(len(content_positions))
    if not ks:
        return {}, ks
    rng = np.random.default_rng(0)
    orders = {name: _top(result.scores, content, len(content_positions)) for name, result in methods.items()}
    random_orders = [list(rng.permutation(content_positions)) for _ in range(RANDOM_ORDERS)]
    keep_rows = [np.ones(n_tokens, dtype=np.int64)]  # row 0: the full input
    for order in [*orders.values(), *random_orders]:
        for k in ks:
            removed = np.ones(n_tokens, dtype=np.int64)
            removed[order[:k]] = 0
            kept = (~content).astype(np.int64)
            kept[order[:k]] = 1
            keep_rows += [removed, kept]
    values = log_probability_scores(loaded, request, torch.from_numpy(np.stack(keep_rows))).double().numpy()
    if request.foil_id is None:
        values = np.exp(values)  # ERASER works with the target's probability
    full, per_order = values[0], values[1:].reshape(len(orders) + RANDOM_ORDERS, len(ks), 2)
    drops = full - per_order  # [orders, ks, (removed, kept)]
    aopc = drops.mean(axis=1)  # [orders, 2]
    random_comprehensiveness, random_sufficiency = aopc[len(orders):].mean(axis=0)
    report = {
        name: Faithfulness(
            comprehensiveness=float(aopc[index, 0]), sufficiency=float(aopc[index, 1]),
            random_comprehensiveness=float(random_comprehensiveness), random_sufficiency=float(random_sufficiency),
        )
        for index, name in enumerate(orders)
    }
    return report, ks


def agreement(methods: Mapping[str, MethodScores], content: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
    rank_correlation: dict[str, float] = {}
    overlap: dict[str, float] = {}
    n_top = min(3, int(content.sum()))
    for first, second in combinations(methods, 2):
        key = f"{first}|{second}"
        rho = spearman(methods[first].scores[content], methods[second].scores[content])
        if rho is not None:
            rank_correlation[key] = rho
        if n_top:
            shared = set(_top(methods[first].scores, content, n_top)) & set(_top(methods[second].scores, content, n_top))
            overlap[key] = len(shared) / n_top
    return rank_correlation, overlap


def completeness(
    loaded: LoadedModel, request: AttributionRequest, result: IntegratedGradientsScores
) -> Completeness:
    report = Completeness(result.relative_completeness_error, result.n_steps, result.baseline)
    if report.relative_error <= COMPLETENESS_TOLERANCE or result.n_steps * 2 > 1000:
        return report
    rerun = integrated_gradients(loaded, replace(request, n_steps=result.n_steps * 2, shared={}))
    return replace(report, rerun_n_steps=rerun.n_steps, rerun_relative_error=rerun.relative_completeness_error)


def verdict(
    tokens: tuple[str, ...], methods: Mapping[str, MethodScores], content: np.ndarray,
    report: dict[str, Faithfulness], check: Completeness | None,
) -> str:
    sentences = []
    if content.any():
        tops: dict[int, list[str]] = {}
        for name, result in methods.items():
            tops.setdefault(_top(result.scores, content, 1)[0], []).append(METHOD_LABELS.get(name, name))
        position, agreeing = max(tops.items(), key=lambda item: len(item[1]))
        if len(agreeing) >= 2:
            names = ", ".join(agreeing[:-1]) + f" and {agreeing[-1]}"
            sentences.append(f"{names} agree on {tokens[position].strip()!r}")
        elif methods:
            sentences.append("the methods disagree on the most important token")
    if "attention" in methods and (~content).any():
        attention_scores = methods["attention"].scores
        sink_share = float(attention_scores[~content].sum() / max(attention_scores.sum(), 1e-12))
        if sink_share >= 0.5:
            sentences.append(f"attention mostly points at the start token ({sink_share:.0%} of it)")
    if report:
        best = max(report, key=lambda name: report[name].comprehensiveness - report[name].random_comprehensiveness)
        margin = report[best].comprehensiveness - report[best].random_comprehensiveness
        if margin > 0:
            sentences.append(f"hiding {METHOD_LABELS.get(best, best)}'s top tokens hurts the prediction most")
        else:
            sentences.append("no method beats a random token order at finding what matters")
    if check is not None and not check.converged:
        error = check.relative_error if check.rerun_relative_error is None else check.rerun_relative_error
        advice = (
            "try more steps" if check.baseline == RECOMMENDED_BASELINE else f"try the {RECOMMENDED_BASELINE} baseline"
        )
        sentences.append(
            f"IG did not converge ({error:.0%} off even at {check.rerun_n_steps or check.n_steps} steps; {advice})"
        )
    text = "; ".join(sentences) or "nothing to compare"
    return text[0].upper() + text[1:] + "."


def assess(
    loaded: LoadedModel, request: AttributionRequest, tokens: tuple[str, ...],
    methods: Mapping[str, MethodScores], held: np.ndarray,
) -> TrustReport:
    """`held` [seq] bool: the context (first position, special and template tokens) that faithfulness
    never hides and that agreement and the verdict leave out."""
    content = ~np.asarray(held, dtype=bool)
    report, ks = faithfulness(loaded, request, methods, content)
    rank_correlation, overlap = agreement(methods, content)
    ig = methods.get("integrated_gradients")
    check = completeness(loaded, request, ig) if isinstance(ig, IntegratedGradientsScores) else None
    return TrustReport(
        faithfulness=report, spearman=rank_correlation, top3_overlap=overlap, completeness=check,
        verdict=verdict(tokens, methods, content, report, check), ks=ks,
    )
