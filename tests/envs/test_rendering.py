"""Tests for gridworld_env.rendering: text and Fig. 7-style pictures."""

from __future__ import annotations

import os

import gymnasium as gym
import matplotlib.image as mpimg
import numpy as np
import pytest

import gridworld_env  # noqa: F401  (registers the environments)
from gridworld_env import layout as lay
from gridworld_env.rendering import (
    AGENT_COLOR,
    CELL_COLORS,
    DEFAULT_CELL_PX,
    GRID_COLOR,
    START_INDEX,
    TEXT_COLOR,
    VIEW_COLOR,
    render_ansi,
    render_rgb,
    save_png,
)

# Every cell kind once or more: wall, empty, -1, +10, +5, -5, -10, start.
SMALL = ("#.-Gg", "xXS..", "..-#G")
PX = DEFAULT_CELL_PX


@pytest.fixture
def small():
    return lay.parse_layout(SMALL)


def cell_block(image, row, col, px=PX):
    return image[row * px : (row + 1) * px, col * px : (col + 1) * px]


def corner(image, row, col, px=PX):
    """A pixel near the top-left corner of a cell, inside the grid lines and away from text."""
    return image[row * px + 1, col * px + 1]


def colour_mask(block, colour):
    return np.all(block == np.asarray(colour, dtype=np.uint8), axis=-1)


# ----------------------------------------------------------------------------------------- ansi


def test_ansi_exact_without_agent(small):
    cells, start = small
    assert render_ansi(cells, start, None) == "#.-Gg\nxXS..\n..-#G\n"


def test_ansi_exact_with_agent(small):
    cells, start = small
    assert render_ansi(cells, start, (2, 1)) == "#.-Gg\nxXS..\n.A-#G\n"
    assert render_ansi(cells, start, start) == "#.-Gg\nxXA..\n..-#G\n"
    assert render_ansi(cells, start, (0, 4)) == "#.-GA\nxXS..\n..-#G\n"


def test_ansi_round_trip_on_generated_layouts():
    rng = np.random.default_rng(3)
    for seed in range(5):
        cells = lay.generate_cells(
            np.random.default_rng(seed), 9, 7, 1 / 12, lay.DEFAULT_REWARD_PROBS
        )
        start = (3, 4)
        expected = lay.cells_to_strings(cells, start)
        plain = render_ansi(cells, start, None)
        assert "\x1b" not in plain
        assert tuple(plain.splitlines()) == expected
        parsed, parsed_start = lay.parse_layout(plain.splitlines())
        assert parsed_start == start
        np.testing.assert_array_equal(parsed, cells)
        for _ in range(5):
            agent = (int(rng.integers(7)), int(rng.integers(9)))
            lines = render_ansi(cells, start, agent).splitlines()
            assert sum(line.count("A") for line in lines) == 1
            assert lines[agent[0]][agent[1]] == "A"
            restored = [list(line) for line in lines]
            restored[agent[0]][agent[1]] = expected[agent[0]][agent[1]]
            assert tuple("".join(r) for r in restored) == expected


@pytest.mark.parametrize("agent", [(3, 0), (0, 5), (-1, 0), (1,), "ab"])
def test_ansi_rejects_agent_outside_grid(small, agent):
    cells, start = small
    with pytest.raises(ValueError, match="agent"):
        render_ansi(cells, start, agent)


# ------------------------------------------------------------------------------------------ rgb


