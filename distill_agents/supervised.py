"""Supervised policy distillation from a teacher dataset (Rusu et al., 2016; seeds 002, 003).

The student is a table of outputs ``[n, A]`` (logits; Q-value estimates for the MSE loss),
trained by supervised regression on targets the teacher gives at the observations of a
*dataset*. Losses, each a pure function returning the per-example loss ``[B]`` and its
closed-form gradient with respect to the student's outputs ``[B, A]`` (the caller reduces):

- :func:`nll_loss`: ``-log softmax(z)[a*]`` with ``a*`` the teacher's argmax action;
- :func:`mse_loss`: ``||q_T - z||^2`` on Q-values;
- :func:`kl_loss`: forward ``KL(p_T || softmax(z))`` with ``p_T = softmax(q_T / tau)``
  (Rusu et al.'s KL with temperature; Hinton-style, mean-seeking);
- :func:`reverse_kl_loss`: ``KL(softmax(z) || p_T)`` (mode-seeking).

``p_T = softmax(q_T / tau)`` comes from :func:`teacher_targets`; ``tau = 0`` is the greedy
(argmax, ties split) distribution. The student's own temperature is 1: Rusu et al.'s
``softmax(q_S / tau)`` for the student is the same model with logits ``z = q_S / tau``.
Q-values come from the teacher's ``q_values(obs)`` or ``action_values(obs)``; teachers without
them use ``log pi`` (floored) as their scores, so ``tau = 1`` targets the teacher's own
distribution.

Data sources (``source=``):

- ``"teacher"``: the observations of one teacher rollout per iteration (Rusu et al.);
- ``"student"``: the observations of one student rollout (on-policy, DAgger-like);
- ``"replay"``: rollouts of ``collect`` (``"teacher"`` by default) enter a FIFO replay buffer of
  ``buffer_capacity`` observations; each iteration trains on ``batch_size`` observations drawn
  uniformly from it;
- ``"uniform"``: ``batch_size`` synthetic observations drawn uniformly over the table indices
  (no environment interaction).

One update per iteration: ``z[o] -= lr * mean over the batch of grad`` (the mean, so that the
step does not depend on the batch size).

Multi-task distillation (:func:`multitask_distill`): one teacher per environment, one student
over a *shared* observation table, the union of the environments' observation tables keyed by
their observation (e.g. the 9x9 windows of ``TableIndexWrapper.index_to_obs`` for partial
observations): two environments that show the same window share the student's row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
from numpy.typing import ArrayLike, NDArray

from distill_agents import methods as M
from distill_agents.distill import check_spaces, obs_index, student_streams
from distill_agents.numerics import softmax
from distill_agents.policy import TabularPolicy
from distill_agents.updates import TEACHER_PROB_FLOOR, floored_log, sample_control_action
from gridworld_env.base import check_int

__all__ = [
    "LOSSES",
    "SOURCES",
    "MultiTaskStudent",
    "ReplayBuffer",
    "kl_loss",
    "mse_loss",
    "multitask_distill",
    "nll_loss",
    "reverse_kl_loss",
    "supervised_distill",
    "teacher_targets",
]

#: Supervised losses by name.
LOSSES = ("nll", "mse", "kl", "reverse_kl")
#: Data sources by name.
SOURCES = ("teacher", "student", "replay", "uniform")


def _log_softmax(z: NDArray[np.float64]) -> NDArray[np.float64]:
    shifted = z - z.max(axis=-1, keepdims=True)
    out: NDArray[np.float64] = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return out


def _pair(name_a: str, a: ArrayLike, name_b: str, b: ArrayLike) -> tuple[NDArray, NDArray]:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(
            f"{name_a} and {name_b} must both have shape [B, A], got {x.shape} and {y.shape}"
        )
    return x, y


# =================================================================================== losses
def teacher_targets(q_values: ArrayLike, tau: float = 1.0) -> NDArray[np.float64]:
    """``softmax(q / tau)`` per row ``[B, A]``; ``tau = 0`` gives the greedy distribution.

    Args:
        q_values: ``[..., A]`` teacher scores (Q-values or log-probabilities).
        tau: temperature ``>= 0`` (Rusu et al. sharpen with ``tau < 1``).
    """
    from distill_agents.planning import softmax_policy

    return softmax_policy(q_values, tau)


def nll_loss(
    student_logits: ArrayLike, teacher_actions: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Negative log-likelihood of the teacher's best action (Rusu et al., L_NLL).

    Args:
        student_logits: ``[B, A]`` student logits ``z``.
        teacher_actions: ``[B]`` the teacher's argmax action per example.

    Returns:
        ``(loss [B], grad [B, A])`` with ``loss = -log softmax(z)[a*]`` and
        ``grad = softmax(z) - onehot(a*)``.
    """
    z = np.asarray(student_logits, dtype=np.float64)
    a = np.asarray(teacher_actions)
    if z.ndim != 2 or a.shape != (z.shape[0],) or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(
            f"student_logits must be [B, A] and teacher_actions [B] integers, got {z.shape} "
            f"and {a.shape}"
        )
    if a.size and (a.min() < 0 or a.max() >= z.shape[1]):
        raise ValueError(f"teacher_actions must be in [0, {z.shape[1]})")
    rows = np.arange(z.shape[0])
    loss = -_log_softmax(z)[rows, a]
    grad = softmax(z)
    grad[rows, a] -= 1.0
    return loss, grad


