"""Results → matplotlib Figures, highlighted-text values and short explanations.

Pure functions of an `Analysis` (or of plain arrays): they never touch the model, never use pyplot's
global state (every figure is a `matplotlib.figure.Figure` made here and owned by the caller) and never
import gradio — the app turns these plain values into components.

The figures follow the seed notebook: a bar chart per method with the tokens on the x axis rotated
45°, the attention heatmap of layers × tokens in YlOrRd, and the combined min–max normalised heatmap of
methods × tokens in RdYlGn with the values annotated to two decimals.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure

from .integrated_gradients import RECOMMENDED_BASELINE
from .methods import METHOD_LABELS
from .results import Analysis, AnswerMap, MethodScores, Prediction, normalize_max_abs, normalize_min_max, top_k

#: The seed's colours for its three methods, then the later ones; unknown methods get a FALLBACK_COLORS one.
METHOD_COLORS = {
    "gradient": "steelblue", "attention": "coral", "integrated_gradients": "mediumseagreen",
    "input_x_gradient": "goldenrod", "attention_rollout": "teal", "occlusion": "slategray",
}
# No purple: negative scores are drawn in purple.
FALLBACK_COLORS = ("darkkhaki", "sienna", "cadetblue", "olivedrab", "rosybrown", "darkcyan")
NEGATIVE_COLOR = "#8a63d2"  # the purple the app's highlighted text uses for negative scores
POSITIVE_COLOR = "#d7263d"  # the red it uses for positive ones
#: Signed scores on a heatmap: purple (negative) → white (0) → red (positive), as the highlighted text.
DIVERGING_CMAP = LinearSegmentedColormap.from_list("attribution_diverging",
                                                   [NEGATIVE_COLOR, "#ffffff", POSITIVE_COLOR])
UNSIGNED_CMAP = "YlOrRd"
MASKED_COLOR = "0.88"  # cells left out: special tokens hidden from the scaling, tokens after the target
EXCLUDED_LABEL_COLOR = "0.6"  # tick labels of tokens left out of the scaling
#: Methods whose scores are signed by construction, even when every score of one prompt is ≥ 0.
SIGNED_METHODS = frozenset({"input_x_gradient", "occlusion"})
MAX_TICK_LABELS = 60  # more tokens than this: label every k-th tick so the labels stay legible
MAX_ANNOTATED_TOKENS = 40  # the comparison heatmap writes its values only while they still fit
MAX_ANNOTATED_CELLS = 200  # the answer map writes its values only for small maps (text is slow to draw)
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


def target_phrase(target_text: str, foil_text: str | None = None) -> str:
    """"predicting " Riga"", or with a contrastive foil "predicting " Riga" rather than " Tallinn""."""
    phrase = f"predicting {quoted_token(target_text)}"
    if foil_text is not None:
        phrase += f" rather than {quoted_token(foil_text)}"
    return phrase


def _wrap(text: str, width_inches: float, fontsize: float) -> str:
    """A title broken into lines that fit the figure, only at ': ', ' rather than ' and ' (' so that a
    quoted token is never split."""
    limit = max(30, int(width_inches * 72 / (fontsize * 0.62)))
    if len(text) <= limit:
        return text
    lines = [""]
    for piece in re.split(r"(?<=: )|(?= rather than )|(?= \()", text):
        if lines[-1].strip() and len(lines[-1]) + len(piece) > limit:
            lines.append(piece.lstrip())
        else:
            lines[-1] += piece
    return "\n".join(line.rstrip() for line in lines)


def _title(ax: Any, text: str, fontsize: float = 13, **kwargs: Any) -> None:
    width = ax.figure.get_figwidth()
    ax.set_title(_wrap(text, width, fontsize), fontsize=fontsize, fontweight="bold", **kwargs)


def _cell(value: float) -> str:
    """A heatmap annotation to two decimals, without a '-0.00'."""
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def _target_phrase(analysis: Analysis) -> str:
    return _plain(target_phrase(analysis.target.text, None if analysis.foil is None else analysis.foil.text))


def probability_text(probability: float) -> str:
    """A probability as a short percentage: 31%, 3.1%, 0.0025%, <0.0001%."""
    percent = 100.0 * float(probability)
    if percent >= 10:
        return f"{percent:.0f}%"
    if percent >= 0.1:
        return f"{percent:.1f}%"
    if percent >= 0.0001:
        return f"{percent:.2g}%"
    return "<0.0001%"


def prediction_label(prediction: Prediction) -> str:
    """A candidate foil as a picker shows it: '" Tallinn" (3.1%)'."""
    return f"{quoted_token(prediction.text)} ({probability_text(prediction.probability)})"


def is_signed(name: str, result: MethodScores) -> bool:
    """Whether a method's scores can be negative (diverging colours, a zero line): IG by its
    aggregation, Input × Gradient and Occlusion always, the others when a score is negative."""
    aggregation = getattr(result, "aggregation", None)
    if aggregation is not None:
        return aggregation == "sum"
    return name in SIGNED_METHODS or bool(result.signed)


def score_axis_label(name: str, result: MethodScores) -> str:
    """The y-axis label of a method's bar chart, naming what the number is (as the seed's labels do)."""
    aggregation = getattr(result, "aggregation", None)
    if name == "gradient":
        return "Attribution score (gradient L2 norm)"
    if name == "attention":
        return "Attention weight (mean of heads and layers)"
    if name == "occlusion":
        return "Log-probability drop when hidden"
    if name == "attention_rollout":
        return "Rollout share of the last position"
    if aggregation == "sum":
        return f"{method_label(name)} score (signed sum)"
    if aggregation == "l2":
        return f"{method_label(name)} score (L2 norm)"
    return f"{method_label(name)} score"


# --- highlighted text and tables -------------------------------------------------------------


def highlight_values(
    tokens: Sequence[str], scores: np.ndarray, exclude: np.ndarray | None = None
) -> list[tuple[str, float | None]]:
    """(token, score) pairs for a highlighted-text view, each score scaled into [−1, 1].

    Scores are divided by the largest magnitude, so zero stays zero and the sign is kept: signed
    methods use the whole range (red positive, purple negative), non-negative ones use [0, 1].
    Tokens stay as decoded (leading spaces included) so that, joined, they read as the prompt.
    `exclude` (bool per token, e.g. BOS as an attention sink): left out of the scaling and uncoloured
    (score None).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if len(tokens) != scores.shape[0]:
        raise ValueError(f"{len(tokens)} tokens for {scores.shape[0]} scores")
    excluded = np.zeros(scores.shape[0], dtype=bool) if exclude is None else np.asarray(exclude, dtype=bool)
    scaled = np.clip(normalize_max_abs(scores, exclude=excluded), -1.0, 1.0)
    return [(str(token), None if hidden else round(float(value), 4))
            for token, value, hidden in zip(tokens, scaled, excluded)]


