"""``distill(...)``: train one tabular student on one Gymnasium environment (SPEC 3.1).

One *iteration* samples one full episode with the control policy through ``env.reset`` /
``env.step`` and then applies the method's update (paper Eq. 1) with the compiled kernels of
:mod:`distill_agents.updates.rows`, the ones the batched runner uses, on the same student tables
(so each MDP of a runner learns exactly what ``distill`` learns on it with deterministic moves).

Randomness: ``np.random.SeedSequence(seed).spawn(3)`` gives three streams (:func:`seed_streams`):
the first seeds the environment once (``env.reset(seed=...)`` at the first episode, plain
``env.reset()`` after), the second is the generator that draws the actions -- exactly one
uniform per step, turned into an action of the control policy by inverse CDF
(:func:`~distill_agents.updates.rows.draw_action`) -- and the third seeds the returned
student's own ``predict`` generator. Same seed, same student, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from distill_agents import methods as M
from distill_agents.policy import TabularPolicy
from distill_agents.updates import TEACHER_PROB_FLOOR, floored_log
from distill_agents.updates import rows as RK
from distill_agents.updates.row_update import episode_update_tables
from gridworld_env.base import check_int

__all__ = ["distill", "seed_streams", "teacher_tables"]

_SIMPLEX_ATOL = 1e-6


def seed_streams(seed: int | None) -> tuple[int | None, np.random.Generator]:
    """The environment seed and the action generator derived from one ``seed``.

    Returns:
        ``(env_seed, action_rng)``; ``env_seed`` is ``None`` when ``seed`` is ``None``.
    """
    env_seed, action_rng, _ = student_streams(seed)
    return env_seed, action_rng


def student_streams(
    seed: int | None,
) -> tuple[int | None, np.random.Generator, np.random.Generator]:
    """Environment seed, action generator and the student's own ``predict`` generator.

    The first two are :func:`seed_streams`' (three children of ``SeedSequence(seed)``).
    """
    env_seq, action_seq, policy_seq = np.random.SeedSequence(seed).spawn(3)
    env_seed = None if seed is None else int(env_seq.generate_state(1, dtype=np.uint32)[0])
    return env_seed, np.random.default_rng(action_seq), np.random.default_rng(policy_seq)


def teacher_tables(
    teacher: Any, n_obs: int, n_actions: int, need_values: bool = False
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
    """Query a teacher on every table index ``0..n_obs-1`` once.

    Args:
        teacher: a :class:`~distill_agents.policy.TabularPolicy`, any object with
            ``action_probs(obs) -> [A]`` (and ``value(obs) -> float``), or an array ``[n, A]``
            of probabilities.
        n_obs: number of table indices ``n``.
        n_actions: number of actions ``A``.
        need_values: also build ``V_pi`` (an error if the teacher has none).

    Returns:
        ``(probs [n, A], values [n] or None)``; ``values`` is built whenever the teacher can
        give them.

    Raises:
        ValueError: a teacher of the wrong size, probabilities off the simplex, or no values
            when they are needed.
    """
    values: NDArray[np.float64] | None = None
    if isinstance(teacher, TabularPolicy):
        if teacher.logits.shape != (n_obs, n_actions):
            raise ValueError(
                f"teacher has a table of shape {teacher.logits.shape}, the environment needs "
                f"[n, A] = ({n_obs}, {n_actions})"
            )
        probs = teacher.probs
        values = None if teacher.values is None else teacher.values.copy()
    elif isinstance(teacher, np.ndarray):
        probs = np.array(teacher, dtype=np.float64)
        if probs.shape != (n_obs, n_actions):
            raise ValueError(
                f"teacher array must have shape [n, A] = ({n_obs}, {n_actions}), got {probs.shape}"
            )
    elif callable(getattr(teacher, "action_probs", None)):
        probs = np.empty((n_obs, n_actions))
        for i in range(n_obs):
            row = np.asarray(teacher.action_probs(i), dtype=np.float64)
            if row.shape != (n_actions,):
                raise ValueError(
                    f"teacher.action_probs({i}) must return [A] = ({n_actions},), got {row.shape}"
                )
            probs[i] = row
        value_fn = getattr(teacher, "value", None)
        if callable(value_fn):
            try:
                values = np.array([float(value_fn(i)) for i in range(n_obs)])
            except (ValueError, TypeError, NotImplementedError, AttributeError) as err:
                if need_values:
                    raise ValueError(f"teacher.value failed: {err}") from err
                values = None
    else:
        raise ValueError(
            "teacher must be a TabularPolicy, an object with action_probs(obs) (and value(obs)), "
            f"or an array [n, A] of probabilities; got {type(teacher).__name__}"
        )
    if not (np.all(np.isfinite(probs)) and np.all(probs >= 0.0)):
        raise ValueError("teacher probabilities must be finite and non-negative")
    sums = probs.sum(axis=1)
    if not np.allclose(sums, 1.0, atol=_SIMPLEX_ATOL, rtol=0.0):
        bad = int(np.argmax(np.abs(sums - 1.0)))
        raise ValueError(f"teacher probabilities must sum to 1; row {bad} sums to {sums[bad]!r}")
    probs /= sums[:, None]
    if values is not None and not np.all(np.isfinite(values)):
        raise ValueError("teacher values must be finite")
    if need_values and values is None:
        raise ValueError(
            "this method needs the teacher's values V_pi: the teacher must provide value(obs) "
            "(e.g. a Q-learning or actor-critic teacher, or a TabularPolicy with values)"
        )
    return probs, values


def check_spaces(env: gym.Env) -> tuple[int, int]:
    """``(n_obs, n_actions)`` of an env with ``Discrete`` spaces from 0, else a ValueError."""
    obs_space, act_space = env.observation_space, env.action_space
    if not isinstance(obs_space, spaces.Discrete):
        raise ValueError(
            f"distill needs Discrete observations (table indices), got {obs_space}; wrap the "
            "environment in gridworld_env.TableIndexWrapper (e.g. for observation='partial')"
        )
    if not isinstance(act_space, spaces.Discrete):
        raise ValueError(f"distill needs Discrete actions, got {act_space}")
    if int(obs_space.start) != 0 or int(act_space.start) != 0:
        raise ValueError("distill needs Discrete spaces that start at 0")
    return int(obs_space.n), int(act_space.n)


def distill(
    env: gym.Env,
    teacher: Any,
    method: str,
    *,
    control: str | None = None,
    iterations: int = 1000,
    lr: float = 0.1,
    gamma: float = 0.99,
    critic: str | None = None,
    seed: int | None = None,
    beta: float | M.BetaSchedule | Callable[[int], float] = 0.5,
    distill_loss: str = "cross_entropy",
    teacher_prob_floor: float = TEACHER_PROB_FLOOR,
    max_episode_steps: int | None = None,
    callback: Callable[[int, TabularPolicy], bool | None] | None = None,
) -> TabularPolicy:
    """Distil ``teacher`` into a tabular student on ``env`` with one method (paper Eq. 1).

    Args:
        env: a Gymnasium env with ``Discrete`` observations (table indices; wrap partial
            observations in :class:`gridworld_env.TableIndexWrapper`) and ``Discrete`` actions.
        teacher: a :class:`TabularPolicy`, an object with ``action_probs(obs)`` (and
            ``value(obs)`` for the methods that need ``V_pi``), an array ``[n, A]`` of
            probabilities, or ``None`` for ``baseline`` / ``td_v_zero``.
        method: a method id (:data:`distill_agents.methods.METHOD_IDS`).
        control: ``"teacher"``, ``"student"``, ``"uniform"`` or ``"mixture"``; ``None`` (default)
            uses the method's own control (teacher for ``teacher_distill``, else student).
        iterations: number of episodes (one update each).
        lr: learning rate of the logits and the critic.
        gamma: discount in [0, 1].
        critic: ``None`` (the method's default), ``"none"``, ``"mc"`` or ``"td"``.
        seed: seed of the environment and of the action draws (see the module docstring).
        beta: the ``mixture`` control's probability of following the teacher: a number, a
            :class:`~distill_agents.methods.BetaSchedule`, or a callable ``iteration -> beta``.
        distill_loss: ``"cross_entropy"`` or ``"information_potential"`` (see
            :meth:`MethodSpec.params`).
        teacher_prob_floor: floor of the teacher's probabilities inside ``log`` (the entropy
            and KL methods with a greedy teacher); default 1e-8.
        max_episode_steps: cut episodes after this many steps (treated as a truncation); the
            env's own time limit applies anyway.
        callback: called as ``callback(iteration, student)`` after every update with the live
            student (copy it to keep a snapshot); returning ``False`` stops training.

    Returns:
        The student; ``values`` holds its critic when the method learns one.

    Raises:
        ValueError: bad arguments (method id, control, shapes, a teacher without values for a
            method that needs them).
    """
    spec = M.parse_method(method)
    control_name = control if control is not None else spec.default_control
    code = M.control_code(control_name)
    mode = spec.critic_mode(critic)
    coef, codes = spec.params(mode, distill_loss)
    iterations, max_episode_steps = _check_numbers(iterations, max_episode_steps, lr, gamma)
    schedule = M.as_beta_schedule(beta)
    n_obs, n_actions = check_spaces(env)
    rows, table = _tables(spec, control_name, code, teacher, n_obs, n_actions, teacher_prob_floor)

    env_seed, rng, policy_rng = student_streams(seed)
    student, critic_values = _new_student(n_obs, n_actions, mode != "none", policy_rng)
    work = RK.make_row_work(n_obs, n_actions, max(n_obs, max_episode_steps or 1000))
    draw = _ActionDraw(code, rows, table, work, rng, n_obs)
    for iteration in range(iterations):
        b = M.beta_at(schedule, iteration, iterations) if code == M.CONTROL_MIXTURE else 0.0
        obs, _ = env.reset(seed=env_seed if iteration == 0 else None)
        visited, actions, rewards, terminated = _sample_episode(
            env, obs, draw, b, max_episode_steps
        )
        episode_update_tables(
            visited, visited, actions, rewards, terminated, rows, table, critic_values, coef,
            codes, float(lr), float(gamma), work,
        )  # fmt: skip
        if _stopped(callback, iteration, student, table):
            break
    return _finished(student, table)


def _check_numbers(
    iterations: int, max_episode_steps: int | None, lr: float, gamma: float
) -> tuple[int, int | None]:
    """``(iterations, max_episode_steps)`` checked; a ValueError for a bad ``lr`` or ``gamma``."""
    iterations = check_int("iterations", iterations, 0)
    if max_episode_steps is not None:
        max_episode_steps = check_int("max_episode_steps", max_episode_steps, 1)
    if not (isinstance(lr, (int, float)) and np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if not (isinstance(gamma, (int, float)) and 0.0 <= gamma <= 1.0):
        raise ValueError(f"gamma must be a number in [0, 1], got {gamma!r}")
    return iterations, max_episode_steps


def _tables(
    spec: M.MethodSpec,
    control_name: str,
    code: int,
    teacher: Any,
    n_obs: int,
    n_actions: int,
    teacher_prob_floor: float,
) -> tuple[Any, Any]:
    """The teacher rows and the student table the kernels update (``RK.teacher_table``)."""
    if teacher is None:
        if spec.needs_teacher or code in M.TEACHER_CONTROLS:
            raise ValueError(
                f"method {spec.id!r} with control {control_name!r} needs a teacher, got None"
            )
        probs = np.full((n_obs, n_actions), 1.0 / n_actions)
        values = None
    else:
        probs, values = teacher_tables(teacher, n_obs, n_actions, spec.needs_teacher_values)
    if values is None:
        values = np.zeros(n_obs)
    rows = RK.teacher_table(
        probs,
        floored_log(probs, teacher_prob_floor),
        values,
        np.ones(n_obs),
        code in M.TEACHER_CONTROLS,
    )
    return rows, RK.student_table(n_obs, probs)


def _new_student(
    n_obs: int, n_actions: int, learns_critic: bool, policy_rng: np.random.Generator
) -> tuple[TabularPolicy, NDArray[np.float64]]:
    """A zero student and its critic's values (the student's ``values`` if it learns one)."""
    student = TabularPolicy(np.zeros((n_obs, n_actions)), seed=policy_rng)
    critic_values = np.zeros(n_obs)
    if learns_critic:
        student.values = critic_values
    return student, critic_values


def _finished(student: TabularPolicy, table: Any) -> TabularPolicy:
    """The student with the table's final logits; a FloatingPointError if they diverged."""
    RK.dense_logits(table, out=student.logits)
    if not np.all(np.isfinite(student.logits)):
        raise FloatingPointError(
            "the student's logits diverged (non-finite); lower lr or check the rewards"
        )
    return student


