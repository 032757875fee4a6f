"""scaling.png: wall time against prompt length, the project's way and the notebook's."""

from __future__ import annotations

from pathlib import Path


def plot_scaling(cases: list[dict], path: Path, note: str = "") -> bool:
    rows = [c for c in cases if c.get("group") in ("length", "memory") and c["kind"] in ("analyze", "notebook")
            and "seconds" in c]
    if not rows:
        return False
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from matplotlib.ticker import FuncFormatter

    figure = Figure(figsize=(9, 5.5), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    lengths = set()
    for index, model in enumerate(dict.fromkeys(c["model"] for c in rows)):
        colour = colours[index % len(colours)]
        for kind in ("analyze", "notebook"):
            points = sorted((c["n_tokens"], c["seconds"]) for c in rows if c["model"] == model and c["kind"] == kind)
            if not points:
                continue
            xs = [p[0] for p in points]
            lengths.update(xs)
            if kind == "analyze":
                axes.plot(xs, [p[1]["total"] for p in points], "-", marker="o", color=colour,
                          label=f"{model}: attribution (project), full analysis")
                axes.plot(xs, [p[1]["integrated_gradients"] for p in points], ":", marker=".", color=colour,
                          label=f"{model}: attribution, IG-50 stage alone")
            else:
                axes.plot(xs, [p[1]["total"] for p in points], "--", marker="s", color=colour,
                          label=f"{model}: the notebook's way, full analysis")
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xticks(sorted(lengths))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.set_xlabel("prompt length (tokens, BOS included)")
    axes.set_ylabel("wall time (s), one run in a fresh process")
    axes.set_title("Full analysis (generate 20 + gradient + attention + IG-50), CPU fp32"
                   + (f"\n{note}" if note else ""), fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(path)
    return True
