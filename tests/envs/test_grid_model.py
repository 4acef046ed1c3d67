"""DistillGrid-v0 dynamics: the model against a slow reference, and step() against the model."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import gridworld_env  # noqa: F401  (registers the ids)
from gridworld_env.layout import CELL_REWARD, CELL_TERMINAL, WALL, parse_layout

SMALL = ("S.-G", ".#.x", "....")


def reference_row(cells, s, a, noise, absorb, stay_reward=True):
    """P(s' | s, a) and the reward of each s', straight from SPEC 1.1, one state at a time."""
    height, width = cells.shape
    s_term = height * width
    if s == s_term:
        return {s_term: 1.0}, {s_term: 0.0}
    row, col = divmod(s, width)
    if cells[row, col] == WALL:
        return {s_term: 1.0}, {s_term: 0.0}
    if CELL_TERMINAL[cells[row, col]]:
        return {s: 1.0}, {s: 0.0}

    def move(direction):
        if direction is None:
            return s
        d_row, d_col = [(0, -1), (0, 1), (-1, 0), (1, 0)][direction]
        r, c = row + d_row, col + d_col
        if not (0 <= r < height and 0 <= c < width) or cells[r, c] == WALL:
            return s
        return r * width + c

    probs = {s_term: absorb}
    intended = a if a < 4 else None
    outcomes = [(move(intended), (1 - absorb) * (1 - noise))]
    outcomes += [(move(d), (1 - absorb) * noise / 4) for d in range(4)]
    for target, p in outcomes:
        probs[target] = probs.get(target, 0.0) + p
    rewards = {t: (0.0 if t == s_term else CELL_REWARD[cells.flat[t]]) for t in probs}
    if not stay_reward and s in rewards:
        rewards[s] = 0.0
    return probs, rewards


def assert_model_matches_reference(env, noise, absorb, stay_reward=True):
    mdp = env.unwrapped.mdp
    cells = env.unwrapped.cells
    transitions, rewards = mdp.transitions, mdp.rewards
    for s in range(mdp.n_states):
        for a in range(mdp.n_actions):
            probs, rew = reference_row(cells, s, a, noise, absorb, stay_reward)
            expected = np.zeros(mdp.n_states)
            for target, p in probs.items():
                expected[target] += p
            np.testing.assert_allclose(transitions[s, a], expected, atol=1e-12, err_msg=f"{s},{a}")
            expected_reward = sum(p * rew[t] for t, p in probs.items())
            assert rewards[s, a] == pytest.approx(expected_reward, abs=1e-12)


@pytest.mark.parametrize("n_actions", [4, 6])
@pytest.mark.parametrize(("noise", "absorb"), [(0.1, 0.01), (0.0, 0.0), (0.3, 0.2)])
def test_small_layout_model_equals_reference(n_actions, noise, absorb):
    env = gym.make(
        "DistillGrid-v0", layout=SMALL, n_actions=n_actions, noise=noise, absorb_prob=absorb
    )
    assert_model_matches_reference(env, noise, absorb)


def test_random_layout_model_equals_reference():
    env = gym.make("DistillGrid-v0", width=7, height=5, layout_seed=11, n_actions=5)
    assert_model_matches_reference(env, 0.1, 0.01)


def test_exact_rows_by_hand():
    env = gym.make("DistillGrid-v0", layout=SMALL, n_actions=6)
    mdp = env.unwrapped.mdp
    t = mdp.transitions
    s_term = 12
    assert mdp.n_states == 13
    # From the start (0, 0), R: intended (0, 1) with 0.99 * (0.9 + 0.025); L and U bump the edge.
    assert t[0, 1, 1] == pytest.approx(0.99 * 0.925)
    assert t[0, 1, 0] == pytest.approx(0.99 * 0.05)
    assert t[0, 1, 4] == pytest.approx(0.99 * 0.025)
    assert t[0, 1, s_term] == pytest.approx(0.01)
    # D from (0, 1) runs into the wall at (1, 1): stays put.
    assert t[1, 3, 1] == pytest.approx(0.99 * (0.9 + 0.025 + 0.025))
    # Extra actions all stay put and share one row.
    assert t[0, 4, 0] == pytest.approx(0.99 * (0.9 + 0.05))
    np.testing.assert_array_equal(t[:, 4], t[:, 5])
    # Staying on the -1 cell (0, 2) by bumping the top edge pays -1; the noise move R lands on
    # the +10 cell next door.
    assert mdp.rewards[2, 2] == pytest.approx(-0.99 * (0.9 + 0.025) + 10 * 0.99 * 0.025)
    # Terminal +10 cell (0, 3) and s_term absorb with reward 0; the wall goes to s_term.
    for s in (3, 7, s_term):
        assert mdp.terminal[s]
        np.testing.assert_array_equal(t[s, :, s], 1.0)
        np.testing.assert_array_equal(mdp.rewards[s], 0.0)
    assert not mdp.terminal[5]
    np.testing.assert_array_equal(t[5, :, s_term], 1.0)
    assert mdp.initial[0] == 1.0 and mdp.initial.sum() == 1.0


def test_model_invariants_on_default_mdp():
    mdp = gym.make("DistillGrid-v0").unwrapped.mdp
    t = mdp.transitions
    np.testing.assert_allclose(t.sum(axis=-1), 1.0, atol=1e-12)
    assert t.shape == (401, 4, 401) and mdp.rewards.shape == (401, 4)
    assert mdp.initial[10 * 20 + 10] == 1.0
    term = np.flatnonzero(mdp.terminal)
    assert term[-1] == 400
    np.testing.assert_array_equal(t[term, :, term], 1.0)
    np.testing.assert_array_equal(mdp.rewards[term], 0.0)


def test_large_action_model_is_compact():
    mdp = gym.make("DistillGrid-v0", n_actions=4000).unwrapped.mdp
    assert mdp.n_actions == 4000 and mdp.n_rows == 5
    assert mdp.next_states.nbytes < 1_000_000
    assert mdp.rewards.shape == (401, 4000)


def test_sampled_transitions_match_model():
    env = gym.make("DistillGrid-v0", layout=SMALL, n_actions=5, noise=0.3, absorb_prob=0.05)
    mdp = env.unwrapped.mdp
    rng = np.random.default_rng(0)
    counts = np.zeros((mdp.n_states, mdp.n_actions, mdp.n_states))
    reward_sum = np.zeros((mdp.n_states, mdp.n_actions))
    _, info = env.reset(seed=1)
    state = info["state"]
    for _ in range(60_000):
        action = int(rng.integers(5))
        _, reward, terminated, truncated, info = env.step(action)
        counts[state, action, info["state"]] += 1
        reward_sum[state, action] += reward
        state = info["state"]
        if terminated or truncated:
            _, info = env.reset()
            state = info["state"]
    n = counts.sum(axis=-1)
    well_sampled = n >= 400
    assert well_sampled.sum() >= 20
    freq = counts[well_sampled] / n[well_sampled][:, None]
    p = mdp.transitions[well_sampled]
    tolerance = 5 * np.sqrt(p * (1 - p) / n[well_sampled][:, None]) + 1e-9
    assert np.all(np.abs(freq - p) <= tolerance)
    mean_reward = reward_sum[well_sampled] / n[well_sampled]
    np.testing.assert_allclose(mean_reward, mdp.rewards[well_sampled], atol=0.1)


def test_episode_dynamics_and_info_state():
    env = gym.make("DistillGrid-v0", layout=SMALL, noise=0.0, absorb_prob=0.0)
    obs, info = env.reset(seed=0)
    assert obs == 0 and info["state"] == 0
    # R, R lands on the -1 cell, R again lands on the +10 terminal.
    obs, reward, terminated, truncated, info = env.step(1)
    assert (obs, reward, terminated, truncated, info["state"]) == (1, 0.0, False, False, 1)
    obs, reward, terminated, _, info = env.step(1)
    assert (obs, reward, terminated) == (2, -1.0, False)
    obs, reward, terminated, _, info = env.step(2)  # bump the top edge: stay on -1
    assert (obs, reward, terminated) == (2, -1.0, False)
    obs, reward, terminated, _, info = env.step(1)
    assert (obs, reward, terminated, info["state"]) == (3, 10.0, True, 3)


def test_absorption_repeats_last_observation():
    env = gym.make(
        "DistillGrid-v0", layout=SMALL, observation="partial", view_size=3, absorb_prob=1.0
    )
    obs0, _ = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(1)
    assert info["state"] == 12 and terminated and not truncated and reward == 0.0
    np.testing.assert_array_equal(obs, obs0)
    assert env.unwrapped.agent_position == (0, 0)


def test_partial_observation_window():
    env = gym.make("DistillGrid-v0", layout=SMALL, observation="partial", view_size=3)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    # Window around (0, 0): the top row and left column are outside the grid (code 0).
    np.testing.assert_array_equal(obs, [0, 0, 0, 0, 1, 1, 0, 1, 0])
    table = env.unwrapped.observation_of_state
    assert table.shape == (13, 9)
    np.testing.assert_array_equal(table[5], -1)  # wall
    np.testing.assert_array_equal(table[12], -1)  # s_term
    # Cell (1, 2) sees -1 at (0, 2), +10 at (0, 3), -5 at (1, 3), the wall at (1, 1).
    np.testing.assert_array_equal(table[6], [1, 2, 3, 0, 1, 5, 1, 1, 1])


def test_full_observation_table():
    env = gym.make("DistillGrid-v0", layout=SMALL)
    table = env.unwrapped.observation_of_state
    expected = np.arange(13)
    expected[[5, 12]] = -1
    np.testing.assert_array_equal(table, expected)


def test_layout_roundtrip_rebuilds_same_mdp():
    env = gym.make("DistillGrid-v0", layout_seed=5)
    layout = env.unwrapped.layout
    assert isinstance(layout, tuple) and len(layout) == 20 and all(len(r) == 20 for r in layout)
    assert layout[10][10] == "S"
    rebuilt = gym.make("DistillGrid-v0", layout=layout).unwrapped.mdp
    original = env.unwrapped.mdp
    np.testing.assert_array_equal(rebuilt.transitions, original.transitions)
    np.testing.assert_array_equal(rebuilt.rewards, original.rewards)
    _cells, start = parse_layout(layout)
    assert start == (10, 10)


def test_deferred_layout_drawn_at_first_reset_and_kept():
    env = gym.make("DistillGrid-v0", layout_seed=None)
    assert env.unwrapped.layout is None
    with pytest.raises(RuntimeError, match="layout_seed"):
        _ = env.unwrapped.mdp
    env.reset(seed=3)
    first = env.unwrapped.layout
    assert first is not None
    env.reset(seed=4)
    assert env.unwrapped.layout == first
    other = gym.make("DistillGrid-v0", layout_seed=None)
    other.reset(seed=3)
    assert other.unwrapped.layout == first


def test_layout_seed_fixes_the_layout():
    a = gym.make("DistillGrid-v0", layout_seed=7).unwrapped.layout
    b = gym.make("DistillGrid-v0", layout_seed=7).unwrapped.layout
    c = gym.make("DistillGrid-v0", layout_seed=8).unwrapped.layout
    assert a == b and a != c
    assert (
        gym.make("DistillGrid-v0").unwrapped.layout
        == gym.make("DistillGrid-v0", layout_seed=0).unwrapped.layout
    )


def test_step_before_reset_and_bad_actions():
    env = gym.make("DistillGrid-v0").unwrapped
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    for bad in (4, -1, 1.5, "L", None, np.array([1, 2]), True):
        with pytest.raises(ValueError, match="action"):
            env.step(bad)
    env.step(np.int64(3))  # NumPy integers are accepted
    env.step(np.array(2))


@pytest.mark.parametrize("n_actions", [4, 6])
def test_stay_reward_false_pays_nothing_for_staying(n_actions):
    kw = {"layout": SMALL, "n_actions": n_actions, "noise": 0.1, "absorb_prob": 0.01}
    env = gym.make("DistillGrid-v0", stay_reward=False, **kw)
    assert_model_matches_reference(env, 0.1, 0.01, stay_reward=False)
    # Bumping the top edge from the -1 cell (0, 2) now pays nothing; the noise move R still
    # lands on the +10 cell next door.
    assert env.unwrapped.mdp.rewards[2, 2] == pytest.approx(10 * 0.99 * 0.025)
    # Only stays change: every other outcome is as with the default.
    default = gym.make("DistillGrid-v0", **kw).unwrapped.mdp
    np.testing.assert_array_equal(env.unwrapped.mdp.transitions, default.transitions)
    # The vector env builds the same model.
    envs = gym.make_vec("DistillGrid-v0", num_envs=2, vectorization_mode="vector_entry_point",
                        stay_reward=False, **kw)  # fmt: skip
    np.testing.assert_allclose(envs.unwrapped.models.mdp(1).rewards, env.unwrapped.mdp.rewards)
    with pytest.raises(ValueError, match="stay_reward must be True or False, got 'no'"):
        gym.make("DistillGrid-v0", stay_reward="no")
