"""Smoke test of benchmarks/: every module imports, and every kind of measurement runs on the demo
model with the cheapest settings (the full `python benchmarks/run.py` takes ~16 minutes, `--quick`
about 4 on quiet cores): one comparison through the real worker subprocess, each scaling case in
this process, and the report and plot rendered from their results."""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
from pathlib import Path

import pytest

import attribution
import benchmarks
from benchmarks import models as bench_models
from benchmarks.plan import TOLERANCES

CHEAP = {"model": "demo", "n_steps": 4, "max_new_tokens": 2, "threads": None}


def test_every_module_imports():
    names = [info.name for info in pkgutil.iter_modules(benchmarks.__path__)]
    assert {"plan", "worker", "project", "peers", "hardware", "summary", "report", "plots", "run"} <= set(names)
    for name in names:
        importlib.import_module(f"benchmarks.{name}")


def test_quick_plan_covers_every_case_kind():
    from benchmarks.run import parse_args
    from benchmarks.plan import plan_runs

    comparisons, cases = plan_runs(parse_args(["--quick"]))
    assert [c["label"] for c in comparisons] == ["tiny", "demo", "demo, 1 thread"]
    assert {c["kind"] for c in cases} == {"analyze", "notebook", "ig", "answer_map", "answer_map_loop"}


@pytest.fixture(scope="module")
def case_results():
    from benchmarks.worker import worker_case

    folder = str(attribution.DEMO_MODEL_PATH)
    specs = [
        {**CHEAP, "group": "length", "kind": "analyze", "prompt_tokens": 8},
        {**CHEAP, "group": "length", "kind": "notebook", "prompt_tokens": 8},
        {**CHEAP, "group": "steps", "kind": "ig", "prompt_tokens": 8, "n_steps": 16, "max_new_tokens": 1},
        {**CHEAP, "group": "memory", "kind": "ig", "prompt_tokens": 8, "max_new_tokens": 1, "sample_batches": 1},
        {**CHEAP, "group": "answer_map", "kind": "answer_map_loop", "prompt_tokens": 8, "n_targets": 2},
        {**CHEAP, "group": "answer_map", "kind": "answer_map", "prompt_tokens": 8, "n_targets": 2},
    ]
    return [worker_case({**spec, "folder": folder}) for spec in specs]


def test_every_case_kind_measures(case_results):
    for result in case_results:
        assert "error" not in result and "unavailable" not in result, result
        assert result["n_tokens"] == 8
        assert result["seconds"]["total"] > 0 and result["peak_rss_bytes"] > 0
    answer_map = case_results[-1]
    assert set(answer_map["check"]) == {"target 1", "target 1 beyond", "target 2", "target 2 beyond"}
    assert max(answer_map["check"][key] for key in ("target 1", "target 2")) <= TOLERANCES["integrated_gradients"]
    assert answer_map["check"]["target 1 beyond"] == answer_map["check"]["target 2 beyond"] == 0.0


def test_ig_sampling_keeps_the_engines_batch(monkeypatch):
    """`sample_batches` runs IG with fewer steps in batches of the size the engine picks for IG-n_steps:
    with batches of 4 rows forced, IG-8 (10 rows) is 3 batches; one batch's worth of steps (IG-4,
    6 rows) runs as 2 of them, and the time is scaled by 3/2."""
    from benchmarks.project import ig_alone, load_project

    monkeypatch.setenv("ATTRIBUTION_BATCH_SIZE", "4")
    loaded = load_project(attribution.DEMO_MODEL_PATH)
    seconds, notes = ig_alone(loaded, bench_models.SEED_PROMPT, 9, 8, sample_batches=1)
    assert notes["ig_batch_size"] == 4
    assert notes["sampled"] == {**notes["sampled"], "steps_run": 4, "batches_run": 2, "batches_total": 3}
    assert seconds["integrated_gradients"] == pytest.approx(1.5 * notes["sampled"]["seconds_run"])


