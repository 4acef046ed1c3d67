"""The row kernels: draws, splits and updates on tables with a bulk, against dense rows and the
old per-step arithmetic."""

from __future__ import annotations

import zlib

import gymnasium as gym
import numpy as np
import pytest
from old_arithmetic import episode_update_kernel as old_update
from old_arithmetic import make_workspace as old_workspace

import gridworld_env  # noqa: F401 -- registers the environments
from distill_agents import methods as M
from distill_agents import row_kernels as RK
from distill_agents.teachers import planned_teachers
from distill_agents.updates import floored_log, sample_control_action

METHODS = [
    "teacher_distill", "on_policy_distill", "entropy_regularised", "n_distill",
    "expected_entropy_regularised", "baseline", "kl_regularised", "on_policy_distill+R+Vcond",
    "teacher_v_reward", "td_v_teacher",
]  # fmt: skip


def greedy_teacher(rng, n_obs, n_actions, extra_exception=True):
    """A teacher that is greedy on one of the first four actions, plus one softer row."""
    probs = np.zeros((n_obs, n_actions))
    probs[np.arange(n_obs), rng.integers(0, 4, n_obs)] = 1.0
    probs[1] = 0.5 / (n_actions - 4)
    probs[1, :4] = rng.dirichlet(np.ones(4)) * 0.5
    if extra_exception:  # a row whose teacher singles out one of the other actions
        probs[2, n_actions - 3] = 0.5
        probs[2] /= probs[2].sum()
    return probs


def tables(probs, values, control):
    with_draws = control in M.TEACHER_CONTROLS
    return RK.teacher_table(probs, floored_log(probs), values, np.ones(len(probs)), with_draws)


# --------------------------------------------------------------------------- the tables
def test_fresh_students_keep_only_the_teachers_exceptions_explicit():
    rng = np.random.default_rng(0)
    probs = greedy_teacher(rng, 5, 40)
    n_explicit, explicit = RK.initial_explicit(probs)
    # Greedy rows: the argmax alone; the soft row: its four movement actions; the row with an
    # exception: its argmax and the singled-out action.
    assert n_explicit.tolist() == [1, 4, 2, 1, 1]
    for o in range(5):
        listed = explicit[o, : n_explicit[o]]
        assert np.all(np.diff(listed) > 0)
        common = RK.common_values(probs)[o]
        np.testing.assert_array_equal(np.sort(listed), np.flatnonzero(probs[o] != common))
    # Below BULK_MIN_ACTIONS every row is dense, and so is a row where most actions differ.
    small = RK.initial_explicit(probs[:, :4] / probs[:, :4].sum(-1, keepdims=True))
    assert small[0].tolist() == [4] * 5 and small[1].shape == (5, 0)
    noisy = rng.dirichlet(np.ones(40), size=3)
    noisy[0] = 1.0 / 40
    n_noisy, _ = RK.initial_explicit(noisy)
    assert n_noisy.tolist() == [0, 40, 40]


def test_dense_logits_write_every_bulk_entry():
    # Row 0 has the explicit actions 1 and 3 (their logits packed first), row 1 is dense.
    table = RK.StudentTable(
        np.array([[1.0, 2.0, 9.0, 9.0], [5.0, 6.0, 7.0, 8.0]]),
        np.array([-3.0, 0.0]),
        np.array([2, 4]),
        np.array([[1, 3, 0, 0], [0, 1, 2, 3]], dtype=np.int32),
    )
    np.testing.assert_array_equal(
        RK.dense_logits(table), [[-3.0, 1.0, -3.0, 2.0], [5.0, 6.0, 7.0, 8.0]]
    )
    stacked = RK.StudentTable(*(np.stack([f, f]) for f in table))
    np.testing.assert_array_equal(RK.dense_logits(stacked)[1], RK.dense_logits(table))


