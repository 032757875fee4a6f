"""attribution.plotting: pure functions from results to Figures, highlighted text and explanations."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.figure import Figure

import attribution
from attribution import plotting
from attribution.results import Analysis, AttentionScores, IntegratedGradientsScores, MethodScores, Target

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
