"""Exact checks of the paper's theory (Table 1, Theorems 1 and 2, App. C) on enumerable MDPs.

Every expectation here is exact: all trajectories of a small tree MDP are enumerated and the
update of each is computed by the same compiled kernel that trains students.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import numerical_gradient, softmax

from distill_agents.planning import policy_evaluation
from distill_agents.updates import (
    enumerate_trajectories,
    expected_loss,
    expected_update,
    floored_log,
)
from gridworld_env import TabularMDP, oscillation_mdp, oscillation_observation_table

N_ACTIONS = 3


def tree_mdp(seed: int = 0) -> TabularMDP:
    """Three decision layers (1, 3, 3 states), stochastic branching, then a terminal state."""
    rng = np.random.default_rng(seed)
    layers = [[0], [1, 2, 3], [4, 5, 6]]
    n_states = 8  # state 7 is terminal
    transitions = np.zeros((n_states, N_ACTIONS, n_states))
    rewards = rng.normal(size=(n_states, N_ACTIONS))
    for depth, layer in enumerate(layers):
        for s in layer:
            for a in range(N_ACTIONS):
                if depth + 1 < len(layers):
                    nxt = layers[depth + 1]
                    probs = rng.dirichlet(np.ones(len(nxt)))
                    transitions[s, a, nxt] = probs
                else:
                    transitions[s, a, 7] = 1.0
    transitions[7, :, 7] = 1.0
    rewards[7] = 0.0
    initial = np.eye(n_states)[0]
    terminal = np.arange(n_states) == 7
    return TabularMDP.from_dense(transitions, rewards, initial, terminal)


#: Student table index of each state: states 2 and 3, and 4 and 6, are aliased.
ALIASED = np.array([0, 1, 2, 2, 3, 4, 3, -1])
N_OBS = 5


@pytest.fixture(scope="module")
def setting():
    rng = np.random.default_rng(1)
    mdp = tree_mdp()
    teacher = rng.dirichlet(np.ones(N_ACTIONS), size=N_OBS)
    teacher[4] = [1.0, 0.0, 0.0]  # a greedy row exercises the log floor
    theta = rng.normal(scale=0.7, size=(N_OBS, N_ACTIONS))
    return mdp, teacher, theta


def state_policy(probs, index):
    return probs[np.where(index < 0, 0, index)]


def expectation(mdp, policy, fn):
    """E over the enumerated trajectories of ``policy`` of fn(states, actions, rewards)."""
    return sum(
        t.prob * fn(t.states, t.actions, t.rewards) for t in enumerate_trajectories(mdp, policy)
    )


def table1_loss(method, mdp, teacher, theta):
    """Table 1's loss column (undiscounted), computed by enumeration."""
    p = softmax(theta)
    log_pi = floored_log(teacher)
    idx = ALIASED
    student = state_policy(p, idx)
    teach = state_policy(teacher, idx)

    def cross(states, actions, rewards):  # sum_t H_x(pi(s_t) || pi_theta(s_t))
        return sum(-(teacher[idx[s]] * np.log(p[idx[s]])).sum() for s in states[:-1])

    def neg_log_teacher(states, actions, rewards):  # sum_t -log pi(a_t | s_t)
        return sum(-log_pi[idx[s], a] for s, a in zip(states[:-1], actions, strict=True))

    def neg_return(states, actions, rewards):
        return -rewards.sum()

    def neg_kl_return(states, actions, rewards):
        terms = [
            r + log_pi[idx[s], a] - np.log(p[idx[s], a])
            for s, a, r in zip(states[:-1], actions, rewards, strict=True)
        ]
        return -sum(terms)

    if method == "teacher_distill":
        return expectation(mdp, teach, cross)
    if method == "n_distill":
        return expectation(mdp, student, cross)
    if method in ("entropy_regularised", "expected_entropy_regularised"):
        return expectation(mdp, student, neg_log_teacher)
    if method in ("teacher_v_reward", "baseline", "td_v_zero"):
        return expectation(mdp, student, neg_return)
    if method == "n_distill+R":
        return expectation(mdp, student, lambda *t: cross(*t) + neg_return(*t))
    if method == "expected_entropy_regularised+R":
        return expectation(mdp, student, lambda *t: neg_log_teacher(*t) + neg_return(*t))
    if method == "entropy_regularised+R":
        return expectation(mdp, student, lambda *t: neg_log_teacher(*t) + neg_return(*t))
    if method == "kl_regularised":
        return expectation(mdp, student, neg_kl_return)
    raise AssertionError(method)


