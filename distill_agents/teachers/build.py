"""Teachers from Q values, A2C tables or value iteration on exact models, and their values."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from distill_agents import planning
from distill_agents.teachers.tables import Teachers

__all__ = [
    "a2c_teachers",
    "acting_indices",
    "exact_values",
    "index_average",
    "padding_mask",
    "planned_teachers",
    "policy_values",
    "q_learning_teachers",
]


def policy_values(probs: ArrayLike, q_values: ArrayLike) -> NDArray[np.float64]:
    """``V_pi(o) = sum_a pi(a|o) Q(o, a)`` (``[..., A]`` inputs, ``[...]`` output).

    For a greedy policy this is ``max_a Q(o, a)`` (SPEC 2; PAPER 5.2).
    """
    p = np.asarray(probs, dtype=np.float64)
    q = np.asarray(q_values, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(
            f"probs and q_values must have the same shape, got {p.shape} and {q.shape}"
        )
    return np.einsum("...a,...a->...", p, q)


def padding_mask(n_indices: NDArray[np.int64], n: int) -> NDArray[np.bool_]:
    """``[B, n]``: true at the padding rows (index ``>= n_indices[b]``)."""
    return np.arange(n)[None, :] >= np.asarray(n_indices)[:, None]


def q_learning_teachers(
    q_values: ArrayLike, n_indices: ArrayLike, temperature: float = 0.0, **meta: Any
) -> Teachers:
    """Teachers from Q tables: ``pi = softmax(Q / T)`` (``T = 0`` greedy), ``V = sum pi Q``.

    Args:
        q_values: ``[B, N, A]`` action values (padding rows are zeroed).
        n_indices: ``[B]`` table indices per MDP.
        temperature: ``T >= 0``.
        **meta: further :class:`Teachers` fields (``acting``, ``env_id``, ``settings``, ...).
    """
    q = np.array(q_values, dtype=np.float64)
    pad = padding_mask(np.asarray(n_indices), q.shape[1])
    q[pad] = 0.0
    probs = planning.softmax_policy(q, temperature)
    return Teachers(
        kind="q_learning",
        probs=probs,
        n_indices=np.asarray(n_indices),
        values=policy_values(probs, q),
        q_values=q,
        temperature=temperature,
        **meta,
    )


def a2c_teachers(
    logits: ArrayLike, values: ArrayLike, n_indices: ArrayLike, **meta: Any
) -> Teachers:
    """Teachers from a tabular actor-critic: ``pi = softmax(logits)``, its critic ``values``.

    Args:
        logits: ``[B, N, A]`` actor logits.
        values: ``[B, N]`` critic.
        n_indices: ``[B]`` table indices per MDP.
        **meta: further :class:`Teachers` fields.
    """
    theta = np.array(logits, dtype=np.float64)
    v = np.array(values, dtype=np.float64)
    pad = padding_mask(np.asarray(n_indices), theta.shape[1])
    theta[pad] = 0.0
    v[pad] = 0.0
    return Teachers(
        kind="a2c",
        probs=planning.softmax_policy(theta, 1.0),
        n_indices=np.asarray(n_indices),
        values=v,
        temperature=None,
        **meta,
    )


def index_average(
    state_arrays: ArrayLike,
    state_to_index: ArrayLike,
    weights: ArrayLike,
    n_index: int,
) -> NDArray[np.float64]:
    """Average per-state rows over the states that share a table index.

    ``out[b, o] = sum_{s: idx(s) = o} w(s) x(s) / sum_{s: idx(s) = o} w(s)``; where every state
    of an index has weight 0 the states count equally; indices no state maps to get 0.
    With full observations each index has exactly one state and this is a re-indexing.

    Args:
        state_arrays: ``[B, S, ...]`` per-state rows (probabilities, values, Q values).
        state_to_index: ``[B, S]`` table index of each state, -1 for none.
        weights: ``[B, S]`` non-negative weights (e.g. expected visits).
        n_index: ``N``, rows of the output.

    Returns:
        ``[B, N, ...]``.
    """
    x = np.asarray(state_arrays, dtype=np.float64)
    index = np.asarray(state_to_index)
    w = np.asarray(weights, dtype=np.float64)
    b, s = index.shape
    if x.shape[:2] != (b, s) or w.shape != (b, s):
        raise ValueError(
            f"state_arrays [B, S, ...], state_to_index [B, S] and weights [B, S] must agree, got "
            f"{x.shape}, {index.shape}, {w.shape}"
        )
    if np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite and non-negative")
    trailing = x.shape[2:]
    has = index >= 0
    keys = (np.arange(b)[:, None] * n_index + index)[has]
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    weight = w[has][order]
    rows = x[has].reshape(keys.size, -1)[order]
    out = np.zeros((b * n_index, rows.shape[1]))
    if keys.size:
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        total = np.add.reduceat(weight, starts)
        # Indices whose states all have weight 0: weigh their states equally.
        unweighted = np.repeat(total == 0.0, np.diff(np.r_[starts, keys.size]))
        weight = np.where(unweighted, 1.0, weight)
        total = np.add.reduceat(weight, starts)
        sums = np.add.reduceat(weight[:, None] * rows, starts, axis=0)
        out[keys[starts]] = sums / total[:, None]
    return out.reshape(b, n_index, *trailing)


def planned_teachers(
    models: Any,
    minimise: bool = False,
    gamma: float = 0.99,
    temperature: float = 0.0,
    **meta: Any,
) -> Teachers:
    """Optimal (``minimise=False``) or adversarial teachers by value iteration on exact models.

    Per MDP: ``(V*, Q*) = value_iteration(mdp, gamma, minimise)``; the state policy is greedy in
    ``Q*`` (``-Q*`` when minimising; ties split uniformly), or ``softmax(+-Q* / T)`` for
    ``T > 0``. It is mapped to table indices by :func:`index_average` weighted by the state
    policy's own expected visits from the start: with full observations (one state per index)
    this is exact; with partial observations the states sharing an index are averaged in the
    proportion the policy visits them (an index none of its states is visited under gets their
    plain average, as do all indices if the policy can loop forever). ``q_values`` are
    averaged the same way and ``values = sum_a pi Q``.

    Args:
        models: :class:`gridworld_env.vector.StackedModels` (``envs.models`` of an index vector
            env), with ``state_to_index`` and ``n_indices``.
        minimise: adversarial teacher.
        gamma: discount of value iteration.
        temperature: ``T >= 0``.
        **meta: further :class:`Teachers` fields.
    """
    mdps = [models.mdp(i) for i in range(models.n_envs)]
    _, q_states = planning.value_iteration(mdps, gamma=gamma, minimise=minimise)
    q_states = np.asarray(q_states)
    state_policy = planning.softmax_policy(-q_states if minimise else q_states, temperature)
    try:
        visits = planning.expected_visits(mdps, state_policy)
    except ValueError:  # the policy never ends from some state: weigh aliased states equally
        visits = np.zeros(state_policy.shape[:2])
    n = int(np.max(models.n_indices))
    index = np.asarray(models.state_to_index)
    probs = index_average(state_policy, index, visits, n)
    q = index_average(q_states, index, visits, n)
    pad = padding_mask(np.asarray(models.n_indices), n)
    probs[pad] = 1.0 / probs.shape[-1]
    probs /= probs.sum(axis=-1, keepdims=True)
    meta.setdefault("acting", acting_indices(models))
    return Teachers(
        kind="adversarial" if minimise else "optimal",
        probs=probs,
        n_indices=np.asarray(models.n_indices),
        values=policy_values(probs, q),
        q_values=q,
        temperature=temperature,
        **meta,
    )


def exact_values(teachers: Teachers, models: Any, gamma: float = 0.99) -> Teachers:
    """``teachers`` with ``values`` replaced by the exact values of their own policies.

    Per MDP: the index policy as a state policy, :func:`planning.policy_evaluation` with
    ``gamma`` on the model, and the state values averaged per table index by
    :func:`index_average` weighted by the policy's expected visits (exact with full
    observations). A noisy teacher made by :func:`noisy_teachers` keeps the clean teacher's
    ``Q`` of its noisy action as ``V``; this gives it the value of the policy it follows.

    Args:
        teachers: the teachers.
        models: :class:`gridworld_env.vector.StackedModels` of their MDPs (an index vector env's
            ``models``).
        gamma: discount in [0, 1].
    """
    mdps = [models.mdp(i) for i in range(models.n_envs)]
    index = np.asarray(models.state_to_index)
    state_policy = planning.observation_policy_to_state_policy(
        teachers.probs[:, : int(np.max(models.n_indices))], index
    )
    v_states = np.asarray(planning.policy_evaluation(mdps, state_policy, gamma))
    try:
        visits = planning.expected_visits(mdps, state_policy)
    except ValueError:  # the policy never ends from some state: weigh aliased states equally
        visits = np.zeros(state_policy.shape[:2])
    n = int(np.max(models.n_indices))
    values = np.zeros((teachers.n_mdps, teachers.n_index))
    values[:, :n] = index_average(v_states, index, visits, n)
    values[padding_mask(teachers.n_indices, teachers.n_index)] = 0.0
    return teachers.replace(values=values)


def acting_indices(models: Any) -> NDArray[np.bool_]:
    """``[B, N]`` bool: table indices observed in some non-terminal state with an index.

    Args:
        models: :class:`gridworld_env.vector.StackedModels` of an index vector env.
    """
    index = np.asarray(models.state_to_index)
    b = index.shape[0]
    n = int(np.max(models.n_indices))
    live = (index >= 0) & ~np.asarray(models.terminal)
    out = np.zeros((b, n), dtype=bool)
    rows = np.broadcast_to(np.arange(b)[:, None], index.shape)
    out[rows[live], index[live]] = True
    return out