def highlight_legend(result: MethodScores, name: str | None = None) -> str:
    if is_signed(name or result.method, result):
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
    return f" or the recommended {RECOMMENDED_BASELINE} baseline"


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
    if is_signed(name, result):
        ax.axhline(0.0, color="0.35", linewidth=0.8)
    _set_token_ticks(ax, tokens)
    ax.set_xlim(-0.6, len(tokens) - 0.4)
    ax.set_xlabel("Input token", fontsize=11)
    ax.set_ylabel(score_axis_label(name, result), fontsize=11)
    _title(ax, f"{method_label(name)} attribution: {_target_phrase(analysis)}")
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
    _title(ax, f"{method_label(name)} across layers (last position, mean of heads): {_target_phrase(analysis)}")
    figure.colorbar(image, ax=ax, label="Attention weight", pad=0.01)
    return figure


def head_heatmap_figure(
    tokens: Sequence[str],
    per_head: np.ndarray,
    layer: int,
    target_text: str,
    label: str = "Attention",
    foil_text: str | None = None,
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
    _title(ax, _plain(f"{label}, layer {layer}, every head (last position): "
                      f"{target_phrase(target_text, foil_text)}"))
    figure.colorbar(image, ax=ax, label="Attention weight", pad=0.01)
    return figure


def _excluded(analysis: Analysis, exclude_special: bool) -> np.ndarray:
    """Which input tokens are left out of the scaling: the special tokens when asked, else none."""
    if exclude_special:
        return np.asarray(analysis.special_tokens, dtype=bool)
    return np.zeros(analysis.n_tokens, dtype=bool)


def _grey_excluded_ticks(ax: Any, excluded: np.ndarray, *, axis: str = "x") -> None:
    labels = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    positions = ax.get_xticks() if axis == "x" else ax.get_yticks()
    for label, position in zip(labels, positions):
        index = int(round(position))
        if 0 <= index < len(excluded) and excluded[index]:
            label.set_color(EXCLUDED_LABEL_COLOR)


def normalized_matrix(analysis: Analysis, exclude_special: bool = False) -> tuple[list[str], np.ndarray]:
    """Method names and their scores min–max normalised per method (the seed's comparison).

    `exclude_special`: BOS and other special tokens (attention sinks) are left out of each method's
    min and max and set to 0, so one sink does not flatten every other score.
    """
    names = list(analysis.methods)
    if not names:
        return names, np.zeros((0, analysis.n_tokens))
    exclude = analysis.special_tokens if exclude_special else None
    return names, np.vstack([normalize_min_max(analysis.methods[name].scores, exclude=exclude) for name in names])


def _scaling_note(excluded: np.ndarray) -> str:
    return " (special tokens left out of the scaling)" if excluded.any() else ""


def comparison_heatmap_figure(analysis: Analysis, exclude_special: bool = False) -> Figure:
    """Methods × tokens, each row min–max normalised, values annotated (.2f), RdYlGn as the seed.
    With `exclude_special`, special tokens are left out of the normalisation and drawn grey."""
    names, matrix = normalized_matrix(analysis, exclude_special)
    excluded = _excluded(analysis, exclude_special)
    tokens = analysis.input_tokens
    figure = Figure(figsize=(_width(len(tokens)), float(np.clip(0.6 * len(names) + 2.8, 3.8, 9.0))),
                    layout="constrained")
    ax = figure.add_subplot()
    shown = np.ma.masked_array(matrix, mask=np.broadcast_to(excluded, matrix.shape))
    image = _heatmap(ax, shown, _with_bad("RdYlGn"), vmin=0.0, vmax=1.0)
    if len(tokens) <= MAX_ANNOTATED_TOKENS:
        for row in range(matrix.shape[0]):
            for column in range(matrix.shape[1]):
                value = matrix[row, column]
                if excluded[column]:
                    ax.text(column, row, "–", ha="center", va="center", fontsize=9, color="0.45")
                    continue
                ax.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=9,
                        color="white" if value < 0.15 or value > 0.85 else "black")
    _set_token_ticks(ax, tokens)
    _grey_excluded_ticks(ax, excluded)
    ax.set_yticks(np.arange(len(names)))
    ax.set_yticklabels([method_label(name) for name in names], fontsize=11)
    ax.set_xlabel("Input tokens", fontsize=11)
    ax.set_ylabel("Attribution method", fontsize=11)
    _title(ax, f"Combined attribution heatmap: {_target_phrase(analysis)}{_scaling_note(excluded)}")
    figure.colorbar(image, ax=ax, label="Normalized attribution score", pad=0.01)
    return figure