def update_field(method, mdp, teacher, theta, **kwargs):
    kwargs.setdefault("teacher_values", np.linspace(-1.0, 1.0, N_OBS))
    return expected_update(
        mdp, ALIASED, theta, method, teacher_probs=teacher, gamma=1.0, **kwargs
    ).logits


GRADIENT_METHODS = [
    "teacher_distill",
    "entropy_regularised",
    "n_distill",
    "expected_entropy_regularised",
    "teacher_v_reward",
    "baseline",
    "n_distill+R",
    "expected_entropy_regularised+R",
    "entropy_regularised+R",
    "kl_regularised",
]


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_expected_update_is_gradient_of_table1_loss(method, setting):
    mdp, teacher, theta = setting
    field = update_field(method, mdp, teacher, theta)
    grad = numerical_gradient(lambda th: table1_loss(method, mdp, teacher, th), theta, h=1e-5)
    assert np.abs(grad).max() > 1e-3  # the check is not vacuous
    np.testing.assert_allclose(field, grad, atol=2e-7, rtol=1e-6)


def test_on_policy_distill_is_not_the_gradient_of_the_n_distill_loss(setting):
    mdp, teacher, theta = setting
    field = update_field("on_policy_distill", mdp, teacher, theta)
    grad = numerical_gradient(lambda th: table1_loss("n_distill", mdp, teacher, th), theta, h=1e-5)
    assert np.abs(field - grad).max() > 1e-2


def jacobian(method, mdp, teacher, theta, h=1e-5):
    n = theta.size
    jac = np.zeros((n, n))
    for j in range(n):
        plus, minus = theta.copy().ravel(), theta.copy().ravel()
        plus[j] += h
        minus[j] -= h
        g_plus = update_field(method, mdp, teacher, plus.reshape(theta.shape)).ravel()
        g_minus = update_field(method, mdp, teacher, minus.reshape(theta.shape)).ravel()
        jac[:, j] = (g_plus - g_minus) / (2 * h)
    return jac


def test_theorem1_on_policy_distill_jacobian_is_asymmetric(setting):
    mdp, teacher, theta = setting
    jac = jacobian("on_policy_distill", mdp, teacher, theta)
    asym = np.abs(jac - jac.T).max()
    assert asym > 1e-2 * np.abs(jac).max()
    assert asym > 1e-3


@pytest.mark.parametrize("method", ["n_distill", "expected_entropy_regularised", "teacher_distill"])
def test_theorem2_corrected_fields_have_symmetric_jacobians(method, setting):
    mdp, teacher, theta = setting
    jac = jacobian(method, mdp, teacher, theta)
    assert np.abs(jac).max() > 1e-2
    np.testing.assert_allclose(jac, jac.T, atol=1e-6)


def test_mc_baseline_does_not_change_the_expected_update(setting):
    mdp, teacher, theta = setting
    critic = np.random.default_rng(3).normal(size=N_OBS)
    for method in ("n_distill+R", "expected_entropy_regularised", "teacher_v_reward"):
        plain = update_field(method, mdp, teacher, theta, critic_mode="none")
        with_mc = update_field(method, mdp, teacher, theta, critic_mode="mc", critic=critic)
        np.testing.assert_allclose(with_mc, plain, atol=1e-12)
        with_td = update_field(method, mdp, teacher, theta, critic_mode="td", critic=critic)
        assert np.abs(with_td - plain).max() > 1e-3  # a wrong critic biases TD


def test_td_with_the_exact_critic_matches_monte_carlo():
    """With V_theta = the exact value of the student, the TD(1) advantage is unbiased."""
    mdp = tree_mdp(seed=4)
    index = np.array([0, 1, 2, 3, 4, 5, 6, -1])  # no aliasing: exact values exist
    theta = np.random.default_rng(5).normal(size=(7, N_ACTIONS))
    policy = state_policy(softmax(theta), index)
    values = policy_evaluation(mdp, policy, gamma=1.0)[:7]
    mc = expected_update(mdp, index, theta, "baseline", critic_mode="mc", critic=values)
    td = expected_update(mdp, index, theta, "baseline", critic_mode="td", critic=values)
    np.testing.assert_allclose(td.logits, mc.logits, atol=1e-12)
    # The critic is already exact: its expected L2 update is zero for both.
    np.testing.assert_allclose(mc.critic, 0.0, atol=1e-12)
    np.testing.assert_allclose(td.critic, 0.0, atol=1e-12)


