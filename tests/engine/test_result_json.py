"""Reading a result back from its JSON (`attribution.result_json`): the inverse of `Analysis.to_dict()`."""

from __future__ import annotations

import json

import numpy as np
import pytest

import attribution
from attribution.result_json import analysis_from_dict, read_analysis
from attribution.results import IntegratedGradientsScores
from helpers import make_chat_analysis, make_rich_analysis
from conftest import SEED_PROMPT


def _round_trip(analysis, tmp_path):
    path = tmp_path / "result.json"
    path.write_text(analysis.to_json(), encoding="utf-8")
    back = read_analysis(path)
    assert back.to_json() == analysis.to_json()  # text: NaN (no interval) equals itself there
    return back


@pytest.mark.parametrize("make", [make_rich_analysis, make_chat_analysis])
def test_hand_made_results_round_trip(make, tmp_path):
    analysis = make()
    back = _round_trip(analysis, tmp_path)
    np.testing.assert_array_equal(back.context_tokens, analysis.context_tokens)
    assert back.trust.ks == analysis.trust.ks and back.trust.completeness == analysis.trust.completeness


def test_engine_results_round_trip_with_every_part(tiny_loaded, tmp_path):
    analysis = attribution.analyze(
        tiny_loaded, SEED_PROMPT, max_new_tokens=3, target=2, contrast=" Tallinn", all_targets=True, trust=True,
        n_steps="auto", max_steps=64, aggregation="sum", methods=("gradient", "attention", "integrated_gradients"))
    back = _round_trip(analysis, tmp_path)
    ig, ig_back = analysis.methods["integrated_gradients"], back.methods["integrated_gradients"]
    assert isinstance(ig_back, IntegratedGradientsScores)
    # What the JSON keeps of IG is enough to judge it again exactly as the original.
    assert ig_back.relative_completeness_error == ig.relative_completeness_error
    assert ig_back.converged == ig.converged and ig_back.reached_target == ig.reached_target
    assert back.settings == analysis.settings and back.n_prompt_tokens == analysis.n_prompt_tokens
    np.testing.assert_array_equal(back.generated_ids, analysis.generated_ids)
    np.testing.assert_array_equal(back.methods["attention"].per_layer, analysis.methods["attention"].per_layer)


def test_l2_ig_keeps_its_completeness_error(tiny_loaded, tmp_path):
    analysis = attribution.analyze(tiny_loaded, SEED_PROMPT, max_new_tokens=1, n_steps=4,
                                   methods=("integrated_gradients",))
    back = _round_trip(analysis, tmp_path)
    assert (back.methods["integrated_gradients"].relative_completeness_error
            == analysis.methods["integrated_gradients"].relative_completeness_error)


def test_bad_files_are_refused_by_name(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="is not JSON"):
        read_analysis(path)
    with pytest.raises(ValueError, match="cannot read"):
        read_analysis(tmp_path / "missing.json")
    data = make_rich_analysis().to_dict()
    del data["input_ids"]
    with pytest.raises(ValueError, match="no 'input_ids'"):
        analysis_from_dict(data)
    data = make_rich_analysis().to_dict()
    ig = data["methods"]["integrated_gradients"]
    del ig["input_output"], ig["baseline_output"]
    with pytest.raises(ValueError, match="older version"):
        analysis_from_dict(json.loads(json.dumps(data)))


def test_grouped_span_results_with_occlusion_and_context_ablation_round_trip(tiny_loaded, tmp_path):
    analysis = attribution.analyze(
        tiny_loaded, SEED_PROMPT + " It is on the Baltic Sea.", max_new_tokens=3, target=(1, 2), granularity="word",
        methods=("gradient", "occlusion", "context_ablation"))
    assert analysis.span is not None and analysis.token_spans is not None
    back = _round_trip(analysis, tmp_path)
    assert back.span == analysis.span and back.token_spans == analysis.token_spans
    assert type(back.methods["context_ablation"]) is type(analysis.methods["context_ablation"])
    # Read back, the result regroups without the tokenizer, as the original does.
    for granularity in ("token", "word"):
        for name, values in analysis.grouped_scores(granularity).items():
            np.testing.assert_array_equal(back.grouped_scores(granularity)[name], values)
