"""What the trust panel and the progress callback report, torch-free: the engine builds these, the
display layer (figures, tables, text), the CLI and the page read them. Every statement made about trust
(beats random, evidence, converged, the scale of the drops, the verdict) is a field or property here,
never recomputed downstream."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from .bootstrap import LEVEL
from .limits import COMPLETENESS_TOLERANCE

REMOVALS = {
    "attention_mask": "hidden by the attention mask (no position attends to it; positions do not shift)",
    "pad_token": "replaced by the pad token (EOS where there is none), attention untouched",
    "mean_embedding": "embedding replaced by the mean of the vocabulary's embeddings, attention untouched",
    "soft": "half of its embedding's dimensions zeroed at random (soft removal after Zhao & Aletras 2023)",
}
# Chosen by measurement (scripts/measure_removal.py on SmolLM2-135M-Instruct, 48 prompts; README): with
# log-probability drops it set the most method × measure pairs apart from random orders (11 of 12), tied
# for the most methods beating random on both measures, and is deterministic (soft removal is not).
DEFAULT_REMOVAL = "attention_mask"
#: What a removal's effect is measured in (contrastive analyses always use log p(target) − log p(foil),
#: reported as the scale "contrastive").
SCALES = {
    "log_probability": "drop in the target's log-probability (no floor: tells apart orders that all collapse it)",
    "probability": "drop in the target's probability (ERASER's own; saturates once the prediction collapses)",
}
CONTRASTIVE_SCALE = "contrastive"  # log p(target) − log p(foil), whatever `scale` says
# Chosen by measurement with the removal (README): on SmolLM2 random removals already destroy about two
# thirds of the target's probability (85% on raw prompts), so probability drops pile up at the ceiling
# whatever the order; log-probability drops keep telling orders apart (for every removal measured).
DEFAULT_SCALE = "log_probability"
RANDOM_ORDERS = 16  # random token orders per analysis: the reference and its bootstrap interval
#: What each scale's drops are a drop of, in words (the verdict, the tables and the CLI quote this).
MEASURED = {"log_probability": "the target's log-probability", "probability": "the target's probability",
            CONTRASTIVE_SCALE: "log p(target) − log p(foil)"}


def validate_removal(removal: object) -> str:
    if not isinstance(removal, str) or removal not in REMOVALS:
        raise ValueError(f"unknown removal {removal!r}; valid choices: {', '.join(REMOVALS)}")
    return removal


def validate_scale(scale: object) -> str:
    if not isinstance(scale, str) or scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; valid choices: {', '.join(SCALES)}")
    return scale


@dataclass(frozen=True)
class Faithfulness:
    """AOPC over k ∈ {1, 2, ⌈20%⌉, ⌈50%⌉} content tokens, measured on `scale` (by default the target's
    log-probability; `MEASURED` says it in words). Comprehensiveness: how much it drops when the top-k
    tokens are removed (higher is better). Sufficiency: how much it drops when only the top-k are kept
    (lower is better). Random: the mean over random orders, with
    its bootstrap interval over those orders; a method beats random on a measure when it lies beyond
    that interval on the better side."""

    comprehensiveness: float
    sufficiency: float
    random_comprehensiveness: float
    random_sufficiency: float
    random_comprehensiveness_interval: tuple[float, float] = (math.nan, math.nan)
    random_sufficiency_interval: tuple[float, float] = (math.nan, math.nan)
    removal: str = DEFAULT_REMOVAL
    random_orders: int = 0
    scale: str = DEFAULT_SCALE  # what the drops are measured in: a key of SCALES, or CONTRASTIVE_SCALE
    comprehensiveness_vs_random: float = math.nan  # share of random orders it beats (ties count half; 0.5 = chance)
    sufficiency_vs_random: float = math.nan

    @property
    def comprehensiveness_beats_random(self) -> bool:
        return bool(self.comprehensiveness > self.random_comprehensiveness_interval[1])

    @property
    def sufficiency_beats_random(self) -> bool:
        return bool(self.sufficiency < self.random_sufficiency_interval[0])

    @property
    def measured(self) -> str:
        """What the drops are drops of, in words: "the target's log-probability"."""
        return MEASURED[self.scale]

    @property
    def beats_random(self) -> bool:
        """Better than random on both measures: removing its top tokens hurts more, and keeping only
        them preserves more, than random choices of as many tokens."""
        return self.comprehensiveness_beats_random and self.sufficiency_beats_random

    @property
    def evidence(self) -> str:
        """"clear" (both measures beat random), "weak" (one does), "none"."""
        wins = self.comprehensiveness_beats_random + self.sufficiency_beats_random
        return ("none", "weak", "clear")[wins]

    def to_dict(self) -> dict[str, Any]:
        # The first four keys are the original contract (floats); the rest were added after.
        return {
            "comprehensiveness": float(self.comprehensiveness), "sufficiency": float(self.sufficiency),
            "random_comprehensiveness": float(self.random_comprehensiveness),
            "random_sufficiency": float(self.random_sufficiency),
            "random_comprehensiveness_interval": [float(value) for value in self.random_comprehensiveness_interval],
            "random_sufficiency_interval": [float(value) for value in self.random_sufficiency_interval],
            "comprehensiveness_beats_random": self.comprehensiveness_beats_random,
            "sufficiency_beats_random": self.sufficiency_beats_random,
            "beats_random": self.beats_random, "evidence": self.evidence,
            "removal": self.removal, "random_orders": int(self.random_orders), "interval_level": LEVEL,
            "scale": self.scale, "comprehensiveness_vs_random": float(self.comprehensiveness_vs_random),
            "sufficiency_vs_random": float(self.sufficiency_vs_random),
        }


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
    # What faithfulness removed, agreement ranked and the verdict quotes: tokens, or whole words, sentences
    # or segments (the analysis's granularity); the positions above are then groups.
    granularity: str = "token"

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
            "faithfulness_ks": [int(k) for k in self.ks],  # the removal counts the AOPC averaged over
            **({} if self.granularity == "token" else {"trust_granularity": self.granularity}),
        }


@dataclass(frozen=True)
class Progress:
    """One stage of `analyze`, as its `progress` callback receives it."""

    kind: str  # "generate" | "method" | "answer_map" | "trust"
    index: int  # 0-based among the analysis's stages
    total: int  # how many stages this analysis has
    method: str | None = None  # kind "method": the method's registered name

    @property
    def fraction(self) -> float:
        """The share of stages done before this one starts, in [0, 1)."""
        return self.index / self.total

    @property
    def description(self) -> str:
        if self.kind == "method":
            return f"computing {self.method}"
        return _STAGE_DESCRIPTIONS[self.kind]


_STAGE_DESCRIPTIONS = {
    "generate": "generating the answer", "answer_map": "building the answer map", "trust": "assessing trust",
}


