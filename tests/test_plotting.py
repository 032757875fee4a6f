"""attribution.plotting: pure functions from results to Figures, highlighted text and explanations."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.figure import Figure

import attribution
from attribution import plotting
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


def test_token_labels_show_whitespace_and_escape_mathtext():
    assert plotting.token_label(" Capital") == "␣Capital"
    assert plotting.token_label("\n") == "↵"
    assert plotting.token_label("\t") == "⇥"
    assert plotting.token_label("") == "∅"
    assert plotting.token_label("$x$") == "$x$"  # plain in tables; escaped only inside figures
    assert plotting.token_label("x" * 40).endswith("…")
    assert "Ġ" not in plotting.token_label(" the")
    assert plotting.quoted_token(" Riga") == '" Riga"'
    assert plotting.quoted_token("\n") == '"↵"'


@pytest.mark.parametrize("name", ["gradient", "attention", "integrated_gradients"])
def test_bar_figure_has_one_bar_and_one_labelled_tick_per_token(name):
    analysis = make_analysis()
    figure = plotting.bar_figure(analysis, name)
    assert isinstance(figure, Figure)
    (ax,) = figure.axes
    assert len(ax.patches) == len(TOKENS)
    assert tick_texts(ax) == [plotting.token_label(token) for token in TOKENS]
    assert all(label.get_rotation() == 45 for label in ax.get_xticklabels())
    assert '" Riga"' in ax.get_title()
    assert plotting.method_label(name) in ax.get_title()
    heights = [patch.get_height() for patch in ax.patches]
    np.testing.assert_allclose(heights, analysis.methods[name].scores)


def test_signed_bars_colour_negative_scores_differently():
    analysis = make_analysis(aggregation="sum")
    ax = plotting.bar_figure(analysis, "integrated_gradients").axes[0]
    scores = analysis.methods["integrated_gradients"].scores
    colours = {tuple(patch.get_facecolor()[:3]) for patch, value in zip(ax.patches, scores) if value < 0}
    positive = {tuple(patch.get_facecolor()[:3]) for patch, value in zip(ax.patches, scores) if value >= 0}
    assert colours and positive and colours.isdisjoint(positive)


def test_dollar_tokens_are_not_read_as_mathtext():
    tokens = ("<s>", " costs", " $", "5", " or", " $x$")
    scores = {"gradient": MethodScores("gradient", np.arange(len(tokens), dtype=float))}
    analysis = Analysis(model="m", prompt="p", input_tokens=tokens, input_ids=np.arange(len(tokens)),
                        generated_text="", generated_ids=np.array([], dtype=int),
                        target=Target("$", 3, len(tokens)), methods=scores)
    figure = plotting.bar_figure(analysis, "gradient")
    figure.savefig(io.BytesIO(), format="png")  # mathtext would fail or swallow the dollars
    assert tick_texts(figure.axes[0])[-1] == r"␣\$x\$"


def test_long_prompts_thin_the_tick_labels():
    n = 150
    tokens = tuple(f" t{i}" for i in range(n))
    scores = {"gradient": MethodScores("gradient", np.linspace(0.0, 1.0, n))}
    analysis = Analysis(model="m", prompt="p", input_tokens=tokens, input_ids=np.arange(n), generated_text="",
                        generated_ids=np.array([], dtype=int), target=Target("x", 1, n), methods=scores)
    ax = plotting.bar_figure(analysis, "gradient").axes[0]
    assert len(ax.patches) == n
    assert len(tick_texts(ax)) <= plotting.MAX_TICK_LABELS


def test_layer_heatmap_is_layers_by_tokens_in_ylorrd():
    analysis = make_analysis(n_layers=3)
    figure = plotting.layer_heatmap_figure(analysis, "attention")
    ax = figure.axes[0]
    (image,) = ax.get_images()
    assert image.get_array().shape == (3, len(TOKENS))
    assert image.get_cmap().name == "YlOrRd"
    assert [label.get_text() for label in ax.get_yticklabels()] == ["Layer 0", "Layer 1", "Layer 2"]
    assert tick_texts(ax) == [plotting.token_label(token) for token in TOKENS]
    assert '" Riga"' in ax.get_title()


def test_head_heatmap_draws_every_head_of_the_chosen_layer():
    analysis = make_analysis(n_layers=3, n_heads=4)
    per_head = analysis.methods["attention"].per_head
    ax = plotting.head_heatmap_figure(TOKENS, per_head.tolist(), 2, " Riga").axes[0]
    (image,) = ax.get_images()
    np.testing.assert_allclose(image.get_array(), per_head[2])
    assert "layer 2" in ax.get_title()
    with pytest.raises(ValueError, match="out of range"):
        plotting.head_heatmap_figure(TOKENS, per_head, 3, " Riga")


def test_comparison_heatmap_is_min_max_normalised_and_annotated():
    analysis = make_analysis()
    ax = plotting.comparison_heatmap_figure(analysis).axes[0]
    (image,) = ax.get_images()
    matrix = np.asarray(image.get_array())
    assert matrix.shape == (3, len(TOKENS))
    assert image.get_cmap().name == "RdYlGn"
    np.testing.assert_allclose(matrix[0], attribution.normalize_min_max(analysis.methods["gradient"].scores))
    assert len(ax.texts) == matrix.size
    assert ax.texts[0].get_text() == f"{matrix[0, 0]:.2f}"
    assert [label.get_text() for label in ax.get_yticklabels()] == [
        "Gradient", "Attention", "Integrated Gradients"]
    assert '" Riga"' in ax.get_title()


def test_comparison_bars_have_one_panel_per_method():
    analysis = make_analysis()
    figure = plotting.comparison_bars_figure(analysis)
    assert len(figure.axes) == 3
    for ax in figure.axes:
        assert len(ax.patches) == len(TOKENS)
        assert max(patch.get_height() for patch in ax.patches) == pytest.approx(1.0)
    assert tick_texts(figure.axes[-1]) == [plotting.token_label(token) for token in TOKENS]
    assert '" Riga"' in figure.get_suptitle()


def test_analysis_figures_names_every_figure():
    figures = plotting.analysis_figures(make_analysis())
    assert set(figures) == {"gradient_bars", "attention_bars", "attention_layers", "integrated_gradients_bars",
                            "comparison_heatmap", "comparison_bars"}
    assert all(isinstance(figure, Figure) for figure in figures.values())


@pytest.mark.parametrize("aggregation", ["l2", "sum"])
def test_highlight_values_are_scaled_into_minus_one_one(aggregation):
    analysis = make_analysis(aggregation=aggregation)
    scores = analysis.methods["integrated_gradients"].scores
    values = plotting.highlight_values(TOKENS, scores)
    assert [token for token, _ in values] == list(TOKENS)
    numbers = np.array([value for _, value in values])
    assert np.all(numbers >= -1.0) and np.all(numbers <= 1.0)
    assert np.max(np.abs(numbers)) == pytest.approx(1.0)
    assert np.all(np.sign(numbers[np.abs(numbers) > 1e-3]) == np.sign(scores[np.abs(numbers) > 1e-3]))
    assert all(isinstance(value, float) for _, value in values)


def test_highlight_values_of_flat_scores_are_zero():
    assert plotting.highlight_values(["a", "b"], np.zeros(2)) == [("a", 0.0), ("b", 0.0)]
    with pytest.raises(ValueError):
        plotting.highlight_values(["a"], np.zeros(2))


def test_top_rows_rank_the_highest_scores():
    analysis = make_analysis()
    rows = plotting.top_rows(analysis, "gradient", k=5)
    scores = analysis.methods["gradient"].scores
    assert [row[0] for row in rows] == [1, 2, 3, 4, 5]
    assert [row[2] for row in rows] == list(np.argsort(-scores)[:5])
    assert rows[0][1] == plotting.token_label(TOKENS[int(np.argmax(scores))])


def test_convergence_summary_says_whether_the_integral_converged():
    analysis = make_analysis()
    good = plotting.convergence_summary(analysis.methods["integrated_gradients"])
    assert "2" in good and "has converged" in good and "1%" in good  # 0.02 off of 2 = 1%
    bad_result = IntegratedGradientsScores("integrated_gradients", np.ones(3), convergence_delta=-1.5,
                                           input_output=3.0, baseline_output=1.0, n_steps=10, baseline="zero")
    bad = plotting.convergence_summary(bad_result)
    assert "**not** converged" in bad and "75%" in bad and "more steps" in bad
    assert attribution.RECOMMENDED_BASELINE in bad


# --- beyond the notebook: contrast, answer map, attention sinks, trust ----------------------------

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


def test_titles_name_the_contrast_and_never_split_a_quoted_token():
    analysis = make_rich_analysis()
    title = plotting.bar_figure(analysis, "gradient").axes[0].get_title()
    assert '" Riga"' in title and 'rather than " Tallinn"' in title.replace("\n", " ")
    assert plotting.target_phrase(" Riga", " Tallinn") == 'predicting " Riga" rather than " Tallinn"'
    wrapped = plotting._wrap("A long title: " + plotting.target_phrase(" Riga", " Tallinn") + " (a note)", 3.0, 13)
    assert "\n" in wrapped and '" Riga"' in wrapped and '" Tallinn"' in wrapped
    head = plotting.head_heatmap_figure(TOKENS, analysis.methods["attention"].per_head, 0, " Riga", "Attention",
                                        " Tallinn")
    assert 'rather than " Tallinn"' in head.axes[0].get_title().replace("\n", " ")


def test_probability_and_prediction_labels():
    assert plotting.probability_text(0.31) == "31%"
    assert plotting.probability_text(0.031) == "3.1%"
    assert plotting.probability_text(0.000025) == "0.0025%"
    assert plotting.probability_text(1e-12) == "<0.0001%"
    assert plotting.prediction_label(Prediction(" Tallinn", 98, 0.031)) == '" Tallinn" (3.1%)'


def test_answer_map_heatmap_is_targets_by_sources_with_a_prompt_separator():
    table = make_answer_map()
    figure = plotting.answer_map_figure(table, signed=True, selected=2)
    ax = figure.axes[0]
    (image,) = ax.get_images()
    shown = image.get_array()
    assert shown.shape == (len(GENERATED), len(TOKENS) + len(GENERATED) - 1)
    assert image.get_cmap().name == "attribution_diverging" and image.get_clim() == (-1.0, 1.0)
    assert tick_texts(ax) == [plotting.token_label(token) for token in table.sources]
    assert [label.get_text() for label in ax.get_yticklabels()] == ["1: ␣Riga", "2: .", "3: <|end_of_text|>"]
    separators = [line for line in ax.get_lines() if list(line.get_xdata()) == [len(TOKENS) - 0.5] * 2]
    assert len(separators) == 1
    assert {text.get_text() for text in ax.texts} >= {"prompt", "generated"}
    # Causal: row t sees the prompt and the t − 1 tokens generated before it; later cells are masked.
    mask = np.ma.getmaskarray(shown)
    for row in range(len(GENERATED)):
        assert not mask[row, : len(TOKENS) + row].any() and mask[row, len(TOKENS) + row:].all()
        assert np.max(np.abs(shown[row].compressed())) == pytest.approx(1.0)
    assert any(patch.get_y() == pytest.approx(0.5) for patch in ax.patches)  # the selected row's outline
    unsigned = plotting.answer_map_figure(make_answer_map("gradient"), signed=False).axes[0].get_images()[0]
    assert unsigned.get_cmap().name == "YlOrRd" and unsigned.get_clim() == (0.0, 1.0)


def test_answer_map_row_as_highlighted_text():
    table = make_answer_map()
    values = plotting.answer_map_highlight(table, 2)
    assert [token for token, _ in values] == list(TOKENS) + [" Riga"]
    scores = table.matrix[1, : len(TOKENS) + 1]
    assert [value for _, value in values] == pytest.approx(list(scores / np.max(np.abs(scores))), abs=1e-4)
    hidden = plotting.answer_map_highlight(table, 1, plotting.source_special_tokens([True] + [False] * 9, 11))
    assert hidden[0] == (TOKENS[0], None)
    with pytest.raises(ValueError, match="out of range"):
        plotting.answer_map_highlight(table, 4)


def test_hiding_special_tokens_rescales_highlights_and_the_comparison():
    analysis = make_rich_analysis()
    scores = analysis.methods["attention"].scores.copy()
    values = plotting.highlight_values(TOKENS, scores, exclude=analysis.special_tokens)
    assert values[0] == (TOKENS[0], None)
    assert max(abs(value) for _, value in values[1:]) == pytest.approx(1.0)
    names, matrix = plotting.normalized_matrix(analysis, exclude_special=True)
    np.testing.assert_allclose(matrix[1], attribution.normalize_min_max(scores, exclude=analysis.special_tokens))
    assert np.all(matrix[:, 0] == 0) and np.allclose(matrix[:, 1:].max(axis=1), 1.0)
    ax = plotting.comparison_heatmap_figure(analysis, exclude_special=True).axes[0]
    image = ax.get_images()[0]
    assert np.ma.getmaskarray(image.get_array())[:, 0].all()
    assert ax.get_xticklabels()[0].get_color() == plotting.EXCLUDED_LABEL_COLOR
    assert "special tokens left out" in ax.get_title().replace("\n", " ")
    seed_view = plotting.comparison_heatmap_figure(analysis).axes[0].get_images()[0]
    assert not np.ma.getmaskarray(seed_view.get_array()).any()  # the seed's view stays the default
    bars = plotting.comparison_bars_figure(analysis, exclude_special=True)
    assert all(ax.patches[0].get_height() == 0 for ax in bars.axes)


def test_signed_methods_get_a_zero_line_and_the_signed_legend_even_when_all_scores_are_positive():
    occlusion = MethodScores("occlusion", np.linspace(0.1, 1.0, len(TOKENS)))
    assert plotting.is_signed("occlusion", occlusion) and plotting.is_signed("input_x_gradient", occlusion)
    assert not plotting.is_signed("gradient", MethodScores("gradient", np.ones(3)))
    assert "purple" in plotting.highlight_legend(occlusion, "occlusion")
    base = make_analysis()
    analysis = Analysis(model="m", prompt="p", input_tokens=TOKENS, input_ids=base.input_ids, generated_text="",
                        generated_ids=np.array([], dtype=int), target=base.target, methods={"occlusion": occlusion})
    ax = plotting.bar_figure(analysis, "occlusion").axes[0]
    assert any(list(line.get_ydata()) == [0.0, 0.0] for line in ax.get_lines())


def test_agreement_heatmap_is_a_symmetric_methods_by_methods_matrix():
    analysis = make_rich_analysis()
    names = list(analysis.methods)
    figure = plotting.agreement_figure(names, analysis.trust.spearman, "predicting \" Riga\"")
    ax = figure.axes[0]
    shown = ax.get_images()[0].get_array()
    assert shown.shape == (3, 3)
    matrix = plotting.agreement_matrix(names, analysis.trust.spearman)
    np.testing.assert_allclose(np.diag(matrix), 1.0)
    assert matrix[0, 1] == matrix[1, 0] == 0.5 and matrix[0, 2] == -0.25
    assert np.isnan(matrix[1, 2]) and np.ma.getmaskarray(shown)[1, 2]
    assert "n/a" in [text.get_text() for text in ax.texts]
    assert [label.get_text() for label in ax.get_yticklabels()] == ["Gradient", "Attention", "Integrated Gradients"]


def test_trust_tables_and_completeness_in_words():
    analysis = make_rich_analysis()
    rows = plotting.faithfulness_rows(analysis.trust)
    assert [row[0] for row in rows] == ["Gradient", "Attention", "Integrated Gradients"]
    assert len(plotting.FAITHFULNESS_HEADERS) == len(rows[0])
    assert rows[0][1:5] == ["0.600", "0.300", "0.200", "0.500"] and rows[0][5] == "yes, both"
    assert rows[1][5] == "comprehensiveness only" and rows[2][5] == "no"
    pairs = {row[0]: row for row in plotting.agreement_rows(analysis.trust, n_content=9)}
    assert pairs["Gradient vs Attention"][1:] == ["0.50", "2 of 3"]
    assert pairs["Attention vs Integrated Gradients"][1:] == ["n/a", "3 of 3"]
    text = plotting.completeness_summary(analysis.trust.completeness)
    assert "50.0%" in text and "100" in text and "30.0%" in text and "not converged" in text
    assert attribution.RECOMMENDED_BASELINE in text
    good = plotting.completeness_summary(Completeness(0.001, 50, "pad"))
    assert "converged" in good and "not converged" not in good and "rerun" not in good
    assert "not run" in plotting.completeness_summary(None)


def test_analysis_figures_add_the_answer_map_and_agreement_heatmaps():
    figures = plotting.analysis_figures(make_rich_analysis(), exclude_special=True)
    assert {"answer_map_input_x_gradient", "agreement_heatmap"} <= set(figures)
    answer_map = figures["answer_map_input_x_gradient"].axes[0]
    assert np.ma.getmaskarray(answer_map.get_images()[0].get_array())[:, 0].all()  # BOS left out