def comparison_bars_figure(analysis: Analysis, exclude_special: bool = False) -> Figure:
    """One row of min–max normalised bars per method, sharing the token axis (the seed's comparison)."""
    names, matrix = normalized_matrix(analysis, exclude_special)
    excluded = _excluded(analysis, exclude_special)
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
    _grey_excluded_ticks(axes[-1], excluded)
    axes[-1].set_xlim(-0.6, len(tokens) - 0.4)
    axes[-1].set_xlabel("Input token", fontsize=11)
    figure.suptitle(_wrap(f"Comparison of token attribution methods: {_target_phrase(analysis)}"
                          f"{_scaling_note(excluded)}", figure.get_figwidth(), 14), fontsize=14, fontweight="bold")
    return figure


def _with_bad(cmap: Any) -> Any:
    """A copy of a colormap that draws masked cells in MASKED_COLOR."""
    from matplotlib import colormaps

    colormap = colormaps[cmap] if isinstance(cmap, str) else cmap
    return colormap.with_extremes(bad=MASKED_COLOR)


# --- the answer map --------------------------------------------------------------------------


def source_special_tokens(special_tokens: np.ndarray, n_sources: int) -> np.ndarray:
    """Special-token flags for an answer map's sources (prompt + generated tokens): the explained
    input is always a prefix of them, so its flags carry over; the generated rest is content."""
    special = np.asarray(special_tokens, dtype=bool)
    flags = np.zeros(n_sources, dtype=bool)
    count = min(n_sources, special.shape[0])
    flags[:count] = special[:count]
    return flags


