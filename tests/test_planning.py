"""Exact planning and evaluation (distill_agents.planning), checked against closed forms,
slow dense references and Monte Carlo rollouts of the registered environments."""

from __future__ import annotations

from bisect import bisect_right

import gymnasium as gym
import numpy as np
import pytest

import gridworld_env
from distill_agents import planning as pl
from gridworld_env.mdp import TabularMDP

SMALL_LAYOUT = ["S..-.", ".#..G", "-.x.."]
N_EPISODES = 20_000


# ----------------------------------------------------------------------------- helpers
def random_policy(rng, n_states, n_actions):
    return rng.dirichlet(np.ones(n_actions), size=n_states)


def monte_carlo(env, policy, cost, n_episodes, seed):
    """Roll out a state policy in a (wrapped) env; per-episode return, length, cost sum, visits.

    The env reports the true state in ``info["state"]``; the policy acts on it.
    """
    n_states = policy.shape[0]
    cums = []
    for row in policy:
        cum = np.cumsum(row)
        cums.append((cum / cum[-1]).tolist())
    rng = np.random.default_rng(seed)
    returns = np.zeros(n_episodes)
    lengths = np.zeros(n_episodes)
    costs = np.zeros(n_episodes)
    visits = np.zeros((n_episodes, n_states))
    env.reset(seed=seed)
    for ep in range(n_episodes):
        _, info = env.reset()
        state = info["state"]
        uniforms = iter(rng.random(4096).tolist())
        while True:
            action = bisect_right(cums[state], next(uniforms))
            visits[ep, state] += 1
            costs[ep] += cost[state]
            _, reward, terminated, truncated, info = env.step(action)
            returns[ep] += reward
            lengths[ep] += 1
            state = info["state"]
            if terminated or truncated:
                break
    return returns, lengths, costs, visits


def assert_within_standard_errors(samples, exact, n_se=4.0):
    samples = np.asarray(samples)
    mean = samples.mean(axis=0)
    se = samples.std(axis=0, ddof=1) / np.sqrt(samples.shape[0])
    # Where every sample is equal (e.g. never visited) the exact value must match exactly.
    bound = n_se * se + 1e-12
    assert np.all(np.abs(mean - exact) <= bound), (mean, exact, se)


def dense_q(mdp, values, gamma):
    """Slow reference Bellman backup on the dense model."""
    q = mdp.rewards + gamma * mdp.transitions @ values
    q[mdp.terminal] = 0.0
    return q


def grid_mdp(**kwargs):
    return gym.make("DistillGrid-v0", **kwargs).unwrapped.mdp


