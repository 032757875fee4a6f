"""n_steps="auto" by adaptive panels (attribution/ig_adaptive.py): each point evaluated once, the stated
completeness reached, the same scores as a dense fixed rule, fewer points than uniform refinement where
the integrand is peaked, and bad input refused. Checked on closed-form integrands (exact integrals) and
on tiny seeded random-weight models against Gauss–Legendre at many steps and a row counter."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import attribution
from attribution import ig_path
from attribution.ig_adaptive import FIRST_POINTS, POINTS_PER_SPLIT, first_alphas, most_points, refine
from attribution.integrated_gradients import integrate, integrate_to_accuracy, path_endpoints
from attribution.limits import AUTO_FIRST_INTERVALS
from attribution.settings import Settings
from conftest import SEED_PROMPT
from test_ig_accuracy import RowCounter


def _refine(function, exact, **options):
    """`refine` on a closed-form integrand [n] → [n], recording every batch of points it asked for."""
    asked = []

    def evaluate(alphas):
        asked.append(np.array(alphas))
        return function(alphas)[:, None]

    quadrature = refine(function(first_alphas(options["max_points"]))[:, None], evaluate, np.array([exact]),
                        **options)
    return quadrature, asked


def _uniform_romberg_points(function, exact, target_error, max_points=100_000):
    """Independent uniform refinement: midpoints on 9, 27, 81, ... intervals with Richardson extrapolation
    across levels (the textbook Romberg table), until the relative error is within the target."""
    intervals = AUTO_FIRST_INTERVALS
    table = [function((np.arange(intervals) + 0.5) / intervals).mean()]
    while abs(table[-1] - exact) > target_error * abs(exact) and intervals * 3 <= max_points:
        intervals *= 3
        row = [function((np.arange(intervals) + 0.5) / intervals).mean()]  # all midpoints afresh: independent
        for order, previous in enumerate(table, start=1):
            row.append(row[-1] + (row[-1] - previous) / (9.0**order - 1))
        table = row
    return intervals


# Peaked integrands with exact integrals over [0, 1]: a pole just left of 0 (RMSNorm near a zero
# baseline), and a narrow bump inside the path.
PEAKED = {
    "pole near 0": (lambda a: 1 / (a + 0.01), math.log(1.01 / 0.01)),
    "narrow bump": (lambda a: np.exp(-(((a - 0.3) / 0.01) ** 2)),
                    0.01 * math.sqrt(math.pi) / 2 * (math.erf(0.7 / 0.01) + math.erf(0.3 / 0.01))),
}


@pytest.mark.parametrize("name", list(PEAKED))
def test_each_point_is_evaluated_once_and_the_target_is_reached(name):
    function, exact = PEAKED[name]
    quadrature, asked = _refine(function, exact, target_error=1e-3, max_points=5000)
    assert quadrature.relative_errors[0] <= 1e-3
    evaluated = np.concatenate([first_alphas(5000), *asked])
    np.testing.assert_array_equal(quadrature.alphas, evaluated)  # what it reports is what it evaluated
    assert np.unique(evaluated).size == evaluated.size  # no point twice
    assert np.all((evaluated > 0) & (evaluated < 1))  # open: α = 0 and 1 never differentiated
    assert all(batch.size % POINTS_PER_SPLIT == 0 for batch in asked)
    np.testing.assert_allclose(quadrature.integrand[:, 0], function(evaluated))
    # The stopping error is the true one: the weights applied to the integrand, against the exact integral.
    assert quadrature.relative_errors[0] == pytest.approx(abs(quadrature.weights @ function(evaluated) - exact) / exact)
    # It stopped at the first round that met the target: the budget of the points before the last round misses.
    before = quadrature.n_points - asked[-1].size
    coarser, _ = _refine(function, exact, target_error=1e-3, max_points=before)
    assert coarser.n_points == before and coarser.relative_errors[0] > 1e-3


@pytest.mark.parametrize("name", list(PEAKED))
def test_peaked_integrands_take_fewer_points_than_uniform_refinement(name):
    function, exact = PEAKED[name]
    for target_error in (1e-2, 1e-3):
        quadrature, _ = _refine(function, exact, target_error=target_error, max_points=100_000)
        uniform = _uniform_romberg_points(function, exact, target_error)
        assert quadrature.relative_errors[0] <= target_error
        # Under a third of uniform refinement's points, except where uniform needs only 81: the 27-point
        # start is then a third by itself (the pole at 1%: 33 points against 81).
        assert quadrature.n_points < (uniform / 3 if uniform > 81 else uniform / 2), (quadrature.n_points, uniform)


def test_the_panel_rule_is_exact_for_cubics_wherever_it_refined():
    """However the panels were split, the final weights integrate 1, α, α², α³ exactly (each panel's
    rule is exact for cubics), so a cubic integrand needs no refinement and a peaked one's weights
    still form a valid rule."""
    function, exact = PEAKED["pole near 0"]
    quadrature, _ = _refine(function, exact, target_error=1e-4, max_points=2000)
    assert quadrature.rounds > 1  # really refined, unevenly
    for power in range(4):
        assert quadrature.weights @ quadrature.alphas**power == pytest.approx(1 / (power + 1), rel=1e-12)
    cubic, asked = _refine(lambda a: 4 * a**3 - a + 2, 1 - 0.5 + 2, target_error=1e-9, max_points=2000)
    assert cubic.n_points == FIRST_POINTS and not asked
    # Below FIRST_POINTS the start is the 9 points of 3 panels, as exact for a cubic.
    small, asked = _refine(lambda a: 4 * a**3 - a + 2, 1 - 0.5 + 2, target_error=1e-9, max_points=FIRST_POINTS - 1)
    assert small.n_points == AUTO_FIRST_INTERVALS and not asked


def test_the_wide_start_holds_the_narrow_start():
    """The 27-point start (budgets of 27 and more) is the 9-point start with its 3 panels split: the
    midpoints of 27 equal intervals, which hold the 9 points, so neither start is a different rule."""
    narrow, wide = first_alphas(FIRST_POINTS - 1), first_alphas(FIRST_POINTS)
    assert narrow.size == AUTO_FIRST_INTERVALS and wide.size == FIRST_POINTS
    np.testing.assert_allclose(wide, (np.arange(FIRST_POINTS) + 0.5) / FIRST_POINTS)
    assert set(np.round(narrow * 54).astype(int)) <= set(np.round(wide * 54).astype(int))  # nested


def test_a_budget_too_small_for_the_target_spends_it_and_reports_the_error():
    function, exact = PEAKED["pole near 0"]
    quadrature, _ = _refine(function, exact, target_error=1e-9, max_points=200)
    assert quadrature.n_points <= 200 and quadrature.n_points + POINTS_PER_SPLIT > 200  # no split still fits
    assert quadrature.n_points <= most_points(200)
    assert quadrature.relative_errors[0] > 1e-9


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(target_error=0.0, max_points=100), "target_error must be a number between 0 and 1"),
        (dict(target_error=float("nan"), max_points=100), "target_error must be a number between 0 and 1"),
        (dict(target_error=1.5, max_points=100), "target_error must be a number between 0 and 1"),
        (dict(target_error=0.01, max_points=3), "max_steps 3 is below the 9 path points"),
        (dict(target_error=0.01, max_points=50.5), "whole number of path points"),
        (dict(target_error=0.01, max_points=True), "whole number of path points"),
    ],
)
def test_bad_options_are_refused_clearly(options, message):
    with pytest.raises(ValueError, match=message):
        _refine(lambda a: a, 0.5, **options)


def test_a_wrong_or_infinite_integrand_is_refused_clearly():
    first = first_alphas(100)[:, None]
    with pytest.raises(ValueError, match=r"expected \(27, 2\)"):
        refine(first, lambda a: a[:, None], np.array([1.0, 2.0]), target_error=0.01, max_points=100)
    with pytest.raises(ValueError, match="not finite at α"):
        refine(first, lambda a: np.full((a.size, 1), np.inf), np.array([3.0]), target_error=1e-6, max_points=100)
    with pytest.raises(ValueError, match="valid choices: adaptive, romberg"):
        integrate_to_accuracy(None, None, None, None, None, None, "logit", target_error=0.01, max_steps=81,
                              rule="simpson")


# --- on tiny random-weight models -------------------------------------------------------------------


def _ids(loaded):
    return loaded.tokenizer(SEED_PROMPT, return_tensors="pt")["input_ids"][0]


@pytest.mark.parametrize("baseline", ["zero", "pad", "mean"])
def test_completeness_is_reached_for_every_target_on_random_models(model_folder, baseline):
    loaded = attribution.load_model(str(model_folder), device="cpu")
    input_ids = _ids(loaded)
    n = input_ids.numel()
    positions, targets = torch.tensor([n - 3, n - 2, n - 1]), torch.tensor([5, 11, 17])  # three targets at once
    result = integrate(loaded, input_ids, Settings(baseline=baseline, n_steps="auto", target_error=1e-3,
                                                   max_steps=2000), positions, targets)
    assert result.rule == "adaptive"
    assert float(result.relative_errors.max()) <= 1e-3
    # The same F(input), F(baseline) as a fixed rule's pass: the ends are the model's, not the rule's.
    fixed = integrate(loaded, input_ids, Settings(baseline=baseline, n_steps=8), positions, targets)
    torch.testing.assert_close(result.input_values, fixed.input_values)
    torch.testing.assert_close(result.baseline_values, fixed.baseline_values)


def test_scores_equal_dense_gauss_legendre(model_folder):
    loaded = attribution.load_model(str(model_folder), device="cpu")
    input_ids = _ids(loaded)
    n = input_ids.numel()
    positions, targets = torch.tensor([n - 2, n - 1]), torch.tensor([11, 4])
    reference = integrate(loaded, input_ids, Settings(baseline="mean", n_steps=500), positions, targets)
    adaptive = integrate(loaded, input_ids, Settings(baseline="mean", n_steps="auto", target_error=1e-5,
                                                     max_steps=3000), positions, targets)
    scale = float(reference.attributions.abs().max())
    torch.testing.assert_close(adaptive.attributions, reference.attributions, rtol=1e-3, atol=1e-4 * scale)
    torch.testing.assert_close(adaptive.input_gradients, reference.input_gradients)


def test_on_a_model_each_point_runs_once_and_it_stops_at_the_first_round_that_reaches(tiny_loaded, monkeypatch):
    input_ids = _ids(tiny_loaded)
    inputs, baseline = path_endpoints(tiny_loaded, input_ids, "zero", None)
    last, target = torch.tensor([input_ids.numel() - 1]), torch.tensor([7])
    batches = []
    original = ig_path.path_sums

    def recording(loaded, inputs, baseline, alphas, *args, **kwargs):
        batches.append(alphas.numpy().copy())
        return original(loaded, inputs, baseline, alphas, *args, **kwargs)

    monkeypatch.setattr(ig_path, "path_sums", recording)
    counter = RowCounter(tiny_loaded.model)
    try:
        result = integrate_to_accuracy(tiny_loaded, inputs, baseline, last, target, None, "logit",
                                       target_error=1e-4, max_steps=2000)
    finally:
        counter.close()
    evaluated = np.concatenate(batches)
    assert result.rule == "adaptive" and float(result.relative_errors[0]) <= 1e-4
    assert counter.rows == result.n_points + 2 == evaluated.size + 2  # each point once, plus input and baseline
    assert np.unique(evaluated).size == evaluated.size
    assert len(batches) > 1  # it had to refine
    coarser = integrate_to_accuracy(tiny_loaded, inputs, baseline, last, target, None, "logit",
                                    target_error=1e-4, max_steps=result.n_points - batches[-1].size)
    assert float(coarser.relative_errors[0]) > 1e-4


def test_a_peaked_model_integrand_takes_fewer_points_than_uniform_romberg(tiny_loaded):
    """At a zero baseline the tiny Llama's RMSNorm makes the integrand change fastest near α = 0."""
    input_ids = _ids(tiny_loaded)
    inputs, baseline = path_endpoints(tiny_loaded, input_ids, "zero", None)
    last, target = torch.tensor([input_ids.numel() - 1]), torch.tensor([7])
    runs = {rule: integrate_to_accuracy(tiny_loaded, inputs, baseline, last, target, None, "logit",
                                        target_error=1e-3, max_steps=3000, rule=rule)
            for rule in ("adaptive", "romberg")}
    assert float(runs["adaptive"].relative_errors[0]) <= 1e-3
    # Uniform refinement needs more points to reach it, or (here) misses it within the whole budget.
    romberg = runs["romberg"]
    assert romberg.n_points > runs["adaptive"].n_points
    assert float(romberg.relative_errors[0]) > 1e-3 or romberg.n_points > 3 * runs["adaptive"].n_points