def mse_loss(
    student_q: ArrayLike, teacher_q: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Squared error on Q-values (Rusu et al., L_MSE).

    Args:
        student_q: ``[B, A]`` the student's Q-value estimates.
        teacher_q: ``[B, A]`` the teacher's Q-values.

    Returns:
        ``(loss [B], grad [B, A])`` with ``loss = sum_a (z - q_T)^2`` and ``grad = 2 (z - q_T)``.
    """
    z, q = _pair("student_q", student_q, "teacher_q", teacher_q)
    diff = z - q
    return (diff**2).sum(axis=-1), 2.0 * diff


def kl_loss(
    student_logits: ArrayLike, teacher_probs: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Forward ``KL(p_T || softmax(z))`` (Rusu et al., L_KL; mean-seeking).

    Args:
        student_logits: ``[B, A]`` student logits ``z``.
        teacher_probs: ``[B, A]`` targets ``p_T`` (e.g. :func:`teacher_targets`).

    Returns:
        ``(loss [B], grad [B, A])`` with ``grad = softmax(z) - p_T``.
    """
    z, p = _pair("student_logits", student_logits, "teacher_probs", teacher_probs)
    log_q = _log_softmax(z)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0.0, p * (np.log(p) - log_q), 0.0)
    return terms.sum(axis=-1), np.exp(log_q) - p


def reverse_kl_loss(
    student_logits: ArrayLike,
    teacher_probs: ArrayLike,
    floor: float = TEACHER_PROB_FLOOR,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Reverse ``KL(softmax(z) || p_T)`` (mode-seeking; App. C of Czarnecki et al.).

    Args:
        student_logits: ``[B, A]`` student logits ``z``.
        teacher_probs: ``[B, A]`` targets ``p_T``; ``log p_T`` is floored at ``log(floor)``.
        floor: the floor of ``p_T`` inside the log.

    Returns:
        ``(loss [B], grad [B, A])`` with ``q = softmax(z)``, ``loss = sum_a q (log q - log p_T)``
        and ``grad_b = q_b * (log q_b - log p_T,b - loss)``.
    """
    z, p = _pair("student_logits", student_logits, "teacher_probs", teacher_probs)
    log_q = _log_softmax(z)
    q = np.exp(log_q)
    ratio = log_q - floored_log(p, floor)
    loss = (q * ratio).sum(axis=-1)
    return loss, q * (ratio - loss[:, None])


def _loss_and_grad(
    loss: str, z: NDArray, targets: NDArray, scores: NDArray
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    if loss == "nll":
        return nll_loss(z, scores.argmax(axis=-1))
    if loss == "mse":
        return mse_loss(z, scores)
    if loss == "kl":
        return kl_loss(z, targets)
    return reverse_kl_loss(z, targets)


# ============================================================================ data sources
class ReplayBuffer:
    """A FIFO buffer of observation indices with a fixed capacity.

    Args:
        capacity: the most observations kept; the oldest are overwritten first.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = check_int("buffer_capacity", capacity, 1)
        self._data = np.zeros(self.capacity, dtype=np.int64)
        self._next = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, items: ArrayLike) -> None:
        """Append observations (the oldest drop out once the buffer is full)."""
        for item in np.asarray(items, dtype=np.int64).reshape(-1):
            self._data[self._next] = item
            self._next = (self._next + 1) % self.capacity
            self._size = min(self._size + 1, self.capacity)

    def contents(self) -> NDArray[np.int64]:
        """The stored observations, oldest first."""
        if self._size < self.capacity:
            return self._data[: self._size].copy()
        return np.roll(self._data, -self._next)

    def sample(self, rng: np.random.Generator, size: int) -> NDArray[np.int64]:
        """``size`` observations drawn uniformly with replacement."""
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        return self._data[rng.integers(0, self._size, size=size)]


