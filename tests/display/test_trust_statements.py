"""Every statement about trust — beats random, evidence, the random interval, the scale of the drops,
converged — says the same on the page (the Compare tab's table and completeness text), in the CLI's
table (`attribution.__main__.format_table`) and in the JSON (`Analysis.to_dict()`), because all three
read the engine's `Faithfulness` / `Completeness` fields and none recomputes them."""

from __future__ import annotations

import dataclasses
import math

import pytest

from attribution.__main__ import format_table
from attribution.display import explanations, tables
from attribution.display.labels import method_label
from attribution.reports import CONTRASTIVE_SCALE, MEASURED, Completeness, Faithfulness, TrustReport
from attribution.results import Target
from attribution.settings import COMPLETENESS_TOLERANCE, Settings
from helpers import TOKENS, make_analysis

COLUMN = {header: index for index, header in enumerate(tables.FAITHFULNESS_HEADERS)}
RANDOM_COMP, RANDOM_SUFF = tables.FAITHFULNESS_HEADERS[2], tables.FAITHFULNESS_HEADERS[4]


def trust_analysis(faithfulness: dict[str, Faithfulness], completeness: Completeness | None = None,
                   contrast: str | None = None):
    """make_analysis with a trust report and the settings it was computed with (a foil when `contrast`)."""
    report = TrustReport(faithfulness=faithfulness, spearman={}, top3_overlap={}, completeness=completeness,
                         verdict="A hand-made verdict.", evidence=max(
                             (item.evidence for item in faithfulness.values()), key=["none", "weak", "clear"].index))
    foil = None if contrast is None else Target(contrast, 98, len(TOKENS))
    settings = Settings(trust=True, contrast=contrast)
    return dataclasses.replace(make_analysis(), trust=report, foil=foil, settings=settings)


def cli_line(text: str, name: str) -> str:
    (line,) = [line for line in text.splitlines() if line.strip().startswith(f"{name}: comprehensiveness")]
    return line


def assert_all_three_agree(analysis) -> None:
    """The page's table, the CLI's lines and the JSON say what the engine's fields say, method by method."""
    report = analysis.trust
    rows = {row[0]: row for row in tables.faithfulness_rows(report)}
    cli = format_table(analysis)
    data = analysis.to_dict()
    assert f"evidence: {report.evidence}" in cli and data["evidence"] == report.evidence
    for name, item in report.faithfulness.items():
        row, line, stored = rows[method_label(name)], cli_line(cli, name), data["faithfulness"][name]
        beats = row[COLUMN["beats random?"]]
        # Which measures the page claims, against the engine's properties and the JSON's booleans.
        claims_comprehensiveness = beats in ("yes, both", "comprehensiveness only")
        claims_sufficiency = beats in ("yes, both", "sufficiency only")
        assert claims_comprehensiveness == item.comprehensiveness_beats_random == stored["comprehensiveness_beats_random"]
        assert claims_sufficiency == item.sufficiency_beats_random == stored["sufficiency_beats_random"]
        assert (beats == "yes, both") == item.beats_random == stored["beats_random"]
        assert row[COLUMN["evidence"]] == item.evidence == stored["evidence"]
        # The random orders' interval is shown, not only their mean, and it is the engine's.
        for header, mean, interval, key in (
                (RANDOM_COMP, item.random_comprehensiveness, item.random_comprehensiveness_interval, "comprehensiveness"),
                (RANDOM_SUFF, item.random_sufficiency, item.random_sufficiency_interval, "sufficiency")):
            cell = row[COLUMN[header]]
            assert stored[f"random_{key}_interval"] == pytest.approx(list(interval), nan_ok=True)
            assert stored[f"random_{key}"] == pytest.approx(mean)
            for value in (mean, *(bound for bound in interval if math.isfinite(bound))):
                assert tables.number_text(value) in cell
            assert f"(random {cell})" in line
        # The scale in words, from the engine's record of it.
        assert row[COLUMN["drops of"]] == item.measured == MEASURED[stored["scale"]]
        assert f"drops of {item.measured}" in line and item.measured in tables.faithfulness_note(report)
        assert f"beats random: {beats}; evidence: {row[COLUMN['evidence']]}" in line
    if report.completeness is not None:
        check = report.completeness
        page = explanations.completeness_summary(check)
        assert data["completeness"]["converged"] == check.converged
        assert ("**converged**" in page) == check.converged and ("**not converged**" in page) != check.converged
        assert ("NOT converged" in cli) != check.converged and "converged (tolerance" in cli
    assert data["settings"] == analysis.settings.to_dict()


