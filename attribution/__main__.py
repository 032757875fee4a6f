"""Command line: `python -m attribution "PROMPT" [--model ...] [--json out.json] [--csv out.csv]`, and
`python -m attribution diff a.json b.json [--json out.json]` (two saved analyses compared: `diff_cli.py`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from transformers.utils import logging as transformers_logging

from .cli_options import add_analysis_arguments, analysis_settings, load_from_arguments
from .engine import analyze
from .files import atomic_write_text
from .results import Analysis, IntegratedGradientsScores, top_k
from .settings import COMPLETENESS_TOLERANCE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m attribution",
        description="Explain which input tokens drove a language model's next-token prediction. "
                    "`python -m attribution diff a.json b.json` compares two saved analyses.",
    )
    parser.add_argument("prompt", help="the text to explain, e.g. 'What is the Capital City of Latvia?'")
    add_analysis_arguments(parser)
    parser.add_argument("--all-targets", action="store_true",
                        help="also attribute every generated token (the answer map)")
    parser.add_argument("--json", type=Path, default=None, help="write the full result as JSON here")
    parser.add_argument("--csv", type=Path, default=None, help="write a token × method table here")
    return parser


def format_table(analysis: Analysis) -> str:
    names = list(analysis.methods)
    token_width = max([len("token")] + [len(repr(token)) for token in analysis.input_tokens])
    lines = [
        f"model:     {analysis.model}",
        f"prompt:    {analysis.prompt!r}" + (" (as the user message of the chat template)" if analysis.chat else ""),
        f"generated: {analysis.generated_text!r}",
        f"target:    {analysis.target.text!r} (id {analysis.target.id}, position {analysis.target.position})"
        + ("" if analysis.foil is None else f" rather than {analysis.foil.text!r} (id {analysis.foil.id})"),
        *([] if analysis.span is None else [
            f"stretch:   {analysis.span.text!r} ({analysis.span.label}, positions {analysis.span.start}-"
            f"{analysis.span.end}): the sum of its {len(analysis.span.ids)} tokens' scores, each with the earlier "
            "ones teacher-forced"]),
        "",
        "  pos  " + "token".ljust(token_width) + "".join(f"  {name:>20}" for name in names),
    ]
    # With a chat template, its own and the special tokens are context: marked, left out of the top 5.
    context = analysis.context_tokens if analysis.chat else analysis.template_tokens
    for position, token in enumerate(analysis.input_tokens):
        row = "".join(f"  {analysis.methods[name].scores[position]:>20.6g}" for name in names)
        mark = "*" if context[position] else " "
        lines.append(f" {mark}{position:>3}  {repr(token).ljust(token_width)}{row}")
    if context.any():
        lines.append("  * chat-template or special token (context: not in the top 5)")
    for name in names:
        result = analysis.methods[name]
        best = ", ".join(
            f"{analysis.input_tokens[i]!r} {result.scores[i]:.4g}" for i in top_k(result.scores, 5, exclude=context)
        )
        lines.append(f"\ntop 5 {name}: {best}")
        if isinstance(result, IntegratedGradientsScores):
            lines.append(
                f"  convergence delta {result.convergence_delta:.4g} (Σ attributions − (F(input) − F(baseline)); "
                f"F(input) − F(baseline) = {result.output_difference:.4g}; F = {result.score})"
            )
            if result.target_error is not None:
                outcome = "reached" if result.reached_target else "did NOT reach"
                lines.append(
                    f"  auto steps: {outcome} the {result.target_error:.2%} target: "
                    f"{result.relative_completeness_error:.2%} error with {result.n_steps} path points"
                )
    for name, table in analysis.answer_map.items():
        lines.append(f"\nanswer map ({name}): strongest source for each generated token")
        for row, target in zip(table.matrix, table.targets):
            best = int(np.argmax(np.abs(row)))
            lines.append(f"  {target!r:>20} <- {table.sources[best]!r} ({row[best]:.4g})")
    if analysis.trust is not None:
        # The page's words for the trust panel (attribution.display.tables), every judgement read from
        # the report (beats random, evidence, converged), none recomputed here. Imported only when a
        # report is printed: the display package's __init__ loads matplotlib.
        from .display.tables import beats_random_text, faithfulness_note, interval_text, number_text

        trust = analysis.trust
        lines += [f"\ntrust: {trust.verdict}", f"  evidence: {trust.evidence}"]
        if trust.faithfulness:
            lines.append(f"  faithfulness: {faithfulness_note(trust)}")
        for name, item in trust.faithfulness.items():
            lines.append(
                f"  {name:>22}: comprehensiveness {number_text(item.comprehensiveness)} (random "
                f"{interval_text(item.random_comprehensiveness, item.random_comprehensiveness_interval)}), "
                f"sufficiency {number_text(item.sufficiency)} (random "
                f"{interval_text(item.random_sufficiency, item.random_sufficiency_interval)}); "
                f"drops of {item.measured}; beats random: {beats_random_text(item)}; evidence: {item.evidence}"
            )
        if trust.completeness is not None:
            check = trust.completeness
            rerun = "" if check.rerun_n_steps is None else (
                f"; rerun at {check.rerun_n_steps} steps: {check.rerun_relative_error:.2%}")
            outcome = "converged" if check.converged else "NOT converged"
            lines.append(f"  IG completeness error at {check.n_steps} steps: {check.relative_error:.2%}{rerun}: "
                         f"{outcome} (tolerance {COMPLETENESS_TOLERANCE:.0%})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["diff"]:  # a prompt that is the word "diff" alone would need a trailing space
        from .diff_cli import main as diff_main

        return diff_main(argv[1:])
    arguments = build_parser().parse_args(argv)
    transformers_logging.disable_progress_bar()
    try:
        settings = analysis_settings(arguments)  # a bad setting fails before the model loads
        loaded = load_from_arguments(arguments)
        analysis = analyze(loaded, arguments.prompt, settings)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_table(analysis))
    try:
        if arguments.json is not None:
            atomic_write_text(arguments.json, analysis.to_json())
        if arguments.csv is not None:
            atomic_write_text(arguments.csv, analysis.to_csv())
    except OSError as error:
        print(f"error: could not write the export: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
