"""n_steps="auto" by adaptive quadrature: path points where IG's integrand changes, none evaluated twice.

IG's completeness integrand g_t(α) = d F_t(x′ + α(x − x′)) / dα = Σ ∂F_t/∂x · (x − x′) (summed over
positions and dimensions, at the path point of α) integrates over [0, 1] to F_t(x) − F_t(x′), which the
input and baseline rows give exactly. So after every refinement the quadrature's error on g — the
completeness error |Σ attributions − (F(x) − F(x′))| / |F(x) − F(x′)| — is known, not estimated.

The rule: [0, 1] in panels; a panel [a, a + w] holds 3 points at the midpoints of its thirds,
a + w/6, a + w/2, a + 5w/6. Open, like Captum's Gauss–Legendre and the uniform Romberg rule: α = 0 is
never differentiated (at a zero baseline RMSNorm's gradient is 1/sqrt(ε) and overflows). Splitting a
panel into its thirds keeps its 3 points as the thirds' middle points and adds 2 new ones to each, so
each split costs 6 new points and no point is ever evaluated twice. On a panel the weights
(3/8, 1/4, 3/8)·w are exact for cubics. A panel's error is estimated against the curve through its
points and its neighbours': the quartic through its 3 points and the nearest evaluated point on each
side (at either end of [0, 1], the two nearest on the one side), integrated over the panel. Each round
splits the panels with the largest estimated errors (relative to each unfinished target's
|F(x) − F(x′)|) that together hold SPLIT_SHARE of the estimated error, and evaluates all their new
points in one batch; refinement stops when every target's completeness error is within `target_error`, or when
no further split fits in `max_points`. The start is FIRST_POINTS points, the uniform rule's first 27
midpoints as 9 panels (AUTO_FIRST_INTERVALS, its first 9 as 3 panels, when the budget is smaller).

`refine` is the rule on any integrand (tests run it on closed-form functions); `integrate_adaptively`
runs it on the model, keeping each point's gradient so that the final weights can be applied to it
(memory: points × targets × positions × d_model floats, positions from the held prefix on).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .ig_path import Integration, Path, PathSums
from .limits import AUTO_FIRST_INTERVALS

#: A panel's weights on its 3 points (times its width).
PANEL_WEIGHTS = np.array([3 / 8, 1 / 4, 3 / 8])
#: Each round splits the fewest panels that hold this share of the estimated error (smaller: more rounds of
#: fewer points). Chosen on SmolLM2's chat integrands recorded from four prompts (Latvia, France, Germany,
#: Egypt; scripts/measure_auto_steps.py's first four): 1% in a median of 81 points at 0.2, 102 at 0.3, 105 at 0.5.
SPLIT_SHARE = 0.2
#: New path points one split adds (2 in each of the 3 thirds).
POINTS_PER_SPLIT = 6
#: Position of a panel's points in it, as fractions of its width.
_OFFSETS = np.array([1 / 6, 1 / 2, 5 / 6])
#: The first points when the budget allows them: the 9-point start with its 3 panels already split. On the
#: integrands recorded from SmolLM2's 12 chat capital questions (729 points each) the first round split all 3
#: panels of the 9-point start every time, so this start reaches the same points (median 72, worst 135) in 3
#: fewer batches; a batch costs about 0.15 s beyond its points there (2-core CPU, 20 positions a row): the
#: page's chat default took 5.92 s of IG against 6.47 s. The 12 raw prompts take a median of 33 points in 2
#: batches against 27 in 4 (worst 51 either way); a cubic takes 27 instead of 9.
FIRST_POINTS = 27
for _start in (AUTO_FIRST_INTERVALS, FIRST_POINTS):  # constants, not user input: the start must be whole panels
    if _start % 3 or (_start - AUTO_FIRST_INTERVALS) % POINTS_PER_SPLIT:
        raise ImportError(f"a start of {_start} points is not whole panels reachable by splits of the 9-point start")
del _start

Integrand = Callable[[np.ndarray], np.ndarray]  # alphas [n] → g [n, T]


@dataclass(frozen=True)
class Quadrature:
    """What `refine` reached: every point it evaluated, once, in the order evaluated."""

    alphas: np.ndarray  # [points] in (0, 1)
    weights: np.ndarray  # [points]: Σ weights · g(alphas) ≈ ∫₀¹ g
    integrand: np.ndarray  # [points, T] fp64: g at each point
    relative_errors: np.ndarray  # [T]: |Σ weights · g − exact| / |exact|
    rounds: int  # batches evaluated after the first

    @property
    def n_points(self) -> int:
        return int(self.alphas.size)


def first_alphas(max_points: int) -> np.ndarray:
    """The first points within a budget: the midpoints of FIRST_POINTS equal intervals (9 panels), or of
    AUTO_FIRST_INTERVALS (3 panels) when fewer than FIRST_POINTS points are allowed."""
    _check_budget(max_points)
    count = FIRST_POINTS if max_points >= FIRST_POINTS else AUTO_FIRST_INTERVALS
    return (np.arange(count, dtype=np.float64) + 0.5) / count


def most_points(max_points: int) -> int:
    """The most points `refine` can spend within a budget: the first ones plus whole splits."""
    _check_budget(max_points)
    return AUTO_FIRST_INTERVALS + (max_points - AUTO_FIRST_INTERVALS) // POINTS_PER_SPLIT * POINTS_PER_SPLIT


def _check_budget(max_points: int) -> None:
    if isinstance(max_points, bool) or not isinstance(max_points, (int, np.integer)):
        raise ValueError(f"max_points must be a whole number of path points, not {max_points!r}")
    if max_points < AUTO_FIRST_INTERVALS:
        raise ValueError(
            f"max_steps {max_points} is below the {AUTO_FIRST_INTERVALS} path points the adaptive rule "
            "starts from; allow more steps or give a fixed number of steps"
        )


def _checked(values: np.ndarray, n_alphas: int, n_targets: int, alphas: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (n_alphas, n_targets):
        raise ValueError(f"the integrand gave shape {values.shape} for {n_alphas} points; expected "
                         f"({n_alphas}, {n_targets}): one value per point and target")
    if not np.isfinite(values).all():
        bad = alphas[~np.isfinite(values).all(axis=1)]
        raise ValueError(f"IG's integrand is not finite at α = {', '.join(f'{a:.3g}' for a in bad[:3])}; "
                         "use a baseline that keeps the special tokens (pad_keep_special, mean_keep_special) "
                         "or a fixed number of steps")
    return values


def panel_errors(
    alphas: np.ndarray, values: np.ndarray, left: np.ndarray, width: np.ndarray, members: np.ndarray
) -> np.ndarray:
    """[panels, T] each panel's estimated error: the integral over it of the quartic through its 3 points
    and the nearest point on each side (two on one side at an end of [0, 1]), minus its own rule's."""
    order = np.argsort(alphas)
    rank = np.empty_like(order)
    rank[order] = np.arange(alphas.size)
    first = rank[members].min(axis=1) - 1  # [panels]: the sorted position of the left neighbour
    first = np.clip(first, 0, alphas.size - 5)  # at an end, two neighbours on the other side
    window = order[first[:, None] + np.arange(5)]  # [panels, 5] point indices
    u = (alphas[window] - left[:, None]) / width[:, None]  # [panels, 5] in panel coordinates
    vandermonde = u[:, :, None] ** np.arange(5)  # [panels, 5 points, 5 powers]
    moments = np.broadcast_to(1 / np.arange(1, 6), (width.size, 5))[..., None]  # ∫₀¹ u^k du
    curve = np.linalg.solve(np.swapaxes(vandermonde, 1, 2), moments)[..., 0]  # [panels, 5]: the quartic's weights
    rule = np.zeros_like(curve)
    own = window[:, :, None] == members[:, None, :]  # [panels, 5, 3]
    rule += (own * PANEL_WEIGHTS).sum(axis=2)
    return width[:, None] * np.einsum("pj,pjt->pt", curve - rule, values[window])


