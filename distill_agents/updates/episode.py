"""One episode's Eq. 1 update: the validated entry point, the slow reference, action sampling.

:func:`episode_update` checks its arrays and calls the compiled row kernels
(:mod:`distill_agents.updates.rows`, :mod:`distill_agents.updates.row_update`);
:func:`episode_update_reference` is the obvious NumPy version the tests compare them with;
:func:`sample_control_action` draws the control policy's actions; :func:`floored_log` is the
teacher's floored ``log pi`` (see :mod:`distill_agents.updates` for the update itself).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

from distill_agents import methods as M
from distill_agents.numerics import softmax
from distill_agents.updates import row_update, rows

__all__ = [
    "TEACHER_PROB_FLOOR",
    "check_tables",
    "control_probs",
    "episode_update",
    "episode_update_reference",
    "floored_log",
    "sample_control_action",
]


#: Floor on the teacher's probabilities inside a log: ``log pi := log(max(pi, 1e-8))``.
TEACHER_PROB_FLOOR = 1e-8


def floored_log(probs: ArrayLike, floor: float = TEACHER_PROB_FLOOR) -> NDArray[np.float64]:
    """``log(max(probs, floor))`` elementwise (the teacher's log-probabilities).

    Args:
        probs: teacher probabilities, any shape.
        floor: the floor, in (0, 1]; :data:`TEACHER_PROB_FLOOR` (1e-8) by default.
    """
    if not 0.0 < float(floor) <= 1.0:
        raise ValueError(f"teacher_prob_floor must be in (0, 1], got {floor!r}")
    return np.log(np.maximum(np.asarray(probs, dtype=np.float64), float(floor)))


# =========================================================================== action sampling
@njit(cache=True, inline="always")
def _sample_probs(probs: NDArray[np.float64], u: float) -> int:  # pragma: no cover - compiled
    """Inverse-CDF draw from a probability row with one uniform ``u`` in [0, 1)."""
    cum = 0.0
    last = 0
    for a in range(probs.shape[0]):
        p = probs[a]
        if p > 0.0:
            cum += p
            last = a
            if u < cum:
                return a
    return last  # rounding: the row sums to slightly less than u


@njit(cache=True, inline="always")
def _sample_logits(logits: NDArray[np.float64], u: float) -> int:  # pragma: no cover
    """Inverse-CDF draw from ``softmax(logits)`` with one uniform ``u`` in [0, 1)."""
    n = logits.shape[0]
    m = logits[0]
    for a in range(1, n):
        if logits[a] > m:
            m = logits[a]
    total = 0.0
    for a in range(n):
        total += math.exp(logits[a] - m)
    target = u * total
    cum = 0.0
    for a in range(n):
        cum += math.exp(logits[a] - m)
        if target < cum:
            return a
    return n - 1


@njit(cache=True, inline="always")
def sample_control_action(
    control: int,
    beta: float,
    teacher_probs_row: NDArray[np.float64],
    student_logits_row: NDArray[np.float64],
    u: float,
) -> int:  # pragma: no cover - compiled
    """Draw one action of the control policy from one uniform ``u`` in [0, 1).

    Args:
        control: ``CONTROL_TEACHER``, ``CONTROL_STUDENT``, ``CONTROL_UNIFORM``,
            ``CONTROL_MIXTURE`` or ``CONTROL_EPSILON_TEACHER`` (:mod:`distill_agents.methods`:
            a uniform action when ``u < TEACHER_EPSILON``, else the teacher's with the rescaled
            uniform).
        beta: mixture weight of the teacher (``CONTROL_MIXTURE`` only): the action is drawn
            from ``beta * pi + (1 - beta) * pi_theta``.
        teacher_probs_row: ``[A]`` teacher probabilities at the current observation.
        student_logits_row: ``[A]`` student logits at the current observation.
        u: a uniform draw in [0, 1).

    Returns:
        The action index.
    """
    if control == M.CONTROL_MIXTURE:
        if u < beta:
            return _sample_probs(teacher_probs_row, u / beta)
        return _sample_logits(student_logits_row, (u - beta) / (1.0 - beta))
    if control == M.CONTROL_TEACHER:
        return _sample_probs(teacher_probs_row, u)
    if control == M.CONTROL_EPSILON_TEACHER:
        eps = M.TEACHER_EPSILON
        if u >= eps:
            return _sample_probs(teacher_probs_row, (u - eps) / (1.0 - eps))
        n = teacher_probs_row.shape[0]
        return min(int(u / eps * n), n - 1)
    if control == M.CONTROL_STUDENT:
        return _sample_logits(student_logits_row, u)
    n = student_logits_row.shape[0]
    return min(int(u * n), n - 1)


def control_probs(
    control: int | str,
    teacher_probs: NDArray[np.float64],
    student_probs: NDArray[np.float64],
    beta: float = 0.5,
) -> NDArray[np.float64]:
    """Action probabilities ``[..., A]`` of a control policy.

    These are the probabilities :func:`sample_control_action` samples from.

    Args:
        control: a name or code (see :data:`distill_agents.methods.CONTROLS`).
        teacher_probs: ``[..., A]`` teacher probabilities.
        student_probs: ``[..., A]`` student probabilities, same shape.
        beta: mixture weight of the teacher.
    """
    code = M.control_code(control) if isinstance(control, str) else int(control)
    if code == M.CONTROL_TEACHER:
        return np.array(teacher_probs, dtype=np.float64)
    if code == M.CONTROL_STUDENT:
        return np.array(student_probs, dtype=np.float64)
    if code == M.CONTROL_UNIFORM:
        n = np.shape(student_probs)[-1]
        return np.full(np.shape(student_probs), 1.0 / n)
    if code == M.CONTROL_MIXTURE:
        return beta * np.asarray(teacher_probs) + (1.0 - beta) * np.asarray(student_probs)
    if code == M.CONTROL_EPSILON_TEACHER:
        n = np.shape(teacher_probs)[-1]
        eps = M.TEACHER_EPSILON
        return (1.0 - eps) * np.asarray(teacher_probs, dtype=np.float64) + eps / n
    raise ValueError(f"control must be one of {list(M.CONTROLS)}, got {control!r}")


# ======================================================================= python entry point
def _check_episode(
    obs: ArrayLike,
    keys: ArrayLike | None,
    actions: ArrayLike,
    rewards: ArrayLike,
    n_obs: int,
    n_keys: int,
    n_actions: int,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    act = np.ascontiguousarray(actions, dtype=np.int64)
    rew = np.ascontiguousarray(rewards, dtype=np.float64)
    ob = np.ascontiguousarray(obs, dtype=np.int64)
    if act.ndim != 1 or rew.shape != act.shape:
        raise ValueError(
            f"actions and rewards must be 1-D arrays [T] of equal length, got {act.shape} and "
            f"{rew.shape}"
        )
    n_steps = act.shape[0]
    if ob.shape != (n_steps + 1,):
        raise ValueError(
            f"obs must have shape [T + 1] = ({n_steps + 1},) (the observation at every step and "
            f"after the last), got {ob.shape}"
        )
    ky = ob if keys is None else np.ascontiguousarray(keys, dtype=np.int64)
    if ky.shape != ob.shape:
        raise ValueError(f"keys must have the shape of obs {ob.shape}, got {ky.shape}")
    if n_steps and (act.min() < 0 or act.max() >= n_actions):
        raise ValueError(f"actions must be in [0, {n_actions}), got {act.min()}..{act.max()}")
    if ob.min() < 0 or ob.max() >= n_obs:
        raise ValueError(f"obs must be table indices in [0, {n_obs}), got {ob.min()}..{ob.max()}")
    if ky.min() < 0 or ky.max() >= n_keys:
        raise ValueError(
            f"keys must be teacher table indices in [0, {n_keys}), got {ky.min()}..{ky.max()}"
        )
    if not np.all(np.isfinite(rew)):
        raise ValueError("rewards must be finite")
    return ob, ky, act, rew


def check_tables(
    logits: NDArray,
    critic: NDArray | None,
    teacher_probs: NDArray | None,
    teacher_values: NDArray | None,
    teacher_weights: NDArray | None,
) -> tuple[NDArray, NDArray, NDArray, NDArray, NDArray]:
    """The checked tables of :func:`episode_update`; a ValueError names the first bad one."""
    if not (isinstance(logits, np.ndarray) and logits.dtype == np.float64 and logits.ndim == 2):
        raise ValueError("logits must be a float64 array [N, A] (updated in place)")
    n_obs, n_actions = logits.shape
    if critic is None:
        critic = np.zeros(n_obs)
    elif not (
        isinstance(critic, np.ndarray) and critic.dtype == np.float64 and critic.shape == (n_obs,)
    ):
        raise ValueError(f"critic must be a float64 array [N] = ({n_obs},) (updated in place)")
    if teacher_probs is None:  # no teacher: a uniform placeholder indexed like the student
        teacher_probs = np.full((n_obs, n_actions), 1.0 / n_actions)
    probs = np.ascontiguousarray(teacher_probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != n_actions:
        raise ValueError(
            f"teacher_probs must have shape [Nt, A] with A = {n_actions} (the student's "
            f"actions), got {probs.shape}"
        )
    n_keys = probs.shape[0]
    values = (
        np.zeros(n_keys)
        if teacher_values is None
        else np.ascontiguousarray(teacher_values, dtype=np.float64)
    )
    if values.shape != (n_keys,):
        raise ValueError(f"teacher_values must have shape [Nt] = ({n_keys},), got {values.shape}")
    weights = (
        np.ones(n_keys)
        if teacher_weights is None
        else np.ascontiguousarray(teacher_weights, dtype=np.float64)
    )
    if weights.shape != (n_keys,):
        raise ValueError(f"teacher_weights must have shape [Nt] = ({n_keys},), got {weights.shape}")
    return logits, critic, probs, values, weights


def episode_update(
    method: str | M.MethodSpec,
    logits: NDArray[np.float64],
    obs: ArrayLike,
    actions: ArrayLike,
    rewards: ArrayLike,
    terminated: bool,
    *,
    teacher_probs: ArrayLike | None = None,
    teacher_values: ArrayLike | None = None,
    critic: NDArray[np.float64] | None = None,
    keys: ArrayLike | None = None,
    teacher_weights: ArrayLike | None = None,
    lr: float = 0.1,
    gamma: float = 0.99,
    critic_mode: str | None = None,
    distill_loss: str = "cross_entropy",
    teacher_prob_floor: float = TEACHER_PROB_FLOOR,
) -> None:
    """Update a tabular student in place after one episode (paper Eq. 1), with validation.

    Args:
        method: a method id or :class:`~distill_agents.methods.MethodSpec`.
        logits: ``[N, A]`` float64 student logits, updated in place.
        obs: ``[T + 1]`` student table indices at steps ``0..T``.
        actions: ``[T]`` actions.
        rewards: ``[T]`` environment rewards.
        terminated: the episode ended in a terminal state (else it was truncated).
        teacher_probs: ``[Nt, A]`` teacher probabilities (needed by the teacher methods).
        teacher_values: ``[Nt]`` teacher values (needed by the value methods).
        critic: ``[N]`` float64 student critic, updated in place (``None``: a throw-away zero
            critic).
        keys: ``[T + 1]`` teacher table indices (default: ``obs``).
        teacher_weights: ``[Nt]`` per-key weight of the teacher's signal (default ones).
        lr: learning rate.
        gamma: discount in [0, 1].
        critic_mode: ``None`` (the method's default), ``"none"``, ``"mc"`` or ``"td"``.
        distill_loss: ``"cross_entropy"`` or ``"information_potential"``.
        teacher_prob_floor: floor of the teacher's probabilities inside ``log``.

    Raises:
        ValueError: inconsistent shapes, out-of-range indices, missing teacher tables.
    """
    spec = M.parse_method(method)
    if spec.needs_teacher_probs and teacher_probs is None:
        raise ValueError(f"method {spec.id!r} needs teacher_probs")
    if spec.needs_teacher_values and teacher_values is None:
        raise ValueError(f"method {spec.id!r} needs teacher_values (the teacher's V_pi)")
    logits, critic_arr, probs, values, weights = check_tables(
        logits,
        critic,
        None if teacher_probs is None else np.asarray(teacher_probs),
        None if teacher_values is None else np.asarray(teacher_values),
        None if teacher_weights is None else np.asarray(teacher_weights),
    )
    if not 0.0 <= float(gamma) <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma!r}")
    n_obs, n_actions = logits.shape
    ob, ky, act, rew = _check_episode(obs, keys, actions, rewards, n_obs, probs.shape[0], n_actions)
    coef, codes = spec.params(critic_mode, distill_loss)
    logp = floored_log(probs, teacher_prob_floor)
    teacher = rows.teacher_table(probs, logp, values, weights, False)
    work = rows.make_row_work(n_obs, n_actions, act.shape[0])
    row_update.episode_update_tables(
        ob, ky, act, rew, bool(terminated), teacher, rows.dense_table(logits), critic_arr, coef,
        codes, float(lr), float(gamma), work,
    )  # fmt: skip


# ==================================================================== slow NumPy reference
@dataclass(frozen=True)
class _Dense:
    """One episode and the dense tables of :func:`episode_update_reference` (before the update).

    ``theta [N, A]`` / ``v_theta [N]`` the student, ``p`` / ``log_p`` its probabilities, ``pi`` /
    ``log_pi`` (floored) / ``v_pi`` / ``w_pi`` the teacher, ``s`` / ``k`` the student indices
    and teacher keys at steps ``0..T``, ``a`` / ``r`` the actions and rewards.
    """

    coef: NDArray[np.float64]
    codes: NDArray[np.int64]
    theta: NDArray[np.float64]
    v_theta: NDArray[np.float64]
    p: NDArray[np.float64]
    log_p: NDArray[np.float64]
    pi: NDArray[np.float64]
    log_pi: NDArray[np.float64]
    v_pi: NDArray[np.float64]
    w_pi: NDArray[np.float64]
    s: NDArray[np.int64]
    k: NDArray[np.int64]
    a: NDArray[np.int64]
    r: NDArray[np.float64]
    terminated: bool
    gamma: float

    @property
    def big_t(self) -> int:
        """The episode's length ``T``."""
        return len(self.a)

    def alive(self, t: int) -> bool:
        """Is step ``t`` part of the task (not after a terminal)?"""
        return t < self.big_t or not self.terminated

    def gate(self, t: int) -> float:
        """``[V_pi(s_t) > V_theta(s_t)]`` for ``+Vcond``, else 1."""
        if self.codes[M.K_VCOND] and not self.v_pi[self.k[t]] > self.v_theta[self.s[t]]:
            return 0.0
        return 1.0

    def state_loss(self, t: int) -> float:
        """State-level loss at step t: w * gate * (c_ce H_x(pi || pi_theta) + c_ip IP)."""
        if not self.alive(t):
            return 0.0
        st, kt, coef = self.s[t], self.k[t], self.coef
        cross = -np.sum(self.pi[kt] * self.log_p[st])
        potential = -np.sum(self.pi[kt] * self.p[st])
        return float(
            self.w_pi[kt]
            * self.gate(t)
            * (coef[M.C_LOSS_CE] * cross + coef[M.C_LOSS_IP] * potential)
        )

    def v_teacher(self, t: int) -> float:
        """``V_pi(s_t)``, 0 after a terminal."""
        return float(self.v_pi[self.k[t]]) if self.alive(t) else 0.0

    def bootstrap(self, t: int) -> float:
        """The value bootstrapped at step ``t`` (0 after a terminal)."""
        if not self.alive(t):
            return 0.0
        source = self.codes[M.K_BOOTSTRAP]
        if source == M.BOOT_STUDENT:
            return float(self.v_theta[self.s[t]])
        return float(self.v_pi[self.k[t]]) if source == M.BOOT_TEACHER else 0.0


def _reference_rhat(d: _Dense) -> NDArray[np.float64]:
    """The reward terms ``rhat [T]``."""
    coef, gamma, s, k, a, big_t = d.coef, d.gamma, d.s, d.k, d.a, d.big_t
    rhat = np.zeros(big_t)
    for t in range(big_t):
        value = coef[M.C_ENV] * d.r[t]
        value += coef[M.C_TEACHER_LOGP] * d.w_pi[k[t]] * d.log_pi[k[t], a[t]]
        value += coef[M.C_STUDENT_LOGP] * d.log_p[s[t], a[t]]
        value += coef[M.C_TEACHER_V_NEXT] * gamma * d.v_teacher(t + 1)
        value += coef[M.C_TEACHER_V] * d.v_teacher(t)
        value += coef[M.C_STUDENT_V] * d.v_theta[s[t]]
        value -= coef[M.C_NEXT_LOSS] * gamma * d.state_loss(t + 1)
        if t + 1 < big_t:
            value += coef[M.C_NEXT_LOGP] * gamma * d.w_pi[k[t + 1]] * d.log_pi[k[t + 1], a[t + 1]]
        elif not d.terminated:
            expected = np.sum(d.p[s[big_t]] * d.log_pi[k[big_t]])
            value += coef[M.C_NEXT_LOGP] * gamma * d.w_pi[k[big_t]] * expected
        rhat[t] = value
    return rhat


def _reference_targets(
    d: _Dense, rhat: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``(target [T], adv [T])``: the critic's targets and the advantages."""
    mode, gamma, big_t = d.codes[M.K_CRITIC], d.gamma, d.big_t
    target = np.zeros(big_t)
    adv = np.zeros(big_t)
    for t in range(big_t):
        if mode == M.CRITIC_TD:
            target[t] = rhat[t] + gamma * d.bootstrap(t + 1)
            adv[t] = target[t] - d.v_theta[d.s[t]]
            continue
        ret = sum(gamma ** (i - t) * rhat[i] for i in range(t, big_t))
        if mode == M.CRITIC_MC:
            ret += gamma ** (big_t - t) * d.bootstrap(big_t)
            adv[t] = ret - d.v_theta[d.s[t]]
        else:
            adv[t] = ret
        target[t] = ret
    return target, adv


def _reference_gradient(d: _Dense, adv: NDArray[np.float64]) -> NDArray[np.float64]:
    """The summed Eq. 1 gradient ``[N, A]`` of the episode's steps."""
    coef, p, pi, log_pi, w_pi = d.coef, d.p, d.pi, d.log_pi, d.w_pi
    n_actions = d.theta.shape[1]
    grad = np.zeros_like(d.theta)
    for t in range(d.big_t):
        st, kt = d.s[t], d.k[t]
        onehot = np.eye(n_actions)[d.a[t]]
        grad[st] += -(onehot - p[st]) * adv[t]
        g_t = d.gate(t) * w_pi[kt]
        grad[st] += coef[M.C_LOSS_CE] * g_t * (p[st] - pi[kt])
        grad[st] += -coef[M.C_LOSS_IP] * g_t * p[st] * (pi[kt] - np.sum(pi[kt] * p[st]))
        grad[st] += (
            -coef[M.C_LOSS_RCE] * w_pi[kt] * p[st] * (log_pi[kt] - np.sum(p[st] * log_pi[kt]))
        )
    return grad


def episode_update_reference(
    method: str | M.MethodSpec,
    logits: NDArray[np.float64],
    obs: ArrayLike,
    actions: ArrayLike,
    rewards: ArrayLike,
    terminated: bool,
    *,
    teacher_probs: ArrayLike | None = None,
    teacher_values: ArrayLike | None = None,
    critic: NDArray[np.float64] | None = None,
    keys: ArrayLike | None = None,
    teacher_weights: ArrayLike | None = None,
    lr: float = 0.1,
    gamma: float = 0.99,
    critic_mode: str | None = None,
    distill_loss: str = "cross_entropy",
    teacher_prob_floor: float = TEACHER_PROB_FLOOR,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The same update as :func:`episode_update`, written plainly with dense NumPy (for tests).

    Returns new ``(logits, critic)`` arrays instead of updating in place; arguments as in
    :func:`episode_update`.
    """
    coef, codes = M.parse_method(method).params(critic_mode, distill_loss)
    theta = np.array(logits, dtype=np.float64)
    n_obs, n_actions = theta.shape
    pi = (
        np.full((n_obs, n_actions), 1.0 / n_actions)
        if teacher_probs is None
        else np.asarray(teacher_probs, dtype=np.float64)
    )
    s = np.asarray(obs, dtype=np.int64)
    p = softmax(theta)  # student probabilities before the update
    d = _Dense(
        coef=coef, codes=codes, theta=theta,
        v_theta=np.zeros(n_obs) if critic is None else np.array(critic, dtype=np.float64),
        p=p, log_p=np.log(p), pi=pi, log_pi=np.log(np.maximum(pi, teacher_prob_floor)),
        v_pi=np.zeros(len(pi)) if teacher_values is None else np.asarray(teacher_values, float),
        w_pi=np.ones(len(pi)) if teacher_weights is None else np.asarray(teacher_weights, float),
        s=s, k=s if keys is None else np.asarray(keys, dtype=np.int64),
        a=np.asarray(actions, dtype=np.int64), r=np.asarray(rewards, dtype=np.float64),
        terminated=terminated, gamma=gamma,
    )  # fmt: skip
    target, adv = _reference_targets(d, _reference_rhat(d))
    new_theta = theta - lr * _reference_gradient(d, adv)
    new_v = d.v_theta.copy()
    if codes[M.K_CRITIC] != M.CRITIC_NONE:
        sequential = codes[M.K_CRITIC_SEQUENTIAL] != 0
        for t in range(d.big_t):
            current = new_v[s[t]] if sequential else d.v_theta[s[t]]
            new_v[s[t]] += lr * (target[t] - current)
    return new_theta, new_v
