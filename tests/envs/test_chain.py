"""DistillChain-v0: the corridor MDP (SPEC 1.2)."""

from __future__ import annotations

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from helpers import assert_same_continuation, rollout

import gridworld_env  # noqa: F401  (registers the ids)
from gridworld_env.chain import DistillChainEnv, chain_mdp, chain_observation_table


def expected_chain_transitions(length, n_actions, noise, absorb):
    """Slow, obvious reference: dense P[s, a, s'] and R[s, a] built cell by cell."""
    n_states = length + 1
    s_term = length
    trans = np.zeros((n_states, n_actions, n_states))
    rew = np.zeros((n_states, n_actions))
    cell_reward = {0: -1.0, length - 1: 1.0}
    for s in range(n_states):
        for a in range(n_actions):
            if s in (0, length - 1, s_term):
                trans[s, a, s] = 1.0
                continue
            moves = {"L": max(s - 1, 0), "R": min(s + 1, length - 1), "stay": s}
            intended = {0: "L", 1: "R"}.get(a, "stay")
            outcomes = [
                (moves[intended], 1 - noise),
                (moves["L"], noise / 2),
                (moves["R"], noise / 2),
            ]
            for s_next, p in outcomes:
                trans[s, a, s_next] += (1 - absorb) * p
                rew[s, a] += (1 - absorb) * p * cell_reward.get(s_next, 0.0)
            trans[s, a, s_term] += absorb
    return trans, rew


@pytest.mark.parametrize(
    ("length", "n_actions", "noise", "absorb"),
    [(11, 2, 0.0, 0.01), (5, 3, 0.2, 0.1), (3, 6, 1.0, 0.0), (7, 2, 0.5, 1.0)],
)
def test_model_matches_reference(length, n_actions, noise, absorb):
    mdp = chain_mdp(length, n_actions, noise, absorb)
    trans, rew = expected_chain_transitions(length, n_actions, noise, absorb)
    np.testing.assert_allclose(mdp.transitions, trans, atol=1e-15)
    np.testing.assert_allclose(mdp.rewards, rew, atol=1e-15)
    np.testing.assert_allclose(mdp.transitions.sum(-1), 1.0, atol=1e-12)
    assert mdp.n_rows == (2 if n_actions == 2 else 3)  # one shared row for all extra actions


def test_exact_rows_by_hand():
    mdp = chain_mdp(length=5, n_actions=3, noise=0.2, absorb_prob=0.1)
    # From the middle cell 2: L goes left w.p. 0.9 * (0.8 + 0.1), right w.p. 0.9 * 0.1.
    np.testing.assert_allclose(mdp.transitions[2, 0], [0, 0.81, 0, 0.09, 0, 0.1])
    np.testing.assert_allclose(mdp.transitions[2, 1], [0, 0.09, 0, 0.81, 0, 0.1])
    np.testing.assert_allclose(mdp.transitions[2, 2], [0, 0.09, 0.72, 0.09, 0, 0.1])
    # From cell 1, L lands on the -1 end with probability 0.81.
    np.testing.assert_allclose(mdp.rewards[1], [-0.81, -0.09, -0.09])
    np.testing.assert_allclose(mdp.rewards[3], [0.09, 0.81, 0.09])
    np.testing.assert_array_equal(mdp.terminal, [True, False, False, False, True, True])
    np.testing.assert_array_equal(mdp.initial, [0, 0, 1, 0, 0, 0])


def test_terminal_states_absorb_with_zero_reward():
    mdp = chain_mdp(9, 4, 0.3, 0.05)
    for s in np.flatnonzero(mdp.terminal):
        np.testing.assert_array_equal(mdp.transitions[s, :, s], 1.0)
        np.testing.assert_array_equal(mdp.rewards[s], 0.0)
    assert set(np.flatnonzero(mdp.terminal)) == {0, 8, 9}


