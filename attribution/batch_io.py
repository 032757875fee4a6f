"""Dataset mode's files: the input table, the settings record, crash-safe part files and the merge.

Every file is written under a temporary dot-name in its own folder, fsynced and renamed into place, so
a process killed at any moment leaves either the whole file or none of it (the dot-names never match
the part pattern that is read back). Part names carry the rank, the chunk and a per-process run token,
so no two processes (of this run or an earlier one, with any number of processes) ever write the same
name; the merge reads every part there is and keeps one record per id.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from .cli_options import parse_target
from .files import atomic_write, atomic_write_text  # noqa: F401 (re-exported)

INPUT_SUFFIXES = (".jsonl", ".csv", ".parquet")
OVERRIDE_COLUMNS = ("target", "contrast", "system", "continuation")
SETTINGS_FILE = "settings.json"
RESULTS_FILE = "results.parquet"
ERRORS_FILE = "errors.jsonl"
PART_GLOB = "part-*.parquet"
# Bookkeeping columns of the part files, dropped from results.parquet.
INTERNAL_COLUMNS = ("id_json", "row", "error", "finished_ns")
# The column order; every other column follows in the order the parts have it.
LEADING_COLUMNS = ("id", "prompt", "input_tokens", "generated_text", "target_text", "target_id")


@dataclass(frozen=True)
class InputRow:
    """One input row: `index` its position in INPUT (the output's order), `id` int or text, `prompt`
    as read (validated by `analyze`), `overrides` the per-row target/contrast/system/continuation given,
    `problem` a reason the row cannot run at all (a line that is not a JSON object, no prompt)."""

    index: int
    id: int | str
    prompt: Any
    overrides: Mapping[str, Any]
    problem: str | None = None

    @property
    def key(self) -> str:
        """The id as JSON: keeps 7 and "7" apart in the part files and the done-set."""
        return json.dumps(self.id, ensure_ascii=False)


@dataclass(frozen=True)
class InputTable:
    path: Path
    rows: tuple[InputRow, ...]

    @property
    def integer_ids(self) -> bool:
        return all(isinstance(row.id, int) for row in self.rows)


def _missing(value: Any) -> bool:
    """Absent override: no key, null, NaN (pandas' missing number) or an empty cell."""
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _whole(value: Any) -> Any:
    """3.0 → 3: parquet files written by pandas store an integer column with gaps as floats."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _row_id(value: Any, index: int) -> int | str:
    if _missing(value):
        return index
    value = _whole(value)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"row {index} has the id {value!r}; an id must be text or a whole number")
    return value


def _overrides(record: Mapping[str, Any]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for column in OVERRIDE_COLUMNS:
        value = record.get(column)
        if _missing(value):
            continue
        value = _whole(value)
        # A target given as text goes through the CLI's own parsing: "3" is the 3rd generated token.
        overrides[column] = parse_target(value) if column == "target" and isinstance(value, str) else value
    return overrides


def _make_row(index: int, record: Mapping[str, Any]) -> InputRow:
    prompt = record.get("prompt")
    problem = "the row has no prompt" if prompt is None or (isinstance(prompt, float) and math.isnan(prompt)) else None
    return InputRow(index=index, id=_row_id(record.get("id"), index), prompt=prompt,
                    overrides=_overrides(record), problem=problem)


def _read_jsonl(path: Path) -> tuple[list[InputRow], set[str]]:
    rows, columns = [], set()
    with path.open(encoding="utf-8-sig") as handle:
        lines = [line for line in handle if line.strip()]
    for index, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            record, problem = None, f"row {index} is not valid JSON ({error.msg} at character {error.pos})"
        else:
            problem = None if isinstance(record, dict) else f"row {index} is not a JSON object"
        if problem is not None:
            # A bad line is a bad row, not a bad file: it is reported in errors.jsonl under its number.
            rows.append(InputRow(index=index, id=index, prompt=None, overrides={}, problem=problem))
            continue
        columns.update(record)
        rows.append(_make_row(index, record))
    return rows, columns


def _read_csv(path: Path) -> tuple[list[InputRow], set[str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        records = list(reader)
        columns = set(reader.fieldnames or ())
    return [_make_row(index, record) for index, record in enumerate(records)], columns


def _read_parquet(path: Path) -> tuple[list[InputRow], set[str]]:
    wanted = ["prompt", "id", *OVERRIDE_COLUMNS]
    columns = set(pq.read_schema(path).names)
    table = pq.read_table(path, columns=[name for name in wanted if name in columns])
    return [_make_row(index, record) for index, record in enumerate(table.to_pylist())], columns


def read_input(path: Path) -> InputTable:
    """Every row of a .jsonl, .csv or .parquet file; ValueError for a file that cannot be used at all."""
    suffix = path.suffix.lower()
    if suffix not in INPUT_SUFFIXES:
        raise ValueError(f"INPUT {str(path)!r} must end in {', '.join(INPUT_SUFFIXES)}")
    if not path.is_file():
        raise ValueError(f"INPUT {str(path)!r} does not exist or is not a file")
    reader = {".jsonl": _read_jsonl, ".csv": _read_csv, ".parquet": _read_parquet}[suffix]
    try:
        rows, columns = reader(path)
    except (OSError, UnicodeDecodeError, csv.Error, pa.ArrowException) as error:
        raise ValueError(f"cannot read INPUT {str(path)!r}: {error}") from None
    if "prompt" not in columns:
        found = ", ".join(sorted(str(name) for name in columns if name)) or "none"
        raise ValueError(f"INPUT {str(path)!r} has no 'prompt' column (columns found: {found})")
    first_row: dict[str, int] = {}
    for row in rows:
        if row.key in first_row:
            raise ValueError(f"INPUT has the id {row.id!r} on rows {first_row[row.key]} and {row.index}; "
                             "ids must be unique")
        first_row[row.key] = row.index
    if not rows:
        raise ValueError(f"INPUT {str(path)!r} has no rows")
    return InputTable(path=path, rows=tuple(rows))


def check_output_folder(folder: Path, settings: Mapping[str, Any]) -> None:
    """ValueError when `folder` cannot hold this run: not a folder, or another run's settings."""
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--output {str(folder)!r} exists and is not a folder")
    recorded_path = folder / SETTINGS_FILE
    if not recorded_path.exists():
        return
    try:
        recorded = json.loads(recorded_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {str(recorded_path)!r} ({error}); use another --output folder") from None
    if recorded == settings:
        return
    differences = describe_differences(recorded, settings)
    raise ValueError(
        f"{str(folder)!r} holds a run with other settings ({differences}); rerun with that run's settings "
        "to resume it, or choose another --output folder"
    )


def describe_differences(recorded: Any, wanted: Any, prefix: str = "") -> str:
    """'n_steps: 8 there, 16 now; ...' for two settings records."""
    if not (isinstance(recorded, dict) and isinstance(wanted, dict)):
        return f"{prefix or 'settings'}: {recorded!r} there, {wanted!r} now"
    parts = []
    for key in sorted(set(recorded) | set(wanted)):
        if recorded.get(key) != wanted.get(key):
            parts.append(describe_differences(recorded.get(key), wanted.get(key), key))
    return "; ".join(parts)


def write_settings(folder: Path, settings: Mapping[str, Any]) -> None:
    path = folder / SETTINGS_FILE
    if not path.exists():
        atomic_write_text(path, json.dumps(settings, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def part_name(rank: int, chunk: int, run: str) -> str:
    return f"part-r{rank:05d}-c{chunk:06d}-{run}.parquet"


def records_table(records: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Columns in first-seen order; a key a record lacks is null there (from_pylist reads only the
    first record's keys)."""
    records = list(records)
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    return pa.table({name: [record.get(name) for record in records] for name in names})


def write_part(folder: Path, name: str, records: Iterable[Mapping[str, Any]]) -> None:
    table = records_table(records)
    atomic_write(folder / name, lambda handle: pq.write_table(table, handle))


def part_paths(folder: Path) -> list[Path]:
    return sorted(folder.glob(PART_GLOB)) if folder.is_dir() else []


def read_parts(folder: Path, columns: list[str] | None = None) -> pa.Table | None:
    """Every part (of every run and rank) as one table; None when there are none."""
    tables = []
    for path in part_paths(folder):
        try:
            tables.append(pq.read_table(path, columns=columns))
        except (OSError, pa.ArrowException) as error:
            raise ValueError(f"the part file {str(path)!r} cannot be read ({error}); delete it and run again "
                             "to recompute its rows") from None
    return pa.concat_tables(tables, promote_options="permissive") if tables else None


def done_keys(folder: Path) -> set[str]:
    """Ids (as JSON) with a result in any part: a restart skips them. Failed rows are tried again."""
    table = read_parts(folder, columns=["id_json", "error"])
    if table is None:
        return set()
    return {key for key, error in zip(table["id_json"].to_pylist(), table["error"].to_pylist()) if error is None}


@dataclass(frozen=True)
class Merged:
    """results.parquet's table (rows in input order) and errors.jsonl's records; `missing`: input rows
    with neither a result nor an error yet (a process died before finishing its share)."""

    results: pa.Table
    errors: tuple[dict[str, Any], ...]
    missing: int


def merge_parts(folder: Path, table: InputTable) -> Merged:
    """One result per input id (the first finished, should a process ever have repeated one), and for
    the ids without a result their latest error; ids no longer in INPUT are left out."""
    parts = read_parts(folder)
    order = {row.key: row for row in table.rows}
    keys = [] if parts is None else parts["id_json"].to_pylist()
    errors = [] if parts is None else parts["error"].to_pylist()
    finished = [] if parts is None else parts["finished_ns"].to_pylist()
    best_result: dict[str, int] = {}
    latest_error: dict[str, int] = {}
    for index, (key, error, time_ns) in enumerate(zip(keys, errors, finished)):
        if key not in order:
            continue
        chosen = best_result if error is None else latest_error
        previous = chosen.get(key)
        if previous is None or (time_ns < finished[previous] if error is None else time_ns >= finished[previous]):
            chosen[key] = index
    result_keys = sorted(best_result, key=lambda key: order[key].index)
    error_keys = sorted(set(latest_error) - set(best_result), key=lambda key: order[key].index)
    results = _results_table(parts, [best_result[key] for key in result_keys],
                             [order[key].id for key in result_keys], table.integer_ids)
    error_records = tuple({"id": order[key].id, "error": errors[latest_error[key]]} for key in error_keys)
    return Merged(results=results, errors=error_records, missing=len(order) - len(result_keys) - len(error_keys))


def _results_table(parts: pa.Table | None, indices: list[int], ids: list[int | str], integer_ids: bool) -> pa.Table:
    id_column = pa.array(ids if integer_ids else [str(value) for value in ids],
                         type=pa.int64() if integer_ids else pa.string())
    if parts is None or not indices:
        return pa.table({"id": id_column})
    chosen = parts.take(pa.array(indices, type=pa.int64()))
    chosen = chosen.drop_columns([name for name in INTERNAL_COLUMNS if name in chosen.column_names])
    chosen = chosen.append_column("id", id_column)
    leading = [name for name in LEADING_COLUMNS if name in chosen.column_names]
    scores = [name for name in chosen.column_names if name.startswith("scores_")]
    rest = [name for name in chosen.column_names if name not in leading and name not in scores]
    return chosen.select(leading + scores + rest)


def write_merged(folder: Path, merged: Merged) -> None:
    atomic_write(folder / RESULTS_FILE, lambda handle: pq.write_table(merged.results, handle))
    lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in merged.errors)
    atomic_write_text(folder / ERRORS_FILE, lines)


def remove_stale_temporaries(folder: Path) -> None:
    """Temporary files of processes killed mid-write (never read back; only clutter)."""
    for path in folder.glob(".*.tmp-*"):
        path.unlink(missing_ok=True)
