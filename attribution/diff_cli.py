"""`python -m attribution diff a.json b.json [--json out.json]`: two saved analyses side by side (the
table and the sentence of `attribution.diff`), without loading a model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .diff import Diff, diff, spearman_text
from .files import atomic_write_text
from .result_json import read_analysis


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m attribution diff",
        description="Compare two analyses saved with --json (or the page's JSON download): the answers, the "
                    "settings that differ, and each method's share of every token or word.",
    )
    parser.add_argument("first", type=Path, help="the first analysis (JSON)")
    parser.add_argument("second", type=Path, help="the second analysis (JSON)")
    parser.add_argument("--json", type=Path, default=None, help="write the diff as JSON here")
    return parser


def _probability(value: float | None) -> str:
    return "not among the top predictions" if value is None else f"p = {value:.3g}"


def format_diff(result: Diff) -> str:
    """The diff as text: what each analysis was, the settings that differ, then unit × method shares."""
    lines = []
    for label, index in (("a", 0), ("b", 1)):
        lines += [f"{label}: model {result.models[index]}, prompt {result.prompts[index]!r}",
                  f"   answer {result.answers[index]!r}; explained {result.targets[index]!r} "
                  f"({_probability(result.target_probabilities[index])})"]
    if result.settings:
        lines.append("settings that differ: " + "; ".join(
            f"{name} {first!r} → {second!r}" for name, (first, second) in result.settings.items()))
    else:
        lines.append("settings: the same")
    for side, names in (("a", result.only_in_a), ("b", result.only_in_b)):
        if names:
            lines.append(f"methods only in {side}: {', '.join(names)}")
    names = list(result.methods)
    unit = result.alignment.by
    width = max([len(unit)] + [len(repr(text)) for text in result.units])
    lines += ["", f"shares of each {unit} (a → b, Δ in points of the method's total |score|)",
              f"  {unit.ljust(width)}" + "".join(f"  {name:>26}" for name in names)]
    for row, text in enumerate(result.units):
        cells = "".join(
            f"  {result.methods[name].shares_a[row]:>+7.1%} → {result.methods[name].shares_b[row]:>+7.1%} "
            f"({result.methods[name].difference[row] * 100:>+5.1f})" for name in names)
        lines.append(f"  {repr(text).ljust(width)}{cells}")
    for side, units in (("a", result.alignment.only_a), ("b", result.alignment.only_b)):
        if units:
            lines.append(f"  only in {side}: {', '.join(repr(item.text) for item in units)}")
    lines.append("")
    for name in names:
        lines.append(f"rank correlation {name}: {spearman_text(result.methods[name])}")
    lines += ["", result.sentence]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    arguments = build_parser().parse_args(argv)
    try:
        result = diff(read_analysis(arguments.first), read_analysis(arguments.second))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_diff(result))
    if arguments.json is not None:
        try:
            atomic_write_text(arguments.json, result.to_json())
        except OSError as error:
            print(f"error: could not write the diff: {error}", file=sys.stderr)
            return 2
    return 0
