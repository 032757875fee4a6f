"""Figures drawn when they are seen: the open tab's after each analysis, another tab's when it is opened,
every figure as PNG files only when the downloads are asked for.

The analyze event keeps its full result here, in memory, under a random id that the stored view state
carries; figures are drawn from it (the model never runs again), once per result, key and colour scaling:
each is rendered to PNG bytes a single time, and the page's image and the PNG download are those same
bytes. Results are kept for EXPORT_TTL_S (as long as the stored view state lives) and at most
MAX_RESULTS of them; a result that has gone says so instead of drawing nothing.
"""

from __future__ import annotations

import base64
import io
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.components.plot import PlotData

from attribution.catalog import CATALOG, LAYERED_METHODS
from attribution.display.plotting import draw_figure, figure_keys
from attribution.results import Analysis

from . import exports
from .tabs import method
from .view_state import load_view_state

MAX_RESULTS = 256  # a few MB at most each (per-head attention of a 1B model at 512 tokens is about 1 MB)
MAX_PNGS = 512
DPI = 100  # as the PNG downloads always were

#: The outputs the drawing events fill, in order: per method its bars (and layers, layer slider and per-head
#: view for layered methods), the answer-map heatmap, then the Compare tab's three figures.
FIGURE_KEYS = (
    [key for name in CATALOG for key in [f"{name}:bars"] + ([f"{name}:layers", f"{name}:layer", f"{name}:heads"]
                                                             if name in LAYERED_METHODS else [])]
    + ["answer_map:heatmap", "compare:heatmap", "compare:bars", "compare:agreement"]
)
#: Each tab's figure outputs → the figure key they show (`attribution.display.plotting.figure_keys`).
TAB_FIGURES: dict[str, dict[str, str]] = {
    **{name: {f"{name}:bars": f"{name}_bars", **({f"{name}:layers": f"{name}_layers"} if name in LAYERED_METHODS
                                                 else {})} for name in CATALOG},
    "answer_map": {"answer_map:heatmap": "answer_map"},  # + the picked method, see `_figure_key`
    "compare": {"compare:heatmap": "comparison_heatmap", "compare:bars": "comparison_bars",
                "compare:agreement": "agreement_heatmap"},
}
EXPIRED = "This result is no longer kept on the server (results are kept for an hour): press **Analyze** again."

_lock = threading.Lock()
_results: OrderedDict[str, tuple[float, Analysis]] = OrderedDict()
_pngs: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()


def remember(analysis: Analysis) -> str:
    """Keep an analysis for drawing its figures later; returns its id (random: one user cannot guess
    another's)."""
    result_id = uuid.uuid4().hex
    now = time.time()
    with _lock:
        _results[result_id] = (now, analysis)
        for old_id in [key for key, (stored, _a) in _results.items() if now - stored > exports.EXPORT_TTL_S]:
            del _results[old_id]
        while len(_results) > MAX_RESULTS:
            _results.popitem(last=False)
    return result_id


def recall(result_id: Any) -> Analysis | None:
    """The kept analysis, or None when it has expired (or never was)."""
    with _lock:
        stored = _results.get(result_id) if isinstance(result_id, str) else None
        if stored is None or time.time() - stored[0] > exports.EXPORT_TTL_S:
            return None
        _results.move_to_end(result_id)
        return stored[1]


def png_bytes(result_id: str, analysis: Analysis, key: str, hide_special: bool, selected: int = 1) -> bytes:
    """One figure of a kept result as PNG bytes, rendered once and reused."""
    cache_key = (result_id, key, bool(hide_special), selected)
    with _lock:
        cached = _pngs.get(cache_key)
        if cached is not None:
            _pngs.move_to_end(cache_key)
            return cached
    buffer = io.BytesIO()
    draw_figure(analysis, key, bool(hide_special), selected).savefig(buffer, format="png", dpi=DPI)
    data = buffer.getvalue()
    with _lock:
        _pngs[cache_key] = data
        while len(_pngs) > MAX_PNGS:
            _pngs.popitem(last=False)
    return data


def plot_value(data: bytes) -> PlotData:
    """PNG bytes as gr.Plot's value (the image the page shows)."""
    return PlotData(type="matplotlib", plot="data:image/png;base64," + base64.b64encode(data).decode("ascii"))


def _answer_map_pick(analysis: Analysis, map_method: Any, map_token: Any) -> tuple[str, int] | None:
    """The answer map's method and row to draw: the picked ones where they exist, else the first."""
    if not analysis.answer_map:
        return None
    name = map_method if map_method in analysis.answer_map else next(iter(analysis.answer_map))
    count = len(analysis.answer_map[name].targets)
    try:
        index = int(map_token)
    except (TypeError, ValueError):
        index = 1
    return name, min(max(index, 1), count)


def tab_figures(tab: Any, hide_special: Any = True, map_method: Any = None, map_token: Any = None,
                state: str | None = None) -> dict[str, Any]:
    """One tab's figure outputs by FIGURE_KEYS name, drawn from the kept result (the answer map for
    `map_method`/`map_token`); {} before the first analysis or when the result has expired (with a
    warning). gr.Error for an unknown tab."""
    if tab not in TAB_FIGURES:
        raise gr.Error(f"unknown tab {tab!r}; valid choices: {', '.join(TAB_FIGURES)}")
    data = load_view_state(state)
    if not data:
        return {}
    analysis = recall(data.get("result"))
    if analysis is None:
        gr.Warning(EXPIRED)
        return {}
    available = figure_keys(analysis)
    values: dict[str, Any] = {}
    for output, key in TAB_FIGURES[tab].items():
        selected = 1
        if tab == "answer_map":
            pick = _answer_map_pick(analysis, map_method, map_token)
            if pick is None:
                values[output] = None
                continue
            key, selected = f"answer_map_{pick[0]}", pick[1]
        values[output] = (plot_value(png_bytes(data["result"], analysis, key, bool(hide_special), selected))
                          if key in available else None)
    if tab in LAYERED_METHODS:
        values[f"{tab}:layer"], values[f"{tab}:heads"] = method.head_views(state, tab)
    return values


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
    """Every figure of the kept result as PNG files (the answer maps with their first row outlined), in a
    fresh download folder; the same bytes the page shows for the same figure."""
    data = load_view_state(state)
    if not data:
        raise gr.Error("Nothing to export yet: press **Analyze** first.")
    analysis = recall(data.get("result"))
    if analysis is None:
        raise gr.Error(EXPIRED)
    folder = exports.new_export_dir()
    paths: list[str] = []
    for key in figure_keys(analysis):
        path = Path(folder) / f"{key}.png"
        exports.write_bytes(path, png_bytes(data["result"], analysis, key, bool(hide_special)))
        paths.append(str(path))
    return paths