def test_expected_update_agrees_with_sampled_average(setting):
    """The enumeration and the training path agree: average many sampled updates."""
    from distill_agents.updates import episode_update

    mdp, teacher, theta = setting
    trajectories = enumerate_trajectories(mdp, state_policy(softmax(theta), ALIASED))
    rng = np.random.default_rng(7)
    probs = np.array([t.prob for t in trajectories])
    draws = rng.choice(len(trajectories), size=4000, p=probs / probs.sum())
    total = np.zeros_like(theta)
    for d in draws:
        t = trajectories[d]
        logits = theta.copy()
        episode_update(
            "n_distill", logits, ALIASED[t.states].clip(0), t.actions, t.rewards, True,
            teacher_probs=teacher, lr=1.0, gamma=1.0, critic_mode="none",
        )  # fmt: skip
        total += theta - logits
    exact = update_field("n_distill", mdp, teacher, theta)
    np.testing.assert_allclose(total / len(draws), exact, atol=0.08)


# ------------------------------------------------------------------ Fig. 2: the oscillation MDP
OSC_INDEX = oscillation_observation_table()
SR = 2
OSC_TEACHER = np.full((7, 2), 0.5)
OSC_TEACHER[SR] = [0.0, 1.0]  # R in sR
OSC_WEIGHTS = (np.arange(7) == SR).astype(float)  # the loss lives in sR only


def osc_field(method, theta):
    return expected_update(
        oscillation_mdp(), OSC_INDEX, theta, method,
        teacher_probs=OSC_TEACHER, teacher_index=np.arange(7), teacher_weights=OSC_WEIGHTS,
        distill_loss="information_potential", gamma=1.0,
    ).logits  # fmt: skip


def osc_coordinates(theta):
    """x = logit of R at s0, y = logit of L at the aliased second step; p, q their probs."""
    x = theta[0, 1] - theta[0, 0]
    y = theta[1, 0] - theta[1, 1]
    return x, y, 1 / (1 + np.exp(-x)), 1 / (1 + np.exp(-y))


@pytest.mark.parametrize("point", [(0.0, 0.0), (1.3, -0.4), (-2.0, 0.7)])
def test_oscillation_field_matches_appendix_c(point):
    """On-policy distill + R: dx/dt = p(1-p)(2q-1), dy/dt = q(1-q)(1-2p) (PAPER.md 3.2)."""
    theta = np.array([[0.0, point[0]], [point[1], 0.0]])
    _, _, p, q = osc_coordinates(theta)
    field = osc_field("on_policy_distill+R", theta)
    # Descent on two logits per row moves their difference twice as fast as one parameter.
    dx = -(field[0, 1] - field[0, 0]) / 2
    dy = -(field[1, 0] - field[1, 1]) / 2
    np.testing.assert_allclose([dx, dy], [p * (1 - p) * (2 * q - 1), q * (1 - q) * (1 - 2 * p)],
                               atol=1e-12)  # fmt: skip
    assert osc_field("on_policy_distill+R", np.zeros((2, 2)))[0] == pytest.approx([0, 0])


def integrate(method, steps=6000, lr=0.03):
    logit = np.log(0.9 / 0.1)
    theta = np.array([[logit, 0.0], [logit, 0.0]])  # pi(L|s0) = pi(L|sR) = 0.9
    path = []
    for _ in range(steps):
        theta = theta - lr * osc_field(method, theta)
        path.append(osc_coordinates(theta))
    return np.array(path)


def test_fig2_on_policy_distill_plus_r_cycles_and_n_distill_plus_r_converges():
    cycling = integrate("on_policy_distill+R")
    x, y, p, q = cycling.T
    first_integral = np.exp(x) + np.exp(-x) + np.exp(y) + np.exp(-y)
    # A centre: H is conserved by the flow (explicit Euler drifts outwards slowly).
    assert first_integral.max() / first_integral.min() < 1.1
    late = p[len(p) // 2 :]
    assert late.max() > 0.6 and late.min() < 0.4  # still swinging in the second half
    assert np.sum(np.diff(np.sign(p - 0.5)) != 0) >= 2

    converging = integrate("n_distill+R")
    _, _, p, q = converging.T
    assert p[-1] > 0.95  # R at s0
    assert 1 - q[-1] > 0.95  # R at sR
    assert np.abs(np.diff(p[-500:])).max() < 1e-3


def test_fig2_expected_loss_is_the_information_potential():
    theta = np.array([[0.0, 0.8], [-0.3, 0.0]])
    _, _, p, q = osc_coordinates(theta)
    loss = expected_loss(
        oscillation_mdp(), OSC_INDEX, theta, "on_policy_distill+R",
        teacher_probs=OSC_TEACHER, teacher_index=np.arange(7), teacher_weights=OSC_WEIGHTS,
        distill_loss="information_potential",
    )  # fmt: skip
    assert loss == pytest.approx(-4 * p * (1 - q), abs=1e-12)
