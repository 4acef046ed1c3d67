"""The A.2 generator, the layout parser, and argument validation of DistillGrid-v0."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gridworld_env  # noqa: F401
from gridworld_env import LayoutError
from gridworld_env.grid import grid_mdp, grid_observation_table, make_grid_config
from gridworld_env.layout import (
    CELL_TERMINAL,
    DEFAULT_REWARD_PROBS,
    GOAL,
    WALL,
    cells_to_strings,
    generate_cells,
    has_path_to_goal,
    normalize_reward_probs,
    parse_layout,
)


def bfs_reaches_goal(cells, start):
    """Independent reference: flood fill over non-wall cells, not expanding terminal cells."""
    height, width = cells.shape
    reached = {start}
    frontier = [start]
    while frontier:
        nxt = []
        for r, c in frontier:
            if CELL_TERMINAL[cells[r, c]]:
                continue
            for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                inside = 0 <= rr < height and 0 <= cc < width
                if inside and cells[rr, cc] != WALL and (rr, cc) not in reached:
                    reached.add((rr, cc))
                    nxt.append((rr, cc))
        frontier = nxt
    return any(cells[p] == GOAL for p in reached)


def test_cell_kind_frequencies_match_generator_probabilities():
    rng = np.random.default_rng(123)
    probs = normalize_reward_probs(None)
    layouts = [generate_cells(rng, 20, 20, 1 / 12, probs) for _ in range(300)]
    cells = np.stack(layouts).reshape(300, -1)
    cells = np.delete(cells, 10 * 20 + 10, axis=1)  # the start is never modified
    n = cells.size
    live = 1 - 1 / 12
    expected = {WALL: 1 / 12, 2: 0.1 * live, 4: 0.01 * live, 5: 0.01 * live, 6: 0.01 * live}
    for code, p in expected.items():
        freq = (cells == code).sum() / n
        assert abs(freq - p) < 5 * np.sqrt(p * (1 - p) / n) + 0.002, (code, freq, p)
    # +10 is slightly over-represented: layouts without a reachable +10 are redrawn.
    goal_freq = (cells == GOAL).sum() / n
    assert 0.0085 < goal_freq < 0.013
    empty = live * (1 - sum(DEFAULT_REWARD_PROBS.values()))
    assert abs((cells == 1).sum() / n - empty) < 0.01


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    width=st.integers(3, 12),
    height=st.integers(3, 12),
    wall_prob=st.floats(0.0, 0.4),
    goal_prob=st.floats(0.02, 0.3),
)
def test_generated_layouts_are_valid(seed, width, height, wall_prob, goal_prob):
    probs = normalize_reward_probs({"+10": goal_prob})
    try:
        cells = generate_cells(np.random.default_rng(seed), width, height, wall_prob, probs)
    except LayoutError:
        return  # allowed only after the bounded number of redraws
    start = (height // 2, width // 2)
    assert cells.shape == (height, width)
    assert cells[start] == 1
    assert has_path_to_goal(cells, start) and bfs_reaches_goal(cells, start)
    mdp = grid_mdp(cells, start, 5, 0.1, 0.01)
    np.testing.assert_allclose(mdp.transitions.sum(-1), 1.0, atol=1e-12)
    table = grid_observation_table(cells, "partial", 3)
    ok = (table >= 0).all(axis=1)
    assert np.all((table[ok] >= 0) & (table[ok] <= 6))


def test_generator_is_reproducible_and_shared_with_env():
    probs = normalize_reward_probs(None)
    a = generate_cells(np.random.default_rng(9), 20, 20, 1 / 12, probs)
    b = generate_cells(np.random.default_rng(9), 20, 20, 1 / 12, probs)
    np.testing.assert_array_equal(a, b)
    env = gym.make("DistillGrid-v0", layout_seed=9)
    np.testing.assert_array_equal(env.unwrapped.cells, a)


def test_impossible_generator_settings_raise_after_bounded_tries():
    with pytest.raises(LayoutError, match="wall_prob"):
        gym.make("DistillGrid-v0", wall_prob=0.99)
    with pytest.raises(LayoutError, match=r"\+10"):
        gym.make("DistillGrid-v0", reward_probs={"+10": 0})


def test_reward_prob_keys_accept_strings_and_numbers():
    assert normalize_reward_probs({10: 0.2})["+10"] == 0.2
    assert normalize_reward_probs({"10": 0.2})["+10"] == 0.2
    assert normalize_reward_probs({"-5": 0.0, -1: 0.3}) == {
        **DEFAULT_REWARD_PROBS,
        "-5": 0.0,
        "-1": 0.3,
    }
    with pytest.raises(ValueError, match="'7'"):
        normalize_reward_probs({"7": 0.1})


def test_parse_roundtrip():
    layout = ("#S.-", "GgxX", "....")
    cells, start = parse_layout(layout)
    assert start == (0, 1)
    assert cells_to_strings(cells, start) == layout


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"view_size": 4}, "view_size"),
        ({"view_size": 1}, "view_size"),
        ({"width": 2}, "width"),
        ({"height": 2}, "height"),
        ({"width": 4.5}, "width"),
        ({"observation": "pixels"}, "observation"),
        ({"noise": 1.5}, "noise"),
        ({"noise": -0.1}, "noise"),
        ({"absorb_prob": 2}, "absorb_prob"),
        ({"wall_prob": -0.5}, "wall_prob"),
        ({"reward_probs": {"+10": 1.2}}, "reward_probs"),
        ({"reward_probs": {"+10": 0.5, "-1": 0.6}}, "sum"),
        ({"reward_probs": {"+3": 0.1}}, "'\\+3'"),
        ({"n_actions": 3}, "n_actions"),
        ({"layout_seed": -1}, "layout_seed"),
        ({"layout_seed": "a"}, "layout_seed"),
        ({"render_mode": "video"}, "render_mode"),
        ({"layout": ["S..", "...", ".."]}, "ragged"),
        ({"layout": ["...", "...", "..."]}, "exactly one start"),
        ({"layout": ["S..", "..S", "..."]}, "exactly one start"),
        ({"layout": ["S..", ".?.", "..."]}, "unknown character"),
        ({"layout": ["S.", ".."]}, "at least 3x3"),
        ({"layout": "S........"}, "list of"),
        ({"layout": ["S..", "...", "..."], "width": 4}, "width"),
    ],
)
@pytest.mark.filterwarnings("ignore:.*render_mode")
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gym.make("DistillGrid-v0", **kwargs)


def test_config_accepts_matching_size_with_layout():
    cfg = make_grid_config(width=3, height=3, layout=["S..", "...", "..G"])
    assert (cfg.width, cfg.height, cfg.start) == (3, 3, (0, 0))
