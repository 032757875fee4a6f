"""Figures drawn when they are seen: the open tab's after each analysis, another tab's when it is opened,
every figure as PNG files only when the downloads are asked for.

Every figure is drawn from the session's stored result (`ui.store`; the model never runs again) and
rendered to PNG once per result, key and colour scaling there. The figure outputs are named as the
figures are (`attribution.display.plotting`): "<tab>:<part>", so a tab's figure outputs are its figure
keys, but for the answer map, whose one heatmap shows the picked method's ("answer_map:<method>").
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.components.plot import PlotData

from attribution.catalog import CATALOG, LAYERED_METHODS
from attribution.display.plotting import figure_keys, file_name

from . import exports, store
from .inputs import token_index
from .tabs import method

#: Each tab's figure outputs (also the keys of the figures they show, but the answer map's heatmap).
TAB_FIGURES: dict[str, tuple[str, ...]] = {
    **{name: (f"{name}:bars",) + ((f"{name}:layers",) if name in LAYERED_METHODS else ()) for name in CATALOG},
    "answer_map": ("answer_map:heatmap",),  # the picked method's "answer_map:<method>"
    "compare": ("compare:heatmap", "compare:bars", "compare:agreement"),
}
#: The outputs the drawing events fill, in order: each tab's figures, and a layered method's layer slider
#: and per-head view after its figures.
FIGURE_KEYS = [key for name in CATALOG for key in TAB_FIGURES[name]
               + ((f"{name}:layer", f"{name}:heads") if name in LAYERED_METHODS else ())]
FIGURE_KEYS += [*TAB_FIGURES["answer_map"], *TAB_FIGURES["compare"]]


def plot_value(data: bytes) -> PlotData:
    """PNG bytes as gr.Plot's value (the image the page shows)."""
    return PlotData(type="matplotlib", plot="data:image/png;base64," + base64.b64encode(data).decode("ascii"))


def answer_map_pick(stored: store.Stored, map_method: Any, map_token: Any) -> tuple[str, int] | None:
    """The answer map's method and row to draw: the picked ones where they exist, else the first."""
    answer_map = stored.analysis.answer_map
    if not answer_map:
        return None
    name = map_method if map_method in answer_map else next(iter(answer_map))
    return name, token_index(map_token, len(answer_map[name].targets))


def stored_figures(stored: store.Stored, tab: str, hide_special: Any = True, map_method: Any = None,
                   map_token: Any = None) -> dict[str, Any]:
    """One tab's figure outputs by FIGURE_KEYS name, drawn from a stored result (the answer map for
    `map_method`/`map_token`); None where the result has no such figure."""
    available = figure_keys(stored.analysis)
    values: dict[str, Any] = {}
    for output in TAB_FIGURES[tab]:
        key, selected = output, 1
        if tab == "answer_map":
            pick = answer_map_pick(stored, map_method, map_token)
            if pick is None:
                values[output] = None
                continue
            key, selected = f"answer_map:{pick[0]}", pick[1]
        values[output] = (plot_value(store.png_bytes(stored, key, bool(hide_special), selected))
                          if key in available else None)
    if tab in LAYERED_METHODS:
        values[f"{tab}:layer"], values[f"{tab}:heads"] = method.head_views(stored, tab)
    return values


def tab_figures(tab: Any, hide_special: Any = True, map_method: Any = None, map_token: Any = None,
                state: str | None = None) -> dict[str, Any]:
    """One tab's figure outputs for the session's stored result (`stored_figures`); {} before the first
    analysis or when the result has expired (with a warning). gr.Error for an unknown tab."""
    if tab not in TAB_FIGURES:
        raise gr.Error(f"unknown tab {tab!r}; valid choices: {', '.join(TAB_FIGURES)}")
    stored = store.lookup(state)
    if stored is None:
        return {}
    return stored_figures(stored, tab, hide_special, map_method, map_token)


def draw_tab(tab: Any, hide_special: Any = True, map_method: Any = None, map_token: Any = None,
             state: str | None = None) -> list[Any]:
    """A tab opened (and the API's /figures): its figures in FIGURE_KEYS order, the other tabs' unchanged."""
    values = {key: gr.update() for key in FIGURE_KEYS} | tab_figures(tab, hide_special, map_method, map_token, state)
    return [values[key] for key in FIGURE_KEYS]


def draw_after_analysis(tab: Any, hide_special: Any, state: str | None) -> list[Any]:
    """Right after an analysis (or a cached example) is shown: the open tab's figures, the answer map at its
    first method and row (as its pickers start); every other figure cleared, so that none of an earlier
    result stays on the page (the per-head views hidden) until its tab is opened."""
    tab = tab if tab in TAB_FIGURES else next(iter(CATALOG))
    values: dict[str, Any] = {key: None for key in FIGURE_KEYS}
    for name in LAYERED_METHODS:
        values[f"{name}:layer"] = gr.update(visible=False)
        values[f"{name}:heads"] = gr.update(value=None, visible=False)
    values |= tab_figures(tab, hide_special, None, 1, state)
    return [values[key] for key in FIGURE_KEYS]


def export_pngs(state: str | None, hide_special: Any) -> list[str]:
    """Every figure of the stored result as PNG files named by their keys (the answer maps with their
    first row outlined), in a fresh download folder; the same bytes the page shows for the same figure."""
    if not state:
        raise gr.Error("Nothing to export yet: press **Analyze** first.")
    stored = store.recall(state)
    if stored is None:
        raise gr.Error(store.EXPIRED)
    folder = exports.new_export_dir()
    paths: list[str] = []
    for key in figure_keys(stored.analysis):
        path = Path(folder) / file_name(key)
        exports.write_bytes(path, store.png_bytes(stored, key, bool(hide_special)))
        paths.append(str(path))
    return paths
