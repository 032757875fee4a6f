"""How tokens, methods, probabilities and targets are written for people.

Shared by the figures, the tables and the explanations, so that a token reads the same everywhere:
spaces as '␣' on axes and in tables, quoted with spaces kept inside sentences.
"""

from __future__ import annotations

from ..catalog import METHOD_LABELS
from ..results import Prediction

MAX_LABEL_CHARS = 18

# Whitespace made visible in axis labels and tables; the engine already gives decoded strings (no 'Ġ').
_VISIBLE_WHITESPACE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "\\r"}


def method_label(name: str) -> str:
    """The display name of a registered method ("integrated_gradients" → "Integrated Gradients")."""
    return METHOD_LABELS.get(name, name.replace("_", " ").capitalize())


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


def target_phrase(target_text: str, foil_text: str | None = None) -> str:
    """"predicting " Riga"", or with a contrastive foil "predicting " Riga" rather than " Tallinn""."""
    phrase = f"predicting {quoted_token(target_text)}"
    if foil_text is not None:
        phrase += f" rather than {quoted_token(foil_text)}"
    return phrase


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
