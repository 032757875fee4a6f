"""The chat page's IG target on the real model: auto steps stop at the completeness the trust panel calls
converged, and what that stop costs in the token scores is measured against a far tighter run of the same
rule (README, "What each part costs on SmolLM2"; `scripts/measure_ig_target.py` over 12 prompts)."""

from __future__ import annotations

import numpy as np
import pytest

import attribution
from attribution.limits import COMPLETENESS_TOLERANCE
from conftest import SEED_PROMPT, SMOLLM2
from ui import inputs as ui_inputs
from ui import settings as ui_settings


def content_top(scores: np.ndarray, held: np.ndarray, k: int) -> list[int]:
    return [int(index) for index in np.argsort(-np.abs(scores) * ~held, kind="stable")[:k]]


@pytest.mark.slow
def test_the_chat_pages_ig_converges_by_the_panels_rule_and_stays_near_a_tight_run(smollm2):
    values = {**ui_settings.page_defaults(SMOLLM2, chat=True), "prompt": SEED_PROMPT}
    page = ui_inputs.page_settings(values).replace(methods=("integrated_gradients",), all_targets=False)
    analysis = attribution.analyze(smollm2, SEED_PROMPT, page)
    ig = analysis.methods["integrated_gradients"]
    check = analysis.trust.completeness
    # Converged as the panel judges it, with no rerun: the panel's figure is the page's own run.
    assert ig.relative_completeness_error <= COMPLETENESS_TOLERANCE and check.converged
    assert check.rerun_n_steps is None and check.relative_error == ig.relative_completeness_error
    # The same rule to 0.05%, on the same target: the page's scores are within 5% of it (L2, every
    # position) and rank the same content token first.
    tight = attribution.analyze(smollm2, SEED_PROMPT, page.replace(target_error=0.0005, max_steps=2000, trust=False))
    reference = tight.methods["integrated_gradients"]
    assert tight.target == analysis.target and reference.relative_completeness_error <= 0.0005
    assert reference.n_steps > ig.n_steps  # the tight run refined further: the comparison is not with itself
    held = np.asarray(analysis.held_tokens, dtype=bool)
    distance = np.linalg.norm(ig.scores - reference.scores) / np.linalg.norm(reference.scores)
    assert distance < COMPLETENESS_TOLERANCE, distance
    assert content_top(ig.scores, held, 1) == content_top(reference.scores, held, 1)
