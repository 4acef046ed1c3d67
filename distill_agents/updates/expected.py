"""Exact expected updates and losses on MDPs whose trajectories can be enumerated.

:func:`expected_update` weighs the compiled update of every trajectory
(:func:`~distill_agents.updates.row_update.episode_update_tables`) by its probability (Theorem
1/2 checks, the Fig. 2 dynamics); :func:`expected_loss` is the expected loss whose gradient the
theorems compare it with.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from distill_agents import methods as M
from distill_agents.numerics import softmax
from distill_agents.updates import row_update, rows
from distill_agents.updates.episode import (
    TEACHER_PROB_FLOOR,
    check_tables,
    control_probs,
    floored_log,
)
from gridworld_env.mdp import TabularMDP

__all__ = [
    "ExpectedUpdate",
    "Trajectory",
    "enumerate_trajectories",
    "expected_loss",
    "expected_update",
]


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


class _TeacherArrays(NamedTuple):
    """The teacher arguments of :func:`expected_update` / :func:`expected_loss`, as given."""

    probs: ArrayLike | None
    values: ArrayLike | None
    state_index: ArrayLike | None
    weights: ArrayLike | None


class _Tables(NamedTuple):
    """The checked tables of :func:`expected_update` / :func:`expected_loss`.

    ``theta [N, A]``, ``v_theta [N]`` the student; ``probs [Nt, A]``, ``values [Nt]``,
    ``weights [Nt]`` the teacher; ``s_idx [S]`` / ``k_idx [S]`` the student and teacher index of
    each state (0 for the terminal states without one).
    """

    theta: NDArray[np.float64]
    v_theta: NDArray[np.float64]
    probs: NDArray[np.float64]
    values: NDArray[np.float64]
    weights: NDArray[np.float64]
    s_idx: NDArray[np.int64]
    k_idx: NDArray[np.int64]


def _checked_tables(
    mdp: TabularMDP,
    spec: M.MethodSpec | None,
    theta: NDArray[np.float64],
    student_index: ArrayLike,
    critic: ArrayLike | None,
    teacher: _TeacherArrays,
) -> _Tables:
    """Check the student's and the teacher's tables (and, given ``spec``, that it has them)."""
    n_obs = theta.shape[0]
    v_theta = np.zeros(n_obs) if critic is None else np.array(critic, dtype=np.float64)
    _, v_theta, probs, values, weights = check_tables(
        theta,
        v_theta,
        None if teacher.probs is None else np.asarray(teacher.probs),
        None if teacher.values is None else np.asarray(teacher.values),
        None if teacher.weights is None else np.asarray(teacher.weights),
    )
    if spec is not None and spec.needs_teacher_probs and teacher.probs is None:
        raise ValueError(f"method {spec.id!r} needs teacher_probs")
    if spec is not None and spec.needs_teacher_values and teacher.values is None:
        raise ValueError(f"method {spec.id!r} needs teacher_values")
    s_idx = _index_map(student_index, mdp, "student_index", n_obs)
    k_idx = (
        s_idx
        if teacher.state_index is None
        else _index_map(teacher.state_index, mdp, "teacher_index", probs.shape[0])
    )
    return _Tables(theta, v_theta, probs, values, weights, s_idx, k_idx)


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
    kernel as training (:func:`distill_agents.updates.row_update.update_student`). With no
    critic (the default here) and ``gamma = 1`` this is the paper's expected update field
    ``g(theta)`` (Theorems 1 and 2): for ``teacher_distill``, ``entropy_regularised``,
    ``n_distill`` and ``expected_entropy_regularised`` it equals the gradient of Table 1's loss
    column; for ``on_policy_distill`` it is not a gradient (asymmetric Jacobian). A Monte Carlo
    critic does not change the expected policy update (a state baseline); a TD critic does.

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
    teacher_arrays = _TeacherArrays(teacher_probs, teacher_values, teacher_index, teacher_weights)
    tab = _checked_tables(mdp, spec, theta, student_index, critic, teacher_arrays)
    code = M.control_code(control or spec.default_control)
    policy = control_probs(code, tab.probs[tab.k_idx], softmax(theta)[tab.s_idx], beta)
    if critic_mode is None and spec.forced_critic is None and not spec.vcond:
        critic_mode = "none"
    coef, codes = spec.params(critic_mode, distill_loss)
    codes[M.K_CRITIC_SEQUENTIAL] = 0  # the linear expected direction of the critic too
    logp = floored_log(tab.probs, teacher_prob_floor)
    teacher = rows.teacher_table(tab.probs, logp, tab.values, tab.weights, False)
    trajectories = enumerate_trajectories(mdp, policy, max_steps, max_trajectories)
    return _weighted_updates(trajectories, tab, teacher, coef, codes, float(gamma))


def _weighted_updates(
    trajectories: list[Trajectory],
    tab: _Tables,
    teacher: rows.TeacherTable,
    coef: NDArray[np.float64],
    codes: NDArray[np.int64],
    gamma: float,
) -> ExpectedUpdate:
    """The updates (lr 1) of the ``trajectories`` weighted by their probabilities."""
    theta, v_theta = tab.theta, tab.v_theta
    n_obs, n_actions = theta.shape
    work = rows.make_row_work(n_obs, n_actions, max(len(t.actions) for t in trajectories))
    d_logits = np.zeros_like(theta)
    d_critic = np.zeros(n_obs)
    for traj in trajectories:
        new_theta = theta.copy()
        new_v = v_theta.copy()
        row_update.episode_update_tables(
            tab.s_idx[traj.states], tab.k_idx[traj.states], traj.actions, traj.rewards, True,
            teacher, rows.dense_table(new_theta), new_v, coef, codes, 1.0, gamma, work,
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
    given = np.asarray(teacher_probs)  # required here
    teacher_arrays = _TeacherArrays(given, teacher_values, teacher_index, teacher_weights)
    tab = _checked_tables(mdp, None, theta, student_index, critic, teacher_arrays)
    probs, values, weights, v_theta = tab.probs, tab.values, tab.weights, tab.v_theta
    s_idx, k_idx = tab.s_idx, tab.k_idx
    coef, codes = spec.params(None, distill_loss)
    p = softmax(theta)[s_idx]  # [S, A]
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
