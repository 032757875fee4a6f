"""The analysis flags shared by the single-prompt CLI (`python -m attribution`) and the dataset mode
(`python -m attribution.batch`): one definition, so both accept exactly the same settings."""

from __future__ import annotations

import argparse
from .models import LoadedModel, default_model_name, load_model
from .catalog import CATALOG
from .groups import GRANULARITIES
from .limits import DEFAULT_ABLATIONS, MAX_ABLATIONS, MIN_ABLATIONS
from .settings import ANSWER_TARGET, REPLY_TARGET, AGGREGATIONS, BASELINE_LABELS, DEFAULT_TARGET_ERROR, MAX_STEPS, PRESETS, SCORES, Settings, preset, span_from_text


def add_analysis_arguments(parser: argparse.ArgumentParser) -> None:
    """Model choice and every `analyze` setting that applies to one prompt."""
    parser.add_argument("--model", default=None,
                        help="hub id, local folder or .gguf file (default: $MODEL_ID, else the shipped demo model)")
    parser.add_argument("--gguf-file", default=None,
                        help="a .gguf file inside the --model hub repository or folder (llama.cpp / Ollama weights)")
    parser.add_argument("--preset", default="seed",
                        help=f"a bundle of settings that the flags below override: {' | '.join(PRESETS)} "
                             "(default: seed, the notebook's)")
    # None = "not given": the preset's value applies.
    parser.add_argument("--methods", default=None, help=f"comma-separated, from: {', '.join(CATALOG)}")
    parser.add_argument("--steps", default=None,
                        help=f"Integrated Gradients steps (1..{MAX_STEPS}), or 'auto': refine until --target-error")
    parser.add_argument("--target-error", type=float, default=None,
                        help=f"with --steps auto: the relative completeness error to reach (default {DEFAULT_TARGET_ERROR})")
    parser.add_argument("--max-steps", type=int, default=None,
                        help=f"with --steps auto: the most IG path points to spend (default {MAX_STEPS})")
    parser.add_argument("--baseline", default=None, help=f"IG baseline: {' | '.join(BASELINE_LABELS)}")
    parser.add_argument("--hold-context", default=None, action=argparse.BooleanOptionalAction,
                        help="IG's baseline keeps the first position, special and chat-template tokens")
    parser.add_argument("--aggregation", default=None, help=f"how embedding dims combine: {' | '.join(AGGREGATIONS)}")
    parser.add_argument("--score", default=None, help=f"what is explained: {' | '.join(SCORES)} (seed: logit)")
    parser.add_argument("--max-new-tokens", type=int, default=20, help="greedy tokens to generate (0..256)")
    parser.add_argument("--target", default=None,
                        help="explain this text's first token instead of the predicted one (mind the "
                             "leading space: ' Riga'); a number k explains the k-th generated token; K-M the "
                             "stretch of generated tokens K..M (the sum of their scores, best with --score "
                             "log_probability: log p of the stretch); 'answer' the answer's content token (the "
                             "first word of the reply not in the prompt and not a function word); 'reply' the "
                             "whole reply as a stretch (a last end-of-sequence token left out)")
    parser.add_argument("--continuation", default=None,
                        help="explain this text as a stretch, teacher-forced right after the prompt (after the "
                             "chat template's reply header with --chat), e.g. ' Riga is the capital'")
    parser.add_argument("--contrast", default=None,
                        help="explain why the target rather than this text's first token (e.g. ' Tallinn')")
    parser.add_argument("--chat", action="store_true",
                        help="make the prompt the user message of the model's chat template (instruct models)")
    parser.add_argument("--system", default=None,
                        help="with --chat: this system prompt instead of the template's default")
    parser.add_argument("--trust", action="store_true",
                        help="also compute the trust panel: completeness, faithfulness, agreement, verdict")
    parser.add_argument("--granularity", default="token", choices=GRANULARITIES,
                        help="scores per token (default), word, sentence or segment (passages split at blank lines, "
                             "or at --separator): the table, the exports and the trust panel")
    parser.add_argument("--separator", default=None,
                        help="with --granularity segment: the text that separates the segments (default: blank lines)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--ablations", type=int, default=None,
                        help=f"context ablation: random ablations its surrogate is fitted on "
                             f"({MIN_ABLATIONS}..{MAX_ABLATIONS}, default {DEFAULT_ABLATIONS})")


def parse_target(text: str | None) -> None | str | int | tuple[int, int]:
    """--target: a number k (the k-th generated token), K-M (the span of generated tokens K..M), "answer"
    (the answer's content token, ANSWER_TARGET), "reply" (the whole reply as a span, REPLY_TARGET), or text
    whose first token is explained."""
    if text is None:
        return None
    if text == "answer":
        return ANSWER_TARGET
    if text == "reply":
        return REPLY_TARGET
    span = span_from_text(text)
    if span is not None:
        return span
    stripped = text.strip()
    return int(stripped) if stripped.isdigit() and stripped == text else text



def parse_steps(text: str) -> int | str:
    stripped = text.strip()
    return int(stripped) if stripped.isdigit() else stripped


def analysis_settings(arguments: argparse.Namespace) -> Settings:
    """The `Settings` the parsed flags give (the model, device and outputs are not among them): the
    preset's, with every flag given explicitly replacing its field. ValueError names a bad value."""
    explicit = {
        "methods": arguments.methods,
        "n_steps": None if arguments.steps is None else parse_steps(arguments.steps),
        "target_error": arguments.target_error,
        "max_steps": arguments.max_steps,
        "baseline": arguments.baseline,
        "hold_context": arguments.hold_context,
        "aggregation": arguments.aggregation,
        "score": arguments.score,
        "n_ablations": arguments.ablations,
    }
    return preset(arguments.preset).replace(
        **{key: value for key, value in explicit.items() if value is not None},
        max_new_tokens=arguments.max_new_tokens,
        target=parse_target(arguments.target),
        contrast=arguments.contrast,
        trust=arguments.trust,
        all_targets=getattr(arguments, "all_targets", False),  # the single-prompt CLI's flag only
        chat=arguments.chat,
        system=arguments.system,
        continuation=arguments.continuation,
        granularity=arguments.granularity,
        separator=arguments.separator,
    )


def load_from_arguments(arguments: argparse.Namespace) -> LoadedModel:
    """The model the flags name: --model (else $MODEL_ID, else the demo model), --gguf-file, --device."""
    return load_model(arguments.model or default_model_name(), gguf_file=arguments.gguf_file, device=arguments.device)