def refine(
    first_values: np.ndarray, evaluate: Integrand, exact: np.ndarray, *, target_error: float, max_points: int
) -> Quadrature:
    """Adaptive nested quadrature of g over [0, 1] (the module's rule). `first_values` [points, T]: g at
    `first_alphas(max_points)`; `evaluate(alphas [n]) → [n, T]` computes g at new points; `exact` [T]: the
    integral's true value, F(x) − F(x′), against which the stopping error is measured."""
    if not (isinstance(target_error, (int, float)) and math.isfinite(target_error) and 0 < target_error < 1):
        raise ValueError(f"target_error must be a number between 0 and 1 (exclusive), not {target_error!r}")
    exact = np.asarray(exact, dtype=np.float64).reshape(-1)  # [T]
    scale = np.maximum(np.abs(exact), 1e-12)  # as `Integration.relative_errors`
    alphas = first_alphas(max_points)
    values = _checked(first_values, alphas.size, exact.size, alphas)  # [points, T]
    panels = alphas.size // 3
    width = np.full(panels, 1.0 / panels)  # [panels]
    members = np.arange(alphas.size).reshape(panels, 3)  # [panels, 3] point indices
    left = np.arange(panels) / panels

    def weights() -> np.ndarray:
        out = np.zeros(alphas.size)
        out[members] = width[:, None] * PANEL_WEIGHTS
        return out

    def errors() -> np.ndarray:  # [T]
        return np.abs(weights() @ values - exact) / scale

    rounds = 0
    while True:
        reached = errors()
        unfinished = reached > target_error
        splits = (max_points - alphas.size) // POINTS_PER_SPLIT
        if not unfinished.any() or splits == 0:
            break
        estimate = panel_errors(alphas, values, left, width, members)  # [panels, T]
        priority = (np.abs(estimate[:, unfinished]) / scale[unfinished]).max(axis=1)  # [panels]
        order = np.argsort(-priority, kind="stable")
        held = np.cumsum(priority[order])
        count = int(np.searchsorted(held, SPLIT_SHARE * held[-1])) + 1  # the fewest that hold that share
        chosen = order[: min(count, splits)]
        # Each chosen panel becomes its 3 thirds; third k's middle point is the panel's point k.
        child_width = np.repeat(width[chosen] / 3, 3)  # [3 · chosen]
        child_left = (left[chosen, None] + width[chosen, None] / 3 * np.arange(3)).reshape(-1)
        middle = members[chosen].reshape(-1)
        new_alphas = np.stack([child_left + child_width * _OFFSETS[0], child_left + child_width * _OFFSETS[2]], axis=1)
        new_index = alphas.size + np.arange(new_alphas.size).reshape(-1, 2)  # [3 · chosen, 2]
        new_values = _checked(evaluate(new_alphas.reshape(-1)), new_alphas.size, exact.size, new_alphas.reshape(-1))
        alphas = np.concatenate([alphas, new_alphas.reshape(-1)])
        values = np.concatenate([values, new_values])
        keep = np.ones(width.size, dtype=bool)
        keep[chosen] = False
        width = np.concatenate([width[keep], child_width])
        left = np.concatenate([left[keep], child_left])
        members = np.concatenate([members[keep], np.stack([new_index[:, 0], middle, new_index[:, 1]], axis=1)])
        rounds += 1
    return Quadrature(alphas, weights(), values, reached, rounds)


