"""Mechanisms behind the teacher trainer's speed: sub-env selection, the action choice kernel."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import gridworld_env  # noqa: F401  (registers the ids)
from distill_agents.teachers import kernels, policy_kernels
from distill_agents.teachers.records import (
    A2CParams,
    A2CTables,
    Actors,
    EpisodeBuffers,
    QParams,
    Tallies,
)


def _grid_vec(n_envs: int, **kwargs):
    return gym.make_vec(
        "DistillGrid-v0", num_envs=n_envs, vectorization_mode="vector_entry_point", **kwargs
    )


@pytest.mark.parametrize("observation", ["index", "partial_index", "full", "partial"])
def test_selected_sub_envs_step_like_envs_built_from_their_layouts(observation):
    envs = _grid_vec(6, layout_seed=3, observation=observation, parallel=False)
    idx = [4, 1, 1, 5, 0]
    sub = envs.select(idx)
    built = _grid_vec(
        5, layouts=[list(envs.layouts[i]) for i in idx], observation=observation, parallel=False
    )
    first, _ = sub.reset(seed=5)
    np.testing.assert_array_equal(first, built.reset(seed=5)[0])
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(2000):
        actions = rng.integers(0, 4, size=5)
        got, want = sub.step(actions), built.step(actions)
        for a, b in zip(got[:4], want[:4], strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(got[4]["state"], want[4]["state"])
        ends += int(got[2].sum() + got[3].sum())
    assert ends > 0  # the comparison went through autoresets
    assert sub.observation_space == built.observation_space
    assert sub.layout_seeds == tuple(3 + i for i in idx)
    assert sub.layouts == built.layouts
    for field in ("next_states", "next_probs", "next_rewards", "initial", "terminal"):
        np.testing.assert_array_equal(getattr(sub.models, field), getattr(built.models, field))
    np.testing.assert_array_equal(sub.models.state_to_index, built.models.state_to_index)


def test_select_leaves_the_source_env_untouched_and_copies_chains():
    envs = gym.make_vec(
        "DistillChain-v0", num_envs=3, vectorization_mode="vector_entry_point", observation="index"
    )
    before, _ = envs.reset(seed=1)
    states = envs.states
    sub = envs.select(np.array([2, 2, 0, 1]))
    assert sub.num_envs == 4 and sub.action_space.shape == (4,)
    with pytest.raises(RuntimeError, match="reset"):
        sub.step(np.zeros(4, dtype=np.int64))
    obs, _ = sub.reset(seed=0)
    assert obs.shape == (4,)
    sub.step(np.ones(4, dtype=np.int64))
    np.testing.assert_array_equal(envs.states, states)  # the source keeps its own state
    assert envs.num_envs == 3 and before.shape == (3,)


@pytest.mark.parametrize("indices", [[], [0, 3], [-1], [[0, 1]], [0.0, 1.0]])
def test_select_refuses_bad_indices(indices):
    envs = _grid_vec(3, observation="index")
    with pytest.raises(ValueError, match=r"indices must be a non-empty 1-D integer array"):
        envs.select(indices)


def _slow_greedy(row: np.ndarray, u: float) -> int:
    best = np.flatnonzero(row == row.max())
    return int(best[min(int(u * best.size), best.size - 1)])


def test_greedy_matches_a_slow_reference_on_rows_with_ties():
    rng = np.random.default_rng(0)
    for n_actions in (1, 2, 4, 7):
        for _ in range(300):
            row = rng.integers(0, 3, size=n_actions).astype(np.float64)  # many ties
            u = float(rng.random())
            assert policy_kernels.greedy(row, np.uint64(0), n_actions, u) == _slow_greedy(row, u)


def _q_call(kernel, status, next_obs, terminated, allow=True, n_episodes=10):
    n = status.size
    counts = np.zeros((2, 2), dtype=np.int64)
    zeros = np.zeros(n, dtype=np.int64)
    actors = Actors(np.array([0, n]), zeros, zeros.copy(), zeros.copy(), status, counts)
    tallies = Tallies(*(np.zeros(1, dtype=np.int64) for _ in range(3)), n_episodes)
    busy = kernel(
        actors, tallies, np.zeros((1, 4, 2)), QParams(0.1, 0.1, 0.9), np.ones(n),
        np.asarray(next_obs, dtype=np.int64), np.asarray(terminated), np.zeros(n, dtype=bool),
        np.full(n, 0.5), allow,
    )  # fmt: skip
    return busy, counts


@pytest.mark.parametrize("kernel", [kernels.q_step, kernels.q_step_parallel])
def test_q_kernels_return_the_busy_actors(kernel):
    status = np.array([kernels.ACTING, kernels.ACTING, kernels.IDLE, kernels.ENDED], np.int8)
    busy, counts = _q_call(kernel, status, [1, 2, 3, 0], [False, True, False, False])
    # acting, ended (its MDP may start more episodes), idle, just started
    assert busy == 3 == counts[-1, 0] and counts[-1, 1] == 2
    busy, _ = _q_call(kernel, status, [1, 2, 3, 0], [True, False, False, False], allow=False)
    assert busy == 1  # the second actor, still in its episode; the first may not restart


def test_a2c_kernel_returns_minus_one_when_an_episode_overflows_its_buffers():
    logits, values = np.zeros((1, 3, 2)), np.zeros((1, 3))
    status = np.array([kernels.ENDED], dtype=np.int8)
    started, completed, steps = (np.zeros(1, dtype=np.int64) for _ in range(3))
    buffers = EpisodeBuffers(np.zeros((1, 3), dtype=np.int64), np.zeros((1, 2), dtype=np.int64),
                             np.zeros((1, 2)), np.zeros(1, dtype=np.int64))  # fmt: skip
    counts = np.zeros((2, 3), dtype=np.int64)
    actors = Actors(np.array([0, 1]), np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64),
                    np.zeros(1, dtype=np.int64), status, counts)  # fmt: skip
    tallies = Tallies(started, completed, steps, 5)
    returned = []
    for _ in range(4):  # start, two recorded steps (the buffer's capacity), then overflow
        returned.append(kernels.a2c_step(
            actors, tallies, A2CTables(logits, values), A2CParams(0.1, 0.1, 0.9, True), buffers,
            np.zeros(1), np.array([1]), np.zeros(1, dtype=bool), np.zeros(1, dtype=bool),
            np.full(1, 0.5), True,
        ))  # fmt: skip
    assert returned == [1, 1, 1, -1] and counts[-1, 2] == 1 and steps[0] == 0


def test_q_kernel_chooses_actions_exactly_as_epsilon_greedy():
    rng = np.random.default_rng(1)
    n, n_index, n_actions, epsilon = 400, 3, 4, 0.3
    q = rng.integers(0, 2, size=(n, n_index, n_actions)).astype(np.float64)  # many ties
    next_obs = rng.integers(0, n_index, size=n)
    u = rng.random(n)
    status = np.full(n, kernels.ENDED, dtype=np.int8)  # every actor starts an episode at o'
    actions = np.zeros(n, dtype=np.int64)
    zeros = np.zeros(n, dtype=np.int64)
    actors = Actors(np.array([0, n]), np.arange(n), zeros.copy(), actions, status,
                    np.zeros((2, 2), dtype=np.int64))  # fmt: skip
    kernels.q_step(
        actors, Tallies(zeros.copy(), zeros.copy(), zeros.copy(), 5), q, QParams(epsilon, 0.1, 0.9),
        np.zeros(n), next_obs, np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), u, True,
    )  # fmt: skip
    flat = q.reshape(-1)
    expected = [
        policy_kernels.epsilon_greedy(
            flat, np.uint64((j * n_index + next_obs[j]) * n_actions), n_actions, u[j], epsilon
        )
        for j in range(n)
    ]
    np.testing.assert_array_equal(actions, expected)
    assert len(set(expected)) == n_actions  # the comparison covers random and greedy choices
