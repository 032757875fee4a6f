"""Hand-made results (no model) for the tests of the figures, tables and explanations: the display
layer only ever sees these objects."""

from __future__ import annotations

import dataclasses

import numpy as np

from attribution.results import (
    Analysis,
    AnswerMap,
    AttentionScores,
    IntegratedGradientsScores,
    MethodScores,
    Prediction,
    Target,
)
from attribution.trust import Completeness, Faithfulness, TrustReport

TOKENS = ("<|begin_of_text|>", "What", " is", " the", " Capital", " City", " of", " Latvia", "?", "\n")


def make_analysis(aggregation: str = "l2", n_layers: int = 3, n_heads: int = 4) -> Analysis:
    """A hand-made result (no model): the plotting layer only ever sees these objects."""
    n = len(TOKENS)
    rng = np.random.default_rng(0)
    per_head = rng.dirichlet(np.ones(n), size=(n_layers, n_heads))  # [layers, heads, tokens]
    ig_scores = rng.normal(size=n) if aggregation == "sum" else rng.random(n)
    methods = {
        "gradient": MethodScores("gradient", rng.random(n) * 3.0),
        "attention": AttentionScores("attention", per_head.mean(axis=(0, 1)), per_layer=per_head.mean(axis=1),
                                     per_head=per_head),
        "integrated_gradients": IntegratedGradientsScores(
            "integrated_gradients", ig_scores, convergence_delta=0.02, input_output=3.0, baseline_output=1.0,
            n_steps=50, baseline="zero", aggregation=aggregation),
    }
    return Analysis(model="tiny", prompt="What is the Capital City of Latvia?\n", input_tokens=TOKENS,
                    input_ids=np.arange(n), generated_text=" Riga", generated_ids=np.array([99]),
                    target=Target(text=" Riga", id=99, position=n), methods=methods)


def tick_texts(ax) -> list[str]:
    return [label.get_text() for label in ax.get_xticklabels()]


GENERATED = (" Riga", ".", "<|end_of_text|>")


def make_answer_map(method: str = "input_x_gradient") -> AnswerMap:
    """Generated tokens × sources (the prompt, then the generated tokens but the last), causal zeros."""
    sources = TOKENS + GENERATED[:-1]
    rng = np.random.default_rng(1)
    matrix = rng.normal(size=(len(GENERATED), len(sources)))
    for row in range(len(GENERATED)):
        matrix[row, len(TOKENS) + row:] = 0.0
    return AnswerMap(method=method, targets=GENERATED, sources=sources, matrix=matrix)


def make_rich_analysis() -> Analysis:
    """make_analysis plus everything analyze(contrast=..., all_targets=True, trust=True) adds."""
    base = make_analysis()
    special = np.zeros(len(TOKENS), dtype=bool)
    special[0] = True
    names = list(base.methods)
    report = TrustReport(
        faithfulness={name: Faithfulness(comprehensiveness, sufficiency, 0.3, 0.5)
                      for name, (comprehensiveness, sufficiency) in zip(names, [(0.6, 0.2), (0.5, 0.7), (0.25, 0.6)])},
        spearman={"gradient|attention": 0.5, "gradient|integrated_gradients": -0.25},  # one pair undefined
        top3_overlap={"gradient|attention": 2 / 3, "gradient|integrated_gradients": 1 / 3,
                      "attention|integrated_gradients": 1.0},
        completeness=Completeness(0.5, 50, "zero", rerun_n_steps=100, rerun_relative_error=0.3),
        verdict="Gradient and Attention agree on 'Latvia'.", ks=(1, 2, 5),
    )
    return Analysis(model=base.model, prompt=base.prompt, input_tokens=TOKENS, input_ids=base.input_ids,
                    generated_text="".join(GENERATED[:2]), generated_ids=np.array([99, 7, 1]), target=base.target,
                    methods=base.methods, foil=Target(" Tallinn", 98, len(TOKENS)),
                    top_predictions=(Prediction(" Riga", 99, 0.9), Prediction(" Tallinn", 98, 0.031)),
                    special_tokens=special, answer_map={"input_x_gradient": make_answer_map()}, trust=report)


#: Which TOKENS make_chat_analysis pretends a chat template added (role words and the final line break).
CHAT_TEMPLATE_POSITIONS = (1, 2, 9)


def make_chat_analysis() -> Analysis:
    """make_rich_analysis as if the prompt went through a chat template: BOS is special, the tokens at
    CHAT_TEMPLATE_POSITIONS are the template's, the rest the user's."""
    base = make_rich_analysis()
    user = ~base.special_tokens
    user[list(CHAT_TEMPLATE_POSITIONS)] = False
    return dataclasses.replace(base, user_tokens=user, chat=True)
