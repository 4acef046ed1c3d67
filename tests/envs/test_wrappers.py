"""TableIndexWrapper: the observation table enumerated from the exact model."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import gridworld_env
from gridworld_env import TableIndexWrapper, reachable_states

ENCLOSED = (
    "S..#...",
    "..-#.G.",
    "...#...",
)


def test_full_observation_indices_are_reachable_cells():
    env = TableIndexWrapper(gym.make("DistillGrid-v0", layout=ENCLOSED))
    # The wall column cuts the map: only the 9 cells left of it are reachable.
    assert env.observation_space == gym.spaces.Discrete(9)
    expected = np.full(22, -1)
    for i, cell in enumerate([0, 1, 2, 7, 8, 9, 14, 15, 16]):
        expected[cell] = i
    np.testing.assert_array_equal(env.state_to_index, expected)
    obs, info = env.reset(seed=0)
    assert obs == 0 and info["state"] == 0
    with pytest.raises(ValueError, match="obs"):
        env.obs_to_index(5)  # the goal cell is never reachable


def test_partial_observation_table_is_a_bijection_on_reachable_windows():
    base = gym.make("DistillGrid-v0", observation="partial", layout_seed=3)
    env = TableIndexWrapper(base)
    inner = base.unwrapped
    reachable = reachable_states(inner.mdp)
    table = inner.observation_of_state
    windows = {table[s].tobytes() for s in np.flatnonzero(reachable) if table[s, 0] >= 0}
    n = env.observation_space.n
    assert n == len(windows)
    for i in range(n):
        assert env.obs_to_index(env.index_to_obs(i)) == i
    for s in np.flatnonzero(reachable):
        if table[s, 0] >= 0:
            assert env.state_to_index[s] == env.obs_to_index(table[s])
    assert env.state_to_index[-1] == -1  # s_term


def test_wrapped_rollout_stays_in_space_and_matches_state_index():
    env = TableIndexWrapper(gym.make("DistillGrid-v0", observation="partial", layout_seed=1))
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=0)
    for _ in range(3000):
        assert env.observation_space.contains(obs)
        if env.state_to_index[info["state"]] >= 0:
            assert obs == env.state_to_index[info["state"]]
        obs, _, terminated, truncated, info = env.step(int(rng.integers(4)))
        if terminated or truncated:
            obs, info = env.reset()


def test_aliasing_reduces_the_table():
    full = TableIndexWrapper(gym.make("DistillGrid-v0", layout_seed=2))
    partial = TableIndexWrapper(
        gym.make("DistillGrid-v0", layout_seed=2, observation="partial", view_size=3)
    )
    assert partial.observation_space.n < full.observation_space.n


def test_needs_a_fixed_layout():
    with pytest.raises(ValueError, match="layout"):
        TableIndexWrapper(gym.make("DistillGrid-v0", layout_seed=None))
    env = gym.make("DistillGrid-v0", layout_seed=None)
    env.reset(seed=0)
    assert TableIndexWrapper(env).observation_space.n > 0


def test_forwards_seed_and_rejects_unknown_observations():
    a = TableIndexWrapper(gym.make("DistillGrid-v0", observation="partial"))
    b = TableIndexWrapper(gym.make("DistillGrid-v0", observation="partial"))
    a.reset(seed=5)
    b.reset(seed=5)
    for action in [0, 1, 2, 3] * 20:
        assert a.step(action)[:3] == b.step(action)[:3]
    with pytest.raises(ValueError, match="obs"):
        a.obs_to_index(np.full(81, 6))
    with pytest.raises(ValueError, match="index"):
        a.index_to_obs(10**6)


def test_table_index_function_is_exported():
    env = gym.make("DistillGrid-v0", layout=ENCLOSED)
    state_to_index, index_to_obs = gridworld_env.table_index(
        env.unwrapped.mdp, env.unwrapped.observation_of_state
    )
    assert index_to_obs.tolist() == [0, 1, 2, 7, 8, 9, 14, 15, 16]
    assert state_to_index.max() == 8
