"""The what-if tab's figure and tables: the deletion curve (the explained token's log-probability as a
method's top units are removed, against random orders), the diff table of two analyses and an edit's
before/after lines. Drawn from `attribution.whatif_results` and `attribution.diff` results (no torch)."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .figure_style import bold_title, method_color
from .labels import method_label
from ..diff import Diff, spearman_text
from ..whatif_results import DeletionCurve, Edit

RANDOM_COLOR = "0.45"


def deletion_curve_figure(curve: DeletionCurve) -> Figure:
    """Log-probability against units removed: the method's order as a line, the random orders' mean with
    its bootstrap 95% interval as a grey band."""
    figure = Figure(figsize=(7.0, 3.6), layout="constrained")
    ax = figure.add_subplot()
    ks = curve.ks
    mean, low, high = curve.random_band()
    ax.fill_between(ks, low, high, color=RANDOM_COLOR, alpha=0.25, linewidth=0,
                    label=f"random orders ({curve.random_values.shape[0]}): 95% interval of the mean")
    ax.plot(ks, mean, color=RANDOM_COLOR, linestyle="--", linewidth=1.2, label="random orders: mean")
    ax.plot(ks, curve.method_values, color=method_color(curve.method), marker="o", markersize=3.5, linewidth=1.8,
            label=f"{method_label(curve.method)}'s order")
    what = "log p(target) − log p(foil)" if curve.contrastive else "log p(explained token)"
    ax.set_xlabel(f"{curve.unit}s removed (most important first)")
    ax.set_ylabel(what)
    ax.set_xticks(ks if len(ks) <= 25 else np.linspace(0, ks[-1], 11).round().astype(int))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    bold_title(ax, f"Deletion curve: {method_label(curve.method)} (mean drop {curve.area:.3g}) against random "
                   f"({curve.random_area:.3g})")
    return figure


DIFF_HEADERS = ["unit", "method", "share a", "share b", "change (points)"]


def diff_rows(result: Diff) -> list[list[Any]]:
    """One row per aligned unit and common method: the two shares (%) and the change in points."""
    rows = []
    for index, text in enumerate(result.units):
        for name, item in result.methods.items():
            rows.append([text, method_label(name), round(100 * float(item.shares_a[index]), 1),
                         round(100 * float(item.shares_b[index]), 1), round(100 * float(item.difference[index]), 1)])
    return rows


def diff_summary(result: Diff) -> str:
    """Markdown: the answers side by side, the settings that differ, each method's rank correlation, and
    the sentence."""
    def probability(value: float | None) -> str:
        return "not in the top predictions" if value is None else f"p = {value:.3g}"

    lines = ["| | a | b |", "|---|---|---|",
             f"| model | {result.models[0]} | {result.models[1]} |",
             f"| prompt | {_cell(result.prompts[0])} | {_cell(result.prompts[1])} |",
             f"| answer | {_cell(result.answers[0])} | {_cell(result.answers[1])} |",
             f"| explained token | {_cell(result.targets[0])} ({probability(result.target_probabilities[0])}) | "
             f"{_cell(result.targets[1])} ({probability(result.target_probabilities[1])}) |"]
    for name, (first, second) in result.settings.items():
        lines.append(f"| setting {name} | {_cell(repr(first))} | {_cell(repr(second))} |")
    lines.append("")
    lines.append(f"Aligned by {result.alignment.by}; rank correlation of the shares: " + "; ".join(
        f"{method_label(name)} {spearman_text(item)}" for name, item in result.methods.items()) + ".")
    lines += ["", f"**{result.sentence}**"]
    return "\n".join(lines)


def edit_summary(edit: Edit) -> str:
    """Markdown: the edited prompt, the answers and the explained token's probability before and after."""
    what = []
    if edit.removed:
        what.append("removed " + ", ".join(f"“{text.strip() or text}”" for text in edit.removed))
    if edit.replaced:
        what.append("replaced " + ", ".join(f"“{old}” by “{new}”" for old, new in edit.replaced))
    verdict = "**The answer changed.**" if edit.answer_changed else "The answer stayed the same."
    still = ("it is still the likeliest token there" if edit.still_predicted
             else f"the model now predicts {_cell(edit.greedy_after)} there")
    done = "; ".join(what)
    return "\n".join([
        f"{done[:1].upper() + done[1:]}. {verdict}", "",
        "| | before | after |", "|---|---|---|",
        f"| prompt | {_cell(edit.prompt_before)} | {_cell(edit.prompt_after)} |",
        f"| answer | {_cell(edit.answer_before)} | {_cell(edit.answer_after)} |",
        f"| p({_cell(edit.target)}) | {edit.probability_before:.3g} | {edit.probability_after:.3g} |",
        "", f"The explained token {_cell(edit.target)}: {still}.",
    ])


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell, its spaces visible at the ends."""
    return "`" + text.replace("|", "\\|").replace("`", "'").replace("\n", "⏎") + "`" if text else "(empty)"
