"""How one result is shown (`View`: the page's display choices and what only the handler knew), and the
small views read from a result and its View: the clickable answer, the contrast picker's choices.

A View is stored with its full `Analysis` on the server (`ui.store`); everything else a view needs is
read from the Analysis itself, its settings included (`Analysis.settings`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from attribution.display.figure_style import excluded_tokens
from attribution.display.labels import prediction_label, quoted_token
from attribution.groups import validate_granularity
from attribution.results import Analysis
from attribution.settings import ANSWER_TARGET, REPLY_TARGET, Settings


@dataclass(frozen=True)
class View:
    """How one analysis is shown: the display choices, and what the handler knew besides the result (the
    generated tokens as the tokenizer splits them, the pad token's label)."""

    hide_special: bool = True  # leave the held context out of the colour scaling and the top 5
    # The answer map was asked for. Not the result's all_targets: the page skips the map when nothing is
    # generated, and the notes then say why there is none.
    all_targets: bool = True
    pad_token: str | None = None  # `pad_token_label` with a pad baseline, for the notes
    answer_tokens: tuple[str, ...] = ()  # the generated tokens' display strings, for the clickable answer
    explained: int | None = None  # which of them is explained (1 = the first; `explained_answer_token`)
    # The costly methods (IG) the answer map was asked for without (Settings → IG in the answer map), and the
    # estimated seconds of the analysis again with them in it (`ui.timing`; None: not known): the Answer
    # map tab offers that.
    left_out_of_map: tuple[str, ...] = ()
    map_rerun_s: float | None = None
    # A stretch of the answer explained (Settings.target (k, m)): its last token, marked with the rest
    # from `explained` on (None: one token, or none).
    explained_through: int | None = None
    # Scores shown per token, word, sentence or segment ("Scores per"): the method tabs and the comparison
    # show the result regrouped (`Analysis.regrouped`); the answer map stays per token.
    granularity: str = "token"

    def exclude(self, analysis: Analysis) -> np.ndarray:
        """[n_tokens] bool: the tokens left out of the colour scaling."""
        return excluded_tokens(analysis, self.hide_special)

    def scaled(self, hide_special: Any) -> View:
        """This view with another colour scaling (the checkbox changed after the analysis)."""
        return dataclasses.replace(self, hide_special=bool(hide_special))

    def grouped(self, granularity: Any) -> View:
        """This view per another granularity (the "Scores per" choice changed after the analysis)."""
        return dataclasses.replace(self, granularity=validate_granularity(granularity))


#: The category of the explained token in the clickable answer (the others have none).
EXPLAINED = "explained"


def result_settings(analysis: Analysis) -> Settings:
    """What the analysis was computed with; the defaults for a result built by hand (no settings)."""
    return analysis.settings if analysis.settings is not None else Settings()


def explained_answer_token(analysis: Analysis) -> int | None:
    """Which generated token (1 = the first) the analysis explains, for marking it in the answer:
    k for target k (a stretch's first, the whole answer's first, the content word's token); the first
    for the next token or a text's first token when that is what the model generated there; None
    otherwise (nothing generated, or the text is not the model's token)."""
    target = result_settings(analysis).target
    if isinstance(target, int):
        return target
    if isinstance(target, tuple):
        return target[0]
    if target == REPLY_TARGET and analysis.span is not None:
        return analysis.span.first
    if target == ANSWER_TARGET and analysis.n_prompt_tokens is not None:
        # The content word's token k: explained after the prompt and the k − 1 generated tokens before it.
        k = len(analysis.input_ids) - analysis.n_prompt_tokens + 1
        generated = analysis.generated_ids
        return k if 1 <= k <= generated.size and int(generated[k - 1]) == analysis.target.id else None
    if result_settings(analysis).continuation is not None:
        return None  # the continuation is not the generated answer
    generated = analysis.generated_ids
    return 1 if generated.size and int(generated[0]) == analysis.target.id else None


def explained_through(analysis: Analysis) -> int | None:
    """The last generated token of an explained stretch (Settings.target (k, m)): m, the whole answer's last
    as it resolved; None otherwise."""
    target = result_settings(analysis).target
    if target == REPLY_TARGET and analysis.span is not None:
        return analysis.span.last
    return target[1] if isinstance(target, tuple) else None


def answer_view(view: View) -> list[tuple[str, str | None]]:
    """The generated answer as clickable tokens, the explained one (or stretch) marked EXPLAINED."""
    first = view.explained
    last = first if view.explained_through is None else view.explained_through
    return [(token, EXPLAINED if first is not None and first <= index <= last else None)
            for index, token in enumerate(view.answer_tokens, start=1)]


def contrast_options(analysis: Analysis) -> list[tuple[str, Any]]:
    """The contrast picker's choices: none, then the model's likeliest alternatives at the explained
    position with their probabilities (the explained token itself left out), values are token ids."""
    options: list[tuple[str, Any]] = [("(none)", "")]
    for prediction in analysis.top_predictions:
        if prediction.id != analysis.target.id:
            options.append((prediction_label(prediction), int(prediction.id)))
    foil = analysis.foil
    if foil is not None and all(value != foil.id for _label, value in options):
        options.append((f"{quoted_token(foil.text)} (the current contrast)", int(foil.id)))
    return options
