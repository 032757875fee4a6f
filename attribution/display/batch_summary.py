"""summary.md and summary.png of a dataset run, computed from results.parquet's table alone.

Per method: faithfulness against a random token order (the per-row difference, with a 95% bootstrap
interval), the distribution of Integrated Gradients' completeness error, agreement between methods,
and the tokens that carry the largest mean share of the attribution.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Mapping

import numpy as np
import pyarrow as pa

from ..bootstrap import LEVEL, Interval, mean_interval  # noqa: F401 (Interval: part of this module's API)
from ..reports import MEASURED
from .figure_style import method_color, plain_text
from .labels import method_label, token_label
from ..settings import COMPLETENESS_TOLERANCE

TOP_TOKENS = 10


@dataclass(frozen=True)
class TokenShare:
    token: str
    mean_share: float  # the token's share of |scores| over content tokens, averaged over all rows
    rows: int  # rows in which it occurs


@dataclass(frozen=True)
class MethodSummary:
    method: str
    comprehensiveness: Interval | None
    random_comprehensiveness: Interval | None
    comprehensiveness_gain: Interval | None  # per row: comprehensiveness − random (higher is better)
    sufficiency: Interval | None
    random_sufficiency: Interval | None
    sufficiency_gain: Interval | None  # per row: random sufficiency − sufficiency (higher is better)
    # Share of rows in which the engine says the method beats random on both measures (`beats_random`:
    # beyond the random orders' interval), read from the rows, never recomputed from the means.
    beats_random: float | None
    top_tokens: tuple[TokenShare, ...]
    scales: tuple[str, ...] = ()  # what the rows' drops are measured in (`Faithfulness.scale`), in row order


@dataclass(frozen=True)
class PairAgreement:
    first: str
    second: str
    spearman: Interval | None
    top3_overlap: Interval | None


@dataclass(frozen=True)
class Summary:
    n_results: int
    n_errors: int
    methods: tuple[MethodSummary, ...]
    completeness: tuple[float, ...]  # IG's relative completeness error per row
    agreement: tuple[PairAgreement, ...]


def _column(table: pa.Table, name: str) -> list[Any]:
    return table[name].to_pylist() if name in table.column_names else []


def token_shares(tokens: list[list[str]], scores: list[list[float]], content: list[list[bool]] | None,
                 count: int = TOP_TOKENS) -> tuple[TokenShare, ...]:
    """Each row's |scores| over its content tokens (those the user typed: no special or chat-template
    tokens; all when `content` is None) as shares summing to 1, added up per token text and divided by
    the number of rows: the largest `count`."""
    totals: dict[str, float] = {}
    rows: dict[str, int] = {}
    for index, (row_tokens, row_scores) in enumerate(zip(tokens, scores)):
        magnitude = np.abs(np.asarray(row_scores, dtype=np.float64))
        keep = np.ones(magnitude.shape, dtype=bool) if content is None else np.asarray(content[index], dtype=bool)
        total = magnitude[keep].sum()
        if total <= 0:
            continue
        for position in np.flatnonzero(keep):
            token = row_tokens[position]
            totals[token] = totals.get(token, 0.0) + magnitude[position] / total
        for token in {row_tokens[position] for position in np.flatnonzero(keep)}:
            rows[token] = rows.get(token, 0) + 1
    n_rows = max(len(scores), 1)
    ranked = sorted(totals, key=lambda token: (-totals[token], token))[:count]
    return tuple(TokenShare(token, totals[token] / n_rows, rows[token]) for token in ranked)


def summarize(table: pa.Table, n_errors: int) -> Summary:
    names = [name[len("scores_"):] for name in table.column_names if name.startswith("scores_")]
    tokens, content = _column(table, "input_tokens"), _column(table, "user_tokens") or None
    methods = []
    for name in names:
        comprehensiveness = _column(table, f"comprehensiveness_{name}")
        sufficiency = _column(table, f"sufficiency_{name}")
        random_comprehensiveness = _column(table, "random_comprehensiveness")
        random_sufficiency = _column(table, "random_sufficiency")
        comprehensive_pairs = [(a, b) for a, b in zip(comprehensiveness, random_comprehensiveness)
                               if a is not None and b is not None]
        beats = [bool(value) for value in _column(table, f"beats_random_{name}") if value is not None]
        methods.append(MethodSummary(
            method=name,
            comprehensiveness=mean_interval(comprehensiveness),
            random_comprehensiveness=mean_interval(random_comprehensiveness) if comprehensiveness else None,
            comprehensiveness_gain=mean_interval(a - b for a, b in comprehensive_pairs),
            sufficiency=mean_interval(sufficiency),
            random_sufficiency=mean_interval(random_sufficiency) if sufficiency else None,
            sufficiency_gain=mean_interval(b - a for a, b in zip(sufficiency, random_sufficiency)
                                           if a is not None and b is not None),
            beats_random=float(np.mean(beats)) if beats else None,
            top_tokens=token_shares(tokens, _column(table, f"scores_{name}"), content),
            scales=tuple(dict.fromkeys(value for value in _column(table, f"scale_{name}") if value is not None)),
        ))
    completeness = tuple(float(value) for value in _column(table, "ig_completeness_error") if value is not None)
    agreement = tuple(
        PairAgreement(first, second, mean_interval(_column(table, f"spearman_{first}_vs_{second}")),
                      mean_interval(_column(table, f"top3_overlap_{first}_vs_{second}")))
        for first, second in combinations(names, 2)
        if f"spearman_{first}_vs_{second}" in table.column_names
    )
    return Summary(n_results=len(table), n_errors=n_errors, methods=tuple(methods),
                   completeness=completeness, agreement=agreement)


def _cell(interval: Interval | None) -> str:
    return "—" if interval is None else interval.text()


def _markdown_token(token: str) -> str:
    return "`" + token_label(token).replace("`", "'").replace("|", "¦") + "`"


def _measured(summary: Summary) -> str:
    """What the rows' drops are drops of, in words (`attribution.reports.MEASURED`), as the rows record it."""
    scales = dict.fromkeys(scale for item in summary.methods for scale in item.scales)
    if not scales:  # rows written before the scale was recorded
        return "the target's score (the rows do not record which)"
    return " or ".join(MEASURED.get(scale, scale) for scale in scales)


