"""Compiled (numba) actor-critic kernels of the batched teacher trainer (paper A.3).

:func:`a2c_step` records one batch of transitions in each actor's episode buffer, updates the
actor and critic of every MDP whose episode just ended (:func:`a2c_update`) and samples the
next actions from the softmax actor (:mod:`distill_agents.teachers.kernels` describes the
actors and their bookkeeping); :func:`a2c_step_parallel` runs its thread ranges on numba's
threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from distill_agents.teachers.policy_kernels import (
    PREFETCH_DISTANCE,
    sample_softmax,
    softmax_into,
    totals,
)
from distill_agents.teachers.records import ACTING, ENDED, IDLE
from gridworld_env.kernels import prefetch

__all__ = ["a2c_step", "a2c_step_parallel", "a2c_update"]


@njit(cache=True)
def a2c_update(g, j, length, bootstrap, buffers, tables, params, probs):
    """Update MDP ``g``'s actor and critic from actor ``j``'s finished episode of ``length`` steps.

    Steps ``t = 0 .. T-1`` are applied in order, each with the current tables (tabular
    REINFORCE with baseline / one-step actor-critic, Sutton & Barto 2018, 13.4-13.5, without
    their ``gamma**t`` factor, like the paper's A.3):

    - MC: ``delta_t = G_t - V(o_t)``, ``G_t = sum_{k >= t} gamma**(k-t) r_k`` (plus
      ``gamma**(T-t) V(o_T)`` if the time limit truncated the episode);
    - TD(1): ``delta_t = r_t + gamma V(o_{t+1}) - V(o_t)``, with ``V(o_T) = 0`` after a
      termination;
    - critic ``V(o_t) += critic_lr * delta_t``; actor
      ``theta[o_t] += lr * delta_t * (e_{a_t} - softmax(theta[o_t]))``.

    Args:
        g: the MDP.
        j: the actor.
        length: steps ``T`` of the episode.
        bootstrap: whether the episode was truncated (then ``V(o_T)`` is bootstrapped from).
        buffers: :class:`~distill_agents.teachers.records.EpisodeBuffers`; MC overwrites the
            actor's rewards with the returns.
        tables: :class:`~distill_agents.teachers.records.A2CTables`, updated in place.
        params: :class:`~distill_agents.teachers.records.A2CParams`.
        probs: ``[A]`` float64 scratch.
    """
    ep_obs, ep_actions, ep_rewards = buffers.obs, buffers.actions, buffers.rewards
    logits, values = tables
    lr, critic_lr, gamma, mc = params
    n_actions = logits.shape[2]
    flat = logits.reshape(-1)
    table = np.uint64(g) * np.uint64(logits.shape[1])
    if mc:  # returns G_t, computed backwards in place of the rewards
        ret = values[g, ep_obs[j, length]] if bootstrap else 0.0
        for t in range(length - 1, -1, -1):
            ret = ep_rewards[j, t] + gamma * ret
            ep_rewards[j, t] = ret
    for t in range(length):
        o = ep_obs[j, t]
        if mc:
            delta = ep_rewards[j, t] - values[g, o]
        else:
            target = ep_rewards[j, t]
            if t + 1 < length or bootstrap:
                target += gamma * values[g, ep_obs[j, t + 1]]
            delta = target - values[g, o]
        values[g, o] += critic_lr * delta
        base = (table + np.uint64(o)) * np.uint64(n_actions)
        total = softmax_into(flat, base, n_actions, probs)
        step = lr * delta
        scale = step / total
        for b in range(n_actions):
            flat[base + np.uint64(b)] -= scale * probs[b]
        flat[base + np.uint64(ep_actions[j, t])] += step


@njit(inline="always")
def _record(j, t, buffers, actions, rewards, o_next):
    """Append actor ``j``'s transition to its episode buffer (now ``t + 1`` steps long)."""
    buffers.actions[j, t] = actions[j]
    buffers.rewards[j, t] = rewards[j]
    buffers.obs[j, t + 1] = o_next
    buffers.length[j] = t + 1


@njit(inline="always")
def _start(j, g, o_next, status, tallies, buffers, allow):
    """An actor whose episode ended: start its next one at ``o_next`` if allowed, else idle."""
    if allow and tallies.started[g] < tallies.n_episodes:
        tallies.started[g] += 1
        status[j] = ACTING
        buffers.length[j] = 0
        buffers.obs[j, 0] = o_next
    else:
        status[j] = IDLE


@njit(cache=True)
def _a2c_range(
    c, actors, tallies, tables, params, buffers, rewards, next_obs, terminated, truncated, u_row,
    allow,
):  # fmt: skip
    """Actors ``bounds[c] .. bounds[c + 1] - 1`` of :func:`a2c_step`; their counts in row ``c``."""
    lo, hi = actors.bounds[c], actors.bounds[c + 1]
    group, obs, actions, status = actors.group, actors.obs, actors.actions, actors.status
    started, completed, steps, n_episodes = tallies
    logits = tables.logits
    n_index = np.uint64(logits.shape[1])
    n_actions = logits.shape[2]
    stride = np.uint64(n_actions)
    flat = logits.reshape(-1)
    probs = np.empty(n_actions)
    capacity = buffers.actions.shape[1]
    busy = 0
    updates = 0
    overflow = 0
    for j in range(lo, hi):
        ahead = j + PREFETCH_DISTANCE
        if ahead < hi:
            row_ahead = (np.uint64(group[ahead]) * n_index + np.uint64(next_obs[ahead])) * stride
            prefetch(flat, row_ahead)  # type: ignore[call-arg]
        g = group[j]
        o_next = next_obs[j]
        st = status[j]
        if st == ACTING:
            t = buffers.length[j]
            if t >= capacity:  # an episode longer than the buffers: stop learning from it
                overflow = 1
                status[j] = IDLE
                obs[j] = o_next
                actions[j] = 0
                continue
            _record(j, t, buffers, actions, rewards, o_next)
            if terminated[j] or truncated[j]:
                a2c_update(g, j, t + 1, not terminated[j], buffers, tables, params, probs)
                updates += t + 1
                steps[g] += t + 1
                completed[g] += 1
                status[j] = ENDED
                if allow and started[g] < n_episodes:
                    busy += 1
                obs[j] = o_next
                actions[j] = 0
                continue
        elif st == ENDED:
            _start(j, g, o_next, status, tallies, buffers, allow)
        obs[j] = o_next
        if status[j] == ACTING:
            busy += 1
            base = (np.uint64(g) * n_index + np.uint64(o_next)) * stride
            actions[j] = sample_softmax(flat, base, n_actions, u_row[j], probs)
        else:
            actions[j] = 0
    actors.counts[c, 0] = busy
    actors.counts[c, 1] = updates
    actors.counts[c, 2] = overflow


@njit(cache=True)
def a2c_step(
    actors, tallies, tables, params, buffers, rewards, next_obs, terminated, truncated, u_row,
    allow,
):  # fmt: skip
    """Record one batch of transitions (A2C teacher, A.3); update MDPs whose episode ended.

    Actions are sampled from ``softmax(logits[g, o'])`` with ``u_row[j]``.

    Args:
        actors: :class:`~distill_agents.teachers.records.Actors` (``counts`` ``[C + 1, 3]``),
            updated in place.
        tallies: :class:`~distill_agents.teachers.records.Tallies`, updated in place.
        tables: :class:`~distill_agents.teachers.records.A2CTables`, updated in place.
        params: :class:`~distill_agents.teachers.records.A2CParams`.
        buffers: :class:`~distill_agents.teachers.records.EpisodeBuffers`, updated in place.
        rewards: see :func:`~distill_agents.teachers.q_kernels.q_step`.
        next_obs: see :func:`~distill_agents.teachers.q_kernels.q_step`.
        terminated: see :func:`~distill_agents.teachers.q_kernels.q_step`.
        truncated: see :func:`~distill_agents.teachers.q_kernels.q_step`.
        u_row: see :func:`~distill_agents.teachers.q_kernels.q_step`.
        allow: see :func:`~distill_agents.teachers.q_kernels.q_step`.

    Returns:
        The busy actors in total, or -1 if an episode overflowed the buffers.
    """
    for c in range(actors.bounds.shape[0] - 1):
        _a2c_range(c, actors, tallies, tables, params, buffers, rewards, next_obs, terminated,
                   truncated, u_row, allow)  # fmt: skip
    return totals(actors.counts)


@njit(cache=True, parallel=True)
def a2c_step_parallel(
    actors, tallies, tables, params, buffers, rewards, next_obs, terminated, truncated, u_row,
    allow,
):  # fmt: skip
    """:func:`a2c_step` with the ranges of ``actors.bounds`` on numba's threads (same results)."""
    for c in prange(actors.bounds.shape[0] - 1):
        _a2c_range(c, actors, tallies, tables, params, buffers, rewards, next_obs, terminated,
                   truncated, u_row, allow)  # fmt: skip
    return totals(actors.counts)