def answer_map_row(table: AnswerMap, index: int) -> tuple[tuple[str, ...], np.ndarray]:
    """Generated token `index` (1 = first)'s sources — the prompt and the tokens generated before
    it — and their raw scores."""
    if not 1 <= index <= len(table.targets):
        raise ValueError(f"generated token {index} is out of range: choose 1 to {len(table.targets)}")
    count = table.n_prompt + index - 1
    return table.sources[:count], np.asarray(table.matrix[index - 1, :count])


def answer_map_highlight(
    table: AnswerMap, index: int, exclude: np.ndarray | None = None
) -> list[tuple[str, float | None]]:
    """One generated token's attributions as highlighted text over its sources (scaled into [−1, 1])."""
    sources, scores = answer_map_row(table, index)
    hidden = None if exclude is None else np.asarray(exclude, dtype=bool)[: len(sources)]
    return highlight_values(sources, scores, exclude=hidden)


def answer_map_matrix(table: AnswerMap, exclude: np.ndarray | None = None) -> np.ndarray:
    """The answer map as drawn: each row divided by its largest magnitude over the sources that
    row can see; NaN where a source comes after the explained token (or is excluded)."""
    n_targets, n_sources = table.matrix.shape
    visible = np.arange(n_sources)[None, :] < (table.n_prompt + np.arange(n_targets))[:, None]
    if exclude is not None:
        visible &= ~np.asarray(exclude, dtype=bool)[None, :]
    scaled = np.full((n_targets, n_sources), np.nan)
    for row in range(n_targets):
        values = table.matrix[row][visible[row]]
        largest = float(np.max(np.abs(values))) if values.size else 0.0
        scaled[row, visible[row]] = values / largest if largest > 0 else 0.0
    return scaled


def answer_map_figure(
    table: AnswerMap,
    *,
    signed: bool,
    exclude: np.ndarray | None = None,
    selected: int | None = None,
) -> Figure:
    """Generated tokens (rows) × sources (columns: the prompt, then the earlier generated tokens),
    each row scaled by its largest magnitude; a dark line separates prompt from generated sources.
    Signed methods use a diverging purple–white–red scale centred on 0. Grey: a source after the
    explained token (a causal model cannot see it) or one left out of the scaling."""
    matrix = answer_map_matrix(table, exclude)
    n_targets, n_sources = matrix.shape
    n_prompt = table.n_prompt
    figure = Figure(figsize=(_width(n_sources), float(np.clip(0.42 * n_targets + 3.0, 3.6, 14.0))),
                    layout="constrained")
    ax = figure.add_subplot()
    shown = np.ma.masked_invalid(matrix)
    if signed:
        image = _heatmap(ax, shown, _with_bad(DIVERGING_CMAP), vmin=-1.0, vmax=1.0)
    else:
        image = _heatmap(ax, shown, _with_bad(UNSIGNED_CMAP), vmin=0.0, vmax=1.0)
    if n_sources * n_targets <= MAX_ANNOTATED_CELLS:
        for row in range(n_targets):
            for column in range(n_sources):
                value = matrix[row, column]
                if math.isfinite(value):
                    ax.text(column, row, _cell(value), ha="center", va="center", fontsize=8,
                            color="white" if abs(value) > 0.7 else "black")
    ax.axvline(n_prompt - 0.5, color="0.1", linewidth=2.5)
    if selected is not None and 1 <= selected <= n_targets:
        ax.add_patch(_row_box(selected - 1, n_sources))
    _set_token_ticks(ax, table.sources)
    if exclude is not None:
        _grey_excluded_ticks(ax, np.asarray(exclude, dtype=bool))
    step = max(1, int(np.ceil(n_targets / MAX_TICK_LABELS)))
    ax.set_yticks(np.arange(0, n_targets, step))
    ax.set_yticklabels([_plain(f"{row + 1}: {token_label(table.targets[row])}")
                        for row in range(0, n_targets, step)], fontsize=10)
    # "prompt | generated" above the columns, on either side of the separator.
    ax.text((n_prompt - 1) / 2, -0.62, "prompt", ha="center", va="bottom", fontsize=10, color="0.25",
            fontstyle="italic", clip_on=False)
    if n_sources > n_prompt:
        ax.text((n_prompt + n_sources - 1) / 2, -0.62, "generated", ha="center", va="bottom", fontsize=10,
                color="0.25", fontstyle="italic", clip_on=False)
    ax.set_xlabel("Source tokens (what each generated token could see)", fontsize=11)
    ax.set_ylabel("Generated token (explained)", fontsize=11)
    excluded = np.zeros(0, dtype=bool) if exclude is None else np.asarray(exclude, dtype=bool)
    _title(ax, f"Answer map, {method_label(table.method)}: every generated token explained by the "
               f"tokens before it{_scaling_note(excluded)}", pad=22)
    scale = "score ÷ the row's largest |score|" if signed else "score ÷ the row's largest score"
    figure.colorbar(image, ax=ax, label=scale, pad=0.01)
    return figure