# ------------------------------------------------------------------------ closed forms
@pytest.mark.parametrize("length", [3, 5, 11, 21])
def test_chain_optimal_and_adversarial_start_values(length):
    mdp = gym.make("DistillChain-v0", length=length).unwrapped.mdp
    start = length // 2
    optimum = 0.99 ** (length // 2)
    values, q_values = pl.value_iteration(mdp, gamma=1.0)
    assert values[start] == pytest.approx(optimum, abs=1e-9)
    best = pl.greedy_policy(q_values)
    assert np.all(best[1 : length - 1, 1] == 1.0)  # always right
    assert pl.policy_evaluation(mdp, best, gamma=1.0)[start] == pytest.approx(optimum, rel=1e-12)
    assert pl.expected_return(mdp, best) == pytest.approx(optimum, rel=1e-12)

    worst_values, worst_q = pl.value_iteration(mdp, gamma=1.0, minimise=True)
    assert worst_values[start] == pytest.approx(-optimum, abs=1e-9)
    worst = pl.greedy_policy(-worst_q)
    assert np.all(worst[1 : length - 1, 0] == 1.0)  # always left
    assert pl.policy_evaluation(mdp, worst)[start] == pytest.approx(-optimum, rel=1e-12)


def test_oscillation_optimal_and_worst_values():
    mdp = gym.make("DistillOscillation-v0").unwrapped.mdp
    values, q_values = pl.value_iteration(mdp, gamma=1.0)
    np.testing.assert_array_equal(values, [0, -1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(q_values[:3], [[-1, 0], [-1, -2], [0, -3]])
    worst, worst_q = pl.value_iteration(mdp, gamma=1.0, minimise=True)
    np.testing.assert_array_equal(worst, [-3, -2, -3, 0, 0, 0, 0])
    assert pl.expected_return(mdp, pl.greedy_policy(q_values)) == 0.0
    assert pl.expected_return(mdp, pl.greedy_policy(-worst_q)) == -3.0
    # The uniform policy: (-1 - 2 + 0 - 3) / 4.
    assert pl.expected_return(mdp, np.full((7, 2), 0.5)) == pytest.approx(-1.5)


def test_oscillation_visits_and_kl_by_hand():
    mdp = gym.make("DistillOscillation-v0").unwrapped.mdp
    control = np.full((7, 2), 0.5)
    control[0] = [0.25, 0.75]
    np.testing.assert_allclose(pl.expected_visits(mdp, control), [1, 0.25, 0.75, 0, 0, 0, 0])
    teacher = np.tile([0.0, 1.0], (7, 1))  # the paper's teacher prefers R
    student = np.full((7, 2), 0.5)
    student[2] = [0.9, 0.1]
    # KL(R-deterministic || student) = -log student(R): log 2 in s0 and sL, -log 0.1 in sR.
    expected = np.log(2) + 0.25 * np.log(2) + 0.75 * -np.log(0.1)
    assert pl.expected_kl(mdp, control, teacher, student) == pytest.approx(expected, rel=1e-12)


# ------------------------------------------------------------- references and invariants
def test_terminal_states_are_worth_zero_whatever_the_model_says():
    # State 1 is terminal but its rows pay 5 and lead back to 0: the episode has ended there.
    transitions = np.zeros((2, 2, 2))
    transitions[0, :, 1] = 1.0
    transitions[1, :, 0] = 1.0
    rewards = np.array([[1.0, 2.0], [5.0, 5.0]])
    mdp = TabularMDP.from_dense(transitions, rewards, [1.0, 0.0], [False, True])
    values, q_values = pl.value_iteration(mdp, gamma=1.0)
    np.testing.assert_array_equal(values, [2.0, 0.0])
    np.testing.assert_array_equal(q_values, [[1.0, 2.0], [0.0, 0.0]])
    uniform = np.full((2, 2), 0.5)
    np.testing.assert_array_equal(pl.policy_evaluation(mdp, uniform), [1.5, 0.0])
    np.testing.assert_array_equal(pl.expected_visits(mdp, uniform), [1.0, 0.0])
    assert pl.expected_return(mdp, uniform) == 1.5


def test_value_iteration_matches_its_greedy_policy_discounted():
    mdp = grid_mdp(width=8, height=8, layout_seed=3)
    values, q_values = pl.value_iteration(mdp, gamma=0.99)
    np.testing.assert_array_equal(values, q_values.max(axis=-1))
    assert np.all(values[mdp.terminal] == 0) and np.all(q_values[mdp.terminal] == 0)
    greedy = pl.greedy_policy(q_values)
    evaluated = pl.policy_evaluation(mdp, greedy, gamma=0.99)
    np.testing.assert_allclose(evaluated, values, atol=1e-7)
    # Bellman optimality against the dense model.
    np.testing.assert_allclose(dense_q(mdp, values, 0.99), q_values, atol=1e-9)
    assert values[np.argmax(mdp.initial)] > 0


def test_value_iteration_minimise_is_a_fixed_point():
    mdp = grid_mdp(width=8, height=8, layout_seed=3)
    values, q_values = pl.value_iteration(mdp, gamma=0.95, minimise=True)
    np.testing.assert_array_equal(values, q_values.min(axis=-1))
    np.testing.assert_allclose(dense_q(mdp, values, 0.95), q_values, atol=1e-9)
    worst = pl.greedy_policy(-q_values)
    np.testing.assert_allclose(pl.policy_evaluation(mdp, worst, 0.95), values, atol=1e-7)


def test_policy_evaluation_matches_iterative_reference():
    mdp = grid_mdp(width=6, height=5, layout_seed=7, noise=0.3)
    policy = random_policy(np.random.default_rng(0), mdp.n_states, mdp.n_actions)
    for gamma in (0.9, 1.0):
        values = np.zeros(mdp.n_states)
        p_pi = np.einsum("sa,sat->st", policy, mdp.transitions)
        r_pi = (policy * mdp.rewards).sum(-1)
        p_pi[mdp.terminal] = 0.0
        r_pi[mdp.terminal] = 0.0
        for _ in range(20_000):
            values = r_pi + gamma * p_pi @ values
        np.testing.assert_allclose(pl.policy_evaluation(mdp, policy, gamma), values, atol=1e-9)


def test_linear_solves_match_numpy_on_a_dense_random_model():
    # Full bandwidth, stochastic everywhere: the banded solver meets its worst case.
    rng = np.random.default_rng(8)
    n_states, n_actions = 12, 3
    transitions = rng.dirichlet(np.ones(n_states), size=(n_states, n_actions))
    terminal = np.zeros(n_states, dtype=bool)
    terminal[[4, 9]] = True
    transitions[terminal] = 0.0
    transitions[terminal, :, np.flatnonzero(terminal)] = 1.0
    rewards = rng.normal(size=(n_states, n_actions))
    initial = rng.dirichlet(np.ones(n_states))
    mdp = TabularMDP.from_dense(transitions, rewards, initial, terminal)
    policy = random_policy(rng, n_states, n_actions)
    p_pi = np.einsum("sa,sat->st", policy, transitions)
    r_pi = (policy * mdp.rewards).sum(-1)
    live = ~terminal
    block = p_pi[np.ix_(live, live)]
    for gamma in (0.7, 1.0):
        expected = np.zeros(n_states)
        expected[live] = np.linalg.solve(np.eye(live.sum()) - gamma * block, r_pi[live])
        np.testing.assert_allclose(pl.policy_evaluation(mdp, policy, gamma), expected, atol=1e-12)
    visits = np.zeros(n_states)
    visits[live] = np.linalg.solve(np.eye(live.sum()) - block.T, initial[live])
    np.testing.assert_allclose(pl.expected_visits(mdp, policy), visits, atol=1e-12)
    assert pl.expected_return(mdp, policy) == pytest.approx(visits @ r_pi, rel=1e-12)


def test_expected_return_equals_initial_times_values():
    mdp = grid_mdp(width=10, height=10, layout_seed=11)
    policy = random_policy(np.random.default_rng(1), mdp.n_states, mdp.n_actions)
    values = pl.policy_evaluation(mdp, policy)
    assert pl.expected_return(mdp, policy) == pytest.approx(mdp.initial @ values, rel=1e-10)
    reward = (policy * mdp.rewards).sum(-1)
    assert pl.expected_sum(mdp, policy, reward) == pytest.approx(mdp.initial @ values, rel=1e-10)


def test_kl_is_zero_for_identical_policies_and_positive_otherwise():
    mdp = grid_mdp(width=8, height=8, layout_seed=2)
    rng = np.random.default_rng(4)
    teacher = random_policy(rng, mdp.n_states, mdp.n_actions)
    control = random_policy(rng, mdp.n_states, mdp.n_actions)
    assert pl.expected_kl(mdp, control, teacher, teacher) == 0.0
    student = random_policy(rng, mdp.n_states, mdp.n_actions)
    assert pl.expected_kl(mdp, control, teacher, student) > 0.0


def test_policy_kl_conventions():
    teacher = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    student = np.array([[0.5, 0.5], [0.5, 0.5], [1.0, 0.0]])
    kl = pl.policy_kl(teacher, student)
    assert kl[0] == pytest.approx(np.log(2))  # 0 log 0 = 0
    assert kl[1] == 0.0
    assert kl[2] == np.inf  # teacher mass where the student has none


# ----------------------------------------------------------------------- Monte Carlo
def test_grid_evaluation_visits_and_kl_match_monte_carlo():
    env = gym.make("DistillGrid-v0", layout=SMALL_LAYOUT)
    mdp = env.unwrapped.mdp
    rng = np.random.default_rng(0)
    control, teacher, student = (random_policy(rng, mdp.n_states, mdp.n_actions) for _ in range(3))
    kl = pl.policy_kl(teacher, student)
    returns, lengths, costs, visits = monte_carlo(env, control, kl, N_EPISODES, seed=1)
    start = int(np.argmax(mdp.initial))
    assert_within_standard_errors(returns, pl.policy_evaluation(mdp, control)[start])
    assert_within_standard_errors(returns, pl.expected_return(mdp, control))
    exact_visits = pl.expected_visits(mdp, control)
    assert exact_visits.sum() == pytest.approx(exact_visits @ np.ones(mdp.n_states), rel=1e-12)
    assert_within_standard_errors(lengths, exact_visits.sum())
    assert_within_standard_errors(visits, exact_visits)
    assert_within_standard_errors(costs, pl.expected_kl(mdp, control, teacher, student))
    assert np.all(exact_visits[mdp.terminal] == 0)


def test_chain_evaluation_matches_monte_carlo():
    env = gym.make("DistillChain-v0", length=7, n_actions=3, noise=0.2, absorb_prob=0.02)
    mdp = env.unwrapped.mdp
    policy = random_policy(np.random.default_rng(5), mdp.n_states, mdp.n_actions)
    returns, lengths, _, _ = monte_carlo(env, policy, np.zeros(mdp.n_states), N_EPISODES, 2)
    assert_within_standard_errors(returns, pl.policy_evaluation(mdp, policy)[3])
    assert_within_standard_errors(lengths, pl.expected_visits(mdp, policy).sum())


# -------------------------------------------------------------------------- batching
def test_batched_results_equal_single_results_exactly():
    mdps = [grid_mdp(layout_seed=seed) for seed in (0, 1, 2)]
    rng = np.random.default_rng(3)
    policies = np.stack([random_policy(rng, m.n_states, m.n_actions) for m in mdps])
    teachers = np.stack([random_policy(rng, m.n_states, m.n_actions) for m in mdps])
    for minimise in (False, True):
        values, q_values = pl.value_iteration(mdps, gamma=0.99, minimise=minimise)
        assert values.shape == (3, 401) and q_values.shape == (3, 401, 4)
        for i, mdp in enumerate(mdps):
            single_values, single_q = pl.value_iteration(mdp, gamma=0.99, minimise=minimise)
            assert np.array_equal(values[i], single_values)
            assert np.array_equal(q_values[i], single_q)
    batch_values = pl.policy_evaluation(mdps, policies)
    batch_discounted = pl.policy_evaluation(mdps, policies, gamma=0.9)
    batch_visits = pl.expected_visits(mdps, policies)
    batch_returns = pl.expected_return(mdps, policies)
    batch_kl = pl.expected_kl(mdps, policies, teachers, policies[::-1])
    assert batch_returns.shape == (3,) and batch_kl.shape == (3,)
    for i, mdp in enumerate(mdps):
        assert np.array_equal(batch_values[i], pl.policy_evaluation(mdp, policies[i]))
        assert np.array_equal(batch_discounted[i], pl.policy_evaluation(mdp, policies[i], 0.9))
        assert np.array_equal(batch_visits[i], pl.expected_visits(mdp, policies[i]))
        assert batch_returns[i] == pl.expected_return(mdp, policies[i])
        assert batch_kl[i] == pl.expected_kl(mdp, policies[i], teachers[i], policies[2 - i])
    # The MDPs really differ (else the test would prove little).
    assert len(set(batch_returns.tolist())) == 3


def test_batch_needs_identical_shapes():
    with pytest.raises(ValueError, match="mdp"):
        pl.value_iteration([grid_mdp(width=5, height=5), grid_mdp(width=6, height=5)])
    with pytest.raises(ValueError, match="mdp"):
        pl.value_iteration([])


# ------------------------------------------------------ policies that never end (gamma=1)
def test_proper_policy_without_absorption_is_fine():
    mdp = gym.make("DistillChain-v0", length=9, absorb_prob=0.0).unwrapped.mdp
    right = np.tile([0.0, 1.0], (mdp.n_states, 1))
    np.testing.assert_array_equal(pl.policy_evaluation(mdp, right), [0, 1, 1, 1, 1, 1, 1, 1, 0, 0])
    assert pl.expected_visits(mdp, right).sum() == pytest.approx(4.0)


def test_policy_that_never_ends_raises():
    mdp = gym.make("DistillChain-v0", n_actions=3, absorb_prob=0.0).unwrapped.mdp
    stay = np.tile([0.0, 0.0, 1.0], (mdp.n_states, 1))
    with pytest.raises(ValueError, match="never ends"):
        pl.policy_evaluation(mdp, stay)
    with pytest.raises(ValueError, match="never ends"):
        pl.expected_return(mdp, stay)
    with pytest.raises(ValueError, match="never ends"):
        pl.expected_visits(mdp, stay)
    # Discounting makes the values exist.
    np.testing.assert_array_equal(pl.policy_evaluation(mdp, stay, gamma=0.9), 0.0)


def test_policy_that_can_get_stuck_raises():
    # Mixing "stay" and "right" still ends with probability 1; a loop without exit does not.
    mdp = gym.make("DistillChain-v0", n_actions=3, absorb_prob=0.0).unwrapped.mdp
    mixed = np.tile([0.0, 0.5, 0.5], (mdp.n_states, 1))
    assert pl.expected_return(mdp, mixed) == pytest.approx(1.0)
    trap = mixed.copy()
    trap[7] = [0.0, 0.0, 1.0]  # from the start the episode can reach cell 7 and stay forever
    with pytest.raises(ValueError, match="never ends"):
        pl.expected_return(mdp, trap)


def test_unreachable_trap_only_breaks_policy_evaluation():
    layout = ["S.G#..", "######", "######"]
    mdp = grid_mdp(layout=layout, noise=0.0, absorb_prob=0.0)
    right = np.tile([0.0, 1.0, 0.0, 0.0], (mdp.n_states, 1))
    assert pl.expected_return(mdp, right) == 10.0
    with pytest.raises(ValueError, match="never ends"):
        pl.policy_evaluation(mdp, right)


def test_value_iteration_raises_when_values_drift():
    # A -1 cell next to a wall: the minimiser bumps into the wall forever, V -> -inf.
    layout = ["#####", "#S-G#", "#####"]
    mdp = grid_mdp(layout=layout, noise=0.0, absorb_prob=0.0)
    with pytest.raises(ValueError, match="did not converge"):
        pl.value_iteration(mdp, gamma=1.0, minimise=True, max_iter=500)
    values, _ = pl.value_iteration(mdp, gamma=1.0)  # the maximiser converges
    assert values[6] == 9.0  # -1 on the way, then +10


# ---------------------------------------------------------------------- large |A|
def test_many_actions_never_materialise_the_dense_model(monkeypatch):
    mdp = gym.make("DistillGrid-v0", n_actions=4000).unwrapped.mdp

    def forbidden(self):
        raise AssertionError("the dense [S, A, S] model was materialised")

    monkeypatch.setattr(TabularMDP, "transitions", property(forbidden))
    monkeypatch.setattr(TabularMDP, "rewards", property(forbidden))
    monkeypatch.setattr(TabularMDP, "row_transitions", forbidden)
    values, q_values = pl.value_iteration(mdp, gamma=0.99)
    assert q_values.shape == (mdp.n_states, 4000)
    assert np.all(q_values[:, 4:] == q_values[:, 4:5])
    reference, reference_q = pl.value_iteration(grid_mdp(n_actions=5), gamma=0.99)
    np.testing.assert_array_equal(values, reference)
    np.testing.assert_array_equal(q_values[:, :5], reference_q)
    uniform = np.full((mdp.n_states, 4000), 1 / 4000)
    small_uniform = np.full((mdp.n_states, 5), 0.2)
    small_uniform[:, 4] = 0.2
    # Uniform over 4000 actions moves with probability 4/4000 per step.
    assert np.isfinite(pl.expected_return(mdp, uniform))
    assert (
        pl.expected_visits(mdp, uniform).sum()
        > pl.expected_visits(grid_mdp(n_actions=5), small_uniform).sum()
    )


# ----------------------------------------------------------------- policy helpers
def test_greedy_and_softmax_policies():
    q = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [-1.0, 0.0, -5.0, -1.0]])
    np.testing.assert_array_equal(pl.greedy_policy(q), [[0, 0.5, 0.5, 0], [0.25] * 4, [0, 1, 0, 0]])
    np.testing.assert_array_equal(pl.softmax_policy(q, 0.0), pl.greedy_policy(q))
    soft = pl.softmax_policy(q, 2.0)
    np.testing.assert_allclose(soft.sum(-1), 1.0)
    np.testing.assert_allclose(soft[0], np.exp(q[0] / 2) / np.exp(q[0] / 2).sum())
    np.testing.assert_allclose(pl.softmax_policy(q, 1e-4), pl.greedy_policy(q), atol=1e-12)
    with pytest.raises(ValueError, match="temperature"):
        pl.softmax_policy(q, -1.0)


def test_observation_policy_to_state_policy_full_observation():
    env = gym.make("DistillGrid-v0", width=6, height=5, layout_seed=1)
    table = env.unwrapped.observation_of_state
    policy = random_policy(np.random.default_rng(0), 30, 4)
    state_policy = pl.observation_policy_to_state_policy(policy, table)
    cells = table >= 0
    np.testing.assert_array_equal(state_policy[cells], policy[table[cells]])
    np.testing.assert_array_equal(state_policy[~cells], 0.25)
    batched = pl.observation_policy_to_state_policy(np.stack([policy, policy[::-1]]), table)
    np.testing.assert_array_equal(batched[0], state_policy)
    np.testing.assert_array_equal(batched[1][cells], policy[::-1][table[cells]])


def test_observation_policy_to_state_policy_through_table_index():
    env = gridworld_env.TableIndexWrapper(
        gym.make("DistillGrid-v0", width=7, height=7, layout_seed=5, observation="partial")
    )
    index = env.state_to_index
    n = env.observation_space.n
    policy = random_policy(np.random.default_rng(2), n, 4)
    state_policy = pl.observation_policy_to_state_policy(policy, index)
    mdp = env.unwrapped.mdp
    for s in range(mdp.n_states):
        expected = policy[index[s]] if index[s] >= 0 else np.full(4, 0.25)
        np.testing.assert_array_equal(state_policy[s], expected)
    assert np.isfinite(pl.expected_return(mdp, state_policy))
    per_mdp = pl.observation_policy_to_state_policy(policy[None], index[None])
    np.testing.assert_array_equal(per_mdp[0], state_policy)
    with pytest.raises(ValueError, match="state_to_index"):
        pl.observation_policy_to_state_policy(policy, env.unwrapped.observation_of_state)
    with pytest.raises(ValueError, match="state_to_index"):
        pl.observation_policy_to_state_policy(policy, np.full(mdp.n_states, n))


# -------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("policy", "match"),
    [
        (np.full((11, 2), 0.5), r"policy must have shape \[S, A\]"),
        (np.full((10, 3), 1 / 3), r"policy must have shape"),
        (np.tile([1.5, -0.5], (10, 1)), "non-negative"),
        (np.tile([0.5, 0.6], (10, 1)), "sum to 1"),
        (np.full((10, 2), np.nan), "finite"),
    ],
)
def test_bad_policies_are_named(policy, match):
    mdp = gym.make("DistillChain-v0", length=9).unwrapped.mdp
    with pytest.raises(ValueError, match=match):
        pl.policy_evaluation(mdp, policy)
    good = np.full((10, 2), 0.5)
    with pytest.raises(ValueError, match="student_policy"):
        pl.expected_kl(mdp, good, good, policy)


@pytest.mark.parametrize("gamma", [-0.1, 1.5, "0.9", None])
def test_bad_gamma(gamma):
    mdp = gym.make("DistillChain-v0").unwrapped.mdp
    with pytest.raises(ValueError, match="gamma"):
        pl.value_iteration(mdp, gamma=gamma)
    with pytest.raises(ValueError, match="gamma"):
        pl.policy_evaluation(mdp, np.full((12, 2), 0.5), gamma=gamma)


def test_bad_cost_shape():
    mdp = gym.make("DistillChain-v0").unwrapped.mdp
    with pytest.raises(ValueError, match="per_state_cost"):
        pl.expected_sum(mdp, np.full((12, 2), 0.5), np.zeros(11))
