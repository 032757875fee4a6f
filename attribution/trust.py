"""How far to trust an attribution: IG completeness, faithfulness (ERASER comprehensiveness and
sufficiency as AOPC, against random token orders with bootstrap intervals: `attribution.faithfulness`)
and agreement between methods, with a plain-language verdict that quotes only tokens the user typed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from itertools import combinations
from typing import Any, Mapping

import numpy as np

from .integrated_gradients import RECOMMENDED_BASELINE
from .methods import METHOD_LABELS, integrated_gradients
from .models import LoadedModel
from .passes import AttributionRequest, SharedWork
from .settings import COMPLETENESS_TOLERANCE, MAX_STEPS
from .results import IntegratedGradientsScores, MethodScores
from .faithfulness import (  # noqa: F401 (re-exported: attribution.trust's API)
    DEFAULT_REMOVAL, DEFAULT_SCALE, RANDOM_ORDERS, REMOVALS, SCALES, Faithfulness, content_order, faithfulness,
    removal_counts,
)



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


EVIDENCE = ("none", "weak", "clear")  # how well the best trusted method's tokens beat random ones


@dataclass(frozen=True)
class TrustReport:
    faithfulness: Mapping[str, Faithfulness]
    spearman: Mapping[str, float]  # "a|b" → rank correlation over content tokens
    top3_overlap: Mapping[str, float]  # "a|b" → shared share of each method's top 3 content tokens
    completeness: Completeness | None
    verdict: str
    ks: tuple[int, ...] = field(default=())
    # Positions of the tokens the verdict quotes (all typed by the user, none held).
    verdict_positions: tuple[int, ...] = field(default=())
    evidence: str = "none"  # a value of EVIDENCE: the best faithfulness among the methods the verdict may cite

    def __post_init__(self) -> None:
        object.__setattr__(self, "faithfulness", dict(self.faithfulness))
        object.__setattr__(self, "spearman", dict(self.spearman))
        object.__setattr__(self, "top3_overlap", dict(self.top3_overlap))
        object.__setattr__(self, "verdict_positions", tuple(int(index) for index in self.verdict_positions))
        for name, value in [*self.spearman.items(), *self.top3_overlap.items()]:
            if not math.isfinite(value):
                raise ValueError(f"agreement {name} is not finite")
        if self.evidence not in EVIDENCE:
            raise ValueError(f"unknown evidence {self.evidence!r}; valid choices: {', '.join(EVIDENCE)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "faithfulness": {name: item.to_dict() for name, item in self.faithfulness.items()},
            "agreement": {"spearman": dict(self.spearman), "top3_overlap": dict(self.top3_overlap)},
            "completeness": None if self.completeness is None else self.completeness.to_dict(),
            "verdict": self.verdict,
            "verdict_positions": list(self.verdict_positions),
            "evidence": self.evidence,
        }


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
    """Spearman's rank correlation; None when undefined: fewer than two tokens (every one held), or
    either vector constant."""
    if len(first) < 2:
        return None
    first_ranks, second_ranks = rank_average(np.asarray(first)), rank_average(np.asarray(second))
    if np.ptp(first_ranks) == 0 or np.ptp(second_ranks) == 0:
        return None
    return float(np.corrcoef(first_ranks, second_ranks)[0, 1])


def _top(scores: np.ndarray, content: np.ndarray, k: int) -> list[int]:
    """Content-token positions of the k largest scores, largest first."""
    return content_order(scores, content)[:k]


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
    if result.target_error is not None:
        return report  # n_steps="auto" already refined as far as its target and budget allowed
    if report.relative_error <= COMPLETENESS_TOLERANCE or result.n_steps * 2 > MAX_STEPS:
        return report
    rerun = integrated_gradients(loaded, replace(request, n_steps=result.n_steps * 2, work=SharedWork(True)))
    return replace(report, rerun_n_steps=rerun.n_steps, rerun_relative_error=rerun.relative_completeness_error)


@dataclass(frozen=True)
class Verdict:
    text: str
    positions: tuple[int, ...]  # the tokens it quotes
    evidence: str  # a value of EVIDENCE


def quote(token: str) -> str:
    """A token as the verdict quotes it: stripped (unless only spaces), in typographic quotes that no
    possessive ("Gradient's") can be mistaken for."""
    return f"“{token.strip() or token}”"


def _names(methods: list[str]) -> str:
    labels = [METHOD_LABELS.get(name, name) for name in methods]
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + f" and {labels[-1]}"


# What a Faithfulness's numbers measure, for the verdict's sentence.
_MEASURED = {"log_probability": "the target's log-probability", "probability": "the target's probability",
             "contrastive": "log p(target) − log p(foil)"}


def _margin(item: Faithfulness) -> float:
    return item.comprehensiveness - item.random_comprehensiveness


def verdict(
    tokens: tuple[str, ...], methods: Mapping[str, MethodScores], content: np.ndarray,
    report: Mapping[str, Faithfulness], check: Completeness | None, quotable: np.ndarray | None = None,
) -> Verdict:
    """The trust panel in a few plain sentences.

    `content` [seq] bool: tokens faithfulness may remove (not held); `quotable` [seq] bool: tokens the
    verdict may quote (those the user typed; default: the content). Held tokens are never quoted. IG is
    never cited when its integral did not converge. Which methods are cited follows the evidence:
    those whose top tokens beat random ones on both measures ("clear"), else on one ("weak"), else
    none of them beats random and the sentence says so.
    """
    content = np.asarray(content, dtype=bool)
    quotable = content if quotable is None else np.asarray(quotable, dtype=bool) & content
    ig_failed = check is not None and not check.converged
    citable = [name for name in methods if not (ig_failed and name == "integrated_gradients")]
    sentences: list[str] = []
    positions: list[int] = []
    rated = [name for name in citable if name in report]
    evidence = max((report[name].evidence for name in rated), key=EVIDENCE.index, default="none")
    trusted = [name for name in rated if report[name].evidence == evidence] if evidence != "none" else []
    if rated:
        if evidence == "none":
            sentences.append(
                "no method beats random here: removing each method's top tokens changes the prediction "
                "no more than removing random tokens"
            )
        else:
            best = max(trusted, key=lambda name: _margin(report[name]))
            item = report[best]
            if evidence == "clear":
                lead = f"{_names(trusted)} beat{'s' if len(trusted) == 1 else ''} random token orders"
            else:
                lead = f"the evidence is weak: {_names(trusted)} beat{'s' if len(trusted) == 1 else ''} " \
                       "random token orders on only one of the two measures"
            sentences.append(
                f"{lead}; removing {METHOD_LABELS.get(best, best)}'s top tokens lowers "
                f"{_MEASURED.get(item.scale, item.scale)} by {item.comprehensiveness:.3g} on average, against "
                f"{item.random_comprehensiveness:.3g} for random tokens"
            )
        n_content = int(content.sum())
        if n_content <= 2:
            sentences.append(f"only {n_content} token{'s' if n_content != 1 else ''} could be removed, so that "
                             "comparison is weak")
    # Which typed token matters most, by the methods the evidence supports (all citable ones when
    # there is no faithfulness report, e.g. no content at all).
    voters = trusted or (citable if not rated else [])
    if quotable.any() and voters:
        tops: dict[int, list[str]] = {}
        for name in voters:
            tops.setdefault(_top(methods[name].scores, quotable, 1)[0], []).append(name)
        position, agreeing = max(tops.items(), key=lambda item: len(item[1]))
        token = quote(tokens[position])
        if len(agreeing) >= 2:
            sentences.append(f"{_names(agreeing)} agree that the typed token that matters most is {token}")
            positions.append(position)
        elif len(voters) == 1:
            sentences.append(f"{_names(agreeing)} ranks {token} first among the typed tokens")
            positions.append(position)
        else:
            sentences.append("the methods disagree on which typed token matters most")
    elif rated and evidence == "none" and quotable.any():
        sentences.append("so no token can be named as the one that drove the prediction")
    if "attention" in methods and (~content).any():
        attention_scores = methods["attention"].scores
        held_share = float(attention_scores[~content].sum() / max(attention_scores.sum(), 1e-12))
        if held_share >= 0.5:
            sentences.append(
                f"attention mostly points at the held context (the first token, special and template tokens: "
                f"{held_share:.0%} of it)"
            )
    if ig_failed:
        error = check.relative_error if check.rerun_relative_error is None else check.rerun_relative_error
        advice = (
            "try more steps" if check.baseline == RECOMMENDED_BASELINE else f"try the {RECOMMENDED_BASELINE} baseline"
        )
        sentences.append(
            f"IG did not converge ({error:.0%} off even at {check.rerun_n_steps or check.n_steps} steps; {advice}), "
            "so it is not cited"
        )
    text = "; ".join(sentences) or "nothing to compare"
    return Verdict(text[0].upper() + text[1:] + ".", tuple(positions), evidence)


def assess(
    loaded: LoadedModel, request: AttributionRequest, tokens: tuple[str, ...],
    methods: Mapping[str, MethodScores], held: np.ndarray, *, user: np.ndarray | None = None,
    removal: str = DEFAULT_REMOVAL, scale: str = DEFAULT_SCALE, n_random: int = RANDOM_ORDERS,
) -> TrustReport:
    """`held` [seq] bool: the context (first position, special and template tokens) that faithfulness
    never removes and that agreement and the verdict leave out. `user` [seq] bool: the tokens the user
    typed, the only ones the verdict quotes (default: every token not held)."""
    content = ~np.asarray(held, dtype=bool)
    report, ks = faithfulness(loaded, request, methods, content, removal=removal, scale=scale, n_random=n_random)
    rank_correlation, overlap = agreement(methods, content)
    ig = methods.get("integrated_gradients")
    check = completeness(loaded, request, ig) if isinstance(ig, IntegratedGradientsScores) else None
    summary = verdict(tokens, methods, content, report, check, quotable=user)
    return TrustReport(
        faithfulness=report, spearman=rank_correlation, top3_overlap=overlap, completeness=check,
        verdict=summary.text, ks=ks, verdict_positions=summary.positions, evidence=summary.evidence,
    )