def integrate_adaptively(path: Path, *, target_error: float, max_steps: int) -> Integration:
    """IG for the path's T targets by `refine` on the model: every target's relative completeness error
    at most `target_error`, or as close as `max_steps` path points allow. The input and baseline rows
    run once, with the first points (F(input), F(baseline), the plain input gradient)."""
    _check_budget(max_steps)
    difference = path.difference  # [1, seq, d_model]
    gradients: list[torch.Tensor] = []  # per batch: [alphas, T, span, d_model], in evaluation order

    def run(alphas: np.ndarray, ends: bool) -> tuple[PathSums, np.ndarray]:
        sums = path.sums(torch.from_numpy(alphas), None, ends=ends)
        gradients.append(sums.per_point)
        span = difference[0, sums.first: sums.first + sums.per_point.shape[2]].double()  # [span, d_model]
        return sums, (sums.per_point.double() * span).sum(dim=(2, 3)).cpu().numpy()  # g: [alphas, T]

    first, first_values = run(first_alphas(max_steps), True)
    exact = (first.values[:, 0] - first.values[:, 1]).cpu().numpy()
    quadrature = refine(first_values, lambda alphas: run(alphas, False)[1], exact,
                        target_error=target_error, max_points=max_steps)
    weights = torch.from_numpy(quadrature.weights).to(difference.device, difference.dtype)  # [points]
    weighted = torch.zeros_like(first.weighted)  # [T, seq, d_model]
    start = 0
    span = slice(first.first, first.first + first.per_point.shape[2])
    for batch in gradients:  # Σ weight · gradient, batch by batch (no second copy of every point)
        stop = start + batch.shape[0]
        weighted[:, span] += torch.einsum("p,ptsd->tsd", weights[start:stop], batch)  # [T, span, d_model]
        start = stop
    return path.integration(weighted, first, quadrature.n_points, "adaptive")


__all__ = ["FIRST_POINTS", "POINTS_PER_SPLIT", "Quadrature", "first_alphas", "integrate_adaptively", "most_points", "refine"]
