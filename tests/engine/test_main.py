"""The CLI: table, JSON and CSV exports, and one-line errors with exit status 2."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

from conftest import REPO_ROOT, SEED_PROMPT


def run_cli(*arguments: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "attribution", *arguments],
        capture_output=True, text=True, cwd=REPO_ROOT, env=environment, timeout=300,
    )


def test_cli_prints_a_table_and_writes_json_and_csv(tiny_folder, tmp_path):
    json_path, csv_path = tmp_path / "out.json", tmp_path / "out.csv"
    completed = run_cli(
        SEED_PROMPT, "--model", str(tiny_folder), "--steps", "8", "--max-new-tokens", "3",
        "--json", str(json_path), "--csv", str(csv_path),
    )
    assert completed.returncode == 0, completed.stderr
    assert "top 5 integrated_gradients" in completed.stdout and "' Latvia'" in completed.stdout
    result = json.loads(json_path.read_text(encoding="utf-8"))
    assert set(result["methods"]) == {"gradient", "attention", "integrated_gradients"}
    rows = list(csv.DictReader(csv_path.open(encoding="utf-8")))
    assert [row["token"] for row in rows] == result["input_tokens"]
    assert [float(row["gradient"]) for row in rows] == result["methods"]["gradient"]["scores"]


def test_cli_generated_position_target(tiny_folder, tmp_path):
    json_path = tmp_path / "out.json"
    completed = run_cli(SEED_PROMPT, "--model", str(tiny_folder), "--methods", "gradient", "--target", "2",
                        "--max-new-tokens", "3", "--json", str(json_path))
    assert completed.returncode == 0, completed.stderr
    result = json.loads(json_path.read_text(encoding="utf-8"))
    assert result["target"]["position"] == len(result["input_ids"])


def test_cli_bad_input_prints_one_line_and_exits_2(tiny_folder):
    for arguments, message in [
        (["   ", "--model", str(tiny_folder)], "prompt is empty"),
        ([SEED_PROMPT, "--model", str(tiny_folder), "--methods", "gradient,shap"], "valid choices"),
        ([SEED_PROMPT, "--model", str(tiny_folder), "--steps", "0"], "n_steps must be from 1 to 1000"),
        ([SEED_PROMPT, "--model", str(tiny_folder / "missing")], "no model folder"),
    ]:
        completed = run_cli(*arguments)
        assert completed.returncode == 2
        assert message in completed.stderr
        assert "Traceback" not in completed.stderr
