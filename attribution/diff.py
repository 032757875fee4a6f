"""What changed between two analyses (`diff(a, b) -> Diff`): two models, two settings, or a prompt and its
edited copy. Torch-free: it reads results only, so saved JSON files compare without a model
(`python -m attribution diff a.json b.json`).

Units are aligned token for token when both analyses give the same tokens, else word for word
(`attribution.alignment`). Each method both ran is compared on normalised shares — a unit's score over
the sum of |scores| of its analysis's units —, so that models whose raw scores differ in scale compare;
the ranking of the aligned units is compared by Spearman's rho with a bootstrap 95% interval over units.
"""

from __future__ import annotations

import math
import sys
import types
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .alignment import Alignment, Unit, align
from .catalog import combine_rule
from .groups import GRANULARITIES
from .ranks import spearman, spearman_interval
from .results import Analysis


def _measured_groups(analysis: Analysis, method: str) -> dict[tuple[int, ...], float]:
    """A perturbation method's own value of each word, sentence and segment it removed whole (occlusion hides
    every group of the result's groupings; context ablation weighs its groups), by the group's tokens;
    empty for a result without token spans."""
    measured: dict[tuple[int, ...], float] = {}
    if analysis.token_spans is None:
        return measured
    for granularity in GRANULARITIES[1:]:
        try:
            grouping, values = analysis.grouping(granularity), analysis.grouped_scores(granularity)[method]
        except ValueError:  # no such groups in this text, or the method was not run on them
            continue
        for group, value in zip(grouping.groups, values):
            measured.setdefault(group.tokens, float(value))
    return measured


def unit_scores(analysis: Analysis, method: str, units: tuple[Unit, ...]) -> np.ndarray:
    """[units] each unit's score from its tokens', by the method's catalog rule (`combine_rule`): summed, or
    the L2 norm (IG's L2 view). A perturbation method (rule "remove"): a unit that is one of the groups it
    removed whole (a word of `attribution.groups`, as the what-if words are) gets that measured value, the
    same as `Analysis.grouped_scores`; another unit of several tokens (words two tokenizers join) gets its
    tokens' mean, an approximation."""
    result = analysis.methods[method]
    rule = combine_rule(method, getattr(result, "aggregation", None))
    measured = _measured_groups(analysis, method) if rule == "remove" else {}
    values = []
    for unit in units:
        scores = result.scores[list(unit.positions)]
        if scores.size <= 1:  # a unit of one token: its score as it is
            values.append(float(scores.sum()))
        elif rule == "l2":
            values.append(float(np.sqrt(np.square(scores).sum())))
        elif rule == "sum":
            values.append(float(scores.sum()))
        else:
            values.append(measured.get(tuple(sorted(unit.positions)), float(scores.mean())))
    return np.array(values)


def shares(values: np.ndarray) -> np.ndarray:
    """Each unit's score over the sum of |scores| (signs kept; all zeros when every score is 0)."""
    total = float(np.abs(values).sum())
    return np.zeros_like(values) if total == 0 else values / total


def target_probability(analysis: Analysis) -> float | None:
    """p(the explained token) from the result's top predictions; None when it is not among them."""
    for prediction in analysis.top_predictions:
        if prediction.id == analysis.target.id:
            return float(prediction.probability)
    return None


@dataclass(frozen=True)
class MethodDiff:
    """One method on the aligned units: each analysis's shares, their difference (b − a) and the rank
    correlation with its interval (None where undefined: fewer than two units, or constant shares)."""

    method: str
    shares_a: np.ndarray  # [aligned units]
    shares_b: np.ndarray  # [aligned units]
    spearman: float | None
    interval: tuple[float, float] | None

    def __post_init__(self) -> None:
        for name in ("shares_a", "shares_b"):
            array = np.array(getattr(self, name), dtype=np.float64).reshape(-1)
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        if self.shares_a.shape != self.shares_b.shape:
            raise ValueError(f"{self.method}: {self.shares_a.size} shares against {self.shares_b.size}")

    @property
    def difference(self) -> np.ndarray:
        return self.shares_b - self.shares_a

    @property
    def largest_change(self) -> int | None:
        """The aligned unit whose share moved most (None without units)."""
        return int(np.argmax(np.abs(self.difference))) if self.difference.size else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "shares_a": [float(value) for value in self.shares_a], "shares_b": [float(value) for value in self.shares_b],
            "difference": [float(value) for value in self.difference], "spearman": self.spearman,
            "spearman_interval": None if self.interval is None else list(self.interval),
        }


