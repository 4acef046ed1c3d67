"""Rendering of grid layouts (placeholder; replaced by the full renderer)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from gridworld_env.layout import cells_to_strings


def render_ansi(cells: NDArray, start: tuple[int, int], agent: tuple[int, int] | None) -> str:
    """The layout as text, ``A`` marking the agent."""
    rows = [list(r) for r in cells_to_strings(cells, start)]
    if agent is not None:
        rows[agent[0]][agent[1]] = "A"
    return "\n".join("".join(r) for r in rows) + "\n"


def render_rgb(
    cells: NDArray, start: tuple[int, int], agent: tuple[int, int] | None, view_size: int | None
) -> NDArray[np.uint8]:
    """Placeholder picture."""
    return np.zeros((cells.shape[0] * 8, cells.shape[1] * 8, 3), dtype=np.uint8)
