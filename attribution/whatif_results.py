"""What a what-if edit and a deletion curve return (`attribution.whatif`): torch-free, so that the display
layer draws them and the page shows them without the model."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .bootstrap import mean_interval


@dataclass(frozen=True)
class Edit:
    """A prompt edited (tokens or words removed or replaced) and run again: the answer and the explained
    token's probability at its place, before and after."""

    prompt_before: str
    prompt_after: str
    removed: tuple[str, ...]  # the texts of the units removed
    replaced: tuple[tuple[str, str], ...]  # (old text, new text) of each unit replaced
    answer_before: str
    answer_after: str
    target: str  # the explained token's text (a span target: the stretch's)
    probability_before: float  # p(target) after the original input
    probability_after: float  # p(target) at the same place after the edited prompt
    greedy_after: str  # the token the model now predicts there
    still_predicted: bool  # the explained token is still the likeliest there

    def __post_init__(self) -> None:
        for name in ("probability_before", "probability_after"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be a probability, got {value}")
            object.__setattr__(self, name, value)

    @property
    def answer_changed(self) -> bool:
        return self.answer_after.strip() != self.answer_before.strip()

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_before": self.prompt_before, "prompt_after": self.prompt_after, "removed": list(self.removed),
            "replaced": [list(pair) for pair in self.replaced], "answer_before": self.answer_before,
            "answer_after": self.answer_after, "answer_changed": self.answer_changed, "target": self.target,
            "probability_before": self.probability_before, "probability_after": self.probability_after,
            "greedy_after": self.greedy_after, "still_predicted": self.still_predicted,
        }


@dataclass(frozen=True)
class DeletionCurve:
    """The explained token's log-probability (log p(target) − log p(foil) when contrastive) as 0, 1, 2, …
    units are removed in the method's order (most important first) and in random orders."""

    method: str
    unit: str  # "token" or "word"
    units: tuple[str, ...]  # the units in the method's order
    method_values: np.ndarray  # [n_units + 1]: row k = the first k removed
    random_values: np.ndarray  # [n_random, n_units + 1]
    removal: str  # how a token is removed (attribution.reports.REMOVALS)
    contrastive: bool = False

    def __post_init__(self) -> None:
        method_values = np.array(self.method_values, dtype=np.float64).reshape(-1)
        random_values = np.array(self.random_values, dtype=np.float64)
        if random_values.ndim != 2 or random_values.shape[1] != method_values.size or method_values.size != len(self.units) + 1:
            raise ValueError(f"deletion curve shapes disagree: {len(self.units)} units, method "
                             f"{method_values.shape}, random {random_values.shape}")
        for array in (method_values, random_values):
            array.setflags(write=False)
        object.__setattr__(self, "units", tuple(self.units))
        object.__setattr__(self, "method_values", method_values)
        object.__setattr__(self, "random_values", random_values)

    @property
    def ks(self) -> np.ndarray:
        return np.arange(self.method_values.size)

    def random_band(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per k: the random orders' mean and its bootstrap 95% interval (low, high)."""
        intervals = [mean_interval(column) for column in self.random_values.T]
        return tuple(np.array([getattr(item, part) for item in intervals]) for part in ("mean", "low", "high"))

    @property
    def area(self) -> float:
        """Mean drop from the full input over k = 1..n in the method's order (AOPC of the whole curve)."""
        return float(np.mean(self.method_values[0] - self.method_values[1:])) if len(self.units) else 0.0

    @property
    def random_area(self) -> float:
        if not len(self.units):
            return 0.0
        return float(np.mean(self.random_values[:, :1] - self.random_values[:, 1:]))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "unit": self.unit, "units": list(self.units),
                "method_values": [float(value) for value in self.method_values],
                "random_values": [[float(value) for value in row] for row in self.random_values],
                "removal": self.removal, "contrastive": self.contrastive, "area": self.area,
                "random_area": self.random_area}