def _row_box(row: int, n_columns: int) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((-0.5, row - 0.5), n_columns, 1.0, fill=False, edgecolor="0.1", linewidth=2.0)


# --- the trust panel -------------------------------------------------------------------------

FAITHFULNESS_HEADERS = ["method", "comprehensiveness ↑", "random (comp.)", "sufficiency ↓", "random (suff.)",
                        "beats random?"]
AGREEMENT_HEADERS = ["methods", "Spearman ρ", "top-3 shared"]


def agreement_matrix(names: Sequence[str], spearman: Mapping[str, float]) -> np.ndarray:
    """Methods × methods Spearman ρ from the trust report's "a|b" pairs; 1 on the diagonal, NaN where
    ρ is undefined (a method gave every content token the same score)."""
    index = {name: position for position, name in enumerate(names)}
    matrix = np.full((len(names), len(names)), np.nan)
    np.fill_diagonal(matrix, 1.0)
    for key, rho in spearman.items():
        first, _, second = key.partition("|")
        if first in index and second in index:
            matrix[index[first], index[second]] = matrix[index[second], index[first]] = float(rho)
    return matrix


def agreement_figure(names: Sequence[str], spearman: Mapping[str, float], subtitle: str = "") -> Figure:
    """How alike the methods rank the tokens: Spearman ρ for every pair, −1 (opposite) to 1 (same)."""
    names = list(names)
    matrix = agreement_matrix(names, spearman)
    size = float(np.clip(0.75 * len(names) + 2.4, 4.0, 8.0))
    figure = Figure(figsize=(size + 1.2, size), layout="constrained")
    ax = figure.add_subplot()
    image = _heatmap(ax, np.ma.masked_invalid(matrix), _with_bad(DIVERGING_CMAP), vmin=-1.0, vmax=1.0)
    for row in range(len(names)):
        for column in range(len(names)):
            value = matrix[row, column]
            text = _cell(value) if math.isfinite(value) else "n/a"
            ax.text(column, row, text, ha="center", va="center", fontsize=10,
                    color="white" if math.isfinite(value) and abs(value) > 0.7 else "black")
    labels = [method_label(name) for name in names]
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels(labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=10)
    ax.set_yticks(np.arange(len(names)))
    ax.set_yticklabels(labels, fontsize=10)
    title = "Do the methods agree? Spearman rank correlation"
    ax.set_title(_plain(f"{title}\n{subtitle}" if subtitle else title), fontsize=12, fontweight="bold")
    figure.colorbar(image, ax=ax, label="Spearman ρ (content tokens)", pad=0.02)
    return figure


