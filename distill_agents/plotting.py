"""Learning-curve figures from results rows (:mod:`distill_agents.results`), as PNG files.

:func:`plot_rows` draws one subplot per panel (a grid of panels x metrics when the rows hold
several metrics, as the paper's Fig. 3), one colour per method (the same in every subplot),
the mean over MDPs as a line with its 95% interval shaded, and the teacher's level (rows with
method ``"teacher"``) as a dotted black line. When the iterations span two decades or more
(early evaluation points), the x axis is symlog (:func:`x_axis_scale`). It uses matplotlib's Agg
renderer through a :class:`matplotlib.figure.Figure` (no pyplot, no global state, no display
needed) and writes the PNG atomically (temporary file, then rename).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from distill_agents.results import CurveRow, check_rows
from gridworld_env.fileio import atomic_write

__all__ = ["TEACHER", "plot_rows", "x_axis_scale"]

#: The method label of the teacher's rows.
TEACHER = "teacher"
_MAX_COLUMNS = 4
_LEGEND_FONT = 9
#: Width of one legend entry in inches: the line handle and gaps, plus a character's width
#: at :data:`_LEGEND_FONT` points (generous, so entries never overflow the figure).
_ENTRY_INCHES = 0.75
_CHAR_INCHES = 0.075


def _unique(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


def plot_rows(
    rows: Sequence[CurveRow],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """Draw the curves of ``rows`` and write them to ``path`` as a PNG.

    Args:
        rows: results rows (validated with :func:`distill_agents.results.check_rows`); rows
            of several figures are drawn together, panels labelled ``figure: panel`` then.
        path: destination ``.png`` (parent directories are created).
        title: figure title (default: the figure id(s)).
        dpi: resolution.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: no rows, or invalid rows.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("rows must hold at least one results row to plot")
    check_rows(rows)
    if isinstance(dpi, bool) or not isinstance(dpi, int) or dpi < 10:
        raise ValueError(f"dpi must be an integer >= 10, got {dpi!r}")
    figures = _unique([r.figure for r in rows])
    several = len(figures) > 1
    panels = _unique([(f"{r.figure}: {r.panel}" if several else r.panel) for r in rows])
    metrics = _unique([r.metric for r in rows])
    methods = _unique([r.method for r in rows if r.method != TEACHER])
    colours = _colours(len(methods))
    colour = dict(zip(methods, colours, strict=True))

    if len(metrics) == 1:
        n_cols = min(len(panels), _MAX_COLUMNS)
        n_rows = math.ceil(len(panels) / n_cols)
        cells = {(p, metrics[0]): divmod(i, n_cols) for i, p in enumerate(panels)}
    else:
        n_rows, n_cols = len(panels), len(metrics)
        cells = {(p, m): (i, j) for i, p in enumerate(panels) for j, m in enumerate(metrics)}
    fig = Figure(figsize=(4.0 * n_cols, 3.0 * n_rows + 0.8), dpi=dpi, layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)

    series: dict[tuple[str, str, str], list[CurveRow]] = {}
    for r in rows:
        panel = f"{r.figure}: {r.panel}" if several else r.panel
        series.setdefault((panel, r.metric, r.method), []).append(r)
    handles: dict[str, Any] = {}
    for (panel, metric, method), points in series.items():
        points.sort(key=lambda r: r.iteration)
        ax = axes[cells[panel, metric]]
        x = [r.iteration for r in points]
        mean = [r.mean for r in points]
        if method == TEACHER:
            (line,) = ax.plot(x, mean, linestyle=":", color="black", linewidth=1.5, label=TEACHER)
        else:
            (line,) = ax.plot(x, mean, color=colour[method], linewidth=1.5, label=method)
            low = [r.ci_low for r in points]
            high = [r.ci_high for r in points]
            ax.fill_between(x, low, high, color=colour[method], alpha=0.2, linewidth=0)
        handles.setdefault(method, line)
    used = set()
    iterations = sorted({r.iteration for r in rows})
    x_scale = x_axis_scale(iterations)
    for (panel, metric), (i, j) in cells.items():
        ax = axes[i, j]
        used.add((i, j))
        if x_scale is not None:
            ax.set_xscale("symlog", linthresh=x_scale)
        ax.set_title(panel if len(metrics) == 1 or not panel else f"{panel}: {metric}", fontsize=10)
        ax.set_xlabel("iteration")
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
    for i in range(n_rows):
        for j in range(n_cols):
            if (i, j) not in used:
                axes[i, j].set_axis_off()
    order = [m for m in [*methods, TEACHER] if m in handles]
    fig.legend(
        [handles[m] for m in order],
        order,
        loc="outside lower center",
        ncols=_legend_columns(order, fig.get_figwidth()),
        fontsize=_LEGEND_FONT,
        frameon=False,
    )
    fig.suptitle(title if title is not None else ", ".join(figures))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    data = buffer.getvalue()
    return atomic_write(path, lambda handle: handle.write(data))


def x_axis_scale(iterations: Sequence[int]) -> float | None:
    """``linthresh`` of a symlog x axis when the points span two decades or more, else ``None``.

    Curves evaluated early and then every ``k`` iterations (``reproduce``'s early points:
    10, 20, 50, ... before ``k``) keep their first points readable: linear up to the first
    positive point, logarithmic after it.
    """
    positive = [i for i in iterations if i > 0]
    if not positive or max(positive) < 100 * min(positive):
        return None
    return float(min(positive))


def _legend_columns(labels: Sequence[str], fig_width: float) -> int:
    """Legend columns that fit the figure's width (at most 5): long names get fewer columns."""
    entry = _ENTRY_INCHES + _CHAR_INCHES * max(len(label) for label in labels)
    return max(1, min(len(labels), 5, int(fig_width // entry)))


def _colours(n: int) -> list[str]:
    """``n`` distinct colours (tab10, then tab20, then a hue wheel)."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    if n <= 10:
        cmap = colormaps["tab10"]
        return [to_hex(cmap(i)) for i in range(n)]
    if n <= 20:
        cmap = colormaps["tab20"]
        return [to_hex(cmap(i)) for i in range(n)]
    cmap = colormaps["hsv"]
    return [to_hex(cmap(i / n)) for i in range(n)]
