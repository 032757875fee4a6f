"""Dataset mode (`python -m attribution.batch`): every row once, bad rows reported, the same numbers as
the single-prompt CLI, the same rows on 2 processes as on 1, resumption after a real SIGKILL, and
one-line refusals of bad input that write nothing."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import REPO_ROOT, SEED_PROMPT

from attribution import DEMO_MODEL_PATH
from attribution import __main__ as cli
from attribution import batch
from attribution.batch_io import read_input
from attribution.bootstrap import mean_interval
from attribution.display.batch_summary import summarize

FAST = ["--steps", "8", "--max-new-tokens", "3"]
COUNTRIES = ["Latvia", "Estonia", "Lithuania", "France", "Spain", "Germany", "Italy", "Poland", "Norway",
             "Sweden", "Finland", "Japan"]


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((record if isinstance(record, str) else json.dumps(record)) + "\n"
                            for record in records), encoding="utf-8")
    return path


def results_of(folder: Path) -> list[dict]:
    return pq.read_table(folder / "results.parquet").to_pylist()


def errors_of(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "errors.jsonl").read_text(encoding="utf-8").splitlines()]


def part_records(folder: Path) -> list[dict]:
    """Every record of every part file, read directly (not through the module under test)."""
    return [record for path in sorted(folder.glob("part-*.parquet")) for record in pq.read_table(path).to_pylist()]


def module_environment() -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT))


def run_module(*arguments: str, processes: int = 1) -> subprocess.CompletedProcess:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
                if processes > 1 else [sys.executable])
    return subprocess.run([*launcher, "-m", "attribution.batch", *arguments], capture_output=True, text=True,
                          cwd=REPO_ROOT, env=module_environment(), timeout=600)


def capital_prompts(count: int) -> list[dict]:
    return [{"id": f"q{index}", "prompt": f"What is the Capital City of {COUNTRIES[index % len(COUNTRIES)]}?"
             + " Answer briefly." * (index % 3)} for index in range(count)]


def test_every_good_row_once_and_every_bad_row_in_errors(tiny_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTRIBUTION_MAX_PROMPT_TOKENS", "24")
    long_prompt = "The capital of France is Paris, and the capital of Spain is Madrid. " * 4
    from transformers import AutoTokenizer

    assert len(AutoTokenizer.from_pretrained(tiny_folder)(long_prompt)["input_ids"]) > 24  # really over the limit
    records = [
        {"id": 10, "prompt": SEED_PROMPT},
        {"id": 11, "prompt": ""},
        {"id": 12, "prompt": "What is the Capital City of Estonia?", "target": " Tallinn"},
        {"id": 13, "prompt": SEED_PROMPT, "target": 9},  # only 3 tokens are generated
        {"id": 14, "prompt": long_prompt},
        "this line is not JSON",
        {"id": 16, "prompt": "Which city is the capital of Germany?", "contrast": " Paris"},
        {"id": 17},
        {"id": 18, "prompt": "What is the Capital City of Lithuania?", "target": 2},
    ]
    data = write_jsonl(tmp_path / "rows.jsonl", records)
    output = tmp_path / "out"
    methods = "gradient,attention,integrated_gradients"
    arguments = [str(data), "--output", str(output), "--model", str(tiny_folder), *FAST, "--methods", methods,
                 "--trust", "--chunk-size", "2"]
    assert batch.main(arguments) == 0

    results, errors = results_of(output), errors_of(output)
    assert [row["id"] for row in results] == [10, 12, 16, 18]
    assert [row["id"] for row in errors] == [11, 13, 14, 5, 17]  # the bad line keeps its row number
    messages = {row["id"]: row["error"] for row in errors}
    assert "prompt is empty" in messages[11]
    assert "out of range" in messages[13]
    assert "the limit is 24 tokens" in messages[14]
    assert "not valid JSON" in messages[5] and "no prompt" in messages[17]
    for row in results:
        for method in methods.split(","):
            assert len(row[f"scores_{method}"]) == len(row["input_tokens"]) == len(row["input_ids"])
    assert results[1]["target_text"] == " Tallinn" and results[2]["foil_text"] == " Paris"

    # The summary's numbers are the results' own: means of the columns, inside their intervals.
    summary = summarize(pq.read_table(output / "results.parquet"), len(errors))
    for item in summary.methods:
        column = np.array([row[f"comprehensiveness_{item.method}"] for row in results])
        assert item.comprehensiveness.mean == pytest.approx(column.mean(), rel=1e-12, abs=1e-15)
        assert item.comprehensiveness.low <= item.comprehensiveness.mean <= item.comprehensiveness.high
        shares = [share.mean_share for share in item.top_tokens]
        assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1 + 1e-9
        assert "<|begin_of_text|>" not in {share.token for share in item.top_tokens}
    assert summary.completeness == pytest.approx([row["ig_completeness_error"] for row in results], rel=1e-12)
    markdown = (output / "summary.md").read_text(encoding="utf-8")
    assert "Faithfulness" in markdown and "Rows analysed: 4; failed: 5" in markdown
    assert (output / "summary.png").read_bytes().startswith(b"\x89PNG")

    # Run again: nothing done is recomputed (failed rows are retried), and each id is still listed once.
    done_before = {path.name for path in output.glob("part-*.parquet")}
    assert batch.main(arguments) == 0
    redone = [record["id_json"] for path in output.glob("part-*.parquet") if path.name not in done_before
              for record in pq.read_table(path).to_pylist()]
    assert sorted(redone) == sorted(json.dumps(row["id"]) for row in errors)
    assert results_of(output) == results
    assert errors_of(output) == errors


def test_scores_equal_the_cli_json(tiny_folder, tmp_path):
    methods = "gradient,attention,integrated_gradients,occlusion"
    rows = [
        {"id": "seed", "prompt": SEED_PROMPT, "target": "", "contrast": ""},
        {"id": "riga", "prompt": SEED_PROMPT, "target": " Riga", "contrast": " Tallinn"},
        {"id": "second", "prompt": "What is the Capital City of Estonia?", "target": "2", "contrast": ""},
    ]
    data = tmp_path / "rows.csv"
    with data.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "prompt", "target", "contrast"])
        writer.writeheader()
        writer.writerows(rows)
    output = tmp_path / "out"
    flags = ["--model", str(tiny_folder), *FAST, "--methods", methods, "--baseline", "pad", "--aggregation", "sum"]
    assert batch.main([str(data), "--output", str(output), *flags]) == 0
    results = {row["id"]: row for row in results_of(output)}
    assert set(results) == {"seed", "riga", "second"}

    for row in rows:
        json_path = tmp_path / f"{row['id']}.json"
        per_row = [*(["--target", row["target"]] if row["target"] else []),
                   *(["--contrast", row["contrast"]] if row["contrast"] else [])]
        assert cli.main([row["prompt"], *flags, *per_row, "--json", str(json_path)]) == 0
        expected = json.loads(json_path.read_text(encoding="utf-8"))
        got = results[row["id"]]
        assert got["input_tokens"] == expected["input_tokens"] and got["input_ids"] == expected["input_ids"]
        assert got["target_id"] == expected["target"]["id"] and got["generated_text"] == expected["generated_text"]
        for method in methods.split(","):
            np.testing.assert_allclose(got[f"scores_{method}"], expected["methods"][method]["scores"],
                                       rtol=1e-9, atol=1e-12)
        ig = expected["methods"]["integrated_gradients"]
        assert got["ig_completeness_error"] == pytest.approx(ig["relative_completeness_error"], rel=1e-9, abs=1e-12)
        assert got.get("foil_id") == expected.get("contrast", {}).get("foil", {}).get("id")


def test_two_processes_give_the_rows_and_scores_of_one(tmp_path):
    data = write_jsonl(tmp_path / "rows.jsonl", capital_prompts(10))
    flags = ["--model", str(DEMO_MODEL_PATH), "--steps", "16", "--max-new-tokens", "4", "--trust", "--chunk-size", "2"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert batch.main([str(data), "--output", str(one), *flags]) == 0
    completed = run_module(str(data), "--output", str(two), *flags, processes=2)
    assert completed.returncode == 0, completed.stderr[-3000:]

    # Both ranks wrote parts, with disjoint ids.
    by_rank: dict[str, set] = {}
    for path in two.glob("part-*.parquet"):
        by_rank.setdefault(path.name.split("-")[1], set()).update(pq.read_table(path)["id_json"].to_pylist())
    assert sorted(by_rank) == ["r00000", "r00001"] and not by_rank["r00000"] & by_rank["r00001"]

    expected, got = results_of(one), results_of(two)
    assert [row["id"] for row in got] == [row["id"] for row in expected] == [f"q{index}" for index in range(10)]
    for left, right in zip(got, expected):
        assert left["input_tokens"] == right["input_tokens"] and left["target_id"] == right["target_id"]
        for key, value in right.items():
            if isinstance(value, float):
                assert left[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
            elif isinstance(value, list) and value and isinstance(value[0], float):
                np.testing.assert_allclose(left[key], value, rtol=1e-6, atol=1e-9, err_msg=key)


def test_a_killed_run_restarted_on_two_processes_ends_with_every_row_once(tiny_folder, tmp_path):
    rows = capital_prompts(60)
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    output = tmp_path / "out"
    flags = ["--output", str(output), "--model", str(tiny_folder), "--steps", "64", "--max-new-tokens", "3",
             "--trust", "--chunk-size", "1"]
    process = subprocess.Popen([sys.executable, "-m", "attribution.batch", str(data), *flags], cwd=REPO_ROOT,
                               env=module_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(output.glob("part-*.parquet")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    assert not (output / "results.parquet").exists()  # killed mid-run, not after it
    survivors = part_records(output)
    done = {record["id_json"] for record in survivors}
    assert 0 < len(done) < len(rows) and len(done) == len(survivors)

    completed = run_module(str(data), *flags, processes=2)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert [row["id"] for row in results_of(output)] == [row["id"] for row in rows]
    assert errors_of(output) == []
    records = part_records(output)
    computed = [record["id_json"] for record in records]
    assert len(computed) == len(set(computed)) == len(rows)  # nothing done before the kill was redone
    assert not list(output.glob(".*.tmp-*"))


def test_sigterm_saves_the_rows_finished_in_the_chunk_in_progress(tiny_folder, tmp_path):
    """torchrun stops the other processes with SIGTERM when one fails: their finished rows are kept."""
    data = write_jsonl(tmp_path / "rows.jsonl", capital_prompts(400))
    output = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "attribution.batch", str(data), "--output", str(output), "--model", str(tiny_folder),
         "--steps", "64", "--max-new-tokens", "3", "--trust", "--chunk-size", "100000"],
        cwd=REPO_ROOT, env=module_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Wait for the event itself: the progress bar (on stderr) reports at least one of the 400 rows finished,
    # so the chunk in progress holds finished rows that no part has written yet (one chunk holds them all).
    stderr_chunks: list[str] = []
    rows_finished = threading.Event()

    def read_stderr() -> None:
        for chunk in iter(lambda: os.read(process.stderr.fileno(), 4096), b""):
            stderr_chunks.append(chunk.decode("utf-8", errors="replace"))
            if re.search(r"\b[1-9]\d*/400\b", "".join(stderr_chunks)):
                rows_finished.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        finished = rows_finished.wait(timeout=300)
        assert finished and process.poll() is None, "".join(stderr_chunks)[-2000:]
        assert not list(output.glob("part-*.parquet"))  # nothing written before the signal
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=60)
        reader.join(timeout=60)
    stderr = "".join(stderr_chunks)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    saved = part_records(output)
    assert 0 < len(saved) < 400 and not (output / "results.parquet").exists()
    assert len({record["id_json"] for record in saved}) == len(saved)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_input_formats_read_the_same_rows(tmp_path, suffix):
    records = [
        {"id": "a", "prompt": SEED_PROMPT, "target": "3", "contrast": None, "system": None},
        {"id": "b", "prompt": "What is the Capital City of Estonia?", "target": " Tallinn", "contrast": " Riga",
         "system": "Answer in one word."},
        {"id": None, "prompt": "", "target": None, "contrast": None, "system": None},
    ]
    path = tmp_path / f"rows{suffix}"
    if suffix == ".jsonl":
        write_jsonl(path, records)
    elif suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(records), path)
    else:
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
    table = read_input(path)
    assert [row.id for row in table.rows] == ["a", "b", 2]  # no id: the row number
    assert [row.prompt for row in table.rows] == [record["prompt"] for record in records]
    assert [dict(row.overrides) for row in table.rows] == [
        {"target": 3}, {"target": " Tallinn", "contrast": " Riga", "system": "Answer in one word."}, {}]


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tiny_folder, tmp_path, capsys):
    good = write_jsonl(tmp_path / "good.jsonl", [{"prompt": SEED_PROMPT}])
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not a parquet file")
    no_prompt = tmp_path / "no_prompt.csv"
    no_prompt.write_text("id,text\n1,hello\n", encoding="utf-8")
    duplicated = write_jsonl(tmp_path / "duplicated.jsonl", [{"id": 1, "prompt": "a"}, {"id": 1, "prompt": "b"}])
    folder_input = tmp_path / "folder.jsonl"
    folder_input.mkdir()
    a_file = tmp_path / "a_file"
    a_file.write_text("", encoding="utf-8")
    model = ["--model", str(tiny_folder), *FAST]
    cases = [
        ([str(tmp_path / "missing.jsonl")], "does not exist"),
        ([str(folder_input)], "not a file"),
        ([str(garbage)], "cannot read INPUT"),
        ([str(tmp_path / "rows.txt")], ".jsonl, .csv, .parquet"),
        ([str(no_prompt)], "no 'prompt' column"),
        ([str(duplicated)], "ids must be unique"),
        ([str(good), "--methods", "gradient,shap"], "valid choices"),
        ([str(good), "--baseline", "ones"], "valid choices"),
        ([str(good), "--preset", "no-such-preset"], "preset"),
        ([str(good), "--model", str(tmp_path / "no-model")], "no model folder"),
    ]
    for arguments, message in cases:
        output = tmp_path / "never"
        status = batch.main([arguments[0], "--output", str(output), *model, *arguments[1:]])
        error = capsys.readouterr().err.strip()
        assert status == 2, arguments
        assert error.startswith("error: ") and "\n" not in error and message in error, (arguments, error)
        assert not output.exists()
    assert batch.main([str(good), "--output", str(a_file), *model]) == 2
    assert "not a folder" in capsys.readouterr().err

    # A folder holding another run's settings is refused before anything in it changes.
    output = tmp_path / "out"
    assert batch.main([str(good), "--output", str(output), *model]) == 0
    before = {path.name: path.stat().st_mtime_ns for path in output.iterdir()}
    capsys.readouterr()
    assert batch.main([str(good), "--output", str(output), *model, "--steps", "9"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "other settings" in error and "n_steps: 8 there, 9 now" in error
    assert {path.name: path.stat().st_mtime_ns for path in output.iterdir()} == before


def test_processes_get_their_own_gpus():
    def assigned(device_count: int, **environ: str) -> str | None:
        batch.assign_gpus(environ, device_count)
        return environ.get("CUDA_VISIBLE_DEVICES")

    assert assigned(8, LOCAL_RANK="1", LOCAL_WORLD_SIZE="2") == "4,5,6,7"  # device_map="auto" over 4 GPUs
    assert assigned(0, LOCAL_RANK="1", LOCAL_WORLD_SIZE="2", CUDA_VISIBLE_DEVICES="3,5") == "5"
    assert assigned(4, LOCAL_RANK="3", LOCAL_WORLD_SIZE="4") == "3"
    assert assigned(2, LOCAL_RANK="3", LOCAL_WORLD_SIZE="4") == "1"  # more processes than GPUs: shared
    assert assigned(8) is None  # not launched by torchrun: every GPU stays visible
    assert assigned(0, LOCAL_RANK="0", LOCAL_WORLD_SIZE="2") is None  # no GPU


def test_mean_interval_matches_the_normal_interval_on_a_large_sample():
    sample = np.random.default_rng(7).exponential(size=4000)
    interval = mean_interval(sample.tolist() + [None, float("nan")])  # missing values are left out
    half_width = 1.96 * sample.std(ddof=1) / np.sqrt(sample.size)
    assert interval.n == sample.size and interval.mean == pytest.approx(sample.mean(), rel=1e-12)
    assert interval.mean - interval.low == pytest.approx(half_width, rel=0.15)
    assert interval.high - interval.mean == pytest.approx(half_width, rel=0.15)
    assert mean_interval([None]) is None