def test_observation_table_and_spaces():
    env = gym.make("DistillChain-v0", length=7)
    np.testing.assert_array_equal(chain_observation_table(7), [0, 1, 2, 3, 4, 5, 6, -1])
    np.testing.assert_array_equal(env.unwrapped.observation_of_state, chain_observation_table(7))
    assert env.observation_space == gym.spaces.Discrete(7)
    assert env.action_space == gym.spaces.Discrete(2)
    obs, info = env.reset(seed=0)
    assert obs == 3 and info["state"] == 3


def test_deterministic_walk_to_the_right_end():
    env = gym.make("DistillChain-v0", length=11, absorb_prob=0.0)
    obs, _ = env.reset(seed=0)
    rewards, observations = [], [obs]
    for _ in range(5):
        obs, reward, terminated, truncated, info = env.step(1)
        rewards.append(reward)
        observations.append(obs)
    assert observations == [5, 6, 7, 8, 9, 10]
    assert rewards == [0.0, 0.0, 0.0, 0.0, 1.0]
    assert terminated and not truncated and info["state"] == 10


def test_walk_to_the_left_end_pays_minus_one():
    env = gym.make("DistillChain-v0", length=3, absorb_prob=0.0)
    env.reset(seed=0)
    obs, reward, terminated, _, info = env.step(0)
    assert (obs, reward, terminated, info["state"]) == (0, -1.0, True, 0)


def test_extra_actions_stay_put():
    env = gym.make("DistillChain-v0", n_actions=5, absorb_prob=0.0)
    env.reset(seed=0)
    for action in (2, 3, 4):
        obs, reward, terminated, _, _ = env.step(action)
        assert (obs, reward, terminated) == (5, 0.0, False)


def test_absorption_repeats_the_last_observation():
    env = gym.make("DistillChain-v0", absorb_prob=1.0)
    env.reset(seed=0)
    obs, reward, terminated, _, info = env.step(1)
    assert (obs, reward, terminated, info["state"]) == (5, 0.0, True, 11)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"length": 5, "n_actions": 4, "noise": 0.3}, {"render_mode": "ansi"}],
)
def test_check_env_has_no_warnings(kwargs):
    env = gym.make("DistillChain-v0", **kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []


def test_same_seed_same_rollout():
    kwargs = {"length": 7, "noise": 0.3, "n_actions": 3, "absorb_prob": 0.05}
    first = rollout(gym.make("DistillChain-v0", **kwargs), seed=5)
    second = rollout(gym.make("DistillChain-v0", **kwargs), seed=5)
    third = rollout(gym.make("DistillChain-v0", **kwargs), seed=6)
    assert first == second
    assert first != third


def test_pickle_roundtrip_continues_identically():
    env = gym.make("DistillChain-v0", noise=0.4, absorb_prob=0.02)
    env.reset(seed=3)
    env.step(1)
    clone = pickle.loads(pickle.dumps(env))
    assert_same_continuation(env, clone, [1, 0, 0, 1, 1, 1, 0, 1] * 10, reset_seed=9)


def test_render_ansi():
    env = gym.make("DistillChain-v0", render_mode="ansi", absorb_prob=0.0)
    assert env.unwrapped.render() == "-.........+\n"  # before reset: no agent
    env.reset(seed=0)
    assert env.render() == "-....A....+\n"
    env.step(0)
    assert env.render() == "-...A.....+\n"
    assert gym.make("DistillChain-v0", length=3).unwrapped.render() is None


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"length": 10}, "length"),
        ({"length": 1}, "length"),
        ({"length": 2}, "length"),
        ({"length": 7.0}, "length"),
        ({"length": True}, "length"),
        ({"n_actions": 1}, "n_actions"),
        ({"n_actions": 2.5}, "n_actions"),
        ({"noise": -0.1}, "noise"),
        ({"noise": 1.5}, "noise"),
        ({"noise": "0.1"}, "noise"),
        ({"absorb_prob": 2.0}, "absorb_prob"),
        ({"absorb_prob": -1e-3}, "absorb_prob"),
        ({"render_mode": "human"}, "render_mode"),
    ],
)
def test_bad_kwargs_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        DistillChainEnv(**kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gym.make warns about unknown render modes first
        with pytest.raises(ValueError, match=name):
            gym.make("DistillChain-v0", **kwargs)
