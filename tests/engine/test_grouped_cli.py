"""--granularity and --separator in the CLI and the dataset mode: the table, the JSON and the CSV per
group, the dataset's grouped columns equal to the CLI's groups, and the refusals."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow.parquet as pq

from attribution import __main__ as cli
from attribution import batch

PROMPT = "Paris is in France. Berlin is in Germany. The capital of"
FLAGS = ["--steps", "8", "--max-new-tokens", "2", "--methods", "gradient,integrated_gradients,occlusion",
         "--aggregation", "sum"]


def test_cli_table_json_and_csv_per_sentence(tiny_folder, tmp_path, run_main):
    json_path, csv_path = tmp_path / "out.json", tmp_path / "out.csv"
    status, out, err = run_main(PROMPT, "--model", str(tiny_folder), *FLAGS, "--granularity", "sentence",
                                "--json", str(json_path), "--csv", str(csv_path))
    assert status == 0, err
    assert "'Paris is in France.'" in out and "'Berlin is in Germany.'" in out
    assert "top 5 occlusion per sentence: " in out and "convergence delta" in out
    data = json.loads(json_path.read_text(encoding="utf-8"))
    labels = [group["label"] for group in data["groups"]["groups"]]
    assert labels[1:] == ["Paris is in France.", "Berlin is in Germany.", "The capital of"]
    # Grouped IG (sum) adds up to the token scores' total.
    assert np.isclose(sum(data["groups"]["scores"]["integrated_gradients"]),
                      sum(data["methods"]["integrated_gradients"]["scores"]), rtol=1e-12, atol=1e-12)
    rows = list(csv.reader(csv_path.open(encoding="utf-8")))
    assert [row[1] for row in rows[1:]] == labels
    assert rows[0] == ["sentence", "text", "first_token", "last_token", "kind", "gradient", "integrated_gradients",
                       "occlusion"]


def test_cli_refuses_a_missing_separator_and_an_unknown_granularity(tiny_folder, run_main, capsys):
    status, out, err = run_main(PROMPT, "--model", str(tiny_folder), *FLAGS, "--granularity", "segment",
                                "--separator", "###")
    assert status == 2 and err.count("\n") == 1 and "separator '###' does not occur" in err
    try:
        cli.main([PROMPT, "--granularity", "paragraph"])
    except SystemExit as exit_:
        assert exit_.code == 2
    assert "invalid choice: 'paragraph'" in capsys.readouterr().err


def test_dataset_mode_writes_grouped_columns_equal_to_the_cli(tiny_folder, tmp_path):
    data = tmp_path / "rows.jsonl"
    prompts = [PROMPT, "One passage here.\n\nAnother passage. The capital of", "No separator here"]
    data.write_text("".join(json.dumps({"id": f"r{index}", "prompt": prompt}) + "\n"
                            for index, prompt in enumerate(prompts)), encoding="utf-8")
    output = tmp_path / "out"
    flags = ["--model", str(tiny_folder), *FLAGS, "--granularity", "word"]
    assert batch.main([str(data), "--output", str(output), *flags]) == 0
    results = {row["id"]: row for row in pq.read_table(output / "results.parquet").to_pylist()}
    for index, prompt in enumerate(prompts):
        json_path = tmp_path / f"{index}.json"
        assert cli.main([prompt, *flags, "--json", str(json_path)]) == 0
        expected = json.loads(json_path.read_text(encoding="utf-8"))["groups"]
        got = results[f"r{index}"]
        assert got["group_labels"] == [group["label"] for group in expected["groups"]]
        assert got["group_tokens"] == [group["tokens"] for group in expected["groups"]]
        assert got["group_kinds"] == [group["kind"] for group in expected["groups"]]
        for method in ("gradient", "integrated_gradients", "occlusion"):
            np.testing.assert_allclose(got[f"group_scores_{method}"], expected["scores"][method], rtol=1e-9, atol=1e-12)
    # Segments by a separator that a row lacks: that row's error, the others done.
    second = tmp_path / "second"
    assert batch.main([str(data), "--output", str(second), *flags[:-1], "segment", "--separator", "passage"]) == 0
    done = {row["id"] for row in pq.read_table(second / "results.parquet").to_pylist()}
    errors = [json.loads(line) for line in (second / "errors.jsonl").read_text(encoding="utf-8").splitlines()]
    assert done == {"r1"} and len(errors) == 2
    assert all("separator 'passage' does not occur" in error["error"] for error in errors)
