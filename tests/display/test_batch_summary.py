"""attribution.display.batch_summary: the dataset summary reads the rows' trust judgements and scale."""

from __future__ import annotations

import pyarrow as pa

from attribution.display.batch_summary import summarize, summary_markdown
from attribution.reports import CONTRASTIVE_SCALE, MEASURED


def rows_table(beats: list[bool], scales: list[str]) -> pa.Table:
    """Rows as the dataset mode writes them (`attribution.batch`), for one method; every row beats the
    random MEAN on comprehensiveness, whatever the engine said of its interval (`beats`)."""
    n = len(beats)
    return pa.table({
        "input_tokens": [["a", "b"]] * n, "user_tokens": [[True, True]] * n,
        "scores_gradient": [[1.0, 0.5]] * n,
        "comprehensiveness_gradient": [0.6] * n, "sufficiency_gradient": [0.2] * n,
        "random_comprehensiveness": [0.3] * n, "random_sufficiency": [0.5] * n,
        "beats_random_gradient": beats, "scale_gradient": scales,
    })


def test_beats_random_is_the_share_of_rows_the_engine_said_so():
    beats = [True, False, False, False]
    (item,) = summarize(rows_table(beats, ["log_probability"] * 4), 0).methods
    assert item.beats_random == sum(beats) / len(beats)  # not 1.0, which the means would give
    assert item.scales == ("log_probability",)


def test_the_summary_names_what_the_drops_are_of():
    summary = summarize(rows_table([True, False], ["log_probability", CONTRASTIVE_SCALE]), 0)
    markdown = summary_markdown(summary, {})
    assert f"how much {MEASURED['log_probability']} or {MEASURED[CONTRASTIVE_SCALE]} drops" in markdown
    assert "the target's probability drops" not in markdown
