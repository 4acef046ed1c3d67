"""Supervised distillation (Rusu et al.): losses, data sources, multi-task over a shared table."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from helpers import numerical_gradient, softmax

import gridworld_env  # noqa: F401 -- registers the environments
from distill_agents import multitask_distill, supervised_distill
from distill_agents.planning import (
    expected_return,
    expected_visits,
    greedy_policy,
    observation_policy_to_state_policy,
    value_iteration,
)
from distill_agents.supervised import (
    LOSSES,
    SOURCES,
    ReplayBuffer,
    kl_loss,
    mse_loss,
    nll_loss,
    reverse_kl_loss,
    shared_table,
    teacher_targets,
)
from gridworld_env import TableIndexWrapper


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4, 5))
    q = rng.normal(size=(4, 5))
    p = rng.dirichlet(np.ones(5), size=4)
    p[0] = [0.0, 0.0, 1.0, 0.0, 0.0]  # greedy target (floored in the reverse KL)
    return z, q, p


def test_nll_loss_and_gradient(batch):
    z, q, _ = batch
    a = q.argmax(-1)
    loss, grad = nll_loss(z, a)
    np.testing.assert_allclose(loss, -np.log(softmax(z)[np.arange(4), a]))
    np.testing.assert_allclose(grad, numerical_gradient(lambda x: nll_loss(x, a)[0], z), atol=1e-7)


def test_mse_loss_and_gradient(batch):
    z, q, _ = batch
    loss, grad = mse_loss(z, q)
    np.testing.assert_allclose(loss, ((z - q) ** 2).sum(-1))
    np.testing.assert_allclose(grad, numerical_gradient(lambda x: mse_loss(x, q)[0], z), atol=1e-6)


def test_forward_kl_loss_and_gradient(batch):
    z, _, p = batch
    loss, grad = kl_loss(z, p)
    assert np.all(loss >= 0)
    assert kl_loss(np.log(p[1:]), p[1:])[0] == pytest.approx(np.zeros(3), abs=1e-12)
    np.testing.assert_allclose(grad, numerical_gradient(lambda x: kl_loss(x, p)[0], z), atol=1e-7)


def test_reverse_kl_loss_and_gradient(batch):
    z, _, p = batch
    loss, grad = reverse_kl_loss(z, p)
    q = softmax(z)
    expected = (q * (np.log(q) - np.log(np.maximum(p, 1e-8)))).sum(-1)
    np.testing.assert_allclose(loss, expected)
    np.testing.assert_allclose(
        grad, numerical_gradient(lambda x: reverse_kl_loss(x, p)[0], z), atol=1e-6
    )


def test_both_kls_vanish_exactly_at_the_target(batch):
    _, _, p = batch
    z = np.log(p[1:])
    for fn in (kl_loss, reverse_kl_loss):
        loss, grad = fn(z, p[1:])
        np.testing.assert_allclose(loss, 0.0, atol=1e-12)
        np.testing.assert_allclose(grad, 0.0, atol=1e-12)


def test_teacher_targets_temperature():
    q = np.array([[1.0, 2.0, 2.0], [0.0, 1.0, -1.0]])
    np.testing.assert_allclose(teacher_targets(q, 0.0), [[0, 0.5, 0.5], [0, 1, 0]])
    np.testing.assert_allclose(teacher_targets(q, 1.0), softmax(q))
    sharp = teacher_targets(q, 0.1)
    assert sharp[1, 1] > softmax(q)[1, 1]


def test_loss_errors():
    with pytest.raises(ValueError, match=r"must both have shape \[B, A\]"):
        kl_loss(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"teacher_actions must be in \[0, 3\)"):
        nll_loss(np.zeros((1, 3)), [3])


def test_replay_buffer_is_fifo():
    buffer = ReplayBuffer(3)
    buffer.add([1, 2])
    np.testing.assert_array_equal(buffer.contents(), [1, 2])
    buffer.add([3, 4, 5])
    np.testing.assert_array_equal(buffer.contents(), [3, 4, 5])
    assert len(buffer) == 3
    draws = buffer.sample(np.random.default_rng(0), 3000)
    assert set(draws) == {3, 4, 5}
    with pytest.raises(ValueError, match="empty replay buffer"):
        ReplayBuffer(2).sample(np.random.default_rng(0), 1)
    with pytest.raises(ValueError, match="buffer_capacity must be an integer >= 1"):
        ReplayBuffer(0)


# ------------------------------------------------------------------------------- training
class GridTeacher:
    """Optimal teacher over a TableIndexWrapper's indices (first state of each index)."""

    def __init__(self, env):
        _, q = value_iteration(env.unwrapped.mdp, gamma=0.99)
        index = env.state_to_index
        first = [np.flatnonzero(index == j)[0] for j in range(env.observation_space.n)]
        self.q = q[first]
        self.pi = greedy_policy(self.q)

    def action_probs(self, obs):
        return self.pi[obs]

    def value(self, obs):
        return float(self.pi[obs] @ self.q[obs])

    def q_values(self, obs):
        return self.q[obs]


def table_return(env, probs):
    state = observation_policy_to_state_policy(probs, env.state_to_index)
    return expected_return(env.unwrapped.mdp, state)


def make_env(layout_seed, **kwargs):
    kwargs = {"width": 7, "height": 7, "observation": "partial", "view_size": 5, **kwargs}
    return TableIndexWrapper(gym.make("DistillGrid-v0", layout_seed=layout_seed, **kwargs))