def summary_markdown(summary: Summary, settings: Mapping[str, Any]) -> str:
    lines = [
        "# Dataset attribution summary", "",
        f"Rows analysed: {summary.n_results}; failed: {summary.n_errors} (messages in `errors.jsonl`).", "",
        f"Settings: `{json.dumps(settings, sort_keys=True, ensure_ascii=False)}`", "",
        "## Faithfulness against a random token order", "",
    ]
    if any(item.comprehensiveness is not None for item in summary.methods):
        lines += [
            f"Comprehensiveness: how much {_measured(summary)} drops when the method's top tokens are "
            "hidden (AOPC, higher is better); sufficiency: how much it drops when only they are kept (lower "
            "is better). Gain: the method's advantage over a random order, per row, averaged — an interval "
            f"above 0 means better than chance. Means with {LEVEL:.0%} bootstrap intervals. Beats random: the "
            "share of rows in which the method lies beyond the random orders' interval on both measures.", "",
            "| method | comprehensiveness | random | gain | beats random | sufficiency | random | gain |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for item in summary.methods:
            beats = "—" if item.beats_random is None else f"{item.beats_random:.0%}"
            cells = [method_label(item.method), _cell(item.comprehensiveness), _cell(item.random_comprehensiveness),
                     _cell(item.comprehensiveness_gain), beats, _cell(item.sufficiency),
                     _cell(item.random_sufficiency), _cell(item.sufficiency_gain)]
            lines.append("| " + " | ".join(cells) + " |")
    else:
        lines.append("Not computed: run with `--trust`.")
    lines += ["", "## Integrated Gradients completeness", ""]
    if summary.completeness:
        errors = np.array(summary.completeness)
        lines += [
            "Relative error |Σ attributions − (F(x) − F(x′))| / |F(x) − F(x′)| per row.", "",
            f"| rows | median | 90th percentile | worst | within {COMPLETENESS_TOLERANCE:.0%} |",
            "|---|---|---|---|---|",
            f"| {errors.size} | {np.median(errors):.2%} | {np.quantile(errors, 0.9):.2%} | {errors.max():.2%} "
            f"| {np.mean(errors <= COMPLETENESS_TOLERANCE):.0%} |",
        ]
    else:
        lines.append("Not computed: Integrated Gradients was not among the methods.")
    lines += ["", "## Agreement between methods", ""]
    if summary.agreement:
        lines += ["| methods | Spearman | top-3 overlap |", "|---|---|---|"]
        lines += [f"| {method_label(pair.first)} / {method_label(pair.second)} | {_cell(pair.spearman)} "
                  f"| {_cell(pair.top3_overlap)} |" for pair in summary.agreement]
    else:
        lines.append("Not computed: run two or more methods with `--trust`.")
    lines += ["", "## Tokens with the largest mean share", "",
              "Each row's absolute scores over the tokens the user typed (special and chat-template tokens "
              "left out) as shares of 1, "
              "averaged over all rows per token text.", ""]
    for item in summary.methods:
        lines += [f"**{method_label(item.method)}**", "", "| token | mean share | rows |", "|---|---|---|"]
        lines += [f"| {_markdown_token(share.token)} | {share.mean_share:.2%} | {share.rows} |"
                  for share in item.top_tokens]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _empty_panel(ax: Any, title: str, note: str) -> None:
    ax.set_title(title, fontsize=11, fontweight="bold")
    ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _interval_bars(ax: Any, labels: list[str], intervals: list[Interval | None], colors: list[str], offset: float,
                   width: float, hatch: str | None = None) -> None:
    positions = np.arange(len(labels)) + offset
    means = [np.nan if item is None else item.mean for item in intervals]
    errors = np.array([[0, 0] if item is None else [item.mean - item.low, item.high - item.mean]
                       for item in intervals]).T  # [2, bars]: below and above the mean
    ax.bar(positions, means, width=width, color=colors, hatch=hatch, edgecolor="white",
           yerr=errors, capsize=3, error_kw={"ecolor": "0.25"})


def summary_png(summary: Summary) -> bytes:
    from matplotlib.figure import Figure

    n_methods = max(len(summary.methods), 1)
    columns = max(3, n_methods)
    figure = Figure(figsize=(4.2 * columns, 8.4), layout="constrained")
    grid = figure.add_gridspec(2, columns)
    labels = [method_label(item.method) for item in summary.methods]
    colors = [method_color(item.method) for item in summary.methods]

    ax = figure.add_subplot(grid[0, 0])
    if any(item.comprehensiveness_gain is not None for item in summary.methods):
        _interval_bars(ax, labels, [item.comprehensiveness_gain for item in summary.methods], colors, -0.2, 0.4)
        _interval_bars(ax, labels, [item.sufficiency_gain for item in summary.methods], colors, 0.2, 0.4, hatch="//")
        ax.axhline(0, color="0.3", linewidth=0.8)
        ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
        ax.set_ylabel(f"gain over random (mean, {LEVEL:.0%} interval)")
        from matplotlib.patches import Patch

        # Neutral legend patches: the bars' colours are the methods', the hatch tells the two measures apart.
        ax.legend(handles=[Patch(facecolor="0.6", label="comprehensiveness − random"),
                           Patch(facecolor="0.6", hatch="//", edgecolor="white", label="random − sufficiency")],
                  fontsize=8)
        ax.set_title("Faithfulness against random", fontsize=11, fontweight="bold")
    else:
        _empty_panel(ax, "Faithfulness against random", "not computed: run with --trust")

    ax = figure.add_subplot(grid[0, 1])
    if summary.completeness:
        errors = np.maximum(np.array(summary.completeness), 1e-6)  # log axis: exact zeros drawn at 1e-6
        ax.hist(errors, bins=np.logspace(-6, max(1.0, np.log10(errors.max()) + 0.1), 30),
                color=method_color("integrated_gradients"))
        ax.set_xscale("log")
        ax.axvline(COMPLETENESS_TOLERANCE, color="0.3", linestyle="--", linewidth=1)
        ax.set_xlabel("relative completeness error")
        ax.set_ylabel("rows")
        ax.set_title("Integrated Gradients completeness", fontsize=11, fontweight="bold")
    else:
        _empty_panel(ax, "Integrated Gradients completeness", "Integrated Gradients not run")

    ax = figure.add_subplot(grid[0, 2])
    if summary.agreement:
        pair_labels = [f"{method_label(pair.first)}\n{method_label(pair.second)}" for pair in summary.agreement]
        _interval_bars(ax, pair_labels, [pair.spearman for pair in summary.agreement], ["0.55"] * len(pair_labels),
                       0.0, 0.6)
        ax.axhline(0, color="0.3", linewidth=0.8)
        ax.set_ylim(-1.05, 1.05)
        ax.set_xticks(range(len(pair_labels)), pair_labels, fontsize=7)
        ax.set_ylabel("Spearman (mean over rows)")
        ax.set_title("Agreement between methods", fontsize=11, fontweight="bold")
    else:
        _empty_panel(ax, "Agreement between methods", "not computed: run 2+ methods with --trust")

    for column, item in enumerate(summary.methods):
        ax = figure.add_subplot(grid[1, column])
        shares = list(reversed(item.top_tokens))
        ax.barh(range(len(shares)), [share.mean_share for share in shares], color=method_color(item.method))
        ax.set_yticks(range(len(shares)), [plain_text(token_label(share.token)) for share in shares])
        ax.set_xlabel("mean share of |score|")
        ax.set_title(f"{method_label(item.method)}: top tokens", fontsize=11, fontweight="bold")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
