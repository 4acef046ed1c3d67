"""Rendering of grid layouts: plain text and Fig. 7-style pictures (pure NumPy).

Two renderers, both pure functions of the layout (``[H, W]`` cell codes from
:mod:`gridworld_env.layout`), the start cell and the agent's cell:

- :func:`render_ansi`: the layout in the map character set (``#`` wall, ``S`` start, ``.`` empty,
  ``-`` -1, ``G`` +10, ``g`` +5, ``x`` -5, ``X`` -10), one line per row, row 0 first, with ``A`` on
  the agent's cell. No colour codes, so it round-trips to
  :func:`~gridworld_env.layout.cells_to_strings`.
- :func:`render_rgb`: an ``[H * cell_px, W * cell_px, 3]`` uint8 picture in the style of the paper's
  Fig. 7 (Czarnecki et al., 2019): walls black, the start blue, rewards written on their cells.

Palette of :func:`render_rgb` (:data:`CELL_COLORS`, indexed by cell code, start last):

==========  =====  ===============  ===============================================
cell        char   colour           note
==========  =====  ===============  ===============================================
wall        ``#``  black
empty       ``.``  white
-1          ``-``  pale amber       not terminal, so only a light tint
+10         ``G``  green            terminal (Fig. 7 colours all terminals green)
+5          ``g``  light green      terminal
-5          ``x``  light red        terminal; red, not green, so the sign shows at
-10         ``X``  red              a glance (the value is also written on the cell)
start       ``S``  blue             as in Fig. 7
==========  =====  ===============  ===============================================

Every reward cell carries its value ("+10", "+5", "-1", "-5", "-10") in near-black
(:data:`TEXT_COLOR`) from a built-in bitmap font (3x5 or 5x7 glyphs, whichever gives the taller
text) scaled by the largest integer factor that fits the cell: 10 px tall at the default 24 px,
14 px at 32 px; cells below 14 px get no text. Thin grey grid lines separate the cells; the agent
is an orange disc with a dark rim; with ``view_size`` the agent's ``view_size x view_size``
observation window is outlined in orange, clipped to the picture.

Pictures are built by one gather from a per-``cell_px`` cache of cell tiles (about 0.15 ms for a
20x20 layout at 24 px).
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gridworld_env.fileio import atomic_write
from gridworld_env.layout import (
    DEEP_PIT,
    EMPTY,
    GOAL,
    N_CELL_CODES,
    PENALTY,
    PIT,
    SMALL_GOAL,
    WALL,
    cells_to_strings,
)

__all__ = [
    "AGENT_COLOR",
    "CELL_COLORS",
    "DEFAULT_CELL_PX",
    "GRID_COLOR",
    "MIN_CELL_PX",
    "START_INDEX",
    "TEXT_COLOR",
    "VIEW_COLOR",
    "render_ansi",
    "render_rgb",
    "save_png",
]

#: Default side of one cell in pixels (a 20x20 layout is then 480x480).
DEFAULT_CELL_PX = 24
#: Smallest accepted ``cell_px``.
MIN_CELL_PX = 4
#: Row of :data:`CELL_COLORS` used for the start cell (after the seven cell codes).
START_INDEX = N_CELL_CODES

#: ``[8, 3]`` uint8 fill colour per cell code (0 wall .. 6 for -10), then the start cell.
CELL_COLORS = np.zeros((N_CELL_CODES + 1, 3), dtype=np.uint8)
CELL_COLORS[WALL] = (0, 0, 0)
CELL_COLORS[EMPTY] = (255, 255, 255)
CELL_COLORS[PENALTY] = (255, 232, 190)
CELL_COLORS[GOAL] = (46, 184, 76)
CELL_COLORS[SMALL_GOAL] = (150, 222, 140)
CELL_COLORS[PIT] = (244, 140, 122)
CELL_COLORS[DEEP_PIT] = (214, 62, 56)
CELL_COLORS[START_INDEX] = (62, 112, 230)
CELL_COLORS.flags.writeable = False

TEXT_COLOR = np.array((20, 20, 20), dtype=np.uint8)
GRID_COLOR = np.array((175, 175, 175), dtype=np.uint8)
AGENT_COLOR = np.array((255, 140, 0), dtype=np.uint8)
AGENT_RIM_COLOR = np.array((70, 40, 0), dtype=np.uint8)
VIEW_COLOR = np.array((255, 140, 0), dtype=np.uint8)

#: Text written on each cell code (empty string: none).
CELL_TEXT = ("", "", "-1", "+10", "+5", "-5", "-10")

# Bitmap fonts ("#" = ink), one glyph per character of the cell values. Blank columns are never
# stored, so glyphs are proportional; signs are 3 columns wide to keep "+10" / "-10" compact.
# Two sizes: a 3x5 font that doubles cleanly in small cells and a 5x7 font for large ones;
# _tiles picks whichever gives the tallest text that fits.
_FONTS: dict[str, dict[str, tuple[str, ...]]] = {
    "3x5": {
        "+": ("...", ".#.", "###", ".#.", "..."),
        "-": ("...", "...", "###", "...", "..."),
        "0": ("###", "#.#", "#.#", "#.#", "###"),
        "1": (".#", "##", ".#", ".#", ".#"),
        "5": ("###", "#..", "###", "..#", "###"),
        "9": ("###", "#.#", "###", "..#", "###"),
    },
    "5x7": {
        "+": ("...", "...", ".#.", "###", ".#.", "...", "..."),
        "-": ("...", "...", "...", "###", "...", "...", "..."),
        "0": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
        "1": (".#.", "##.", ".#.", ".#.", ".#.", ".#.", "###"),
        "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
        "9": (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
    },
}
#: Free pixels kept on each side of the text inside a cell's grid lines.
_TEXT_MARGIN = 1


def _text_bitmap(text: str, font: str) -> NDArray[np.bool_]:
    """``[glyph height, width]`` bool ink mask of ``text`` at scale 1 (1 blank column between)."""
    glyphs = _FONTS[font]
    height = len(glyphs["0"])
    parts: list[NDArray[np.bool_]] = []
    for index, char in enumerate(text):
        if index:
            parts.append(np.zeros((height, 1), dtype=bool))
        parts.append(np.array([[c == "#" for c in row] for row in glyphs[char]], dtype=bool))
    return np.concatenate(parts, axis=1)


def _text_masks(inner: int) -> list[NDArray[np.bool_] | None]:
    """Per cell code, the scaled ink mask of its value for a square of ``inner`` pixels.

    One font and one integer scale for all values (the widest, "+10", decides), chosen to make
    the text as tall as possible; ``None`` for codes without text or if nothing fits.
    """
    room = inner - 2 * _TEXT_MARGIN
    best: tuple[int, str, int] | None = None  # (text height, font, scale)
    for font in _FONTS:
        bitmaps = [_text_bitmap(t, font) for t in CELL_TEXT if t]
        widest = max(b.shape[1] for b in bitmaps)
        scale = min(room // widest, room // bitmaps[0].shape[0])
        if scale >= 1 and (best is None or scale * bitmaps[0].shape[0] > best[0]):
            best = (scale * bitmaps[0].shape[0], font, scale)
    if best is None:
        return [None] * len(CELL_TEXT)
    _, font, scale = best
    ones = np.ones((scale, scale), dtype=bool)
    return [np.kron(_text_bitmap(t, font), ones) if t else None for t in CELL_TEXT]


def _check_cell_px(cell_px: Any) -> int:
    if isinstance(cell_px, bool) or not isinstance(cell_px, (int, np.integer)):
        raise ValueError(f"cell_px must be an integer >= {MIN_CELL_PX}, got {cell_px!r}")
    if cell_px < MIN_CELL_PX:
        raise ValueError(f"cell_px must be an integer >= {MIN_CELL_PX}, got {cell_px}")
    return int(cell_px)


@lru_cache(maxsize=8)
def _tiles(cell_px: int) -> NDArray[np.uint8]:
    """``[8, cell_px, cell_px, 3]`` picture of one cell per cell code (start last).

    Each tile has its grid line on the top row and left column; the text is centred in the
    remaining ``(cell_px - 1)``-pixel square.
    """
    tiles = np.broadcast_to(
        CELL_COLORS[:, None, None, :], (N_CELL_CODES + 1, cell_px, cell_px, 3)
    ).copy()
    inner = cell_px - 1
    for code, ink in enumerate(_text_masks(inner)):
        if ink is None:
            continue
        top = 1 + (inner - ink.shape[0]) // 2
        left = 1 + (inner - ink.shape[1]) // 2
        tiles[code, top : top + ink.shape[0], left : left + ink.shape[1]][ink] = TEXT_COLOR
    tiles[:, 0, :] = GRID_COLOR
    tiles[:, :, 0] = GRID_COLOR
    tiles.flags.writeable = False
    return tiles


@lru_cache(maxsize=8)
def _agent_masks(cell_px: int) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """``(disc, rim)`` bool masks ``[cell_px, cell_px]`` of the agent marker."""
    centre = 1 + (cell_px - 1) / 2.0 - 0.5  # centre of the area inside the grid lines
    y, x = np.mgrid[0:cell_px, 0:cell_px]
    dist = np.hypot(y - centre, x - centre)
    radius = 0.36 * (cell_px - 1)
    rim = max(1.0, cell_px / 16.0)
    disc = dist <= radius
    inner = dist <= radius - rim
    return inner, disc & ~inner


def _check_cells(cells: Any) -> NDArray[np.intp]:
    array = np.asarray(cells)
    if array.ndim != 2 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"cells must be a non-empty 2-D integer array of cell codes 0..{N_CELL_CODES - 1}, "
            f"got shape {array.shape} and dtype {array.dtype}"
        )
    if array.min() < 0 or array.max() >= N_CELL_CODES:
        raise ValueError(
            f"cells must hold cell codes 0..{N_CELL_CODES - 1}, got values in "
            f"[{array.min()}, {array.max()}]"
        )
    return array.astype(np.intp)


def _check_position(name: str, position: Any, shape: tuple[int, ...]) -> tuple[int, int]:
    try:
        row, col = (int(v) for v in position)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (row, col) pair, got {position!r}") from None
    if not (0 <= row < shape[0] and 0 <= col < shape[1]):
        raise ValueError(
            f"{name} must be a (row, col) inside the {shape[0]}x{shape[1]} grid, got {position!r}"
        )
    return row, col


def render_ansi(cells: NDArray, start: tuple[int, int], agent: tuple[int, int] | None) -> str:
    """The layout as text, one line per row (row 0 first), ``A`` marking the agent.

    Uses the map character set of :func:`~gridworld_env.layout.parse_layout`, without colour
    codes: replacing ``A`` by the character underneath gives back
    ``cells_to_strings(cells, start)``.

    Args:
        cells: ``[H, W]`` cell codes.
        start: ``(row, col)`` of the start cell.
        agent: ``(row, col)`` of the agent's cell, or ``None`` for no agent.

    Returns:
        ``H`` lines of ``W`` characters, each ending in a newline.

    Raises:
        ValueError: ``cells`` is not a 2-D array of cell codes, or ``start``/``agent`` is not a
            cell of the grid.
    """
    array = _check_cells(cells)
    start = _check_position("start", start, array.shape)
    rows = [list(r) for r in cells_to_strings(array, start)]
    if agent is not None:
        row, col = _check_position("agent", agent, array.shape)
        rows[row][col] = "A"
    return "".join("".join(r) + "\n" for r in rows)


def render_rgb(
    cells: NDArray,
    start: tuple[int, int],
    agent: tuple[int, int] | None,
    view_size: int | None,
    *,
    cell_px: int = DEFAULT_CELL_PX,
) -> NDArray[np.uint8]:
    """A Fig. 7-style picture of the layout (palette in the module docstring).

    Args:
        cells: ``[H, W]`` cell codes.
        start: ``(row, col)`` of the start cell (drawn blue).
        agent: ``(row, col)`` of the agent's cell (an orange disc), or ``None`` for no agent.
        view_size: side of the agent's square observation window to outline (odd, >= 1;
            clipped to the picture), or ``None`` for no outline. Ignored when ``agent`` is None.
        cell_px: side of one cell in pixels (>= 4); values are written on reward cells when the
            cell is large enough for the bitmap font (>= 14 px).

    Returns:
        ``[H * cell_px, W * cell_px, 3]`` uint8 RGB array (a new array on every call).

    Raises:
        ValueError: bad ``cells``, ``start``, ``agent``, ``view_size`` or ``cell_px``.
    """
    array = _check_cells(cells)
    height, width = array.shape
    start = _check_position("start", start, array.shape)
    px = _check_cell_px(cell_px)
    if view_size is not None and (
        isinstance(view_size, bool)
        or not isinstance(view_size, (int, np.integer))
        or view_size < 1
        or view_size % 2 == 0
    ):
        raise ValueError(f"view_size must be None or an odd integer >= 1, got {view_size!r}")

    codes = array.copy()
    codes[start] = START_INDEX
    # One gather: [H, W, px, px, 3] -> [H, px, W, px, 3] -> picture.
    image = _tiles(px)[codes].transpose(0, 2, 1, 3, 4).reshape(height * px, width * px, 3)
    image[-1, :] = GRID_COLOR
    image[:, -1] = GRID_COLOR

    if agent is not None:
        row, col = _check_position("agent", agent, array.shape)
        if view_size is not None:
            half = int(view_size) // 2
            y0, y1 = max(0, row - half) * px, (min(height - 1, row + half) + 1) * px
            x0, x1 = max(0, col - half) * px, (min(width - 1, col + half) + 1) * px
            thick = max(2, px // 10)
            image[y0 : y0 + thick, x0:x1] = VIEW_COLOR
            image[y1 - thick : y1, x0:x1] = VIEW_COLOR
            image[y0:y1, x0 : x0 + thick] = VIEW_COLOR
            image[y0:y1, x1 - thick : x1] = VIEW_COLOR
        disc, rim = _agent_masks(px)
        cell = image[row * px : (row + 1) * px, col * px : (col + 1) * px]
        cell[disc] = AGENT_COLOR
        cell[rim] = AGENT_RIM_COLOR
    return image


def save_png(path: str | os.PathLike[str], rgb: Any) -> None:
    """Write an RGB(A) uint8 picture to ``path`` as PNG, atomically.

    The file is written to a temporary file in the same directory and moved into place with
    :func:`os.replace`, so readers never see a half-written PNG. ``matplotlib.image.imsave``
    writes arrays through Pillow without pyplot, so no GUI backend is selected or changed.

    Args:
        path: destination file (its directory must exist).
        rgb: ``[H, W, 3]`` or ``[H, W, 4]`` uint8 array, e.g. from :func:`render_rgb` or an
            ``env.render()`` frame (typed ``Any`` because Gymnasium types frames loosely; the
            value is checked here).

    Raises:
        ValueError: ``rgb`` is not an ``[H, W, 3|4]`` uint8 array.
    """
    array = np.asarray(rgb)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or array.dtype != np.uint8:
        raise ValueError(
            f"rgb must be an [H, W, 3] or [H, W, 4] uint8 array, got shape {array.shape} "
            f"and dtype {array.dtype}"
        )
    import matplotlib.image as mpimg  # lazy: matplotlib is only needed for saving

    contiguous = np.ascontiguousarray(array)
    atomic_write(path, lambda handle: mpimg.imsave(handle, contiguous, format="png"))