def faithfulness_rows(report: Any) -> list[list[Any]]:
    """[method, comprehensiveness, random, sufficiency, random, verdict] per method of a TrustReport
    (numbers as text to three decimals, so the table reads evenly)."""
    rows = []
    for name, item in report.faithfulness.items():
        better_comp = item.comprehensiveness > item.random_comprehensiveness
        better_suff = item.sufficiency < item.random_sufficiency
        verdict = ("yes, both" if better_comp and better_suff
                   else "comprehensiveness only" if better_comp
                   else "sufficiency only" if better_suff else "no")
        numbers = (item.comprehensiveness, item.random_comprehensiveness, item.sufficiency, item.random_sufficiency)
        rows.append([method_label(name), *(f"{value:.3f}" for value in numbers), verdict])
    return rows


def agreement_rows(report: Any, n_content: int) -> list[list[Any]]:
    """[pair, Spearman ρ, top-3 shared] for every pair of methods of a TrustReport."""
    n_top = min(3, n_content)
    rows = []
    for key in dict.fromkeys([*report.spearman, *report.top3_overlap]):
        first, _, second = key.partition("|")
        rho = report.spearman.get(key)
        overlap = report.top3_overlap.get(key)
        shared = "n/a" if overlap is None or not n_top else f"{round(overlap * n_top)} of {n_top}"
        rows.append([f"{method_label(first)} vs {method_label(second)}",
                     "n/a" if rho is None else f"{rho:.2f}", shared])
    return rows


def completeness_summary(check: Any) -> str:
    """IG's completeness check from the trust report, in plain words (markdown)."""
    if check is None:
        return ("**Integrated Gradients completeness:** not checked — Integrated Gradients was not run "
                "(tick it under *Settings → Methods*).")
    text = (f"**Integrated Gradients completeness:** with the *{check.baseline}* baseline and "
            f"{check.n_steps} steps, the signed attributions miss F(input) − F(baseline) by "
            f"**{check.relative_error:.1%}**")
    if check.rerun_n_steps is not None and check.rerun_relative_error is not None:
        text += (f"; rerun at twice the steps ({check.rerun_n_steps}): **{check.rerun_relative_error:.1%}**")
    text += ". "
    if check.converged:
        text += "That is within 5%: **converged** — the scores account for the prediction."
    else:
        advice = ("more steps" if check.baseline == RECOMMENDED_BASELINE
                  else f"the {RECOMMENDED_BASELINE} baseline with signed sums (the recommended IG settings)")
        text += f"That is over 5%: **not converged** — try {advice}."
    return text


def analysis_figures(analysis: Analysis, exclude_special: bool = False) -> Mapping[str, Figure]:
    """Every figure of an analysis by a file-name-safe key: '<method>_bars', '<method>_layers' (for
    results with per-layer data), 'comparison_heatmap', 'comparison_bars', 'answer_map_<method>' (with
    an answer map) and 'agreement_heatmap' (with a trust report on two or more methods)."""
    figures: dict[str, Figure] = {}
    for name, result in analysis.methods.items():
        figures[f"{name}_bars"] = bar_figure(analysis, name)
        if np.asarray(getattr(result, "per_layer", np.zeros((0, 0)))).size:
            figures[f"{name}_layers"] = layer_heatmap_figure(analysis, name)
    figures["comparison_heatmap"] = comparison_heatmap_figure(analysis, exclude_special)
    figures["comparison_bars"] = comparison_bars_figure(analysis, exclude_special)
    for name, table in analysis.answer_map.items():
        exclude = source_special_tokens(analysis.special_tokens, len(table.sources)) if exclude_special else None
        figures[f"answer_map_{name}"] = answer_map_figure(
            table, signed=answer_map_signed(analysis, name), exclude=exclude, selected=1)
    if analysis.trust is not None and len(analysis.methods) >= 2:
        foil = None if analysis.foil is None else analysis.foil.text
        figures["agreement_heatmap"] = agreement_figure(list(analysis.methods), analysis.trust.spearman,
                                                        target_phrase(analysis.target.text, foil))
    return figures


def answer_map_signed(analysis: Analysis, name: str) -> bool:
    """Whether an answer map's method is signed (IG follows the analysis's aggregation)."""
    result = analysis.methods.get(name)
    if result is not None:
        return is_signed(name, result)
    table = analysis.answer_map[name]
    return name in SIGNED_METHODS or bool(np.any(table.matrix < 0))
