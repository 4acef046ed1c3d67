"""The update kernel of Eq. 1: closed-form gradients, hand-computed cases, the slow reference,
control sampling, method parsing and bad input."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from helpers import numerical_gradient, softmax

from distill_agents import methods as M
from distill_agents import row_kernels as RK
from distill_agents.updates import (
    TEACHER_PROB_FLOOR,
    control_probs,
    episode_update,
    episode_update_reference,
    floored_log,
    sample_control_action,
)


def one_step_update(method, theta_row, teacher_row, action=0, reward=0.0, **kwargs):
    """-(change of the row) after a one-step terminated episode with lr = 1 and no critic."""
    logits = theta_row[None].copy()
    episode_update(
        method, logits, [0, 0], [action], [reward], True, teacher_probs=teacher_row[None],
        lr=1.0, gamma=1.0, critic_mode="none", **kwargs,
    )  # fmt: skip
    return theta_row - logits[0]


# ------------------------------------------------------------ closed-form gradients (5.4)
@pytest.fixture
def row():
    rng = np.random.default_rng(0)
    return rng.normal(size=5), rng.dirichlet(np.ones(5))


def test_cross_entropy_gradient(row):
    theta, pi = row
    grad = one_step_update("on_policy_distill", theta, pi)
    expected = numerical_gradient(lambda z: -(pi * np.log(softmax(z))).sum(), theta)
    np.testing.assert_allclose(grad, expected, atol=1e-8)
    np.testing.assert_allclose(grad, softmax(theta) - pi, atol=1e-14)


def test_reverse_cross_entropy_gradient(row):
    theta, pi = row
    pi = pi.copy()
    pi[2] = 0.0  # floored in the log
    pi /= pi.sum()
    grad = one_step_update("expected_entropy_regularised", theta, pi)
    log_pi = np.log(np.maximum(pi, TEACHER_PROB_FLOOR))
    expected = numerical_gradient(lambda z: -(softmax(z) * log_pi).sum(), theta)
    np.testing.assert_allclose(grad, expected, atol=1e-7)


def test_information_potential_gradient(row):
    theta, pi = row
    grad = one_step_update("on_policy_distill", theta, pi, distill_loss="information_potential")
    expected = numerical_gradient(lambda z: -4 * (pi * softmax(z)).sum(), theta)
    np.testing.assert_allclose(grad, expected, atol=1e-8)


@pytest.mark.parametrize("action", [0, 3])
def test_score_function_gradient(row, action):
    theta, pi = row
    # baseline with reward 1 and no critic: update = -grad log pi_theta(a) * 1
    grad = one_step_update("baseline", theta, pi, action=action, reward=1.0)
    expected = numerical_gradient(lambda z: np.log(softmax(z))[action], theta)
    np.testing.assert_allclose(-grad, expected, atol=1e-8)


# ------------------------------------------------------------------- hand-computed cases
EPISODE = {"obs": [0, 1, 1], "actions": [1, 0], "rewards": [1.0, 2.0]}


@pytest.mark.parametrize(
    ("critic_mode", "terminated", "theta", "values"),
    [
        # MC: R = [1 + 0.5 * 2, 2] = [2, 2]; advantages [1.5, 1].
        ("mc", True, [[-0.075, 0.075], [0.05, -0.05]], [0.65, 1.1]),
        # TD: targets [1 + 0.5 * V(1), 2] = [1.5, 2]; advantages [1, 1].
        ("td", True, [[-0.05, 0.05], [0.05, -0.05]], [0.6, 1.1]),
        # Truncated MC bootstraps V(s_2) = 1: R = [2.25, 2.5]; advantages [1.75, 1.5].
        ("mc", False, [[-0.0875, 0.0875], [0.075, -0.075]], [0.675, 1.15]),
        # No critic: advantages are the returns [2, 2]; values untouched.
        ("none", True, [[-0.1, 0.1], [0.1, -0.1]], [0.5, 1.0]),
    ],
)
def test_hand_computed_actor_critic(critic_mode, terminated, theta, values):
    logits = np.zeros((2, 2))
    critic = np.array([0.5, 1.0])
    episode_update(
        "baseline", logits, EPISODE["obs"], EPISODE["actions"], EPISODE["rewards"], terminated,
        critic=critic, lr=0.1, gamma=0.5, critic_mode=critic_mode,
    )  # fmt: skip
    np.testing.assert_allclose(logits, theta, atol=1e-15)
    np.testing.assert_allclose(critic, values, atol=1e-15)


def test_hand_computed_n_distill_correction():
    """n_distill: rhat_0 = -gamma H_x(pi(s_1) || pi_theta(s_1)) = -0.5 log 2 at theta = 0."""
    logits = np.zeros((2, 2))
    teacher = np.array([[1.0, 0.0], [0.0, 1.0]])
    episode_update(
        "n_distill", logits, [0, 1, 1], [1, 1], [0.0, 0.0], True, teacher_probs=teacher,
        lr=1.0, gamma=0.5, critic_mode="none",
    )  # fmt: skip
    adv0 = -0.5 * np.log(2.0)
    # row 0: -(e_1 - p) adv0 + (p - pi) = -(-.5, .5) adv0 + (-.5, .5)
    expected0 = -(np.array([0.5 * adv0, -0.5 * adv0]) + np.array([-0.5, 0.5]))
    expected1 = -np.array([0.5, -0.5])
    np.testing.assert_allclose(logits, [expected0, expected1], atol=1e-15)


def test_vcond_gates_the_loss_where_the_student_is_better():
    teacher = np.array([[1.0, 0.0], [1.0, 0.0]])
    values = np.array([1.0, -1.0])  # teacher better in obs 0, worse in obs 1
    logits = np.zeros((2, 2))
    episode_update(
        "on_policy_distill+Vcond", logits, [0, 1, 1], [0, 0], [0.0, 0.0], True,
        teacher_probs=teacher, teacher_values=values, critic=np.zeros(2), lr=1.0,
    )  # fmt: skip
    np.testing.assert_allclose(logits[0], [0.5, -0.5])  # distilled
    np.testing.assert_allclose(logits[1], [0.0, 0.0])  # gated off (V_theta = 0 > V_pi = -1)


def test_teacher_v_reward_is_shaping():
    """rhat_t = r_t + gamma V_pi(s_{t+1}) - V_pi(s_t) with V_pi = 0 after the end."""
    teacher_values = np.array([2.0, 5.0])
    logits = np.zeros((2, 2))
    episode_update(
        "teacher_v_reward", logits, [0, 1, 1], [0, 0], [1.0, 3.0], True,
        teacher_probs=np.full((2, 2), 0.5), teacher_values=teacher_values, lr=1.0, gamma=0.5,
        critic_mode="td",
    )  # fmt: skip
    # rhat = [1 + 0.5 * 5 - 2, 3 + 0 - 5] = [1.5, -2]; TD with V_theta = 0: advantages = rhat.
    np.testing.assert_allclose(logits[:, 0], [0.5 * 1.5, 0.5 * -2.0])


# ------------------------------------------------------------- kernel vs slow reference
def random_case(rng, method, n_obs=6, n_keys=4, n_actions=4, length=9):
    obs = rng.integers(0, n_obs, size=length + 1)
    keys = rng.integers(0, n_keys, size=length + 1)
    teacher = rng.dirichlet(np.ones(n_actions), size=n_keys)
    teacher[0] = np.eye(n_actions)[1]  # greedy row: log floor
    return {
        "obs": obs,
        "keys": keys,
        "actions": rng.integers(0, n_actions, size=length),
        "rewards": rng.normal(size=length),
        "teacher_probs": teacher,
        "teacher_values": rng.normal(size=n_keys),
        "teacher_weights": rng.uniform(0.0, 2.0, size=n_keys),
        "logits": rng.normal(size=(n_obs, n_actions)),
        "critic": rng.normal(size=n_obs),
    }


def offered(method, critic, loss):
    try:
        M.parse_method(method).params(critic, loss)
    except ValueError:
        return False
    return True


CASES = [
    (method, critic, terminated, loss)
    for method in M.METHOD_IDS
    for critic in (None, "none", "mc", "td")
    for terminated in (True, False)
    for loss in M.DISTILL_LOSSES
    if offered(method, critic, loss)
]


@pytest.mark.parametrize(("method", "critic", "terminated", "loss"), CASES)
def test_kernel_matches_reference(method, critic, terminated, loss):
    rng = np.random.default_rng(zlib.crc32(repr((method, critic, terminated, loss)).encode()))
    case = random_case(rng, method)
    logits, critic_values = case.pop("logits"), case.pop("critic")
    obs, actions, rewards = case.pop("obs"), case.pop("actions"), case.pop("rewards")
    kwargs = dict(case, lr=0.3, gamma=0.9, critic_mode=critic, distill_loss=loss)
    ref_logits, ref_critic = episode_update_reference(
        method, logits, obs, actions, rewards, terminated, critic=critic_values, **kwargs
    )
    new_logits, new_critic = logits.copy(), critic_values.copy()
    episode_update(
        method, new_logits, obs, actions, rewards, terminated, critic=new_critic, **kwargs
    )
    np.testing.assert_allclose(new_logits, ref_logits, atol=1e-12, rtol=1e-12)
    np.testing.assert_allclose(new_critic, ref_critic, atol=1e-12, rtol=1e-12)
    assert not np.allclose(new_logits, logits)  # something happened


def test_workspace_is_reusable_and_reset():
    rng = np.random.default_rng(2)
    case = random_case(rng, "n_distill+R")
    spec = M.parse_method("n_distill+R")
    coef, codes = spec.params("mc")
    work = RK.make_row_work(6, 4, 9)
    probs = case["teacher_probs"]
    teacher = RK.teacher_table(
        probs, floored_log(probs), case["teacher_values"], case["teacher_weights"], False
    )
    out = []
    for _ in range(2):
        logits, critic = case["logits"].copy(), case["critic"].copy()
        RK.episode_update_tables(
            case["obs"], case["keys"], case["actions"], case["rewards"], True, teacher,
            RK.dense_table(logits), critic, coef, codes, 0.1, 0.99, work,
        )  # fmt: skip
        assert np.all(work.slot == -1)
        out.append(logits)
    np.testing.assert_array_equal(out[0], out[1])
    assert not np.array_equal(out[0], case["logits"])


def test_empty_episode_is_a_no_op():
    logits = np.ones((2, 2))
    episode_update("baseline", logits, [1], [], [], True)
    np.testing.assert_array_equal(logits, 1.0)


# ------------------------------------------------------------------------- control policies
@pytest.mark.parametrize("control", list(M.CONTROLS))
def test_sample_control_action_frequencies(control):
    rng = np.random.default_rng(3)
    teacher = np.array([0.1, 0.0, 0.6, 0.3])
    logits = np.array([0.5, -1.0, 0.0, 1.0])
    beta = 0.3
    n = 40_000
    counts = np.bincount(
        [sample_control_action(M.CONTROLS[control], beta, teacher, logits, u)
         for u in rng.random(n)],
        minlength=4,
    )  # fmt: skip
    expected = control_probs(control, teacher, softmax(logits), beta)
    np.testing.assert_allclose(counts / n, expected, atol=0.01)
    if control == "teacher":
        assert counts[1] == 0


def test_control_probs_errors():
    with pytest.raises(ValueError, match="control must be one of"):
        control_probs("random", np.ones(2) / 2, np.ones(2) / 2)


# ------------------------------------------------------------------------ methods and errors
def test_parse_method_variants():
    spec = M.parse_method("on_policy_distill+R+Vcond")
    assert (spec.base, spec.plus_r, spec.vcond) == ("on_policy_distill", True, True)
    assert spec.needs_teacher_values and spec.uses_critic
    assert M.parse_method("teacher_distill").default_control == "teacher"
    assert M.parse_method("n_distill").default_control == "student"
    assert not M.parse_method("baseline").needs_teacher
    assert not M.parse_method("td_v_zero").needs_teacher_values
    assert M.parse_method("td_v_teacher").needs_teacher_values
    assert M.parse_method("teacher_v_reward").needs_teacher_values
    assert not M.parse_method("on_policy_distill").uses_critic
    coef, _ = M.parse_method("n_distill+R").params()
    assert coef[M.C_ENV] == 1.0 and coef[M.C_NEXT_LOSS] == 1.0 and coef[M.C_LOSS_CE] == 1.0
    coef, _ = M.parse_method("kl_regularised").params()
    assert (coef[M.C_ENV], coef[M.C_TEACHER_LOGP], coef[M.C_STUDENT_LOGP]) == (1.0, 1.0, -1.0)


@pytest.mark.parametrize(
    "bad", ["n-distill", "baseline+R", "teacher_v_reward+R", "n_distill+Vcond+R", "", None, 3]
)
def test_bad_method_ids(bad):
    with pytest.raises(ValueError, match=r"method must be one of .*expected_entropy_regularised"):
        M.parse_method(bad)


def test_critic_mode_errors():
    with pytest.raises(ValueError, match="critic must be None or one of"):
        M.parse_method("baseline").critic_mode("gae")
    with pytest.raises(ValueError, match="always bootstraps one step"):
        M.parse_method("td_v_teacher").critic_mode("mc")
    with pytest.raises(ValueError, match="gates its loss"):
        M.parse_method("on_policy_distill+R+Vcond").critic_mode("none")
    assert M.parse_method("on_policy_distill").critic_mode("td") == "none"
    with pytest.raises(ValueError, match="has no such loss"):
        M.parse_method("baseline").params(None, "information_potential")
    with pytest.raises(ValueError, match="distill_loss must be one of"):
        M.parse_method("baseline").params(None, "hinge")


def test_control_code_errors():
    with pytest.raises(ValueError, match=r"control must be one of \['teacher', 'student'"):
        M.control_code("expert")


def test_beta_schedules():
    assert M.BetaSchedule("constant", start=0.3).value(100, 200) == 0.3
    linear = M.BetaSchedule("linear", start=1.0, end=0.0)
    assert [linear.value(i, 5) for i in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert M.BetaSchedule("linear", start=1.0, end=0.2, steps=2).value(10, 100) == 0.2
    exp = M.BetaSchedule("exponential", start=1.0, end=0.0, decay=0.5)
    assert [exp.value(i) for i in range(3)] == [1.0, 0.5, 0.25]
    assert M.beta_at(M.as_beta_schedule(0.25), 7, 10) == 0.25
    assert M.beta_at(M.as_beta_schedule(lambda i: 1 / (i + 1)), 3, 10) == 0.25
    with pytest.raises(ValueError, match="kind must be"):
        M.BetaSchedule("cosine")
    with pytest.raises(ValueError, match="start must be in"):
        M.BetaSchedule(start=1.5)
    with pytest.raises(ValueError, match="beta must be a number"):
        M.as_beta_schedule("half")
    with pytest.raises(ValueError, match=r"beta at iteration 0 must be in \[0, 1\]"):
        M.beta_at(M.as_beta_schedule(lambda i: 2.0), 0, 1)


def test_episode_update_shape_errors():
    logits = np.zeros((3, 2))
    teacher = np.full((3, 2), 0.5)
    ok = {"teacher_probs": teacher}
    with pytest.raises(ValueError, match=r"obs must have shape \[T \+ 1\]"):
        episode_update("on_policy_distill", logits, [0, 1], [0, 1], [0, 0], True, **ok)
    with pytest.raises(ValueError, match="actions and rewards must be 1-D"):
        episode_update("on_policy_distill", logits, [0, 1], [0], [0, 0], True, **ok)
    with pytest.raises(ValueError, match=r"actions must be in \[0, 2\)"):
        episode_update("on_policy_distill", logits, [0, 1], [2], [0], True, **ok)
    with pytest.raises(ValueError, match=r"obs must be table indices in \[0, 3\)"):
        episode_update("on_policy_distill", logits, [0, 3], [0], [0], True, **ok)
    with pytest.raises(ValueError, match=r"teacher_probs must have shape \[Nt, A\] with A = 2"):
        episode_update(
            "on_policy_distill", logits, [0, 1], [0], [0], True, teacher_probs=np.ones((3, 3))
        )
    with pytest.raises(ValueError, match="needs teacher_probs"):
        episode_update("on_policy_distill", logits, [0, 1], [0], [0], True)
    with pytest.raises(ValueError, match="needs teacher_values"):
        episode_update("teacher_v_reward", logits, [0, 1], [0], [0], True, **ok)
    with pytest.raises(ValueError, match=r"teacher_values must have shape \[Nt\]"):
        episode_update(
            "teacher_v_reward", logits, [0, 1], [0], [0], True, teacher_values=np.zeros(2), **ok
        )
    with pytest.raises(ValueError, match=r"critic must be a float64 array \[N\]"):
        episode_update("baseline", logits, [0, 1], [0], [0], True, critic=np.zeros(2))
    with pytest.raises(ValueError, match=r"logits must be a float64 array \[N, A\]"):
        episode_update("baseline", np.zeros((3, 2), dtype=np.float32), [0, 1], [0], [0], True)
    with pytest.raises(ValueError, match=r"keys must have the shape of obs"):
        episode_update("on_policy_distill", logits, [0, 1], [0], [0], True, keys=[0], **ok)
    with pytest.raises(ValueError, match="teacher_prob_floor must be in"):
        floored_log(np.ones(2), floor=0.0)