@pytest.fixture(scope="module")
def grid():
    env = make_env(0)
    return env, GridTeacher(env)


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("loss", LOSSES)
def test_student_matches_teacher_argmax_on_visited_states(grid, loss, source):
    env, teacher = grid
    tau = 0.1 if loss in ("kl", "reverse_kl") else 1.0
    student = supervised_distill(
        env, teacher, loss=loss, tau=tau, source=source, iterations=600, seed=0
    )
    visits = expected_visits(env.unwrapped.mdp, teacher_state_policy(env, teacher))
    # States the teacher visits at least once per 50 episodes (12 times in 600 on average).
    visited = np.unique(env.state_to_index[(visits > 0.02) & (env.state_to_index >= 0)])
    assert visited.size >= 8
    if source == "uniform":
        visited = np.arange(env.observation_space.n)
    best = student.logits[visited].argmax(-1)
    assert np.all(teacher.pi[visited, best] > 0)  # the student's argmax is a teacher argmax
    greedy = greedy_policy(student.logits)
    # Rarely visited states may differ: the return is still the teacher's to 0.1%.
    assert table_return(env, greedy) == pytest.approx(table_return(env, teacher.pi), rel=1e-3)


def teacher_state_policy(env, teacher):
    return observation_policy_to_state_policy(teacher.pi, env.state_to_index)


def test_supervised_is_deterministic(grid):
    env, teacher = grid
    a = supervised_distill(env, teacher, source="replay", iterations=50, seed=3)
    b = supervised_distill(env, teacher, source="replay", iterations=50, seed=3)
    np.testing.assert_array_equal(a.logits, b.logits)


def test_supervised_errors(grid):
    env, teacher = grid
    with pytest.raises(ValueError, match="loss must be one of"):
        supervised_distill(env, teacher, loss="hinge")
    with pytest.raises(ValueError, match="source must be one of"):
        supervised_distill(env, teacher, source="expert")
    with pytest.raises(ValueError, match="collect must be"):
        supervised_distill(env, teacher, source="replay", collect="uniform")
    with pytest.raises(ValueError, match="tau must be a number >= 0"):
        supervised_distill(env, teacher, tau=-1.0)
    with pytest.raises(ValueError, match="must provide q_values"):
        supervised_distill(env, teacher.pi, loss="mse")
    with pytest.raises(ValueError, match="TableIndexWrapper"):
        supervised_distill(env.unwrapped, teacher)


# ----------------------------------------------------------------------------- multi-task
CORRIDORS = [
    ["#######", "#S...G#", "#######"],
    ["#######", "#S.-.G#", "#######"],
    ["###", "#S#", "#.#", "#.#", "#G#", "###"],
]


def test_shared_table_unions_identical_windows():
    envs = [
        TableIndexWrapper(gym.make("DistillGrid-v0", layout=layout, observation="partial",
                                   view_size=3))
        for layout in CORRIDORS
    ]  # fmt: skip
    local_to_global, global_obs = shared_table(envs)
    sizes = [env.observation_space.n for env in envs]
    assert len(global_obs) < sum(sizes)  # the first two corridors share windows
    for env, mapping in zip(envs, local_to_global, strict=True):
        for j, g in enumerate(mapping):
            np.testing.assert_array_equal(global_obs[g], env.index_to_obs(j))
    # Same start window in the first two corridors, so the same shared row.
    assert local_to_global[0][0] == local_to_global[1][0]


@pytest.mark.parametrize("source", SOURCES)
def test_multitask_student_solves_every_layout(source):
    envs = [make_env(seed) for seed in range(3)]
    teachers = [GridTeacher(env) for env in envs]
    result = multitask_distill(envs, teachers, loss="kl", tau=0.1, source=source,
                               iterations=1500, seed=0)  # fmt: skip
    assert result.policy.logits.shape == (len(result.global_obs), 4)
    for i, (env, teacher) in enumerate(zip(envs, teachers, strict=True)):
        student = result.for_env(i)
        np.testing.assert_array_equal(
            student.logits, result.policy.logits[result.local_to_global[i]]
        )
        target = table_return(env, teacher.pi)
        assert target > 9.0
        assert table_return(env, greedy_policy(student.logits)) >= 0.99 * target


def test_multitask_corridors_with_shared_rows():
    envs = [
        TableIndexWrapper(gym.make("DistillGrid-v0", layout=layout, observation="partial",
                                   view_size=3))
        for layout in CORRIDORS
    ]  # fmt: skip
    teachers = [GridTeacher(env) for env in envs]
    result = multitask_distill(envs, teachers, loss="nll", iterations=600, seed=1)
    for i, (env, teacher) in enumerate(zip(envs, teachers, strict=True)):
        got = table_return(env, greedy_policy(result.for_env(i).logits))
        assert got == pytest.approx(table_return(env, teacher.pi), rel=1e-9)


def test_multitask_errors(grid):
    env, teacher = grid
    with pytest.raises(ValueError, match="non-empty and of equal length"):
        multitask_distill([env], [teacher, teacher])
    chain = gym.make("DistillChain-v0")
    with pytest.raises(ValueError, match="same number of actions"):
        multitask_distill([env, chain], [teacher, np.full((11, 2), 0.5)])


class ActionValuesTeacher:
    """Exposes Q through action_values(obs), like distill_agents.teachers.TabularTeacher."""

    def __init__(self, q):
        self.q = q

    def action_probs(self, obs):
        return greedy_policy(self.q[obs])

    def action_values(self, obs):
        return self.q[obs]


def test_mse_reads_action_values(grid):
    env, teacher = grid
    student = supervised_distill(
        env, ActionValuesTeacher(teacher.q), loss="mse", source="uniform", iterations=3000,
        seed=0,
    )  # fmt: skip
    np.testing.assert_allclose(student.logits, teacher.q, atol=0.05)
