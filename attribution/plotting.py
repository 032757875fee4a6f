"""Results → matplotlib Figures, highlighted-text values and short explanations.

Pure functions of an `Analysis` (or of plain arrays): they never touch the model, never use pyplot's
global state (every figure is a `matplotlib.figure.Figure` made here and owned by the caller) and never
import gradio — the app turns these plain values into components.

The figures follow the seed notebook: a bar chart per method with the tokens on the x axis rotated
45°, the attention heatmap of layers × tokens in YlOrRd, and the combined min–max normalised heatmap of
methods × tokens in RdYlGn with the values annotated to two decimals.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from .integrated_gradients import BASELINE_LABELS, RECOMMENDED_BASELINE
from .methods import METHOD_LABELS
from .results import Analysis, MethodScores, normalize_max_abs, normalize_min_max, top_k

#: The seed's colours for its three methods, then the later ones; unknown methods get a FALLBACK_COLORS one.
METHOD_COLORS = {
    "gradient": "steelblue", "attention": "coral", "integrated_gradients": "mediumseagreen",
    "input_x_gradient": "goldenrod", "attention_rollout": "teal", "occlusion": "slategray",
}
# No purple: negative scores are drawn in purple.
FALLBACK_COLORS = ("darkkhaki", "sienna", "cadetblue", "olivedrab", "rosybrown", "darkcyan")
NEGATIVE_COLOR = "#8a63d2"  # the purple the app's highlighted text uses for negative scores
MAX_TICK_LABELS = 60  # more tokens than this: label every k-th tick so the labels stay legible
MAX_ANNOTATED_TOKENS = 40  # the comparison heatmap writes its values only while they still fit
MAX_LABEL_CHARS = 18

# Whitespace made visible in axis labels and tables; the engine already gives decoded strings (no 'Ġ').
_VISIBLE_WHITESPACE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "\\r"}


# --- labels ----------------------------------------------------------------------------------


def method_label(name: str) -> str:
    """The display name of a registered method ("integrated_gradients" → "Integrated Gradients")."""
    return METHOD_LABELS.get(name, name.replace("_", " ").capitalize())


def method_color(name: str) -> str:
    if name in METHOD_COLORS:
        return METHOD_COLORS[name]
    others = sorted(set(METHOD_LABELS) - set(METHOD_COLORS))
    index = others.index(name) if name in others else sum(map(ord, name))
    return FALLBACK_COLORS[index % len(FALLBACK_COLORS)]


def token_label(token: str) -> str:
    """A token as an axis or table label: spaces '␣', newlines '↵', tabs '⇥'; empty as '∅'; long
    tokens shortened with '…'."""
    if token == "":
        return "∅"
    text = "".join(_VISIBLE_WHITESPACE.get(character, character) for character in token)
    if len(text) > MAX_LABEL_CHARS:
        text = text[: MAX_LABEL_CHARS - 1] + "…"
    return text


def quoted_token(token: str) -> str:
    """A token inside a title or sentence, as the seed writes it ("Predicting \" Riga\""): spaces kept,
    line breaks and tabs made visible so they cannot break the line."""
    text = token.replace("\n", "↵").replace("\t", "⇥").replace("\r", "\\r")
    return f'"{text}"'


def _plain(text: str) -> str:
    """Text for matplotlib: '$' escaped so that a token like '$x$' is never read as mathtext."""
    return text.replace("$", r"\$")


def _target_phrase(analysis: Analysis) -> str:
    return _plain(f"predicting {quoted_token(analysis.target.text)}")


def score_axis_label(name: str, result: MethodScores) -> str:
    """The y-axis label of a method's bar chart, naming what the number is (as the seed's labels do)."""
    aggregation = getattr(result, "aggregation", None)
    if name == "gradient":
        return "Attribution score (gradient L2 norm)"
    if name == "attention":
        return "Attention weight (mean of heads and layers)"
    if aggregation == "sum":
        return f"{method_label(name)} score (signed sum)"
    if aggregation == "l2":
        return f"{method_label(name)} score (L2 norm)"
    return f"{method_label(name)} score"


# --- highlighted text and tables -------------------------------------------------------------


def highlight_values(tokens: Sequence[str], scores: np.ndarray) -> list[tuple[str, float]]:
    """(token, score) pairs for a highlighted-text view, each score scaled into [−1, 1].

    Scores are divided by the largest magnitude, so zero stays zero and the sign is kept: signed
    methods use the whole range (red positive, purple negative), non-negative ones use [0, 1].
    Tokens stay as decoded (leading spaces included) so that, joined, they read as the prompt.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if len(tokens) != scores.shape[0]:
        raise ValueError(f"{len(tokens)} tokens for {scores.shape[0]} scores")
    scaled = np.clip(normalize_max_abs(scores), -1.0, 1.0)
    return [(str(token), round(float(value), 4)) for token, value in zip(tokens, scaled)]