@dataclass(frozen=True)
class Diff:
    """Two analyses side by side: what was run, the answers, and each common method on aligned units."""

    models: tuple[str, str]
    prompts: tuple[str, str]
    answers: tuple[str, str]
    targets: tuple[str, str]  # the explained tokens' texts
    target_probabilities: tuple[float | None, float | None]
    settings: Mapping[str, tuple[Any, Any]]  # setting name → (a's value, b's) where they differ
    alignment: Alignment
    methods: Mapping[str, MethodDiff]  # the methods both ran, in a's order
    only_in_a: tuple[str, ...] = ()  # methods one analysis ran and the other did not
    only_in_b: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", dict(self.settings))
        object.__setattr__(self, "methods", dict(self.methods))
        for name, item in self.methods.items():
            if item.shares_a.size != len(self.alignment.pairs):
                raise ValueError(f"{name} has {item.shares_a.size} shares for {len(self.alignment.pairs)} aligned units")

    @property
    def units(self) -> tuple[str, ...]:
        """The aligned units' texts (a's)."""
        return tuple(self.alignment.units_a[first].text for first, _second in self.alignment.pairs)

    @property
    def answer_changed(self) -> bool:
        return self.answers[0] != self.answers[1]

    @property
    def is_zero(self) -> bool:
        """Nothing differs: the same answers, settings and shares."""
        return (not self.settings and not self.answer_changed and self.models[0] == self.models[1]
                and self.prompts[0] == self.prompts[1] and all(not np.any(item.difference) for item in self.methods.values()))

    @property
    def sentence(self) -> str:
        from .diff_text import describe

        return describe(self)

    def to_dict(self) -> dict[str, Any]:
        def unit_list(units: tuple[Unit, ...]) -> list[dict[str, Any]]:
            return [{"text": unit.text, "positions": list(unit.positions)} for unit in units]

        return {
            "models": list(self.models), "prompts": list(self.prompts), "answers": list(self.answers),
            "targets": list(self.targets), "target_probabilities": list(self.target_probabilities),
            "answer_changed": self.answer_changed,
            "settings": {name: [_json_value(first), _json_value(second)] for name, (first, second) in self.settings.items()},
            "aligned_by": self.alignment.by,
            "units": [{"text": self.alignment.units_a[first].text, "positions_a": list(self.alignment.units_a[first].positions),
                       "positions_b": list(self.alignment.units_b[second].positions)}
                      for first, second in self.alignment.pairs],
            "only_in_a": unit_list(self.alignment.only_a), "only_in_b": unit_list(self.alignment.only_b),
            "methods": {name: item.to_dict() for name, item in self.methods.items()},
            "methods_only_in_a": list(self.only_in_a), "methods_only_in_b": list(self.only_in_b),
            "sentence": self.sentence,
        }

    def to_json(self) -> str:
        import json

        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _setting_differences(a: Analysis, b: Analysis) -> dict[str, tuple[Any, Any]]:
    if a.settings is not None and b.settings is not None:
        return a.settings.differences(b.settings)
    if a.settings is None and b.settings is None:
        return {}
    # One result was built by hand (no settings): every setting is unknown on that side.
    known = a.settings if a.settings is not None else b.settings
    return {name: ((getattr(known, name), None) if a.settings is not None else (None, getattr(known, name)))
            for name in known.names()}


def diff(a: Analysis, b: Analysis) -> Diff:
    """Compare two analyses (see the module's docstring)."""
    if not isinstance(a, Analysis) or not isinstance(b, Analysis):
        raise ValueError("diff compares two attribution.Analysis results (read saved ones with read_analysis)")
    alignment = align(a, b)
    methods = {}
    for name in [name for name in a.methods if name in b.methods]:
        # Shares over each analysis's own units, so that a removed word's share shows as gone.
        own_a = shares(unit_scores(a, name, alignment.units_a))
        own_b = shares(unit_scores(b, name, alignment.units_b))
        shares_a = np.array([own_a[index] for index, _ in alignment.pairs])
        shares_b = np.array([own_b[index] for _, index in alignment.pairs])
        rho = spearman(shares_a, shares_b)
        interval = spearman_interval(shares_a, shares_b) if rho is not None else None
        methods[name] = MethodDiff(name, shares_a, shares_b, rho, interval)
    return Diff(
        models=(a.model, b.model), prompts=(a.prompt, b.prompt), answers=(a.generated_text, b.generated_text),
        targets=(a.target.text, b.target.text), target_probabilities=(target_probability(a), target_probability(b)),
        settings=_setting_differences(a, b), alignment=alignment, methods=methods,
        only_in_a=tuple(name for name in a.methods if name not in b.methods),
        only_in_b=tuple(name for name in b.methods if name not in a.methods),
    )


def spearman_text(item: MethodDiff) -> str:
    """ρ with its interval, or why there is none."""
    if item.spearman is None:
        return "ρ undefined"
    if item.interval is None or not all(math.isfinite(value) for value in item.interval):
        return f"ρ = {item.spearman:.2f}"
    return f"ρ = {item.spearman:.2f} [{item.interval[0]:.2f}, {item.interval[1]:.2f}]"


class _CallableModule(types.ModuleType):
    """This module, callable as its `diff`: `attribution.diff(a, b)` is the library's one-line call, and
    `attribution.diff.Diff` and the rest stay reachable (a submodule import would shadow a function of that
    name on the package)."""

    def __call__(self, a: Analysis, b: Analysis) -> Diff:
        return diff(a, b)


sys.modules[__name__].__class__ = _CallableModule
