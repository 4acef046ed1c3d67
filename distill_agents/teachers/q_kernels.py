"""Compiled (numba) Q-learning kernels of the batched teacher trainer (paper A.4).

:func:`q_step` learns from one batch of transitions and picks the next epsilon-greedy actions
(:mod:`distill_agents.teachers.kernels` describes the actors and their bookkeeping);
:func:`q_step_parallel` runs its thread ranges on numba's threads. :func:`q_learning_reference`
is a plain compiled Q-learning loop with the dynamics inlined, the performance reference of
:func:`~distill_agents.teachers.bench.bench_q_learning`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from distill_agents.teachers.policy_kernels import PREFETCH_DISTANCE, greedy, totals
from distill_agents.teachers.records import ACTING, ENDED, IDLE
from gridworld_env.kernels import prefetch
from gridworld_env.outcomes import next_uniform, sample_outcome, start_state

__all__ = ["q_learning_reference", "q_step", "q_step_parallel"]


@njit(cache=True)
def _q_range(
    c, actors, tallies, q_values, params, rewards, next_obs, terminated, truncated, u_row, allow
):
    """Actors ``bounds[c] .. bounds[c + 1] - 1`` of :func:`q_step`; their counts in row ``c``."""
    lo, hi = actors.bounds[c], actors.bounds[c + 1]
    group, obs, actions, status = actors.group, actors.obs, actors.actions, actors.status
    started, completed, steps, n_episodes = tallies
    epsilon, lr, gamma = params
    # Indices are unsigned (numba then skips its negative-index wraparound code).
    n_index = np.uint64(q_values.shape[1])
    n_actions = q_values.shape[2]
    stride = np.uint64(n_actions)
    flat = q_values.reshape(-1)
    busy = 0
    updates = 0
    for jj in range(lo, hi):
        j = np.uint64(jj)
        ahead = jj + PREFETCH_DISTANCE
        if ahead < hi:
            k = np.uint64(ahead)
            prefetch(flat, (np.uint64(group[k]) * n_index + np.uint64(next_obs[k])) * stride)  # type: ignore[call-arg]
        g = np.uint64(group[j])
        o_next = np.uint64(next_obs[j])
        table = g * n_index
        st = status[j]
        if st == ACTING:
            term = terminated[j]
            # max_b Q[g, o', b], added only without a termination (a truncation bootstraps).
            row = (table + o_next) * stride
            best = flat[row]
            for a in range(1, n_actions):
                best = max(best, flat[row + np.uint64(a)])
            target = rewards[j] + (0.0 if term else gamma * best)
            at = (table + np.uint64(obs[j])) * stride + np.uint64(actions[j])
            flat[at] += lr * (target - flat[at])
            updates += 1
            steps[g] += 1
            if term or truncated[j]:
                completed[g] += 1
                status[j] = ENDED
                if allow and started[g] < n_episodes:
                    busy += 1
                obs[j] = o_next
                actions[j] = 0  # ignored by the autoreset step
                continue
        elif st == ENDED:  # this step was the autoreset: o_next starts an episode
            if allow and started[g] < n_episodes:
                started[g] += 1
                st = ACTING
            else:
                st = IDLE
            status[j] = st
        obs[j] = o_next
        if st == ACTING:
            busy += 1
            # epsilon_greedy, written out: calling it here compiled to a ~25% slower loop.
            u = u_row[j]
            if u < epsilon:
                actions[j] = min(int(u / epsilon * n_actions), n_actions - 1)
            else:
                base = (table + o_next) * stride
                actions[j] = greedy(flat, base, n_actions, (u - epsilon) / (1.0 - epsilon))
        else:
            actions[j] = 0
    actors.counts[c, 0] = busy
    actors.counts[c, 1] = updates


@njit(cache=True)
def q_step(
    actors, tallies, q_values, params, rewards, next_obs, terminated, truncated, u_row, allow
):
    """Learn from one batch of transitions (Q-learning, A.4) and choose the next actions.

    For each acting actor ``j`` of MDP ``g``:
    ``Q[g, o, a] += lr * (r + gamma * max_b Q[g, o', b] * (not terminated) - Q[g, o, a])``
    (the paper's ``(1 - lr) Q + lr (r + gamma max Q')``), then an epsilon-greedy action at
    ``o'`` (greedy ties split uniformly) from ``u_row[j]``.

    Args:
        actors: :class:`~distill_agents.teachers.records.Actors` (``counts`` ``[C + 1, 2]``),
            updated in place.
        tallies: :class:`~distill_agents.teachers.records.Tallies`, updated in place.
        q_values: ``[G, N, A]`` float64, updated in place.
        params: :class:`~distill_agents.teachers.records.QParams`.
        rewards: ``[B]`` float64 from ``step``.
        next_obs: ``[B]`` int64 from ``step`` (or ``reset``, with every status ``ENDED``).
        terminated: ``[B]`` bool from ``step``.
        truncated: ``[B]`` bool from ``step``.
        u_row: ``[B]`` float64 uniforms in [0, 1).
        allow: whether actors may start new episodes.

    Returns:
        The busy actors in total (``counts[C, 0]``).
    """
    for c in range(actors.bounds.shape[0] - 1):
        _q_range(c, actors, tallies, q_values, params, rewards, next_obs, terminated, truncated,
                 u_row, allow)  # fmt: skip
    return totals(actors.counts)


@njit(cache=True, parallel=True)
def q_step_parallel(
    actors, tallies, q_values, params, rewards, next_obs, terminated, truncated, u_row, allow
):
    """:func:`q_step` with the ranges of ``actors.bounds`` on numba's threads (same results)."""
    for c in prange(actors.bounds.shape[0] - 1):
        _q_range(c, actors, tallies, q_values, params, rewards, next_obs, terminated, truncated,
                 u_row, allow)  # fmt: skip
    return totals(actors.counts)


@njit(cache=True, parallel=True)
def q_learning_reference(
    outcomes,
    action_rows,
    terminal,
    initial_cum,
    key_of_state,
    seeds,
    n_episodes,
    max_steps,
    epsilon,
    lr,
    gamma,
    q_values,
    steps,
):
    """Plain compiled Q-learning over ``B`` MDPs, the dynamics inlined (performance reference).

    MDP ``i`` runs its ``n_episodes`` episodes one after the other in one loop (the MDPs are
    spread over numba's threads), sampling from the same outcome tables the vector env's kernel
    reads (:func:`gridworld_env.kernels.pack_outcomes`) by the step rule of
    :mod:`gridworld_env.outcomes` (its SplitMix64 stream, start and outcome draws).
    Same update and action choice as :func:`q_step`; not the same numbers (other random streams).

    Args:
        outcomes: ``[B, S, K, W]`` outcome records (``gridworld_env.kernels.OUTCOME_DTYPE``)
            whose ``obs_key`` is the table index of the next state (-1: keep the last one).
        action_rows: ``[A]`` int64.
        terminal: ``[B, S]`` bool.
        initial_cum: ``[B, S]`` float64 cumulative initial distributions.
        key_of_state: ``[B, S]`` int64 table index of each state.
        seeds: ``[B]`` uint64 stream seeds.
        n_episodes: episodes per MDP.
        max_steps: time limit (0: none).
        epsilon: exploration probability.
        lr: learning rate.
        gamma: discount.
        q_values: ``[B, N, A]`` float64, updated in place.
        steps: ``[B]`` int64 output, env-steps taken per MDP.
    """
    n_mdps = terminal.shape[0]
    n_actions = q_values.shape[2]
    for i in prange(n_mdps):
        rng = np.empty(1, dtype=np.uint64)
        rng[0] = seeds[i]
        flat = q_values[i].reshape(-1)
        term_row = terminal[i]
        taken = 0
        for _ in range(n_episodes):
            s = start_state(initial_cum[i], next_uniform(rng))
            o = key_of_state[i, s]
            elapsed = 0
            while True:
                base = np.uint64(o * n_actions)
                u = next_uniform(rng)  # the epsilon-greedy choice, written out as in _q_range
                if u < epsilon:
                    a = min(int(u / epsilon * n_actions), n_actions - 1)
                else:
                    a = greedy(flat, base, n_actions, (u - epsilon) / (1.0 - epsilon))
                s, r, key = sample_outcome(outcomes, i, s, action_rows[a], next_uniform(rng))
                o_next = o if key < 0 else key
                elapsed += 1
                term = term_row[s]
                target = r
                if not term:
                    nxt = np.uint64(o_next * n_actions)
                    best = flat[nxt]
                    for b in range(1, n_actions):
                        best = max(best, flat[nxt + np.uint64(b)])
                    target += gamma * best
                at = base + np.uint64(a)
                flat[at] += lr * (target - flat[at])
                o = o_next
                if term or (max_steps > 0 and elapsed >= max_steps):
                    break
            taken += elapsed
        steps[i] = taken