def highlight_legend(result: MethodScores) -> str:
    if result.signed:
        return ("**Colour:** red tokens push the model towards the explained token, purple ones push "
                "away from it; the stronger the colour, the larger the score (scaled so the largest "
                "magnitude is 1).")
    return ("**Colour:** the redder the token, the larger its score (scaled so the largest is 1); "
            "these scores are never negative.")


def top_rows(analysis: Analysis, name: str, k: int = 5) -> list[list[Any]]:
    """The k highest-scoring tokens of one method: [rank, token, position, raw score]."""
    scores = analysis.methods[name].scores
    return [
        [rank, token_label(analysis.input_tokens[index]), index, float(f"{scores[index]:.4g}")]
        for rank, index in enumerate(top_k(scores, k), start=1)
    ]


TOP_HEADERS = ["rank", "token", "position", "score"]


def _baseline_advice(baseline: str) -> str:
    if baseline == RECOMMENDED_BASELINE:
        return ""
    label = BASELINE_LABELS.get(RECOMMENDED_BASELINE, RECOMMENDED_BASELINE)
    return f" or the {RECOMMENDED_BASELINE} baseline ({label})"


def convergence_summary(result: Any) -> str:
    """Integrated Gradients' completeness check in words a newcomer can follow (markdown)."""
    total = result.convergence_delta + result.output_difference
    expected = result.output_difference
    error = abs(result.convergence_delta)
    lines = [
        "**Did the integral converge?** Integrated Gradients promises that the raw (signed) scores add "
        f"up to how much the target logit changes between the {result.baseline} baseline and the real "
        f"prompt: F(input) − F(baseline) = {result.input_output:.4g} − {result.baseline_output:.4g} = "
        f"**{expected:.4g}**. They add up to **{total:.4g}**, off by {error:.3g}"
    ]
    if abs(expected) > 1e-6:
        percent = 100.0 * error / abs(expected)
        lines[0] += f" ({percent:.3g}% of {expected:.4g})."
        converged = percent <= 5.0
    else:
        lines[0] += " (the logit barely changes along the path, so a percentage says little)."
        converged = error <= 1e-3
    if converged:
        lines.append(
            f"That is within the 5% the method's authors suggest: with {result.n_steps} steps the "
            "integral has converged, and the scores can be trusted to account for the prediction."
        )
    else:
        lines.append(
            f"That is more than 5%: with {result.n_steps} steps the integral has **not** converged. "
            f"Try more steps (Settings → IG steps){_baseline_advice(result.baseline)}."
        )
    if getattr(result, "aggregation", "sum") == "l2":
        lines.append(
            "The bars show each token's L2 norm (the seed's view, always ≥ 0), which does not add up to "
            "anything; the check above uses the signed attributions before taking norms."
        )
    return "\n\n".join(lines)


# --- figures ---------------------------------------------------------------------------------


def _width(n_tokens: int) -> float:
    return float(np.clip(0.42 * n_tokens + 3.0, 8.0, 20.0))


def _set_token_ticks(ax: Any, tokens: Sequence[str], *, axis: str = "x") -> None:
    """One tick per token (every k-th when there are too many), rotated 45° as the seed does."""
    step = max(1, int(np.ceil(len(tokens) / MAX_TICK_LABELS)))
    positions = list(range(0, len(tokens), step))
    labels = [_plain(token_label(tokens[index])) for index in positions]
    if axis == "x":
        ax.set_xticks(positions)
        ax.set_xticklabels(labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=10)
    else:
        ax.set_yticks(positions)
        ax.set_yticklabels(labels, fontsize=10)


