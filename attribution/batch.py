"""Dataset mode: `python -m attribution.batch INPUT --output DIR [analysis flags]`.

One `analyze` per row of a .jsonl/.csv/.parquet file, on one process or many (`torchrun
--nproc_per_node N -m attribution.batch ...`, `accelerate launch -m attribution.batch ...`, several
nodes the usual torchrun way, DIR on a shared file system). Each process loads the model once, takes
every N-th row of the pending rows sorted by token length (longest first) and writes its results in
chunks (see `batch_io`); rank 0 merges them into results.parquet, errors.jsonl, summary.md and
summary.png once every process is done. A second run with the same INPUT and DIR skips the rows
already done.
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, MutableMapping

import torch

from .batch_io import (
    InputRow,
    InputTable,
    atomic_write,
    atomic_write_text,
    check_output_folder,
    done_keys,
    merge_parts,
    part_name,
    read_input,
    remove_stale_temporaries,
    write_merged,
    write_part,
    write_settings,
)
# The dataset command is an entry point, like the CLI: it writes its summary through the display layer.
from .display.batch_summary import summarize, summary_markdown, summary_png
from .cli_options import add_analysis_arguments, analysis_settings, load_from_arguments
from .engine import analyze
from .models import LoadedModel, default_model_name, resolve_device, resolve_dtype
from .results import Analysis, IntegratedGradientsScores
from .settings import Settings
from .targets import max_prompt_tokens

DEFAULT_CHUNK_SIZE = 32
# A chunk is also written after this many seconds, so that a slow model loses little to a kill.
CHUNK_SECONDS = 120.0
# The final wait for the slowest process: far longer than torch's 30-minute default, because the
# processes' shares can differ in length by hours on a large dataset.
BARRIER_TIMEOUT = datetime.timedelta(days=7)
SETTINGS_FORMAT = 2  # 2: the analysis settings as `Settings.to_dict()` under "settings"


class UsageError(Exception):
    """A bad command line: reported as one `error: ...` line with exit status 2 (argparse's own exit
    prints the usage and cannot be caught by callers that run `main` in-process)."""


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="python -m attribution.batch",
        description="Attribute every prompt of a .jsonl, .csv or .parquet file (columns: prompt, and "
                    "optionally id, target, contrast, system, continuation, which override the flags per row).",
    )
    parser.add_argument("input", type=Path, help="the dataset: .jsonl, .csv or .parquet with a 'prompt' column")
    parser.add_argument("--output", type=Path, required=True,
                        help="folder for results.parquet, errors.jsonl, summary.md, summary.png (and the parts)")
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE,
                        help="rows per part file: a killed process loses at most its chunk in progress")
    add_analysis_arguments(parser)
    return parser


@dataclass(frozen=True)
class Plan:
    """Everything validated before a single file is written."""

    table: InputTable
    output: Path
    analysis: Settings  # the settings shared by every row (a row's target, contrast, system replace its own)
    settings: Mapping[str, Any]  # what settings.json records (and a restart must match)
    loaded: LoadedModel
    chunk_size: int
    done: frozenset[str]  # ids (as JSON) with a result from an earlier run: skipped


def assign_gpus(environ: MutableMapping[str, str], device_count: int) -> None:
    """Give each local process its own GPUs through CUDA_VISIBLE_DEVICES: with G GPUs and P processes
    on a node, process p gets GPUs [p·G/P, (p+1)·G/P) (so `device_map="auto"` spreads a large model
    over those only), or shares GPU p mod G when there are more processes than GPUs. Must run before
    CUDA is initialised; a no-op outside torchrun/accelerate or without GPUs."""
    processes = int(environ.get("LOCAL_WORLD_SIZE", "1"))
    if processes <= 1 or "LOCAL_RANK" not in environ:
        return
    rank = int(environ["LOCAL_RANK"])
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    devices = ([item.strip() for item in visible.split(",") if item.strip()] if visible is not None
               else [str(index) for index in range(device_count)])
    if not devices:
        return
    per_process = len(devices) // processes
    mine = devices[rank * per_process:(rank + 1) * per_process] if per_process else [devices[rank % len(devices)]]
    environ["CUDA_VISIBLE_DEVICES"] = ",".join(mine)


def run_settings(arguments: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """What makes two runs' rows comparable: the model (a local path made absolute), its dtype (set by
    the device), the prompt length limit and the analysis settings (`Settings.to_dict`)."""
    model = arguments.model or default_model_name()
    path = Path(model).expanduser()
    return {
        "format": SETTINGS_FORMAT,
        "model": str(path.resolve()) if path.exists() else model,
        "gguf_file": getattr(arguments, "gguf_file", None),
        "dtype": str(resolve_dtype(None, resolve_device(arguments.device))),
        "max_prompt_tokens": max_prompt_tokens(),
        "settings": settings.to_dict(),
    }


def prepare(arguments: argparse.Namespace) -> Plan:
    """Read and check everything (INPUT, the settings, DIR, the model); writes nothing."""
    if arguments.chunk_size < 1:
        raise ValueError(f"--chunk-size must be at least 1, got {arguments.chunk_size}")
    table = read_input(arguments.input)
    analysis = analysis_settings(arguments)  # validated when built: nothing runs on a bad setting
    settings = run_settings(arguments, analysis)
    check_output_folder(arguments.output, settings)
    loaded = load_from_arguments(arguments)
    # Every process reads the done-set before any of them writes a part (the barrier in `main`), so
    # all agree on the pending rows and split them without overlap, whatever the earlier runs' sizes.
    done = frozenset(done_keys(arguments.output))
    return Plan(table=table, output=arguments.output, analysis=analysis, settings=settings, loaded=loaded,
                chunk_size=arguments.chunk_size, done=done)


def distributed_state():
    """accelerate's PartialState: rank and world size under torchrun/accelerate, else rank 0 of 1. The
    process group is gloo, used only for barriers, whatever device the model runs on."""
    from accelerate import PartialState

    launched = "LOCAL_RANK" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1
    return PartialState(cpu=True, **({"backend": "gloo", "timeout": BARRIER_TIMEOUT} if launched else {}))


def token_lengths(loaded: LoadedModel, rows: list[InputRow]) -> list[int]:
    """Tokens per prompt, to order the work (prompts that `analyze` will refuse count as 0)."""
    limit = max_prompt_tokens() * 64
    texts = [row.prompt if isinstance(row.prompt, str) and len(row.prompt) <= limit else "" for row in rows]
    return [len(ids) for ids in loaded.tokenizer(texts)["input_ids"]] if texts else []


def my_share(loaded: LoadedModel, pending: list[InputRow], rank: int, world: int) -> list[InputRow]:
    """Every `world`-th row of the pending rows sorted longest first (ties in input order): similar
    lengths follow each other, and every process gets a similar mix of long and short rows. The longest
    come first so that a row too large for the memory fails in the first minutes, not the last."""
    lengths = token_lengths(loaded, pending)
    order = sorted(range(len(pending)), key=lambda index: (-lengths[index], pending[index].index))
    return [pending[index] for index in order[rank::world]]


def _trust_columns(trust: Mapping[str, Any]) -> dict[str, Any]:
    """The trust panel's JSON as flat columns: comprehensiveness_<method>, random_comprehensiveness,
    spearman_<a>_vs_<b>, ig_rerun_completeness_error, verdict, ..."""
    columns: dict[str, Any] = {}
    for method, values in (trust.get("faithfulness") or {}).items():
        for key, value in values.items():
            columns[key if key.startswith("random_") else f"{key}_{method}"] = value
    for kind, pairs in (trust.get("agreement") or {}).items():
        for pair, value in pairs.items():
            first, second = pair.split("|")
            columns[f"{kind}_{first}_vs_{second}"] = value
    completeness = trust.get("completeness")
    if completeness:
        columns["ig_rerun_steps"] = completeness.get("rerun_n_steps")
        columns["ig_rerun_completeness_error"] = completeness.get("rerun_relative_error")
        columns["ig_converged"] = completeness.get("converged")
    if "verdict" in trust:
        columns["verdict"] = trust["verdict"]
    return columns


def result_record(row: InputRow, analysis: Analysis) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id_json": row.key, "row": row.index, "error": None, "finished_ns": time.time_ns(),
        "prompt": analysis.prompt,
        "input_tokens": list(analysis.input_tokens),
        "generated_text": analysis.generated_text,
        "target_text": analysis.target.text,
        "target_id": int(analysis.target.id),
        "target_position": int(analysis.target.position),
        "input_ids": [int(value) for value in analysis.input_ids],
        "special_tokens": [bool(value) for value in analysis.special_tokens],
        "user_tokens": [bool(value) for value in analysis.user_tokens],
    }
    if analysis.foil is not None:
        record.update(foil_text=analysis.foil.text, foil_id=int(analysis.foil.id))
    if analysis.span is not None:  # a span target: the explained stretch and where it starts
        record.update(span_text=analysis.span.text, span_start=int(analysis.span.start))
    for name, result in analysis.methods.items():
        record[f"scores_{name}"] = [float(value) for value in result.scores]
        if isinstance(result, IntegratedGradientsScores):
            record["ig_convergence_delta"] = result.convergence_delta
            record["ig_completeness_error"] = result.relative_completeness_error
    if analysis.trust is not None:
        record.update(_trust_columns(analysis.trust.to_dict()))
    return record


def error_record(row: InputRow, message: str) -> dict[str, Any]:
    return {"id_json": row.key, "row": row.index, "error": message, "finished_ns": time.time_ns()}


def analyze_row(loaded: LoadedModel, row: InputRow, settings: Settings) -> dict[str, Any]:
    if row.problem is not None:
        return error_record(row, row.problem)
    try:
        analysis = analyze(loaded, row.prompt, settings.replace(**row.overrides))
    # ValueError is analyze's answer to a bad row (empty, too long, unknown target); RuntimeError is
    # torch's for a row the device cannot hold (out of memory). Either is that row's error, never the
    # run's. Anything else is a bug and stops the process (a restart resumes after its last chunk).
    except (ValueError, RuntimeError) as error:
        if loaded.input_device.type == "cuda":
            torch.cuda.empty_cache()
        return error_record(row, f"{type(error).__name__}: {error}" if isinstance(error, RuntimeError) else str(error))
    return result_record(row, analysis)


class _Stop(BaseException):
    """SIGTERM (torchrun stopping the other processes after one failed) as an exception, so that the
    rows finished in the current chunk are written before the process ends."""


def _raise_stop(signal_number: int, frame: object) -> None:
    raise _Stop


def process_share(plan: Plan, share: list[InputRow], rank: int, world: int) -> tuple[int, float]:
    """Analyse this process's rows, writing a part every chunk; returns (rows, seconds)."""
    from tqdm.auto import tqdm

    run = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"  # no two processes share a part name
    chunk, buffer = 0, []
    started = last_write = time.monotonic()
    failed = 0

    def flush() -> None:
        nonlocal chunk, buffer, last_write
        if buffer:
            write_part(plan.output, part_name(rank, chunk, run), buffer)
            chunk, buffer, last_write = chunk + 1, [], time.monotonic()

    previous = signal.signal(signal.SIGTERM, _raise_stop)
    progress = tqdm(total=len(share), unit="row", desc=f"rank {rank}/{world}" if world > 1 else "rows",
                    position=int(os.environ.get("LOCAL_RANK", "0") or 0), mininterval=1.0, dynamic_ncols=True)
    try:
        for row in share:
            record = analyze_row(plan.loaded, row, plan.analysis)
            failed += record["error"] is not None
            buffer.append(record)
            progress.update(1)
            progress.set_postfix(failed=failed, refresh=False)
            if len(buffer) >= plan.chunk_size or time.monotonic() - last_write >= CHUNK_SECONDS:
                flush()
    except (_Stop, KeyboardInterrupt):
        flush()  # only finished rows are in the buffer: keep them
        raise
    finally:
        progress.close()
        signal.signal(signal.SIGTERM, previous)
    flush()
    return len(share), time.monotonic() - started