def test_the_random_interval_not_its_mean_decides_beats_random():
    # Every method beats the random MEAN on both measures; the intervals tell them apart.
    wide = Faithfulness(0.6, 0.2, 0.3, 0.5, random_comprehensiveness_interval=(0.1, 0.7),
                        random_sufficiency_interval=(0.1, 0.9), random_orders=16)
    one = dataclasses.replace(wide, random_comprehensiveness_interval=(0.25, 0.35))
    both = dataclasses.replace(one, random_sufficiency_interval=(0.45, 0.55))
    faithfulness = {"gradient": wide, "attention": one, "integrated_gradients": both}
    for item in faithfulness.values():
        assert item.comprehensiveness > item.random_comprehensiveness and item.sufficiency < item.random_sufficiency
    analysis = trust_analysis(faithfulness)
    assert_all_three_agree(analysis)
    beats = [row[COLUMN["beats random?"]] for row in tables.faithfulness_rows(analysis.trust)]
    assert beats == ["no", "comprehensiveness only", "yes, both"]  # the mean would have said "yes, both" thrice
    assert [item.evidence for item in faithfulness.values()] == ["none", "weak", "clear"]
    assert tables.faithfulness_rows(analysis.trust)[0][COLUMN[RANDOM_COMP]] == "0.300 [0.100, 0.700]"


def test_a_first_run_that_misses_and_a_rerun_that_converges():
    check = Completeness(0.5, 50, "zero", rerun_n_steps=100, rerun_relative_error=COMPLETENESS_TOLERANCE / 2)
    assert check.relative_error > COMPLETENESS_TOLERANCE and check.converged
    item = Faithfulness(0.6, 0.2, 0.3, 0.5, (0.25, 0.35), (0.45, 0.55), random_orders=16)
    analysis = trust_analysis({"integrated_gradients": item}, check)
    assert_all_three_agree(analysis)
    page = explanations.completeness_summary(check)
    # Converged at the rerun's steps, while the scores shown are the first run's: the page says which.
    assert f"**converged** at {check.rerun_n_steps} steps" in page and f"{check.n_steps}-step run's" in page
    missed = dataclasses.replace(check, rerun_relative_error=2 * COMPLETENESS_TOLERANCE)
    assert_all_three_agree(trust_analysis({"integrated_gradients": item}, missed))


def test_a_contrastive_analysis_reports_drops_of_the_contrast():
    item = Faithfulness(0.6, 0.2, 0.3, 0.5, (0.25, 0.35), (0.1, 0.15), random_orders=16, scale=CONTRASTIVE_SCALE)
    analysis = trust_analysis({"gradient": item}, contrast=" Tallinn")
    assert_all_three_agree(analysis)
    (row,) = tables.faithfulness_rows(analysis.trust)
    assert row[COLUMN["drops of"]] == MEASURED[CONTRASTIVE_SCALE] != MEASURED["log_probability"]
    note = tables.faithfulness_note(analysis.trust)
    assert f"drops of {MEASURED[CONTRASTIVE_SCALE]};" in note and "log-probability" not in note


def test_a_hand_made_report_without_intervals_beats_nothing():
    analysis = trust_analysis({"gradient": Faithfulness(0.6, 0.2, 0.3, 0.5)})
    assert_all_three_agree(analysis)
    (row,) = tables.faithfulness_rows(analysis.trust)
    assert row[COLUMN[RANDOM_COMP]] == "0.300 [no interval]" and row[COLUMN["beats random?"]] == "no"
