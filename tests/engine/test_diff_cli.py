"""`python -m attribution diff a.json b.json [--json out.json]`: the CLI's own exports compared."""

from __future__ import annotations

import json

from attribution.diff import diff
from attribution.result_json import read_analysis
from conftest import SEED_PROMPT


def test_cli_round_trip(run_main, tiny_folder, tmp_path):
    first, second, out = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "diff.json"
    common = ["--model", str(tiny_folder), "--device", "cpu", "--max-new-tokens", "2", "--methods", "gradient,attention"]
    assert run_main(SEED_PROMPT, *common, "--json", str(first))[0] == 0
    assert run_main(SEED_PROMPT, *common, "--score", "probability", "--json", str(second))[0] == 0
    status, printed, errors = run_main("diff", str(first), str(second), "--json", str(out))
    assert status == 0, errors
    expected = diff(read_analysis(first), read_analysis(second))
    assert json.loads(out.read_text(encoding="utf-8")) == json.loads(expected.to_json())
    assert "score 'logit' → 'probability'" in printed and expected.sentence in printed
    assert "'Latvia'" in printed or "' Latvia'" in printed  # the table's rows are the units
    # The same file twice: nothing differs.
    status, printed, _errors = run_main("diff", str(first), str(first))
    assert status == 0 and "Nothing differs" in printed and not list(tmp_path.glob(".*tmp*"))


def test_cli_refuses_a_bad_file(run_main, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[]", encoding="utf-8")
    status, _printed, errors = run_main("diff", str(bad), str(bad))
    assert status == 2 and "must be a JSON object" in errors