def finish(plan: Plan) -> int:
    """Merge every part into results.parquet and errors.jsonl, then the summary (rank 0 only)."""
    try:
        merged = merge_parts(plan.output, plan.table)
    except ValueError as error:  # a part file damaged after it was written (e.g. by hand)
        print(f"error: {error}", file=sys.stderr)
        return 1
    if merged.missing:
        print(f"error: {merged.missing} rows of {len(plan.table.rows)} are not finished (a process stopped "
              "early); run the same command again to finish them", file=sys.stderr)
        return 1
    write_merged(plan.output, merged)
    summary = summarize(merged.results, len(merged.errors))
    atomic_write_text(plan.output / "summary.md", summary_markdown(summary, plan.settings))
    image = summary_png(summary)
    atomic_write(plan.output / "summary.png", lambda handle: handle.write(image))
    remove_stale_temporaries(plan.output)
    print(f"{len(merged.results)} rows in {plan.output / 'results.parquet'}, {len(merged.errors)} failed rows in "
          f"{plan.output / 'errors.jsonl'}, summary in {plan.output / 'summary.md'} and summary.png")
    return 0


def main(argv: list[str] | None = None) -> int:
    from transformers.utils import logging as transformers_logging

    try:
        arguments = build_parser().parse_args(argv)
        if arguments.device != "cpu" and not torch.cuda.is_initialized():
            assign_gpus(os.environ, torch.cuda.device_count())
        transformers_logging.disable_progress_bar()
        plan = prepare(arguments)
    except (UsageError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    state = distributed_state()
    rank, world = state.process_index, state.num_processes
    pending = [row for row in plan.table.rows if row.key not in plan.done]
    share = my_share(plan.loaded, pending, rank, world)
    if state.is_main_process:
        plan.output.mkdir(parents=True, exist_ok=True)
        write_settings(plan.output, plan.settings)
    state.wait_for_everyone()
    try:
        count, seconds = process_share(plan, share, rank, world)
    except _Stop:
        print(f"rank {rank}/{world}: stopped; the rows it finished are saved, and running the same command "
              "again continues with the others", file=sys.stderr)
        return 128 + signal.SIGTERM
    rate = 60.0 * count / seconds if seconds > 0 else float("nan")
    print(f"rank {rank}/{world}: {count} rows in {seconds:.1f} s ({rate:.1f} rows/minute); "
          f"{len(plan.done)} done before", file=sys.stderr)
    state.wait_for_everyone()
    status = finish(plan) if state.is_main_process else 0
    state.wait_for_everyone()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return status


if __name__ == "__main__":
    sys.exit(main())