@pytest.mark.parametrize(
    ("height", "width", "px"), [(3, 5, 24), (7, 4, 16), (20, 20, 24), (3, 3, 4), (4, 6, 33)]
)
def test_rgb_shape_and_dtype(height, width, px):
    cells = np.ones((height, width), dtype=np.int8)
    cells[0, 0] = lay.GOAL
    image = render_rgb(cells, (height // 2, width // 2), (0, 0), 3, cell_px=px)
    assert image.shape == (height * px, width * px, 3)
    assert image.dtype == np.uint8


def test_rgb_matches_slow_reference_without_text(small):
    """At 8 px there is no room for text: every pixel is a fill colour or a grid line."""
    cells, start = small
    px = 8
    image = render_rgb(cells, start, None, None, cell_px=px)
    height, width = cells.shape
    expected = np.zeros_like(image)
    for y in range(height * px):
        for x in range(width * px):
            row, col = divmod(y, px)[0], divmod(x, px)[0]
            on_line = y % px == 0 or x % px == 0 or y == height * px - 1 or x == width * px - 1
            code = START_INDEX if (row, col) == start else cells[row, col]
            expected[y, x] = GRID_COLOR if on_line else CELL_COLORS[code]
    np.testing.assert_array_equal(image, expected)


def test_rgb_cell_colours(small):
    cells, start = small
    image = render_rgb(cells, start, None, None)
    wall, empty, penalty = corner(image, 0, 0), corner(image, 0, 1), corner(image, 0, 2)
    goal, small_goal = corner(image, 0, 3), corner(image, 0, 4)
    pit, deep_pit, start_px = corner(image, 1, 0), corner(image, 1, 1), corner(image, *start)
    assert wall.tolist() == [0, 0, 0]
    assert empty.tolist() == [255, 255, 255]
    r, g, b = start_px.astype(int)
    assert b > r + 100 and b > g + 50, "start should be blue"
    for terminal in (goal, small_goal):
        r, g, b = terminal.astype(int)
        assert g > r + 50 and g > b + 50, "positive terminals should be green"
    for terminal in (pit, deep_pit):
        r, g, b = terminal.astype(int)
        assert r > g + 50 and r > b + 50, "negative terminals should be red"
    # -1 is a light tint: bright in every channel but not white.
    assert penalty.min() > 150 and penalty.tolist() != [255, 255, 255]
    # Terminal colours differ from every non-terminal colour, and all kinds differ.
    colours = {tuple(c) for c in (wall, empty, penalty, goal, small_goal, pit, deep_pit, start_px)}
    assert len(colours) == 8
    # The second +10 cell looks like the first.
    np.testing.assert_array_equal(corner(image, 2, 4), goal)


def test_rgb_grid_lines(small):
    cells, start = small
    image = render_rgb(cells, start, None, None)
    for row in range(cells.shape[0]):
        assert colour_mask(image[row * PX], GRID_COLOR).all()
    assert colour_mask(image[-1], GRID_COLOR).all()
    assert colour_mask(image[:, -1], GRID_COLOR).all()
    assert colour_mask(image[:, 2 * PX], GRID_COLOR).all()


@pytest.mark.parametrize("px", [16, 24, 32, 48])
def test_rgb_text_on_reward_cells_only(small, px):
    cells, start = small
    image = render_rgb(cells, start, None, None, cell_px=px)
    ink = {}
    for row in range(cells.shape[0]):
        for col in range(cells.shape[1]):
            mask = colour_mask(cell_block(image, row, col, px), TEXT_COLOR)
            code = cells[row, col]
            if code in (lay.WALL, lay.EMPTY) or (row, col) == start:
                assert not mask.any(), f"no text expected on cell {(row, col)}"
            else:
                assert mask.sum() >= 10, f"text expected on cell {(row, col)}"
                ink.setdefault(int(code), mask)
                # Text keeps clear of the grid lines.
                assert not mask[0].any() and not mask[:, 0].any()
    # Each value is written differently ("+5" vs "-5", "+10" vs "-10", ...).
    masks = list(ink.values())
    assert len(masks) == 5
    for i in range(5):
        for j in range(i + 1, 5):
            assert not np.array_equal(masks[i], masks[j])


def test_rgb_text_is_dark(small):
    cells, start = small
    image = render_rgb(cells, start, None, None)
    assert int(TEXT_COLOR.max()) < 60
    block = cell_block(image, 0, 3)
    dark = np.all(block < 60, axis=-1)
    assert dark.sum() >= 10


def test_rgb_no_text_in_tiny_cells(small):
    cells, start = small
    image = render_rgb(cells, start, None, None, cell_px=10)
    assert not colour_mask(image, TEXT_COLOR).any()


def test_rgb_agent_at_cell_centre(small):
    cells, start = small
    for agent in [start, (2, 4), (0, 0), (2, 1)]:
        image = render_rgb(cells, start, agent, None)
        centre = image[agent[0] * PX + PX // 2, agent[1] * PX + PX // 2]
        assert centre.tolist() == AGENT_COLOR.tolist()
        # The agent is drawn only in its own cell.
        plain = render_rgb(cells, start, None, None)
        changed = np.any(image != plain, axis=-1)
        rows, cols = np.nonzero(changed)
        assert changed.any()
        assert set((rows // PX).tolist()) == {agent[0]}
        assert set((cols // PX).tolist()) == {agent[1]}
    image = render_rgb(cells, start, None, None)
    centre = image[start[0] * PX + PX // 2, start[1] * PX + PX // 2]
    assert centre.tolist() == CELL_COLORS[START_INDEX].tolist()


@pytest.mark.parametrize(
    ("agent", "view_size", "window"),
    [
        ((1, 2), 3, (0, 2, 1, 3)),  # fully inside: rows 0..2, cols 1..3
        ((1, 1), 3, (0, 2, 0, 2)),
        ((0, 4), 3, (0, 1, 3, 4)),  # clipped at the top and the right
        ((1, 2), 9, (0, 2, 0, 4)),  # larger than the grid: the whole picture
        ((2, 0), 1, (2, 2, 0, 0)),  # just the agent's cell
    ],
)
def test_rgb_view_outline(small, agent, view_size, window):
    cells, start = small
    r0, r1, c0, c1 = window
    with_view = render_rgb(cells, start, agent, view_size)
    without = render_rgb(cells, start, agent, None)
    y0, y1, x0, x1 = r0 * PX, (r1 + 1) * PX, c0 * PX, (c1 + 1) * PX
    # The outermost ring of the window's pixels is the outline colour.
    for edge in (
        with_view[y0, x0:x1],
        with_view[y1 - 1, x0:x1],
        with_view[y0:y1, x0],
        with_view[y0:y1, x1 - 1],
    ):
        assert colour_mask(edge, VIEW_COLOR).all()
    # Nothing changes outside the window, and the window's inside is mostly untouched.
    changed = np.any(with_view != without, axis=-1)
    outside = np.ones_like(changed)
    outside[y0:y1, x0:x1] = False
    assert changed.any()
    assert not changed[outside].any()
    assert changed.sum() < 0.5 * (y1 - y0) * (x1 - x0)
    # Without view_size there is no outline: the window's ring shows the cells' own pixels.
    assert not colour_mask(without[y0, x0 + 2 : x1 - 2], VIEW_COLOR).all()


def test_rgb_view_needs_agent(small):
    cells, start = small
    np.testing.assert_array_equal(
        render_rgb(cells, start, None, 3), render_rgb(cells, start, None, None)
    )


def test_rgb_returns_fresh_arrays(small):
    cells, start = small
    first = render_rgb(cells, start, (0, 1), 3)
    reference = first.copy()
    first[:] = 7
    np.testing.assert_array_equal(render_rgb(cells, start, (0, 1), 3), reference)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"cell_px": 2}, "cell_px"),
        ({"cell_px": 12.0}, "cell_px"),
        ({"view_size": 4}, "view_size"),
        ({"view_size": 0}, "view_size"),
        ({"agent": (5, 5)}, "agent"),
        ({"start": (9, 0)}, "start"),
        ({"cells": np.full((3, 3), 9)}, "cells"),
        ({"cells": np.ones(5, dtype=np.int8)}, "cells"),
    ],
)
def test_rgb_rejects_bad_arguments(small, kwargs, name):
    cells, start = small
    args = {"cells": cells, "start": start, "agent": (1, 1), "view_size": 3}
    args.update(kwargs)
    cell_px = args.pop("cell_px", PX)
    with pytest.raises(ValueError, match=name):
        render_rgb(**args, cell_px=cell_px)


# ------------------------------------------------------------------------------------ via the env


def test_env_rgb_array_render():
    env = gym.make("DistillGrid-v0", render_mode="rgb_array")
    env.reset(seed=0)
    image = env.render()
    base = env.unwrapped
    assert isinstance(image, np.ndarray)
    assert image.shape == (20 * PX, 20 * PX, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(
        image, render_rgb(base.cells, base.config.start, base.agent_position, None)
    )
    # After reset the agent stands on the start (the centre cell).
    assert image[10 * PX + PX // 2, 10 * PX + PX // 2].tolist() == AGENT_COLOR.tolist()
    env.close()


def test_env_rgb_array_partial_outlines_view():
    env = gym.make("DistillGrid-v0", render_mode="rgb_array", observation="partial")
    env.reset(seed=0)
    image = env.render()
    # The 9x9 window around (10, 10) spans cells 6..14.
    assert colour_mask(image[6 * PX, 6 * PX : 15 * PX], VIEW_COLOR).all()
    assert colour_mask(image[6 * PX : 15 * PX, 15 * PX - 1], VIEW_COLOR).all()
    env.close()


def test_env_ansi_render():
    env = gym.make("DistillGrid-v0", render_mode="ansi")
    env.reset(seed=0)
    text = env.render()
    base = env.unwrapped
    assert isinstance(text, str)
    lines = text.splitlines()
    assert len(lines) == 20 and all(len(line) == 20 for line in lines)
    assert lines[10][10] == "A" and text.count("A") == 1
    restored = lines[10][:10] + "S" + lines[10][11:]
    assert (*lines[:10], restored, *lines[11:]) == base.layout
    env.close()


# ------------------------------------------------------------------------------------- save_png


def test_save_png_round_trip(tmp_path, small):
    cells, start = small
    image = render_rgb(cells, start, (1, 1), 3)
    path = tmp_path / "grid.png"
    save_png(path, image)
    back = mpimg.imread(path)
    assert back.shape[:2] == image.shape[:2] and back.shape[2] in (3, 4)
    np.testing.assert_array_equal(np.round(back[..., :3] * 255).astype(np.uint8), image)
    assert os.listdir(tmp_path) == ["grid.png"]  # no temporary file left behind
    save_png(str(path), image[:24])  # overwrite in place, str path
    assert mpimg.imread(path).shape[:2] == (24, image.shape[1])
    assert os.listdir(tmp_path) == ["grid.png"]


@pytest.mark.parametrize(
    "rgb",
    [
        None,
        np.zeros((4, 4), np.uint8),
        np.zeros((4, 4, 2), np.uint8),
        np.zeros((4, 4, 3), np.float64),
    ],
)
def test_save_png_rejects_bad_arrays(tmp_path, rgb):
    with pytest.raises(ValueError, match="rgb"):
        save_png(tmp_path / "bad.png", rgb)
    assert os.listdir(tmp_path) == []


def test_fonts_have_distinct_glyphs_of_equal_height():
    from gridworld_env.rendering import _FONTS

    for name, glyphs in _FONTS.items():
        assert set(glyphs) == set("+-0159"), name
        assert len({len(rows) for rows in glyphs.values()}) == 1, name
        for rows in glyphs.values():
            assert len({len(row) for row in rows}) == 1, name
        shapes = {tuple(rows) for rows in glyphs.values()}
        assert len(shapes) == len(glyphs), f"two glyphs of font {name} look the same"