# --------------------------------------------------------------------------------- draws
@pytest.mark.parametrize("n_actions", [2, 4, 9, 40, 400])
def test_dense_draws_are_the_linear_scans(n_actions):
    # On dense rows the draws make the old comparisons (sample_control_action's linear scan
    # over the exponentials and the teacher's running sum): the same action for every uniform.
    rng = np.random.default_rng(n_actions)
    for control in M.CONTROLS.values():
        for _ in range(10):
            logits = rng.normal(scale=rng.choice([0.1, 3.0, 30.0]), size=(3, n_actions))
            logits[1, : n_actions // 2] = logits[1, -1]  # ties
            probs = rng.dirichlet(np.ones(n_actions), size=3)
            probs[0, ::2] = 0.0
            probs[0] /= probs[0].sum()
            teacher = tables(probs, np.zeros(3), control)
            student = RK.dense_table(logits.copy())
            work = RK.make_row_work(3, n_actions, 4)
            for x in np.concatenate([rng.random(60), [0.0, 0.3, 1.0 - 2.0**-53]]):
                for o in range(3):
                    new = RK.draw_action(control, 0.3, teacher, student, o, work, 0, x, False)
                    old = sample_control_action(control, 0.3, probs[o], logits[o], x)
                    assert new == old


@pytest.mark.parametrize("n_actions", [9, 40, 400])
def test_draws_with_a_bulk_are_the_dense_rows_draws(n_actions):
    # A row with a bulk draws, for every uniform, what the same logits written out densely
    # draw (the bulk's members fill the gaps between explicit actions in index order), and
    # reports whether the action came from the bulk and where it goes in the explicit list.
    rng = np.random.default_rng(7 + n_actions)
    for _ in range(40):
        n = int(rng.integers(0, n_actions))
        ex = np.sort(rng.choice(n_actions, size=n, replace=False)).astype(np.int32)
        logits = np.zeros((1, n_actions))
        logits[0, :n] = rng.normal(scale=rng.choice([0.5, 5.0]), size=n)  # packed
        bulk = rng.normal(scale=3.0)
        explicit = np.zeros((1, n_actions), dtype=np.int32)
        explicit[0, :n] = ex
        table = RK.StudentTable(logits, np.array([bulk]), np.array([n]), explicit)
        dense = RK.dense_table(RK.dense_logits(table))
        work, dense_work = RK.make_row_work(1, n_actions, 2), RK.make_row_work(1, n_actions, 2)
        RK.prepare_row(table, 0, work, 0)
        RK.prepare_row(dense, 0, dense_work, 0)
        np.testing.assert_allclose(
            work.stats[0, RK.ST_TOTAL], dense_work.stats[0, RK.ST_TOTAL], rtol=1e-12
        )
        for x in np.concatenate([np.sort(rng.random(300)), [0.0, 1.0 - 2.0**-53]]):
            a, pos, from_bulk = RK.draw_student(table, 0, work, 0, x)
            b, _, _ = RK.draw_student(dense, 0, dense_work, 0, x)
            assert a == b or abs(x * work.stats[0, RK.ST_TOTAL] - dense_work.cum[0, min(a, b)]) < (
                1e-12 * work.stats[0, RK.ST_TOTAL]
            )  # a rounding boundary between the two sums
            assert from_bulk == (a not in ex)
            insert = np.searchsorted(ex, a)
            assert pos == insert


def test_splitting_a_prepared_row_is_what_preparing_it_afresh_gives():
    # After an episode, the taken bulk actions become explicit; a row prepared during the
    # episode is kept prepared, exactly as preparing it again from scratch would leave it.
    rng = np.random.default_rng(5)
    n_actions = 50
    probs = greedy_teacher(rng, 3, n_actions)
    table = RK.student_table(3, probs)
    n0 = table.n_explicit.copy()
    table.logits[:] = rng.normal(size=table.logits.shape)
    table.bulk[:] = 0.7
    before = RK.dense_logits(table)
    work = RK.make_row_work(3, n_actions, 8)
    fresh = RK.make_row_work(3, n_actions, 8)
    obs = np.array([0, 2, 0, 0, 2, 1, 0, 0, 0], dtype=np.int64)
    actions = np.array([30, 5, 49, 30, 6, 0, int(table.explicit[0, 0]), 7], dtype=np.int64)
    for row, o in enumerate((0, 2, 1)):
        work.slot[o] = row
        RK.prepare_row(table, o, work, row)
    RK.split_taken(table, obs, actions, 8, work, True)
    np.testing.assert_array_equal(RK.dense_logits(table), before)  # no value changed
    for row, o in enumerate((0, 2, 1)):
        n = table.n_explicit[o]
        listed = table.explicit[o, :n]
        taken = set(actions[obs[:-1] == o].tolist())
        assert taken <= set(listed.tolist()) and np.all(np.diff(listed) > 0)
        assert n == len(set(RK.initial_explicit(probs)[1][o, : n0[o]].tolist()) | taken)
        RK.prepare_row(table, o, fresh, 0)
        np.testing.assert_array_equal(work.exps[row, :n], fresh.exps[0, :n])
        np.testing.assert_array_equal(work.cum[row, :n], fresh.cum[0, :n])
        np.testing.assert_array_equal(work.stats[row, :3], fresh.stats[0, :3])
    assert work.counts[RK.COUNT_SPLITS] == int((table.n_explicit - n0).sum())


# ------------------------------------------------------------------------------- updates
def random_episode(rng, n_obs, n_actions, table, teacher, control):
    length = int(rng.integers(1, 25))
    obs = rng.integers(0, n_obs, size=length + 1)
    work = RK.make_row_work(n_obs, n_actions, length)
    actions = np.array(
        [RK.draw_action(control, 0.4, teacher, table, o, work, 0, rng.random(), False)
         for o in obs[:-1]],
        dtype=np.int64,
    )  # fmt: skip
    return obs, actions, rng.normal(size=length), bool(rng.random() < 0.5)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("control", ["student", "uniform"])
def test_updates_with_a_bulk_are_the_dense_updates(method, control):
    rng = np.random.default_rng(zlib.crc32(f"{method}/{control}".encode()))
    n_obs, n_actions = 6, 40
    spec = M.parse_method(method)
    coef, codes = spec.params(None)
    split = RK.has_policy_gradient(coef, codes)
    code = M.control_code(control)
    probs = greedy_teacher(rng, n_obs, n_actions)
    teacher = tables(probs, rng.normal(size=n_obs), code)
    table = RK.student_table(n_obs, probs)
    dense = np.zeros((n_obs, n_actions))
    critic, dense_critic = np.zeros(n_obs), np.zeros(n_obs)
    work = RK.make_row_work(n_obs, n_actions, 30)
    dense_work = RK.make_row_work(n_obs, n_actions, 30)
    for _ in range(60):
        obs, actions, rewards, term = random_episode(rng, n_obs, n_actions, table, teacher, code)
        args = (coef, codes, 0.1, 0.99)
        episode = (obs, obs, actions, rewards, term, teacher)
        RK.episode_update_tables(*episode, table, critic, *args, work)
        RK.episode_update_tables(*episode, RK.dense_table(dense), dense_critic, *args, dense_work)
        assert np.all(work.slot == -1)
    np.testing.assert_allclose(RK.dense_logits(table), dense, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(critic, dense_critic, rtol=1e-11, atol=1e-12)
    assert not np.allclose(dense, 0.0)
    if split:  # every taken action became explicit; the rest still share one logit
        assert np.all(table.n_explicit > 4)
    else:  # no policy-gradient term: the rows keep only the teacher's exceptions
        np.testing.assert_array_equal(table.n_explicit, RK.initial_explicit(probs)[0])


# ---------------------------------------------------------------- the old arithmetic
def train(env, probs, values, method, episodes, seed, control, old):
    """Student training on ``env`` with the row kernels, or with the old per-step kernel and
    its linear-scan draws (``old``); the same uniforms either way."""
    rng = np.random.default_rng(seed)
    n_obs, n_actions = probs.shape
    coef, codes = M.parse_method(method).params(None)
    code = M.control_code(control)
    critic = np.zeros(n_obs)
    teacher = tables(probs, values, code)
    table = RK.student_table(n_obs, probs)
    work = RK.make_row_work(n_obs, n_actions, 1000)
    logits = np.zeros((n_obs, n_actions))
    old_work = old_workspace(n_obs, n_actions, 1000)
    obs_0, _ = env.reset(seed=seed)
    for _ in range(episodes):
        obs, actions, rewards = [int(obs_0)], [], []
        while True:
            o, x = obs[-1], rng.random()
            if old:
                a = sample_control_action(code, 0.0, probs[o], logits[o], x)
            else:
                a = RK.draw_action(code, 0.0, teacher, table, o, work, 0, x, False)
            ob, reward, term, trunc, _ = env.step(a)
            obs.append(int(ob))
            actions.append(a)
            rewards.append(float(reward))
            if term or trunc:
                break
        ep = np.array(obs, dtype=np.int64)
        act, rew = np.array(actions, dtype=np.int64), np.array(rewards)
        if old:
            old_update(
                ep, ep, act, rew, term, probs, teacher.logp, values, np.ones(n_obs), logits,
                critic, coef, codes, 0.1, 0.99, *old_work,
            )  # fmt: skip
        else:
            RK.episode_update_tables(
                ep, ep, act, rew, term, teacher, table, critic, coef, codes, 0.1, 0.99, work
            )
        obs_0, _ = env.reset()
    return (logits if old else RK.dense_logits(table)), critic


@pytest.mark.parametrize(
    ("n_actions", "method", "control"),
    [
        (4, "on_policy_distill", "student"),
        (4, "n_distill+R", "student"),
        (40, "on_policy_distill", "student"),
        (40, "entropy_regularised", "student"),
        (40, "expected_entropy_regularised", "uniform"),
        (40, "teacher_distill", "teacher"),
        (40, "baseline", "student"),
    ],
)
def test_training_agrees_with_the_old_per_step_arithmetic(n_actions, method, control):
    # The row kernels sum per row what the old kernel summed step by step: the same students
    # to rounding after a whole training run on a small grid (the same uniforms give the same
    # episodes unless a draw lands within rounding of a boundary, which these seeds do not).
    kw = {"width": 5, "height": 5, "n_actions": n_actions}
    envs = gym.make_vec(
        "DistillGrid-v0", num_envs=1, vectorization_mode="vector_entry_point",
        observation="index", layout_seed=4, **kw,
    )  # fmt: skip
    teachers = planned_teachers(
        envs.models, env_id="DistillGrid-v0", env_kwargs=kw, layout_seeds=np.array([4])
    )
    n = int(teachers.n_indices[0])
    probs, values = np.array(teachers.probs[0, :n]), np.array(teachers.values[0, :n])
    results = [
        train(teachers.make_env(0), probs, values, method, 300, 3, control, old)
        for old in (True, False)
    ]
    (old_logits, old_critic), (new_logits, new_critic) = results
    assert not np.allclose(old_logits, 0.0)
    np.testing.assert_allclose(new_logits, old_logits, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(new_critic, old_critic, rtol=1e-9, atol=1e-9)