class _ActionDraw:
    """The control policy's action at a table index: one uniform of ``rng`` per call."""

    def __init__(
        self, code: int, rows: Any, table: Any, work: Any, rng: np.random.Generator, n_obs: int
    ) -> None:
        self.code, self.rows, self.table, self.work, self.rng = code, rows, table, work, rng
        self.n_obs = n_obs

    def __call__(self, o: int, beta: float) -> int:
        return int(
            RK.draw_action(
                self.code, beta, self.rows, self.table, o, self.work, 0, self.rng.random(), False
            )
        )


def _sample_episode(
    env: gym.Env, obs: Any, draw: _ActionDraw, beta: float, max_episode_steps: int | None
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64], bool]:
    """One episode from ``obs``: ``(visited indices, actions, rewards, terminated)``."""
    n_obs = draw.n_obs
    o = obs_index(obs, n_obs)
    obs_list = [o]
    actions: list[int] = []
    rewards: list[float] = []
    terminated = False
    while True:
        a = draw(o, beta)
        obs, reward, terminated, truncated, _ = env.step(a)
        o = obs_index(obs, n_obs)
        obs_list.append(o)
        actions.append(a)
        rewards.append(float(reward))
        if _episode_over(terminated, truncated, len(actions), max_episode_steps):
            break
    return (
        np.array(obs_list, dtype=np.int64),
        np.array(actions, dtype=np.int64),
        np.array(rewards, dtype=np.float64),
        bool(terminated),
    )


def _episode_over(
    terminated: bool, truncated: bool, steps: int, max_episode_steps: int | None
) -> bool:
    """Whether an episode ends: the env says so, or ``max_episode_steps`` are taken."""
    return bool(terminated or truncated) or (
        max_episode_steps is not None and steps >= max_episode_steps
    )


def _stopped(
    callback: Callable[[int, TabularPolicy], bool | None] | None,
    iteration: int,
    student: TabularPolicy,
    table: Any,
) -> bool:
    """Whether ``callback`` (given the live student) asks to stop after ``iteration``."""
    if callback is None:
        return False
    RK.dense_logits(table, out=student.logits)
    return callback(iteration, student) is False


def obs_index(obs: Any, n_obs: int) -> int:
    """An observation as a table index in ``[0, n_obs)``, else a ValueError."""
    try:
        index = int(obs)
    except (TypeError, ValueError):
        raise ValueError(f"the environment returned a non-integer observation {obs!r}") from None
    if not 0 <= index < n_obs:
        raise ValueError(f"the environment returned observation {index} outside [0, {n_obs})")
    return index