def _teacher_q_table(teacher: Any, n_obs: int, n_actions: int) -> NDArray[np.float64] | None:
    """The teacher's Q-values ``[n, A]`` from ``q_values(obs)`` or ``action_values(obs)``.

    Returns ``None`` if the teacher has neither method or says it has no Q-values (raises
    ``ValueError``).
    """
    for name in ("q_values", "action_values"):
        fn = getattr(teacher, name, None)
        if not callable(fn):
            continue
        try:
            scores = np.array([np.asarray(fn(i), dtype=np.float64) for i in range(n_obs)])
        except (ValueError, NotImplementedError):
            return None
        if scores.shape != (n_obs, n_actions) or not np.all(np.isfinite(scores)):
            raise ValueError(f"teacher.{name} must return finite [A] = ({n_actions},) rows")
        return scores
    return None


def _teacher_score_tables(
    teacher: Any, n_obs: int, n_actions: int, loss: str
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``(probs [n, A], scores [n, A])``: scores are Q-values if the teacher has them."""
    from distill_agents.distill import teacher_tables

    probs, _ = teacher_tables(teacher, n_obs, n_actions)
    scores = _teacher_q_table(teacher, n_obs, n_actions)
    if scores is None:
        if loss == "mse":
            raise ValueError(
                "loss='mse' regresses Q-values: the teacher must provide q_values(obs) or "
                "action_values(obs)"
            )
        scores = floored_log(probs)
    return probs, scores


def _rollout(
    env: gym.Env,
    control: int,
    probs: NDArray,
    logits: NDArray,
    rng: np.random.Generator,
    seed: int | None,
    n_obs: int,
    max_steps: int | None,
) -> list[int]:
    """Observations visited by one episode of the control policy (the final one excluded)."""
    obs, _ = env.reset(seed=seed)
    o = obs_index(obs, n_obs)
    visited = [o]
    while True:
        a = sample_control_action(control, 0.0, probs[o], logits[o], rng.random())
        obs, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated or (max_steps is not None and len(visited) >= max_steps):
            return visited
        o = obs_index(obs, n_obs)
        visited.append(o)


def _check_common(loss: str, source: str, collect: str, tau: float, lr: float) -> None:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {list(LOSSES)}, got {loss!r}")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {list(SOURCES)}, got {source!r}")
    if collect not in ("teacher", "student"):
        raise ValueError(f"collect must be 'teacher' or 'student', got {collect!r}")
    if not (isinstance(tau, (int, float)) and tau >= 0):
        raise ValueError(f"tau must be a number >= 0, got {tau!r}")
    if not (isinstance(lr, (int, float)) and np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")


def _apply(
    loss: str,
    logits: NDArray,
    rows: NDArray[np.int64],
    targets: NDArray,
    scores: NDArray,
    lr: float,
) -> float:
    """One mean-reduced gradient step on ``logits[rows]``; returns the mean loss."""
    values, grad = _loss_and_grad(loss, logits[rows], targets, scores)
    np.add.at(logits, rows, -(lr / len(rows)) * grad)
    return float(values.mean())


# ============================================================================ single task
def supervised_distill(
    env: gym.Env,
    teacher: Any,
    *,
    loss: str = "kl",
    tau: float = 1.0,
    source: str = "teacher",
    iterations: int = 1000,
    lr: float = 0.1,
    batch_size: int = 32,
    buffer_capacity: int = 10_000,
    collect: str = "teacher",
    seed: int | None = None,
    max_episode_steps: int | None = None,
) -> TabularPolicy:
    """Train a tabular student by supervised regression on a teacher's dataset.

    Args:
        env: an env with ``Discrete`` observations (table indices) and actions.
        teacher: a :class:`TabularPolicy`, an object with ``action_probs(obs)`` (and optionally
            ``q_values(obs)`` or ``action_values(obs)``, needed by ``"mse"`` and used as the
            scores of the KL targets), or an array of probabilities ``[n, A]``.
        loss: ``"nll"``, ``"mse"``, ``"kl"`` or ``"reverse_kl"``.
        tau: temperature of the KL targets ``softmax(scores / tau)`` (0 = greedy).
        source: ``"teacher"``, ``"student"``, ``"replay"`` or ``"uniform"`` (module docstring).
        iterations: number of updates.
        lr: learning rate.
        batch_size: examples per update for ``"replay"`` and ``"uniform"``.
        buffer_capacity: capacity of the replay buffer.
        collect: who fills the replay buffer, ``"teacher"`` or ``"student"``.
        seed: seed (environment, data draws and the student's ``predict`` generator).
        max_episode_steps: cut rollouts after this many steps.

    Returns:
        The student (its logits are Q-value estimates for ``loss="mse"``; act greedily).

    Raises:
        ValueError: bad arguments; ``"mse"`` with a teacher without ``q_values``.
    """
    _check_common(loss, source, collect, tau, lr)
    iterations = check_int("iterations", iterations, 0)
    batch_size = check_int("batch_size", batch_size, 1)
    n_obs, n_actions = check_spaces(env)
    probs, scores = _teacher_score_tables(teacher, n_obs, n_actions, loss)
    targets = teacher_targets(scores, tau)
    env_seed, rng, policy_rng = student_streams(seed)
    student = TabularPolicy(np.zeros((n_obs, n_actions)), seed=policy_rng)
    logits = student.logits
    buffer = ReplayBuffer(buffer_capacity) if source == "replay" else None
    first = True
    for _ in range(iterations):
        if source == "uniform":
            rows = rng.integers(0, n_obs, size=batch_size)
        else:
            who = collect if source == "replay" else source
            visited = _rollout(
                env, M.control_code(who), probs, logits, rng,
                env_seed if first else None, n_obs, max_episode_steps,
            )  # fmt: skip
            first = False
            if buffer is None:
                rows = np.asarray(visited, dtype=np.int64)
            else:
                buffer.add(visited)
                rows = buffer.sample(rng, batch_size)
        _apply(loss, logits, rows, targets[rows], scores[rows], float(lr))
    return student


# ============================================================================= multi-task
class MultiTaskStudent(NamedTuple):
    """A student over the union of several environments' observation tables.

    Attributes:
        policy: the student over the shared table ``[n_global, A]``.
        local_to_global: per environment, ``[n_i]`` the shared row of each of its indices.
        global_obs: the observation behind each shared row, in order of first appearance
            (``[n_global]`` or ``[n_global, D]``).
    """

    policy: TabularPolicy
    local_to_global: tuple[NDArray[np.int64], ...]
    global_obs: NDArray[np.int64]

    def for_env(self, i: int) -> TabularPolicy:
        """The student restricted to environment ``i``'s table (indexed like that env)."""
        rows = self.local_to_global[i]
        return TabularPolicy(self.policy.logits[rows])


def _observation_table(env: gym.Env) -> NDArray[np.int64]:
    """The observation behind each table index of an env (``index_to_obs`` rows)."""
    n_obs, _ = check_spaces(env)
    try:
        index_to_obs = env.get_wrapper_attr("index_to_obs")
    except AttributeError:
        return np.arange(n_obs, dtype=np.int64)  # the observation is its own key
    return np.array([np.asarray(index_to_obs(i), dtype=np.int64) for i in range(n_obs)])


def shared_table(
    envs: Sequence[gym.Env],
) -> tuple[tuple[NDArray[np.int64], ...], NDArray[np.int64]]:
    """The union of the environments' observation tables.

    Args:
        envs: environments with ``Discrete`` observations, typically
            :class:`gridworld_env.TableIndexWrapper` instances (keyed by ``index_to_obs``; an
            env without it is keyed by its raw observation index).

    Returns:
        ``(local_to_global, global_obs)`` (see :class:`MultiTaskStudent`).
    """
    tables = [_observation_table(env) for env in envs]
    ndims = {t.ndim for t in tables}
    widths = {t.shape[1:] for t in tables}
    if len(ndims) != 1 or len(widths) != 1:
        raise ValueError(
            "every environment must emit observations of the same shape to share one table "
            f"(got observation shapes {sorted(str(w) for w in widths)})"
        )
    lookup: dict[bytes, int] = {}
    rows: list[NDArray[np.int64]] = []
    maps = []
    for table in tables:
        local = np.empty(len(table), dtype=np.int64)
        for j, row in enumerate(table):
            key = np.ascontiguousarray(row).tobytes()
            if key not in lookup:
                lookup[key] = len(rows)
                rows.append(row)
            local[j] = lookup[key]
        maps.append(local)
    return tuple(maps), np.array(rows, dtype=np.int64)


def multitask_distill(
    envs: Sequence[gym.Env],
    teachers: Sequence[Any],
    *,
    loss: str = "kl",
    tau: float = 1.0,
    source: str = "teacher",
    iterations: int = 1000,
    lr: float = 0.1,
    batch_size: int = 32,
    buffer_capacity: int = 10_000,
    collect: str = "teacher",
    seed: int | None = None,
    max_episode_steps: int | None = None,
) -> MultiTaskStudent:
    """Distil one teacher per environment into one student over a shared observation table.

    Iteration ``k`` trains on environment ``k mod len(envs)`` (round robin) with that
    environment's teacher as the target, on data from ``source`` (as in
    :func:`supervised_distill`; the replay buffer is shared and stores (environment, index)
    pairs; ``"uniform"`` draws indices of the current environment's table). Rows that several
    environments share receive all their teachers' targets.

    Args:
        envs: environments with ``Discrete`` observations and the same action count
            (``TableIndexWrapper`` around partial-observation grids).
        teachers: one teacher per environment, indexed like its environment's table.
        loss: ``"nll"``, ``"mse"``, ``"kl"`` or ``"reverse_kl"``.
        tau: temperature of the KL targets.
        source: ``"teacher"``, ``"student"``, ``"replay"`` or ``"uniform"``.
        iterations: number of updates (in total, over all environments).
        lr: learning rate.
        batch_size: examples per update for ``"replay"`` and ``"uniform"``.
        buffer_capacity: capacity of the shared replay buffer.
        collect: who fills the replay buffer.
        seed: seed of everything (each environment gets its own stream).
        max_episode_steps: cut rollouts after this many steps.

    Returns:
        :class:`MultiTaskStudent`.
    """
    _check_common(loss, source, collect, tau, lr)
    iterations = check_int("iterations", iterations, 0)
    batch_size = check_int("batch_size", batch_size, 1)
    sizes, n_actions = _check_multitask(envs, teachers)
    local_to_global, global_obs = shared_table(envs)
    tables = _multitask_tables(teachers, sizes, n_actions, loss, tau)
    *env_seqs, data_seq, policy_seq = np.random.SeedSequence(seed).spawn(len(envs) + 2)
    env_seeds = [
        None if seed is None else int(s.generate_state(1, dtype=np.uint32)[0]) for s in env_seqs
    ]
    student = TabularPolicy(
        np.zeros((len(global_obs), n_actions)), seed=np.random.default_rng(policy_seq)
    )
    data = _MultiTaskData(
        envs, [n for n, _ in sizes], local_to_global, tables, np.random.default_rng(data_seq),
        env_seeds, source, collect, batch_size, buffer_capacity, max_episode_steps,
    )  # fmt: skip
    for k in range(iterations):
        env_ids, local = data.batch(k % len(envs), student.logits)
        rows, tgt, scr = data.examples(env_ids, local, n_actions)
        _apply(loss, student.logits, rows, tgt, scr, float(lr))
    return MultiTaskStudent(student, local_to_global, global_obs)


def _check_multitask(
    envs: Sequence[gym.Env], teachers: Sequence[Any]
) -> tuple[list[tuple[int, int]], int]:
    """``((n_obs, n_actions) of every env, A)``; a ValueError unless they fit together."""
    if len(envs) == 0 or len(envs) != len(teachers):
        raise ValueError(
            f"envs and teachers must be non-empty and of equal length, got {len(envs)} and "
            f"{len(teachers)}"
        )
    sizes = [check_spaces(env) for env in envs]
    n_actions = sizes[0][1]
    if any(a != n_actions for _, a in sizes):
        raise ValueError(f"every environment must have the same number of actions, got {sizes}")
    return sizes, n_actions


_Tables = tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]


def _multitask_tables(
    teachers: Sequence[Any], sizes: list[tuple[int, int]], n_actions: int, loss: str, tau: float
) -> list[_Tables]:
    """Per teacher ``(probs, scores, KL targets)``, each ``[n_i, A]``."""
    tables = []
    for i, (teacher, (n_obs, _)) in enumerate(zip(teachers, sizes, strict=True)):
        try:
            probs, scores = _teacher_score_tables(teacher, n_obs, n_actions, loss)
        except ValueError as err:
            raise ValueError(f"teachers[{i}]: {err}") from None
        tables.append((probs, scores, teacher_targets(scores, tau)))
    return tables


class _MultiTaskData:
    """Where :func:`multitask_distill`'s examples come from: rollouts, replay or uniform."""

    def __init__(
        self,
        envs: Sequence[gym.Env],
        n_obs: list[int],
        local_to_global: tuple[NDArray[np.int64], ...],
        tables: list[_Tables],
        rng: np.random.Generator,
        env_seeds: list[int | None],
        source: str,
        collect: str,
        batch_size: int,
        buffer_capacity: int,
        max_episode_steps: int | None,
    ) -> None:
        self.envs, self.n_obs, self.local_to_global = envs, n_obs, local_to_global
        self.tables, self.rng, self.env_seeds = tables, rng, env_seeds
        self.source, self.collect, self.batch_size = source, collect, batch_size
        self.max_episode_steps = max_episode_steps
        self.buffer = ReplayBuffer(buffer_capacity) if source == "replay" else None
        self.started = [False] * len(envs)

    def batch(self, i: int, logits: NDArray) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """``(env ids, local indices)`` of the examples of an update on environment ``i``."""
        n_envs, rng = len(self.envs), self.rng
        if self.source == "uniform":
            return np.full(self.batch_size, i), rng.integers(0, self.n_obs[i], size=self.batch_size)
        who = self.collect if self.source == "replay" else self.source
        student_local = logits[self.local_to_global[i]]
        visited = np.asarray(
            _rollout(
                self.envs[i], M.control_code(who), self.tables[i][0], student_local, rng,
                None if self.started[i] else self.env_seeds[i], self.n_obs[i],
                self.max_episode_steps,
            ),
            dtype=np.int64,
        )  # fmt: skip
        self.started[i] = True
        if self.buffer is None:
            return np.full(len(visited), i), visited
        # Store (environment, local index) pairs as one integer.
        self.buffer.add(visited * n_envs + i)
        drawn = self.buffer.sample(rng, self.batch_size)
        return drawn % n_envs, drawn // n_envs

    def examples(
        self, env_ids: NDArray[np.int64], local: NDArray[np.int64], n_actions: int
    ) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
        """``(shared rows, targets, scores)`` of the examples ``(env_ids, local)``."""
        rows = np.empty(len(local), dtype=np.int64)
        tgt = np.empty((len(local), n_actions))
        scr = np.empty((len(local), n_actions))
        for j, (e, o) in enumerate(zip(env_ids, local, strict=True)):
            rows[j] = self.local_to_global[e][o]
            tgt[j] = self.tables[e][2][o]
            scr[j] = self.tables[e][1][o]
        return rows, tgt, scr