def bar_figure(analysis: Analysis, name: str) -> Figure:
    """One method's raw scores as bars, tokens on the x axis (the seed's per-method chart)."""
    result = analysis.methods[name]
    tokens = analysis.input_tokens
    scores = result.scores
    figure = Figure(figsize=(_width(len(tokens)), 4.8), layout="constrained")
    ax = figure.add_subplot()
    color = method_color(name)
    colors = [color if value >= 0 else NEGATIVE_COLOR for value in scores]
    ax.bar(np.arange(len(tokens)), scores, color=colors, alpha=0.8)
    if result.signed:
        ax.axhline(0.0, color="0.35", linewidth=0.8)
    _set_token_ticks(ax, tokens)
    ax.set_xlim(-0.6, len(tokens) - 0.4)
    ax.set_xlabel("Input token", fontsize=11)
    ax.set_ylabel(score_axis_label(name, result), fontsize=11)
    ax.set_title(f"{method_label(name)} attribution: {_target_phrase(analysis)}", fontsize=13,
                 fontweight="bold")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return figure


def _heatmap(ax: Any, matrix: np.ndarray, cmap: str, vmin: float | None = None,
             vmax: float | None = None) -> Any:
    image = ax.imshow(matrix, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    # White lines between cells, as seaborn's linewidths draws them.
    ax.set_xticks(np.arange(-0.5, matrix.shape[1], 1), minor=True)
    ax.set_yticks(np.arange(-0.5, matrix.shape[0], 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=0.5)
    ax.tick_params(which="minor", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return image


def layer_heatmap_figure(analysis: Analysis, name: str = "attention") -> Figure:
    """Attention of the explained position per layer (mean over heads): layers × tokens, YlOrRd."""
    result = analysis.methods[name]
    per_layer = np.asarray(result.per_layer)  # [n_layers, n_tokens]
    n_layers = per_layer.shape[0]
    tokens = analysis.input_tokens
    figure = Figure(figsize=(_width(len(tokens)), float(np.clip(0.32 * n_layers + 2.6, 3.6, 11.0))),
                    layout="constrained")
    ax = figure.add_subplot()
    image = _heatmap(ax, per_layer, "YlOrRd")  # colour range from the data, as seaborn
    _set_token_ticks(ax, tokens)
    ax.set_yticks(np.arange(n_layers))
    ax.set_yticklabels([f"Layer {layer}" for layer in range(n_layers)], fontsize=9)
    ax.set_xlabel("Input tokens", fontsize=11)
    ax.set_ylabel("Transformer layers", fontsize=11)
    ax.set_title(f"{method_label(name)} across layers (last position, mean of heads): "
                 f"{_target_phrase(analysis)}", fontsize=13, fontweight="bold")
    figure.colorbar(image, ax=ax, label="Attention weight", pad=0.01)
    return figure


def head_heatmap_figure(
    tokens: Sequence[str],
    per_head: np.ndarray,
    layer: int,
    target_text: str,
    label: str = "Attention",
) -> Figure:
    """Every head of one layer: heads × tokens, YlOrRd. Takes plain arrays so the app can redraw it
    from its stored result for another layer without running the model again."""
    per_head = np.asarray(per_head, dtype=np.float64)  # [n_layers, n_heads, n_tokens]
    if per_head.ndim != 3 or per_head.shape[2] != len(tokens):
        raise ValueError(f"per_head must be [layers, heads, {len(tokens)} tokens], got {per_head.shape}")
    if not 0 <= layer < per_head.shape[0]:
        raise ValueError(f"layer {layer} is out of range: choose 0 to {per_head.shape[0] - 1}")
    heads = per_head[layer]  # [n_heads, n_tokens]
    n_heads = heads.shape[0]
    figure = Figure(figsize=(_width(len(tokens)), float(np.clip(0.28 * n_heads + 2.6, 3.6, 12.0))),
                    layout="constrained")
    ax = figure.add_subplot()
    image = _heatmap(ax, heads, "YlOrRd")
    _set_token_ticks(ax, tokens)
    step = max(1, int(np.ceil(n_heads / 32)))
    ax.set_yticks(np.arange(0, n_heads, step))
    ax.set_yticklabels([f"Head {head}" for head in range(0, n_heads, step)], fontsize=9)
    ax.set_xlabel("Input tokens", fontsize=11)
    ax.set_ylabel(f"Heads of layer {layer}", fontsize=11)
    ax.set_title(_plain(f"{label}, layer {layer}, every head (last position): predicting "
                        f"{quoted_token(target_text)}"), fontsize=13, fontweight="bold")
    figure.colorbar(image, ax=ax, label="Attention weight", pad=0.01)
    return figure


def normalized_matrix(analysis: Analysis) -> tuple[list[str], np.ndarray]:
    """Method names and their scores min–max normalised per method (the seed's comparison)."""
    names = list(analysis.methods)
    if not names:
        return names, np.zeros((0, analysis.n_tokens))
    return names, np.vstack([normalize_min_max(analysis.methods[name].scores) for name in names])


def comparison_heatmap_figure(analysis: Analysis) -> Figure:
    """Methods × tokens, each row min–max normalised, values annotated (.2f), RdYlGn as the seed."""
    names, matrix = normalized_matrix(analysis)
    tokens = analysis.input_tokens
    figure = Figure(figsize=(_width(len(tokens)), float(np.clip(0.6 * len(names) + 2.8, 3.8, 9.0))),
                    layout="constrained")
    ax = figure.add_subplot()
    image = _heatmap(ax, matrix, "RdYlGn", vmin=0.0, vmax=1.0)
    if len(tokens) <= MAX_ANNOTATED_TOKENS:
        for row in range(matrix.shape[0]):
            for column in range(matrix.shape[1]):
                value = matrix[row, column]
                ax.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=9,
                        color="white" if value < 0.15 or value > 0.85 else "black")
    _set_token_ticks(ax, tokens)
    ax.set_yticks(np.arange(len(names)))
    ax.set_yticklabels([method_label(name) for name in names], fontsize=11)
    ax.set_xlabel("Input tokens", fontsize=11)
    ax.set_ylabel("Attribution method", fontsize=11)
    ax.set_title(f"Combined attribution heatmap: {_target_phrase(analysis)}", fontsize=13,
                 fontweight="bold")
    figure.colorbar(image, ax=ax, label="Normalized attribution score", pad=0.01)
    return figure


def comparison_bars_figure(analysis: Analysis) -> Figure:
    """One row of min–max normalised bars per method, sharing the token axis (the seed's comparison)."""
    names, matrix = normalized_matrix(analysis)
    tokens = analysis.input_tokens
    rows = max(1, len(names))
    figure = Figure(figsize=(_width(len(tokens)), (2.3 if rows <= 3 else 1.6) * rows + 1.6),
                    layout="constrained")
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    for index, (name, ax) in enumerate(zip(names, axes)):
        ax.bar(np.arange(len(tokens)), matrix[index], color=method_color(name), alpha=0.8)
        ax.set_ylim(0.0, 1.05)
        ax.set_ylabel("Normalized score", fontsize=10)
        ax.set_title(f"{chr(ord('A') + index % 26)}) {method_label(name)}", fontsize=12,
                     fontweight="bold", loc="left")
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    _set_token_ticks(axes[-1], tokens)
    axes[-1].set_xlim(-0.6, len(tokens) - 0.4)
    axes[-1].set_xlabel("Input token", fontsize=11)
    figure.suptitle(f"Comparison of token attribution methods: {_target_phrase(analysis)}",
                    fontsize=14, fontweight="bold")
    return figure


def analysis_figures(analysis: Analysis) -> Mapping[str, Figure]:
    """Every figure of an analysis by a file-name-safe key: '<method>_bars', '<method>_layers' (for
    results with per-layer data), 'comparison_heatmap', 'comparison_bars'."""
    figures: dict[str, Figure] = {}
    for name, result in analysis.methods.items():
        figures[f"{name}_bars"] = bar_figure(analysis, name)
        if np.asarray(getattr(result, "per_layer", np.zeros((0, 0)))).size:
            figures[f"{name}_layers"] = layer_heatmap_figure(analysis, name)
    figures["comparison_heatmap"] = comparison_heatmap_figure(analysis)
    figures["comparison_bars"] = comparison_bars_figure(analysis)
    return figures
