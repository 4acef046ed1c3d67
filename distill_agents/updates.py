"""The general distillation update of Czarnecki et al. (2019), Eq. 1, as pure array functions.

One call updates a tabular student after one episode:

    theta <- theta - lr * sum_t [ -grad log pi_theta(a_t | s_t) * Ahat_t  +  grad l_t ]
    V(s_t) <- V(s_t) + lr * [ target_t - V(s_t) ]  for t = 1..T  (L2 critic fit, paper A.3)

The three parts of Eq. 1 are computed separately (see :mod:`distill_agents.methods` for each
method's choice of them):

1. **control policy**: who sampled the episode; the update only sees its result (the arrays
   ``obs``, ``actions``, ``rewards``); :func:`sample_control_action` draws the actions.
2. **loss term** ``l_t`` at the current state, with closed-form tabular gradients
   (PAPER.md 5.4), for a student row ``theta_s`` with ``p = softmax(theta_s)``:

   - ``d/dtheta_s H_x(pi || pi_theta) = p - pi``;
   - ``d/dtheta_s H_x(pi_theta || pi) = -p * (log pi - sum_a p(a) log pi(a))``;
   - ``d/dtheta_s [-sum_a pi(a) p(a)] = -p * (pi - sum_a pi(a) p(a))``;
   - ``d/dtheta_s log pi_theta(a | s) = e_a - p``.

3. **reward term** ``rhat_i``; ``Rhat_t = sum_{i>=t} gamma^(i-t) rhat_i`` and the critic turn it
   into the advantage:

   - ``none``: ``Ahat_t = Rhat_t`` (REINFORCE, no baseline, no critic update);
   - ``mc``: ``Ahat_t = Rhat_t - V(s_t)``, critic target ``Rhat_t``;
   - ``td`` (TD(1)): ``Ahat_t = rhat_t + gamma V(s_{t+1}) - V(s_t)``, target
     ``rhat_t + gamma V(s_{t+1})``, where the bootstrapped ``V(s_{t+1})`` is the student's
     critic, the teacher's value (``td_v_teacher``) or 0 (``td_v_zero``), and 0 after a
     terminal transition.

Everything is evaluated at the parameters *before* the update (the update is the sum over the
episode of Eq. 1's terms at the current theta, then one step), so the expected update over
episodes is exactly the expected update field whose (non-)gradient structure the paper's
theorems are about. The critic's targets and the advantages use the critic before the update
too; its L2 step is then applied visit by visit (``methods.K_CRITIC_SEQUENTIAL``), because the
summed step diverges at lr 0.1 when a state is visited many times in one episode.

``log pi`` of the teacher is floored: ``log(max(pi, TEACHER_PROB_FLOOR))``, so that a greedy
teacher (``pi = 0`` off its argmax) gives finite rewards ``log(1e-8) = -18.42`` to the entropy
methods (PAPER.md 5.4 caveat; the paper does not say what it did). :func:`floored_log` builds the
table once per teacher.

The compiled kernels (:mod:`distill_agents.row_kernels`: O(1) work per step, the rows of an episode
touched once) work on typed records of arrays, so that the batched runner calls them inside its own
compiled loop over MDPs; :func:`episode_update` is the validated Python entry point and
:func:`episode_update_reference` a slow, obvious NumPy version used by the tests.
:func:`expected_update` computes the exact expected update on MDPs whose trajectories can be
enumerated (Theorem 1/2 checks, the Fig. 2 dynamics).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

from distill_agents import methods as M
from distill_agents import row_kernels as RK
from gridworld_env.mdp import TabularMDP

__all__ = [
    "TEACHER_PROB_FLOOR",
    "ExpectedUpdate",
    "Trajectory",
    "control_probs",
    "enumerate_trajectories",
    "episode_update",
    "episode_update_reference",
    "expected_loss",
    "expected_update",
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


def _softmax(logits: NDArray[np.float64]) -> NDArray[np.float64]:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    out: NDArray[np.float64] = z / z.sum(axis=-1, keepdims=True)
    return out


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


def _check_tables(
    logits: NDArray,
    critic: NDArray | None,
    teacher_probs: NDArray | None,
    teacher_values: NDArray | None,
    teacher_weights: NDArray | None,
) -> tuple[NDArray, NDArray, NDArray, NDArray, NDArray]:
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
    logits, critic_arr, probs, values, weights = _check_tables(
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
    teacher = RK.teacher_table(probs, logp, values, weights, False)
    work = RK.make_row_work(n_obs, n_actions, act.shape[0])
    RK.episode_update_tables(
        ob, ky, act, rew, bool(terminated), teacher, RK.dense_table(logits), critic_arr, coef,
        codes, float(lr), float(gamma), work,
    )  # fmt: skip


# ==================================================================== slow NumPy reference
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
    spec = M.parse_method(method)
    coef, codes = spec.params(critic_mode, distill_loss)
    theta = np.array(logits, dtype=np.float64)
    n_obs, n_actions = theta.shape
    v_theta = np.zeros(n_obs) if critic is None else np.array(critic, dtype=np.float64)
    pi = (
        np.full((n_obs, n_actions), 1.0 / n_actions)
        if teacher_probs is None
        else np.asarray(teacher_probs, dtype=np.float64)
    )
    log_pi = np.log(np.maximum(pi, teacher_prob_floor))
    v_pi = np.zeros(len(pi)) if teacher_values is None else np.asarray(teacher_values, float)
    w_pi = np.ones(len(pi)) if teacher_weights is None else np.asarray(teacher_weights, float)
    s = np.asarray(obs, dtype=np.int64)
    k = s if keys is None else np.asarray(keys, dtype=np.int64)
    a = np.asarray(actions, dtype=np.int64)
    r = np.asarray(rewards, dtype=np.float64)
    big_t = len(a)
    p = _softmax(theta)  # student probabilities before the update
    log_p = np.log(p)

    def alive(t: int) -> bool:  # is step t part of the task (not after a terminal)?
        return t < big_t or not terminated

    def gate(t: int) -> float:
        if codes[M.K_VCOND] and not v_pi[k[t]] > v_theta[s[t]]:
            return 0.0
        return 1.0

    def state_loss(t: int) -> float:
        """State-level loss at step t: w * gate * (c_ce H_x(pi || pi_theta) + c_ip IP)."""
        if not alive(t):
            return 0.0
        cross = -np.sum(pi[k[t]] * log_p[s[t]])
        potential = -np.sum(pi[k[t]] * p[s[t]])
        return float(
            w_pi[k[t]] * gate(t) * (coef[M.C_LOSS_CE] * cross + coef[M.C_LOSS_IP] * potential)
        )

    def v_teacher(t: int) -> float:
        return float(v_pi[k[t]]) if alive(t) else 0.0

    def bootstrap(t: int) -> float:
        if not alive(t):
            return 0.0
        source = codes[M.K_BOOTSTRAP]
        if source == M.BOOT_STUDENT:
            return float(v_theta[s[t]])
        return float(v_pi[k[t]]) if source == M.BOOT_TEACHER else 0.0

    rhat = np.zeros(big_t)
    for t in range(big_t):
        value = coef[M.C_ENV] * r[t]
        value += coef[M.C_TEACHER_LOGP] * w_pi[k[t]] * log_pi[k[t], a[t]]
        value += coef[M.C_STUDENT_LOGP] * log_p[s[t], a[t]]
        value += coef[M.C_TEACHER_V_NEXT] * gamma * v_teacher(t + 1)
        value += coef[M.C_TEACHER_V] * v_teacher(t)
        value += coef[M.C_STUDENT_V] * v_theta[s[t]]
        value -= coef[M.C_NEXT_LOSS] * gamma * state_loss(t + 1)
        if t + 1 < big_t:
            value += coef[M.C_NEXT_LOGP] * gamma * w_pi[k[t + 1]] * log_pi[k[t + 1], a[t + 1]]
        elif not terminated:
            expected = np.sum(p[s[big_t]] * log_pi[k[big_t]])
            value += coef[M.C_NEXT_LOGP] * gamma * w_pi[k[big_t]] * expected
        rhat[t] = value

    mode = codes[M.K_CRITIC]
    target = np.zeros(big_t)
    adv = np.zeros(big_t)
    for t in range(big_t):
        if mode == M.CRITIC_TD:
            target[t] = rhat[t] + gamma * bootstrap(t + 1)
            adv[t] = target[t] - v_theta[s[t]]
            continue
        ret = sum(gamma ** (i - t) * rhat[i] for i in range(t, big_t))
        if mode == M.CRITIC_MC:
            ret += gamma ** (big_t - t) * bootstrap(big_t)
            adv[t] = ret - v_theta[s[t]]
        else:
            adv[t] = ret
        target[t] = ret

    grad = np.zeros_like(theta)
    for t in range(big_t):
        st, kt = s[t], k[t]
        onehot = np.eye(n_actions)[a[t]]
        grad[st] += -(onehot - p[st]) * adv[t]
        g_t = gate(t) * w_pi[kt]
        grad[st] += coef[M.C_LOSS_CE] * g_t * (p[st] - pi[kt])
        grad[st] += -coef[M.C_LOSS_IP] * g_t * p[st] * (pi[kt] - np.sum(pi[kt] * p[st]))
        grad[st] += (
            -coef[M.C_LOSS_RCE] * w_pi[kt] * p[st] * (log_pi[kt] - np.sum(p[st] * log_pi[kt]))
        )
    new_theta = theta - lr * grad
    new_v = v_theta.copy()
    if mode != M.CRITIC_NONE:
        sequential = codes[M.K_CRITIC_SEQUENTIAL] != 0
        for t in range(big_t):
            current = new_v[s[t]] if sequential else v_theta[s[t]]
            new_v[s[t]] += lr * (target[t] - current)
    return new_theta, new_v


# ============================================================ exact expectations (small MDPs)
class Trajectory(NamedTuple):
    """One complete trajectory of an enumerable MDP and its probability.

    Attributes:
        prob: probability of the trajectory under the control policy and the dynamics.
        states: ``[T + 1]`` states (the last one terminal).
        actions: ``[T]`` actions.
        rewards: ``[T]`` rewards.
    """

    prob: float
    states: NDArray[np.int64]
    actions: NDArray[np.int64]
    rewards: NDArray[np.float64]


def enumerate_trajectories(
    mdp: TabularMDP,
    policy: ArrayLike,
    max_steps: int = 50,
    max_trajectories: int = 1_000_000,
) -> list[Trajectory]:
    """Every trajectory with positive probability under a state policy, until a terminal state.

    Outcomes of the compact model that lead to the same state with the same reward are merged.

    Args:
        mdp: the model.
        policy: ``[S, A]`` state policy generating the actions.
        max_steps: the longest trajectory allowed.
        max_trajectories: the most trajectories allowed.

    Returns:
        The trajectories (their probabilities sum to 1).

    Raises:
        ValueError: the MDP is not enumerable within the limits (a trajectory longer than
            ``max_steps`` has positive probability, or there are too many).
    """
    pol = np.asarray(policy, dtype=np.float64)
    if pol.shape != (mdp.n_states, mdp.n_actions):
        raise ValueError(
            f"policy must have shape [S, A] = {(mdp.n_states, mdp.n_actions)}, got {pol.shape}"
        )
    # Successors per (state, action row): merged {(next, reward): prob}.
    succ: dict[tuple[int, int], list[tuple[int, float, float]]] = {}
    for s in range(mdp.n_states):
        for row in range(mdp.n_rows):
            merged: dict[tuple[int, float], float] = {}
            for m in range(mdp.next_states.shape[2]):
                prob = float(mdp.next_probs[s, row, m])
                if prob > 0.0:
                    key = (int(mdp.next_states[s, row, m]), float(mdp.next_rewards[s, row, m]))
                    merged[key] = merged.get(key, 0.0) + prob
            succ[s, row] = [(nxt, rew, prob) for (nxt, rew), prob in merged.items()]
    out: list[Trajectory] = []
    stack: list[tuple[float, list[int], list[int], list[float]]] = [
        (float(p0), [s0], [], []) for s0, p0 in enumerate(mdp.initial) if p0 > 0.0
    ]
    while stack:
        prob, states, acts, rews = stack.pop()
        s = states[-1]
        if mdp.terminal[s]:
            out.append(
                Trajectory(prob, np.array(states), np.array(acts, dtype=np.int64), np.array(rews))
            )
            if len(out) > max_trajectories:
                raise ValueError(
                    f"more than max_trajectories={max_trajectories} trajectories: the MDP is "
                    "too large to enumerate"
                )
            continue
        if len(acts) >= max_steps:
            raise ValueError(
                f"a trajectory longer than max_steps={max_steps} has positive probability: the "
                "MDP is not enumerable (it needs episodes of bounded length)"
            )
        for a in np.flatnonzero(pol[s] > 0.0):
            for nxt, rew, p_next in succ[s, int(mdp.action_rows[a])]:
                stack.append(
                    (prob * pol[s, a] * p_next, [*states, nxt], [*acts, int(a)], [*rews, rew])
                )
    return out


class ExpectedUpdate(NamedTuple):
    """The exact expected update of Eq. 1 (descent directions: ``theta <- theta - lr * logits``).

    Attributes:
        logits: ``[N, A]`` expected ``sum_t [-grad log pi_theta * Ahat_t + grad l_t]``.
        critic: ``[N]`` expected ``sum_t [V(s_t) - target_t]`` (zeros with no critic).
        n_trajectories: how many trajectories were enumerated.
    """

    logits: NDArray[np.float64]
    critic: NDArray[np.float64]
    n_trajectories: int


def _index_map(index: ArrayLike, mdp: TabularMDP, name: str, n: int | None) -> NDArray[np.int64]:
    idx = np.asarray(index)
    if idx.shape != (mdp.n_states,) or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"{name} must be an integer array [S] = ({mdp.n_states},)")
    live = ~mdp.terminal
    if np.any(idx[live] < 0) or (n is not None and np.any(idx >= n)):
        raise ValueError(f"{name} must map every non-terminal state to an index in [0, {n})")
    return np.where(idx < 0, 0, idx).astype(np.int64)


def expected_update(
    mdp: TabularMDP,
    student_index: ArrayLike,
    student_logits: ArrayLike,
    method: str | M.MethodSpec,
    *,
    teacher_probs: ArrayLike | None = None,
    teacher_values: ArrayLike | None = None,
    teacher_index: ArrayLike | None = None,
    teacher_weights: ArrayLike | None = None,
    critic: ArrayLike | None = None,
    control: str | None = None,
    beta: float = 0.5,
    gamma: float = 1.0,
    critic_mode: str | None = None,
    distill_loss: str = "cross_entropy",
    teacher_prob_floor: float = TEACHER_PROB_FLOOR,
    max_steps: int = 50,
    max_trajectories: int = 100_000,
) -> ExpectedUpdate:
    """Exact expected update of a method, by enumerating every trajectory of a small MDP.

    ``E_{tau ~ q}[update(tau)]`` with each trajectory's update computed by the same compiled
    kernel as training (:func:`distill_agents.row_kernels.update_student`). With no critic (the
    default here) and ``gamma = 1`` this is the paper's expected update field ``g(theta)``
    (Theorems 1 and 2): for ``teacher_distill``, ``entropy_regularised``, ``n_distill`` and
    ``expected_entropy_regularised`` it equals the gradient of Table 1's loss column; for
    ``on_policy_distill`` it is not a gradient (asymmetric Jacobian). A Monte Carlo critic does
    not change the expected policy update (a state baseline); a TD critic does.

    Args:
        mdp: a model whose episodes all end within ``max_steps``.
        student_index: ``[S]`` student table index of each state (e.g.
            ``env.unwrapped.observation_of_state`` for ``Discrete`` observations, or a
            ``TableIndexWrapper``'s ``state_to_index``); -1 allowed for terminal states.
        student_logits: ``[N, A]`` the student's parameters theta.
        method: a method id.
        teacher_probs: ``[Nt, A]`` teacher probabilities (indexed by ``teacher_index``).
        teacher_values: ``[Nt]`` teacher values.
        teacher_index: ``[S]`` teacher table index of each state (default: ``student_index``);
            index the teacher by state (``np.arange(S)``) for state-dependent losses as in the
            oscillation example.
        teacher_weights: ``[Nt]`` weight of the teacher's signal per key (default ones).
        critic: ``[N]`` the student's critic (default zeros).
        control: control policy (default: the method's own).
        beta: teacher weight of the ``mixture`` control.
        gamma: discount (1 for the paper's theory).
        critic_mode: ``"none"``, ``"mc"``, ``"td"``, or ``None`` (default): no critic where the
            method allows it, else its required critic (``+Vcond``: ``"mc"``; ``td_v_*``:
            ``"td"``).
        distill_loss: ``"cross_entropy"`` or ``"information_potential"``.
        teacher_prob_floor: floor of the teacher's probabilities inside ``log``.
        max_steps: the longest trajectory allowed.
        max_trajectories: the most trajectories allowed.

    Returns:
        :class:`ExpectedUpdate`.
    """
    spec = M.parse_method(method)
    theta = np.array(student_logits, dtype=np.float64)
    if theta.ndim != 2 or theta.shape[1] != mdp.n_actions:
        raise ValueError(
            f"student_logits must have shape [N, A] with A = {mdp.n_actions}, got {theta.shape}"
        )
    n_obs, n_actions = theta.shape
    v_theta = np.zeros(n_obs) if critic is None else np.array(critic, dtype=np.float64)
    _, v_theta, probs, values, weights = _check_tables(
        theta,
        v_theta,
        None if teacher_probs is None else np.asarray(teacher_probs),
        None if teacher_values is None else np.asarray(teacher_values),
        None if teacher_weights is None else np.asarray(teacher_weights),
    )
    if spec.needs_teacher_probs and teacher_probs is None:
        raise ValueError(f"method {spec.id!r} needs teacher_probs")
    if spec.needs_teacher_values and teacher_values is None:
        raise ValueError(f"method {spec.id!r} needs teacher_values")
    s_idx = _index_map(student_index, mdp, "student_index", n_obs)
    k_idx = (
        s_idx
        if teacher_index is None
        else _index_map(teacher_index, mdp, "teacher_index", probs.shape[0])
    )
    code = M.control_code(control or spec.default_control)
    policy = control_probs(code, probs[k_idx], _softmax(theta)[s_idx], beta)
    if critic_mode is None and spec.forced_critic is None and not spec.vcond:
        critic_mode = "none"
    coef, codes = spec.params(critic_mode, distill_loss)
    codes[M.K_CRITIC_SEQUENTIAL] = 0  # the linear expected direction of the critic too
    logp = floored_log(probs, teacher_prob_floor)
    teacher = RK.teacher_table(probs, logp, values, weights, False)
    trajectories = enumerate_trajectories(mdp, policy, max_steps, max_trajectories)
    work = RK.make_row_work(n_obs, n_actions, max(len(t.actions) for t in trajectories))
    d_logits = np.zeros_like(theta)
    d_critic = np.zeros(n_obs)
    for traj in trajectories:
        new_theta = theta.copy()
        new_v = v_theta.copy()
        RK.episode_update_tables(
            s_idx[traj.states], k_idx[traj.states], traj.actions, traj.rewards, True, teacher,
            RK.dense_table(new_theta), new_v, coef, codes, 1.0, float(gamma), work,
        )  # fmt: skip
        d_logits += traj.prob * (theta - new_theta)
        d_critic += traj.prob * (v_theta - new_v)
    return ExpectedUpdate(d_logits, d_critic, len(trajectories))


def expected_loss(
    mdp: TabularMDP,
    student_index: ArrayLike,
    student_logits: ArrayLike,
    method: str | M.MethodSpec,
    *,
    teacher_probs: ArrayLike,
    teacher_values: ArrayLike | None = None,
    teacher_index: ArrayLike | None = None,
    teacher_weights: ArrayLike | None = None,
    critic: ArrayLike | None = None,
    control: str | None = None,
    beta: float = 0.5,
    distill_loss: str = "cross_entropy",
    teacher_prob_floor: float = TEACHER_PROB_FLOOR,
) -> float:
    """Expected per-episode sum of the method's loss term ``E_q[sum_t l_t]`` (undiscounted).

    Computed exactly from expected state visits (:func:`distill_agents.planning.expected_sum`),
    so any MDP whose control policy ends episodes works (no enumeration). For the oscillation
    example (``distill_loss="information_potential"``) this is Fig. 2's loss curve.

    Args:
        mdp: the model.
        student_index: ``[S]`` student table index per state (-1 allowed for terminal states).
        student_logits: ``[N, A]`` theta.
        method: a method id (its loss term ``l_t``; 0 for reward-only methods).
        teacher_probs: ``[Nt, A]``.
        teacher_values: ``[Nt]`` (for ``+Vcond``).
        teacher_index: ``[S]`` (default ``student_index``).
        teacher_weights: ``[Nt]`` (default ones).
        critic: ``[N]`` student critic (for ``+Vcond``; default zeros).
        control: control policy (default: the method's own).
        beta: teacher weight of the ``mixture`` control.
        distill_loss: ``"cross_entropy"`` or ``"information_potential"``.
        teacher_prob_floor: floor of the teacher's probabilities inside ``log``.
    """
    from distill_agents.planning import expected_sum

    spec = M.parse_method(method)
    theta = np.array(student_logits, dtype=np.float64)
    n_obs = theta.shape[0]
    v_theta = np.zeros(n_obs) if critic is None else np.array(critic, dtype=np.float64)
    _, v_theta, probs, values, weights = _check_tables(
        theta,
        v_theta,
        np.asarray(teacher_probs),
        None if teacher_values is None else np.asarray(teacher_values),
        None if teacher_weights is None else np.asarray(teacher_weights),
    )
    s_idx = _index_map(student_index, mdp, "student_index", n_obs)
    k_idx = (
        s_idx
        if teacher_index is None
        else _index_map(teacher_index, mdp, "teacher_index", probs.shape[0])
    )
    coef, codes = spec.params(None, distill_loss)
    p = _softmax(theta)[s_idx]  # [S, A]
    pi = probs[k_idx]
    cross = -(pi * np.log(p)).sum(-1)
    potential = -(pi * p).sum(-1)
    reverse = -(p * floored_log(pi, teacher_prob_floor)).sum(-1)
    gate = np.ones(mdp.n_states)
    if codes[M.K_VCOND]:
        gate = (values[k_idx] > v_theta[s_idx]).astype(float)
    w = weights[k_idx]
    per_state = w * (
        gate * (coef[M.C_LOSS_CE] * cross + coef[M.C_LOSS_IP] * potential)
        + coef[M.C_LOSS_RCE] * reverse
    )
    per_state[mdp.terminal] = 0.0
    code = M.control_code(control or spec.default_control)
    policy = control_probs(code, pi, p, beta)
    return float(expected_sum(mdp, policy, per_state))
