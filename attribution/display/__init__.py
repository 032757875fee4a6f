"""The display layer: results (`attribution.results`) turned into figures, tables and text.

Matplotlib and numpy only: nothing here imports torch, so a saved result can be drawn without the engine.
The UI (`ui/`) and the scripts draw through these modules; the engine never imports them.
"""

from .explanations import method_notes
from .labels import method_label, token_label
from .plotting import analysis_figures, draw_figure, figure_keys
from .tables import agreement_rows, faithfulness_rows, highlight_values, top_rows

__all__ = ["analysis_figures", "highlight_values", "agreement_rows", "faithfulness_rows", "method_label", "method_notes", "token_label",
           "top_rows"]
