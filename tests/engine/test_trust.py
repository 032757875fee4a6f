"""Trust panel: agreement statistics, the verdict's logic on constructed inputs, and on real analyses:
the verdict never quotes a held token (random prompts on a tiny model, real prompts on SmolLM2)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import attribution
from attribution import faithfulness as faithfulness_module
from attribution.faithfulness import Faithfulness
from attribution.results import MethodScores
from attribution.trust import Completeness, agreement, quote, rank_average, removal_counts, spearman, verdict
from conftest import SEED_PROMPT


def test_spearman_against_its_definition():
    first = np.array([0.1, 0.4, 0.3, 0.9, 0.2])
    second = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    n = len(first)
    d = rank_average(first) - rank_average(second)
    torch.testing.assert_close(spearman(first, second), 1 - 6 * float((d**2).sum()) / (n * (n**2 - 1)))
    torch.testing.assert_close(spearman(first, -first), -1.0)
    assert spearman(first, np.ones(5)) is None
    np.testing.assert_array_equal(rank_average(np.array([3.0, 1.0, 3.0])), [2.5, 1.0, 2.5])


def test_removal_counts():
    assert removal_counts(8) == (1, 2, 4)
    assert removal_counts(20) == (1, 2, 4, 10)
    assert removal_counts(1) == (1,)


def test_agreement_skips_special_tokens():
    content = np.array([False, True, True, True, True])
    methods = {
        "a": MethodScores("a", np.array([9.0, 1.0, 2.0, 3.0, 4.0])),
        "b": MethodScores("b", np.array([0.0, 1.0, 2.0, 3.0, 4.0])),
        "c": MethodScores("c", np.array([9.0, 4.0, 3.0, 2.0, 1.0])),
    }
    rank_correlation, overlap = agreement(methods, content)
    torch.testing.assert_close(rank_correlation["a|b"], 1.0)
    torch.testing.assert_close(rank_correlation["a|c"], -1.0)
    assert overlap["a|b"] == 1.0 and overlap["a|c"] == pytest.approx(2 / 3)  # {4, 3, 2} ∩ {1, 2, 3}


# --- The verdict's logic on constructed inputs ---------------------------------------------------------

TOKENS = ("<s>", "What", " is", " Latvia", "?", " The")
HELD = np.array([True, False, False, False, False, False])
TYPED = np.array([False, True, True, True, True, False])  # " The" was generated before the target
RANDOM = dict(random_comprehensiveness=0.2, random_sufficiency=0.3, random_comprehensiveness_interval=(0.15, 0.25),
              random_sufficiency_interval=(0.25, 0.35), random_orders=16)
INSIDE = dict(comprehensiveness=0.24, sufficiency=0.26)  # within the random interval on both measures
COMPREHENSIVE = dict(comprehensiveness=0.5, sufficiency=0.3)  # beats random on comprehensiveness only
BOTH = dict(comprehensiveness=0.4, sufficiency=0.1)  # beats random on both


def scores(top: int) -> MethodScores:
    """The held start token scores highest (as an attention sink would), then position `top`."""
    values = np.array([10.0, 1.0, 2.0, 1.5, 0.5, 0.2])
    values[top] = 5.0
    return MethodScores("m", values)


def quoted_tokens(text: str) -> list[str]:
    return re.findall(r"“([^”]*)”", text)


def test_verdict_says_no_method_beats_random_when_no_interval_is_beaten():
    methods = {"gradient": scores(3), "attention": scores(3)}
    report = {name: Faithfulness(**INSIDE, **RANDOM) for name in methods}
    result = verdict(TOKENS, methods, ~HELD, report, None, quotable=TYPED)
    assert result.evidence == "none"
    assert result.text.startswith("No method beats random here")
    assert result.positions == () and quoted_tokens(result.text) == []  # no token is named on no evidence


def test_verdict_cites_the_methods_that_beat_random_and_quotes_their_typed_token():
    methods = {"gradient": scores(3), "attention": scores(3), "occlusion": scores(1)}
    report = {"gradient": Faithfulness(**BOTH, **RANDOM), "attention": Faithfulness(**BOTH, **RANDOM),
              "occlusion": Faithfulness(**INSIDE, **RANDOM)}
    result = verdict(TOKENS, methods, ~HELD, report, None, quotable=TYPED)
    assert result.evidence == "clear"
    assert "Gradient and Attention beat random token orders" in result.text
    assert "Occlusion" not in result.text  # it did not beat random
    assert result.positions == (3,) and quoted_tokens(result.text) == ["Latvia"]


def test_verdict_says_when_the_evidence_is_weak():
    methods = {"gradient": scores(3), "attention": scores(2)}
    report = {"gradient": Faithfulness(**COMPREHENSIVE, **RANDOM), "attention": Faithfulness(**INSIDE, **RANDOM)}
    result = verdict(TOKENS, methods, ~HELD, report, None, quotable=TYPED)
    assert result.evidence == "weak" and "the evidence is weak" in result.text.lower()
    assert result.positions == (3,)


def test_verdict_never_quotes_a_token_the_user_did_not_type():
    generated_top = {"gradient": scores(5), "attention": scores(5)}  # " The": content, but generated
    report = {name: Faithfulness(**BOTH, **RANDOM) for name in generated_top}
    result = verdict(TOKENS, generated_top, ~HELD, report, None, quotable=TYPED)
    assert 5 not in result.positions and 0 not in result.positions
    assert all(TYPED[position] for position in result.positions) and result.positions
    assert "The" not in quoted_tokens(result.text) and "<s>" not in quoted_tokens(result.text)


@pytest.mark.parametrize("converged", [False, True])
def test_verdict_cites_integrated_gradients_only_when_it_converged(converged):
    methods = {"integrated_gradients": scores(2), "gradient": scores(3), "attention": scores(3)}
    best = dict(comprehensiveness=0.9, sufficiency=0.0)  # IG's tokens would be the most faithful
    report = {"integrated_gradients": Faithfulness(**best, **RANDOM), "gradient": Faithfulness(**BOTH, **RANDOM),
              "attention": Faithfulness(**BOTH, **RANDOM)}
    error = 0.01 if converged else 0.4
    check = Completeness(relative_error=error, n_steps=50, baseline="pad", rerun_n_steps=None if converged else 100,
                         rerun_relative_error=None if converged else error)
    result = verdict(TOKENS, methods, ~HELD, report, check, quotable=TYPED)
    assert ("Integrated Gradients" in result.text) == converged
    assert ("IG did not converge" in result.text) == (not converged)
    # The most faithful cited method's possessive: "Integrated Gradients' top tokens", never "Gradients's".
    assert ("removing Integrated Gradients' top tokens" in result.text) == converged and "s's " not in result.text
    if not converged:  # the citable methods agree on " Latvia"; IG's " is" is not quoted
        assert result.positions == (3,)


# --- Real analyses -----------------------------------------------------------------------------------

def check_report(analysis) -> None:
    """The verdict quotes only typed, non-held tokens, and each one it names appears in its text."""
    trust = analysis.trust
    record = analysis.to_dict()
    assert record["verdict"] == trust.verdict and record["verdict_positions"] == list(trust.verdict_positions)
    assert record["evidence"] in ("none", "weak", "clear")
    for position in trust.verdict_positions:
        assert not analysis.held_tokens[position]
        assert quote(analysis.input_tokens[position]) in trust.verdict
    for item in record["faithfulness"].values():
        low, high = item["random_comprehensiveness_interval"]
        assert low <= item["random_comprehensiveness"] <= high
        assert item["removal"] == faithfulness_module.DEFAULT_REMOVAL


WORDS = ["What", "is", "the", "Capital", "City", "of", "Latvia", "?", "Riga", "France", "7", ",", "<|end_of_text|>"]


@settings(max_examples=8, deadline=None)
@given(words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=9))
def test_verdict_never_quotes_a_held_token_on_random_prompts(tiny_loaded, words):
    """Random prompts, some with a special token in the middle (held like the first position)."""
    analysis = attribution.analyze(tiny_loaded, " ".join(words), methods=["gradient", "attention", "occlusion"],
                                   max_new_tokens=0, trust=True)
    check_report(analysis)


def test_trust_panel_is_finite_and_deterministic(tiny_loaded):
    settings = dict(methods=list(attribution.METHODS), max_new_tokens=2, n_steps=8, trust=True)
    first = attribution.analyze(tiny_loaded, SEED_PROMPT, **settings).to_dict()
    second = attribution.analyze(tiny_loaded, SEED_PROMPT, **settings).to_dict()
    assert first["faithfulness"] == second["faithfulness"] and first["agreement"] == second["agreement"]
    assert first["verdict"] == second["verdict"] and first["verdict"].endswith(".")
    for item in first["faithfulness"].values():
        numbers = [item[key] for key in ("comprehensiveness", "sufficiency", "random_comprehensiveness",
                                         "random_sufficiency")]
        numbers += [*item["random_comprehensiveness_interval"], *item["random_sufficiency_interval"]]
        assert all(math.isfinite(value) for value in numbers)
    assert set(first["faithfulness"]) == set(attribution.METHODS)
    completeness = first["completeness"]
    if completeness["relative_error"] > 0.05:
        assert completeness["rerun_n_steps"] == 16
    else:
        assert completeness["rerun_n_steps"] is None


@pytest.fixture(scope="module")
def real_analyses(smollm2):
    """A raw prompt (the issue's: the first word is the attention sink) and a chat question explained
    at its 3rd generated token (so generated tokens are content but not typed), with every removed row
    recorded."""
    recorded = []
    original = faithfulness_module.removed_log_probabilities

    def record(loaded, request, hidden, removal=faithfulness_module.DEFAULT_REMOVAL):
        recorded.append(np.asarray(hidden, dtype=bool).copy())
        return original(loaded, request, hidden, removal)

    settings = dict(methods=["gradient", "attention"], trust=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(faithfulness_module, "removed_log_probabilities", record)
        analyses = [
            attribution.analyze(smollm2, "The capital city of Latvia is", target=" Rig", max_new_tokens=0, **settings),
            attribution.analyze(smollm2, "What is the Capital City of Latvia?", chat=True, target=3, max_new_tokens=3,
                                **settings),
        ]
    return analyses, recorded


def test_real_model_faithfulness_never_removes_held_context(real_analyses):
    analyses, recorded = real_analyses
    assert len(recorded) == len(analyses)
    for analysis, hidden in zip(analyses, recorded):
        assert analysis.held_tokens[0]  # the first position is held on a model without BOS
        assert hidden.shape[1] == analysis.n_tokens and hidden.any()
        assert not hidden[:, analysis.held_tokens].any()


def test_real_model_verdict_quotes_only_typed_tokens(real_analyses):
    analyses, _ = real_analyses
    for analysis in analyses:
        check_report(analysis)
        # With the user's tokens given, the verdict quotes only those (the engine's own call may pass them).
        content = ~analysis.held_tokens
        trust = analysis.trust
        typed = verdict(analysis.input_tokens, analysis.methods, content, trust.faithfulness, trust.completeness,
                        quotable=analysis.user_tokens)
        assert all(analysis.user_tokens[position] and not analysis.held_tokens[position]
                   for position in typed.positions)
        assert typed.evidence == trust.evidence