def test_comparison_in_a_worker_process_and_the_report(tmp_path, case_results):
    """`run.py` with one cheap comparison: the worker subprocess, the raw JSON, RESULTS.md and
    scaling.png; then `--from-json` with `--merge-json` pools the same runs again."""
    from transformers.utils import logging as transformers_logging

    from benchmarks import run

    output, raw = tmp_path / "RESULTS.md", tmp_path / "raw.json"
    common = ["--models", "demo", "--threads", "1", "--no-scaling", "--no-inseq", "--repeats", "1",
              "--output", str(output), "--json", str(raw)]
    try:
        assert run.main(common) == 0
    finally:
        transformers_logging.enable_progress_bar()  # main() turns them off for the whole process
    report = json.loads(raw.read_text())
    (comparison,) = report["comparisons"]
    assert "error" not in comparison, comparison
    assert all(check["ok"] for check in comparison["checks"])
    assert "| demo |" in output.read_text()

    # The same report with this module's scaling cases in it: every table and the plot.
    report["cases"] = case_results
    raw.write_text(json.dumps(report))
    assert run.main([*common, "--from-json", str(raw), "--merge-json", str(raw)]) == 0
    text = output.read_text()
    for heading in ("## Targets", "## Scaling with prompt length", "## Integrated Gradients: steps",
                    "## Answer map"):
        assert heading in text
    assert "attribution.answer_map" in text and "![time vs prompt length](scaling.png)" in text
    assert (tmp_path / "scaling.png").stat().st_size > 0
    assert "Pooled into the rows of the same model" in text


def test_public_api_only():
    """The benchmark reaches the project through `attribution`'s public names and `attribution.testing`."""
    for path in Path(benchmarks.__path__[0]).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("attribution."):
                assert node.module == "attribution.testing", f"{path.name} imports {node.module}"


def test_long_prompt_documents_and_table(chat_folder):
    """benchmarks/long_prompts.py: the document prompt has about the asked length with the chat template,
    and the table marks estimated cells."""
    from transformers import AutoTokenizer

    from benchmarks.long_prompts import document_prompt, estimate_occlusion, table

    tokenizer = AutoTokenizer.from_pretrained(chat_folder)
    for n_tokens in (120, 400):
        prompt = document_prompt(tokenizer, n_tokens)
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                                 tokenize=False)
        length = len(tokenizer(rendered, add_special_tokens=False)["input_ids"])
        assert n_tokens - 80 < length <= n_tokens and prompt.endswith("Answer in one word.")
    measured = {"cell": "occlusion", "tokens": 250, "seconds": 10.0, "cpu_seconds": 9.0, "peak_bytes": 2**30,
                "growth_bytes": 2**29, "stages": {"generate": {"seconds": 1.0, "cpu_seconds": 1.0},
                                                  "occlusion": {"seconds": 9.0, "cpu_seconds": 8.0}},
                "load": (1.0, 1.0, 1.0)}
    estimated = estimate_occlusion(measured, 1000)
    assert estimated["cpu_seconds"] == pytest.approx(9.0 * 16)
    ablation = dict(measured, cell="context-ablation", groups=9, ablations=32,
                    stages={"generate": {"seconds": 1.0, "cpu_seconds": 1.0},
                            "context_ablation": {"seconds": 9.0, "cpu_seconds": 7.0}})
    text = table([measured, estimated, ablation])
    assert "occlusion 8.0 s" in text and "estimated from 250 tokens" in text
    assert "context_ablation 7.0 s (9 sentences, 32 ablations)" in text


def test_long_prompt_cells_are_valid_settings():
    """Every cell of benchmarks/long_prompts.py is settings `analyze` accepts (a misspelt method or
    granularity would fail only after loading the model, in a worker)."""
    from attribution import Settings
    from benchmarks.long_prompts import CELLS

    for cell, settings in CELLS.items():
        Settings(**settings)  # raises ValueError naming the valid choices
    assert CELLS["context-ablation"]["granularity"] == "sentence"
