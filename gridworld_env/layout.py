"""Grid layouts: the character set, parsing, and the random generator of paper appendix A.2.

A layout is held as an ``[H, W]`` int8 array of *cell codes*, the same codes the partial
observation uses:

======  ====  ==========================  ========  =========
code    char  cell                        reward    terminal
======  ====  ==========================  ========  =========
0       ``#`` wall (or outside the grid)  -         -
1       ``.`` empty (``S``: the start)    0         no
2       ``-`` penalty                     -1        no
3       ``G`` goal                        +10       yes
4       ``g`` small goal                  +5        yes
5       ``x`` pit                         -5        yes
6       ``X`` deep pit                    -10       yes
======  ====  ==========================  ========  =========
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "CELL_REWARD",
    "CELL_TERMINAL",
    "DEFAULT_REWARD_PROBS",
    "MAX_LAYOUT_TRIES",
    "LayoutError",
    "cells_to_strings",
    "generate_cells",
    "has_path_to_goal",
    "normalize_reward_probs",
    "parse_layout",
]

WALL, EMPTY, PENALTY, GOAL, SMALL_GOAL, PIT, DEEP_PIT = range(7)
N_CELL_CODES = 7
CELL_REWARD = np.array([0.0, 0.0, -1.0, 10.0, 5.0, -5.0, -10.0])
CELL_TERMINAL = np.array([False, False, False, True, True, True, True])
CHAR_TO_CODE = {
    "#": WALL,
    ".": EMPTY,
    "S": EMPTY,
    "-": PENALTY,
    "G": GOAL,
    "g": SMALL_GOAL,
    "x": PIT,
    "X": DEEP_PIT,
}
CODE_TO_CHAR = np.array(["#", ".", "-", "G", "g", "x", "X"])

#: Canonical reward keys in the generator's order (after the wall draw).
REWARD_KEYS = ("+10", "+5", "-1", "-5", "-10")
_KEY_TO_CODE = {"+10": GOAL, "+5": SMALL_GOAL, "-1": PENALTY, "-5": PIT, "-10": DEEP_PIT}
#: Defaults read off the paper's Fig. 7 (see PAPER.md section 4.5).
DEFAULT_REWARD_PROBS: dict[str, float] = {
    "+10": 0.01,
    "+5": 0.01,
    "-1": 0.1,
    "-5": 0.01,
    "-10": 0.01,
}
#: Whole-layout redraws before the generator gives up (paper A.2 redraws until a path exists).
#: With the defaults a draw is valid about 97% of the time, so 100 tries never run out.
MAX_LAYOUT_TRIES = 100


class LayoutError(ValueError):
    """A layout or generator setting that cannot describe a valid MDP."""


def normalize_reward_probs(reward_probs: Mapping[Any, float] | None) -> dict[str, float]:
    """Merge a partial ``reward_probs`` dict with the defaults, canonicalising its keys.

    Keys may be strings or numbers: ``"+10"``, ``"10"`` and ``10`` all mean the +10 cell.

    Raises:
        ValueError: an unknown key (named in the message) or a probability outside [0, 1].
    """
    merged = dict(DEFAULT_REWARD_PROBS)
    if reward_probs is None:
        return merged
    if not isinstance(reward_probs, Mapping):
        raise ValueError(
            f"reward_probs must be a dict mapping rewards {list(REWARD_KEYS)} to probabilities, "
            f"got {reward_probs!r}"
        )
    for key, value in reward_probs.items():
        canonical = _canonical_reward_key(key)
        if canonical is None:
            raise ValueError(
                f"reward_probs has unknown key {key!r}; accepted keys are {list(REWARD_KEYS)} "
                "(strings or numbers)"
            )
        merged[canonical] = _probability(f"reward_probs[{key!r}]", value)
    return merged


def _canonical_reward_key(key: Any) -> str | None:
    if isinstance(key, bool):
        return None
    try:
        number = float(key)
    except (TypeError, ValueError):
        return None
    if not number.is_integer():
        return None
    canonical = f"{int(number):+d}"
    return canonical if canonical in _KEY_TO_CODE else None


def _probability(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


def check_generator_probs(wall_prob: Any, reward_probs: Mapping[str, float]) -> float:
    """Validate ``wall_prob`` and canonical ``reward_probs``; return ``wall_prob`` as float."""
    wall_prob = _probability("wall_prob", wall_prob)
    total = sum(reward_probs.values())
    if total > 1.0 + 1e-12:
        raise ValueError(
            f"reward_probs must sum to at most 1 (one categorical draw per non-wall cell), "
            f"got {total:.6g}"
        )
    return wall_prob


def generate_cells(
    rng: np.random.Generator,
    width: int,
    height: int,
    wall_prob: float,
    reward_probs: Mapping[str, float],
    max_tries: int = MAX_LAYOUT_TRIES,
) -> NDArray[np.int8]:
    """Draw a random layout as in paper appendix A.2.

    Cells are visited row by row from the top-left. Each cell other than the start (the centre
    ``(height // 2, width // 2)``) becomes a wall with probability ``wall_prob``; otherwise it
    becomes +10, +5, -1, -5 or -10 with the ``reward_probs`` (one categorical draw, tried in that
    order), else empty. So a cell is a wall with probability ``wall_prob`` and of reward kind
    ``k`` with probability ``(1 - wall_prob) * reward_probs[k]``. One uniform per cell serves
    both draws. The whole layout is redrawn from the same stream until a +10 cell can be reached
    from the start without crossing a wall or another terminal cell.

    Args:
        rng: the generator to draw from (advanced in place).
        width: grid width ``W``.
        height: grid height ``H``.
        wall_prob: probability of a wall.
        reward_probs: reward probabilities; merged with the defaults and validated by
            :func:`normalize_reward_probs` (a canonical dict is returned unchanged).
        max_tries: redraws before giving up.

    Returns:
        ``[H, W]`` int8 array of cell codes.

    Raises:
        ValueError: a bad size, probability or ``reward_probs`` key (named in the message).
        LayoutError: no valid layout after ``max_tries`` draws (e.g. ``wall_prob=0.99``).
    """
    for name, size in (("width", width), ("height", height), ("max_tries", max_tries)):
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {size!r}")
    reward_probs = normalize_reward_probs(reward_probs)
    wall_prob = check_generator_probs(wall_prob, reward_probs)
    if reward_probs["+10"] <= 0.0:
        raise LayoutError(
            "reward_probs['+10'] is 0, so no layout can have a path to a +10 cell; "
            "give it a positive probability"
        )
    codes = np.array([WALL] + [_KEY_TO_CODE[key] for key in REWARD_KEYS] + [EMPTY], np.int8)
    reward_cum = np.cumsum([reward_probs[key] for key in REWARD_KEYS])
    thresholds = np.concatenate(([wall_prob], wall_prob + (1.0 - wall_prob) * reward_cum))
    start = (height // 2) * width + width // 2
    for _ in range(max_tries):
        draws = rng.random(height * width)
        cells = codes[np.searchsorted(thresholds, draws, side="right")]
        cells[start] = EMPTY
        grid = cells.reshape(height, width)
        if has_path_to_goal(grid, (height // 2, width // 2)):
            return grid
    raise LayoutError(
        f"no layout with a path from the start to a +10 cell after {max_tries} draws "
        f"(wall_prob={wall_prob}, reward_probs={dict(reward_probs)}); lower wall_prob or raise "
        "reward_probs['+10']"
    )


def has_path_to_goal(cells: NDArray, start: tuple[int, int]) -> bool:
    """True if a +10 cell is reachable from ``start`` through non-wall, non-terminal cells."""
    height, width = cells.shape
    seen = np.zeros(cells.shape, dtype=bool)
    seen[start] = True
    queue = deque([start])
    terminal = CELL_TERMINAL[cells]
    while queue:
        row, col = queue.popleft()
        for d_row, d_col in ((0, -1), (0, 1), (-1, 0), (1, 0)):
            r, c = row + d_row, col + d_col
            if 0 <= r < height and 0 <= c < width and not seen[r, c] and cells[r, c] != WALL:
                if cells[r, c] == GOAL:
                    return True
                seen[r, c] = True
                if not terminal[r, c]:
                    queue.append((r, c))
    return False


def parse_layout(layout: Any) -> tuple[NDArray[np.int8], tuple[int, int]]:
    """Parse a hand-written map (sequence of equal-length strings, row 0 first).

    Returns:
        ``(cells, start)``: the ``[H, W]`` cell codes and the ``(row, col)`` of ``S``.

    Raises:
        LayoutError: not a sequence of strings, ragged rows, fewer than 3 rows or columns, an
            unknown character, or not exactly one ``S``.
    """
    if isinstance(layout, str) or not isinstance(layout, Sequence) or not layout:
        raise LayoutError(
            f"layout must be a non-empty list of equal-length strings, got {layout!r}"
        )
    rows = list(layout)
    if not all(isinstance(row, str) for row in rows):
        raise LayoutError("layout must be a list of strings (one per row, row 0 first)")
    width = len(rows[0])
    for index, row in enumerate(rows):
        if len(row) != width:
            raise LayoutError(
                f"layout is ragged: row 0 has {width} characters but row {index} has {len(row)}"
            )
    if len(rows) < 3 or width < 3:
        raise LayoutError(f"layout must be at least 3x3, got {len(rows)}x{width}")
    starts = []
    cells = np.empty((len(rows), width), dtype=np.int8)
    for r, row in enumerate(rows):
        for c, char in enumerate(row):
            if char not in CHAR_TO_CODE:
                raise LayoutError(
                    f"layout has unknown character {char!r} at row {r}, column {c}; accepted "
                    f"characters are {''.join(CHAR_TO_CODE)!r}"
                )
            cells[r, c] = CHAR_TO_CODE[char]
            if char == "S":
                starts.append((r, c))
    if len(starts) != 1:
        raise LayoutError(f"layout must contain exactly one start 'S', found {len(starts)}")
    return cells, starts[0]


def cells_to_strings(cells: NDArray, start: tuple[int, int]) -> tuple[str, ...]:
    """Inverse of :func:`parse_layout`: cell codes and start back to a tuple of strings."""
    chars = CODE_TO_CHAR[cells].copy()
    chars[start] = "S"
    return tuple("".join(row) for row in chars)
