"""DistillOscillation-v0: the 7-state MDP of the paper's Fig. 2 / appendix C (SPEC 1.3)."""

from __future__ import annotations

import itertools
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import gridworld_env  # noqa: F401  (registers the ids)
from gridworld_env.oscillation import (
    STATE_NAMES,
    DistillOscillationEnv,
    oscillation_mdp,
    oscillation_observation_table,
)

L, R = 0, 1
# (first action, second action) -> (state after the first, final state, reward of the second)
PATHS = {
    (L, L): (1, 3, -1.0),
    (L, R): (1, 4, -2.0),
    (R, L): (2, 5, 0.0),
    (R, R): (2, 6, -3.0),
}


def test_model_is_exact():
    mdp = oscillation_mdp()
    assert (mdp.n_states, mdp.n_actions) == (7, 2)
    expected = np.zeros((7, 2, 7))
    for s, a, s_next in [(0, L, 1), (0, R, 2), (1, L, 3), (1, R, 4), (2, L, 5), (2, R, 6)]:
        expected[s, a, s_next] = 1.0
    for s in range(3, 7):
        expected[s, :, s] = 1.0  # terminal leaves absorb
    np.testing.assert_array_equal(mdp.transitions, expected)
    np.testing.assert_array_equal(
        mdp.rewards, [[0, 0], [-1, -2], [0, -3], [0, 0], [0, 0], [0, 0], [0, 0]]
    )
    np.testing.assert_array_equal(mdp.terminal, [False] * 3 + [True] * 4)
    np.testing.assert_array_equal(mdp.initial, [1, 0, 0, 0, 0, 0, 0])


def test_observation_aliases_sl_and_sr():
    np.testing.assert_array_equal(oscillation_observation_table(), [0, 1, 1, 1, 1, 1, 1])
    env = gym.make("DistillOscillation-v0")
    assert env.observation_space == gym.spaces.Discrete(2)
    assert env.action_space == gym.spaces.Discrete(2)


@pytest.mark.parametrize(("first", "second"), list(itertools.product([L, R], repeat=2)))
def test_every_path(first, second):
    mid, final, last_reward = PATHS[(first, second)]
    env = gym.make("DistillOscillation-v0")
    obs, info = env.reset(seed=0)
    assert (obs, info["state"]) == (0, 0)
    obs, reward, terminated, truncated, info = env.step(first)
    assert (obs, reward, terminated, truncated, info["state"]) == (1, 0.0, False, False, mid)
    obs, reward, terminated, truncated, info = env.step(second)
    assert (obs, reward, terminated, truncated, info["state"]) == (
        1,
        last_reward,
        True,
        False,
        final,
    )
    assert env.unwrapped.state_name == STATE_NAMES[final]


@pytest.mark.parametrize("render_mode", [None, "ansi"])
def test_check_env_has_no_warnings(render_mode):
    env = gym.make("DistillOscillation-v0", render_mode=render_mode)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []


def test_same_seed_same_rollout_and_pickle():
    def trace(env, actions):
        out = [env.reset(seed=1)]
        for a in actions:
            step = env.step(a)
            out.append(step)
            if step[2]:
                out.append(env.reset())
        return out

    actions = [int(a) for a in np.random.default_rng(0).integers(2, size=40)]
    first = trace(gym.make("DistillOscillation-v0"), actions)
    assert first == trace(gym.make("DistillOscillation-v0"), actions)
    env = gym.make("DistillOscillation-v0")
    env.reset(seed=0)
    env.step(R)
    clone = pickle.loads(pickle.dumps(env))
    assert env.step(R) == clone.step(R)
    assert env.reset() == clone.reset()
    assert env.step(L) == clone.step(L)


def test_render_ansi_names_the_state():
    env = gym.make("DistillOscillation-v0", render_mode="ansi")
    env.reset(seed=0)
    assert env.render() == "[s0] > sL sR > sLL sLR sRL sRR\n"
    env.step(R)
    assert env.render() == "s0 > sL [sR] > sLL sLR sRL sRR\n"
    env.step(L)
    assert env.render() == "s0 > sL sR > sLL sLR [sRL] sRR\n"


def test_bad_render_mode():
    with pytest.raises(ValueError, match="render_mode"):
        DistillOscillationEnv(render_mode="rgb_array")
