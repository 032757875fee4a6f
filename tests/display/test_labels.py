"""attribution.labels: tokens, probabilities and candidate foils as people read them."""

from __future__ import annotations



from attribution.display import labels
from attribution.results import Prediction


def test_token_labels_show_whitespace_and_escape_mathtext():
    assert labels.token_label(" Capital") == "␣Capital"
    assert labels.token_label("\n") == "↵"
    assert labels.token_label("\t") == "⇥"
    assert labels.token_label("") == "∅"
    assert labels.token_label("$x$") == "$x$"  # plain in tables; escaped only inside figures
    assert labels.token_label("x" * 40).endswith("…")
    assert "Ġ" not in labels.token_label(" the")
    assert labels.quoted_token(" Riga") == '" Riga"'
    assert labels.quoted_token("\n") == '"↵"'


def test_probability_and_prediction_labels():
    assert labels.probability_text(0.31) == "31%"
    assert labels.probability_text(0.031) == "3.1%"
    assert labels.probability_text(0.000025) == "0.0025%"
    assert labels.probability_text(1e-12) == "<0.0001%"
    assert labels.prediction_label(Prediction(" Tallinn", 98, 0.031)) == '" Tallinn" (3.1%)'
