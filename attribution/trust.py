"""How far to trust an attribution: IG completeness, faithfulness (ERASER comprehensiveness and
sufficiency as AOPC, against random token orders with bootstrap intervals: `attribution.faithfulness`)
and agreement between methods, with a plain-language verdict that quotes only tokens the user typed."""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import combinations
from typing import Mapping

import numpy as np

from .groups import Grouping
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
from .reports import EVIDENCE, Completeness, TrustReport  # noqa: F401 (re-exported)
from .ranks import rank_average, spearman  # noqa: F401 (re-exported: attribution.trust's API)


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
    doubled = request.settings.replace(n_steps=result.n_steps * 2)
    rerun = integrated_gradients(loaded, replace(request, settings=doubled, work=SharedWork(True)))
    return replace(report, rerun_n_steps=rerun.n_steps, rerun_relative_error=rerun.relative_completeness_error)


@dataclass(frozen=True)
class Verdict:
    text: str
    positions: tuple[int, ...]  # the tokens it quotes
    evidence: str  # a value of EVIDENCE


def quote(token: str) -> str:
    """A token as the verdict quotes it: stripped (unless only spaces), in typographic quotes that no
    possessive ("Gradient's") can be mistaken for."""
    text = token.strip() or token
    return f"“{text if len(text) <= QUOTED else text[:QUOTED - 1] + '…'}”"


QUOTED = 80  # the most characters of a token, word, sentence or segment the verdict quotes


def _names(methods: list[str]) -> str:
    labels = [METHOD_LABELS.get(name, name) for name in methods]
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + f" and {labels[-1]}"


def _margin(item: Faithfulness) -> float:
    return item.comprehensiveness - item.random_comprehensiveness


def _evidence_sentences(report: Mapping[str, Faithfulness], rated: list[str], trusted: list[str], evidence: str,
                        n_content: int, unit: str = "token") -> list[str]:
    """What the faithfulness report supports: which methods beat random orders, by how much."""
    if evidence == "none":
        sentences = [f"no method beats random here: removing each method's top {unit}s changes the prediction "
                     f"no more than removing random {unit}s"]
    else:
        best = max(trusted, key=lambda name: _margin(report[name]))
        item = report[best]
        verb = f"beat{'s' if len(trusted) == 1 else ''}"
        lead = (f"{_names(trusted)} {verb} random {unit} orders" if evidence == "clear" else
                f"the evidence is weak: {_names(trusted)} {verb} random {unit} orders on only one of the two measures")
        label = METHOD_LABELS.get(best, best)
        owner = f"{label}'" if label.endswith("s") else f"{label}'s"  # Integrated Gradients' top tokens
        sentences = [f"{lead}; removing {owner} top {unit}s lowers "
                     f"{item.measured} by {item.comprehensiveness:.3g} on average, against "
                     f"{item.random_comprehensiveness:.3g} for random {unit}s"]
    if n_content <= 2:
        sentences.append(f"only {n_content} {unit}{'s' if n_content != 1 else ''} could be removed, so that "
                         "comparison is weak")
    return sentences


def _top_token_sentence(tokens: tuple[str, ...], methods: Mapping[str, MethodScores], voters: list[str],
                        quotable: np.ndarray, unit: str = "token") -> tuple[str, int | None]:
    """Which typed token the voting methods rank first, and its position when they agree (or one votes)."""
    tops: dict[int, list[str]] = {}
    for name in voters:
        tops.setdefault(_top(methods[name].scores, quotable, 1)[0], []).append(name)
    position, agreeing = max(tops.items(), key=lambda item: len(item[1]))
    token = quote(tokens[position])
    if len(agreeing) >= 2:
        return f"{_names(agreeing)} agree that the typed {unit} that matters most is {token}", position
    if len(voters) == 1:
        return f"{_names(agreeing)} ranks {token} first among the typed {unit}s", position
    return f"the methods disagree on which typed {unit} matters most", None


def _ig_sentence(check: Completeness) -> str:
    error = check.relative_error if check.rerun_relative_error is None else check.rerun_relative_error
    advice = "try more steps" if check.baseline == RECOMMENDED_BASELINE else f"try the {RECOMMENDED_BASELINE} baseline"
    return (f"IG did not converge ({error:.0%} off even at {check.rerun_n_steps or check.n_steps} steps; {advice}), "
            "so it is not cited")


def verdict(
    tokens: tuple[str, ...], methods: Mapping[str, MethodScores], content: np.ndarray,
    report: Mapping[str, Faithfulness], check: Completeness | None, quotable: np.ndarray | None = None,
    unit: str = "token",
) -> Verdict:
    """The trust panel in a few plain sentences.

    `content` [seq] bool: tokens faithfulness may remove (not held); `quotable` [seq] bool: tokens the
    verdict may quote (those the user typed; default: the content). Held tokens are never quoted. IG is
    never cited when its integral did not converge. Which methods are cited follows the evidence:
    those whose top tokens beat random ones on both measures ("clear"), else on one ("weak"), else
    none of them beats random and the sentence says so. `unit`: what the positions are (token, word,
    sentence, segment).
    """
    content = np.asarray(content, dtype=bool)
    quotable = content if quotable is None else np.asarray(quotable, dtype=bool) & content
    ig_failed = check is not None and not check.converged
    citable = [name for name in methods if not (ig_failed and name == "integrated_gradients")]
    rated = [name for name in citable if name in report]
    evidence = max((report[name].evidence for name in rated), key=EVIDENCE.index, default="none")
    trusted = [name for name in rated if report[name].evidence == evidence] if evidence != "none" else []
    sentences = _evidence_sentences(report, rated, trusted, evidence, int(content.sum()), unit) if rated else []
    positions: list[int] = []
    # Which typed token matters most, by the methods the evidence supports (all citable ones when
    # there is no faithfulness report, e.g. no content at all).
    voters = trusted or (citable if not rated else [])
    if quotable.any() and voters:
        sentence, position = _top_token_sentence(tokens, methods, voters, quotable, unit)
        sentences.append(sentence)
        positions += [] if position is None else [position]
    elif rated and evidence == "none" and quotable.any():
        sentences.append(f"so no {unit} can be named as the one that drove the prediction")
    if "attention" in methods and (~content).any():
        attention_scores = methods["attention"].scores
        held_share = float(attention_scores[~content].sum() / max(attention_scores.sum(), 1e-12))
        if held_share >= 0.5:
            sentences.append(
                f"attention mostly points at the held context (the first token, special and template tokens: "
                f"{held_share:.0%} of it)"
            )
    if ig_failed:
        sentences.append(_ig_sentence(check))
    text = "; ".join(sentences) or "nothing to compare"
    return Verdict(text[0].upper() + text[1:] + ".", tuple(positions), evidence)


def assess(
    loaded: LoadedModel, request: AttributionRequest, tokens: tuple[str, ...],
    methods: Mapping[str, MethodScores], held: np.ndarray, *, user: np.ndarray | None = None,
    removal: str = DEFAULT_REMOVAL, scale: str = DEFAULT_SCALE, n_random: int = RANDOM_ORDERS,
    grouping: Grouping | None = None,
) -> TrustReport:
    """`held` [seq] bool: the context (first position, special and template tokens) that faithfulness
    never removes and that agreement and the verdict leave out. `user` [seq] bool: the tokens the user
    typed, the only ones the verdict quotes (default: every token not held).

    `grouping` (words, sentences or segments): `tokens`, the scores of `methods`, `held` and `user` are per
    group (`Analysis.regrouped`), and faithfulness removes whole groups."""
    content = ~np.asarray(held, dtype=bool)
    members = None if grouping is None else grouping.token_group
    report, ks = faithfulness(loaded, request, methods, content, removal=removal, scale=scale, n_random=n_random,
                              members=members)
    rank_correlation, overlap = agreement(methods, content)
    ig = methods.get("integrated_gradients")
    check = completeness(loaded, request, ig) if isinstance(ig, IntegratedGradientsScores) else None
    summary = verdict(tokens, methods, content, report, check, quotable=user,
                      unit="token" if grouping is None else grouping.granularity)
    return TrustReport(
        faithfulness=report, spearman=rank_correlation, top3_overlap=overlap, completeness=check,
        verdict=summary.text, ks=ks, verdict_positions=summary.positions, evidence=summary.evidence,
        granularity="token" if grouping is None else grouping.granularity,
    )
