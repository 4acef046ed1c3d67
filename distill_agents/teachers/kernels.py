"""Compiled (numba) agent-side kernels of the batched teacher trainers.

The trainers in :mod:`distill_agents.teachers.training` step native vector envs
(:mod:`gridworld_env.vector`) through their public ``reset``/``step`` API. After every ``step``
one call of an *agent kernel* here learns from the ``B`` transitions just returned and picks
the ``B`` next actions.

Sub-envs are *actors*: actor ``j`` plays MDP ``group[j]`` and reads and writes that MDP's
tables (``[G, N, A]``). Several actors may share one MDP (the trainer replicates slow MDPs);
they are contiguous, always handled by one thread, in order of ``j``, so results are bit-for-bit
the same whatever the number of threads. Actor ``j`` draws only the uniform ``u_row[j]``.

Bookkeeping (arrays owned by the trainer, updated in place):

- ``status[j]``: :data:`IDLE` (the actor's sub-env is stepped but ignored), :data:`ACTING`
  (in an episode that is learned from) or :data:`ENDED` (its episode ended at the previous
  step, so the next ``step`` is Gymnasium's next-step autoreset, whose action is ignored and
  whose observation starts the next episode);
- ``obs[j]``/``actions[j]``: the observation the action was chosen at, and the action sent
  with the next ``step``;
- per MDP ``g``: ``started[g]``/``completed[g]`` episodes and ``steps[g]`` transitions learned.

An actor starts an episode (``ENDED`` -> ``ACTING``) only while ``allow`` is true and its MDP
has started fewer than ``n_episodes`` episodes, so every MDP learns from exactly
``n_episodes`` complete episodes. Each kernel returns, per thread range, the number of *busy*
actors (acting, or about to start an episode) and the number of transitions learned from.

The module also holds :func:`q_learning_reference`, a plain compiled Q-learning loop with the
dynamics inlined (the performance reference of
:func:`~distill_agents.teachers.bench.bench_q_learning`).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from gridworld_env.kernels import prefetch
from gridworld_env.outcomes import next_uniform, sample_outcome, start_state

__all__ = [
    "ACTING",
    "ENDED",
    "IDLE",
    "a2c_step",
    "a2c_step_parallel",
    "q_learning_reference",
    "q_step",
    "q_step_parallel",
]

IDLE = 0  #: the actor takes no part; its sub-env is stepped and its transitions are ignored
ACTING = 1  #: the actor is in an episode that is learned from
ENDED = 2  #: the actor's episode ended at the previous step (the next step is an autoreset)


#: How many actors ahead the agent kernels prefetch the Q (logit) row they will read: the loop
#: is bound by the latency of one scattered read per actor, and prefetching overlaps them.
PREFETCH_DISTANCE = 8


# --------------------------------------------------------------------------- action choice
@njit(cache=True, inline="always")
def _greedy(flat_q, base, n_actions, u):
    """Greedy action of ``flat_q[base : base + A]``, ties split uniformly by ``u`` in [0, 1).

    The first pass keeps the first maximum with selects rather than branches (the comparisons
    are unpredictable; this made the Q-learning kernel ~1.5x faster), the second counts the
    maxima; only a tie takes the (rarer) third pass, which picks maximum number
    ``floor(u * n_best)`` in action order.
    """
    best = flat_q[base]
    arg = 0
    for a in range(1, n_actions):
        v = flat_q[base + np.uint64(a)]
        greater = v > best
        arg = a if greater else arg
        best = v if greater else best
    n_best = 0
    for a in range(n_actions):
        n_best += flat_q[base + np.uint64(a)] == best
    if n_best <= 1:
        return arg
    pick = min(int(u * n_best), n_best - 1)
    for a in range(arg, n_actions):
        if flat_q[base + np.uint64(a)] == best:
            if pick == 0:
                return a
            pick -= 1
    return arg  # not reached


@njit(cache=True, inline="always")
def _epsilon_greedy(flat_q, base, n_actions, u, epsilon):
    """Epsilon-greedy action from one uniform ``u`` in [0, 1).

    ``u < epsilon``: the uniformly random action ``floor(u / epsilon * A)``; otherwise the
    greedy action, ties split by ``(u - epsilon) / (1 - epsilon)``. The loops below write this
    out in place (same choice): calling it from them compiled to a slower loop.
    """
    if u < epsilon:
        return min(int(u / epsilon * n_actions), n_actions - 1)
    return _greedy(flat_q, base, n_actions, (u - epsilon) / (1.0 - epsilon))


@njit(cache=True, inline="always")
def _softmax_into(flat_logits, base, n_actions, probs):
    """``probs[:] = exp(logits - max)`` for the row at ``base``; returns their sum."""
    top = flat_logits[base]
    for a in range(1, n_actions):
        top = max(top, flat_logits[base + np.uint64(a)])
    total = 0.0
    for a in range(n_actions):
        p = np.exp(flat_logits[base + np.uint64(a)] - top)
        probs[a] = p
        total += p
    return total


@njit(cache=True, inline="always")
def _sample_softmax(flat_logits, base, n_actions, u, probs):
    """Sample from ``softmax(flat_logits[base : base + A])`` with one uniform ``u``."""
    total = _softmax_into(flat_logits, base, n_actions, probs)
    threshold = u * total
    running = 0.0
    for a in range(n_actions):
        running += probs[a]
        if threshold < running:
            return a
    # Rounding left the running sum a hair below u * total: the last action with weight.
    for a in range(n_actions - 1, -1, -1):
        if probs[a] > 0.0:
            return a
    return n_actions - 1  # not reached


@njit(cache=True)
def _totals(counts):
    """Row ``C`` of ``counts`` ``[C + 1, k]`` := the sum of rows ``0 .. C-1``; returns column 0's.

    For the agent kernels: the busy actors in total (-1 if column 2, A2C's buffer overflow flag,
    is set), returned so that the trainer's loop need not index ``counts`` after every call.
    """
    last = counts.shape[0] - 1
    for k in range(counts.shape[1]):
        total = 0
        for c in range(last):
            total += counts[c, k]
        counts[last, k] = total
    if counts.shape[1] > 2 and counts[last, 2] != 0:
        return -1
    return counts[last, 0]


# ----------------------------------------------------------------------------- Q-learning
@njit(cache=True)
def _q_range(
    lo,
    hi,
    group,
    q_values,
    obs,
    actions,
    rewards,
    next_obs,
    terminated,
    truncated,
    status,
    started,
    completed,
    steps,
    n_episodes,
    allow,
    u_row,
    epsilon,
    lr,
    gamma,
    counts,
    slot,
):
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
            # _epsilon_greedy, written out: calling it here compiled to a ~25% slower loop.
            u = u_row[j]
            if u < epsilon:
                actions[j] = min(int(u / epsilon * n_actions), n_actions - 1)
            else:
                base = (table + o_next) * stride
                actions[j] = _greedy(flat, base, n_actions, (u - epsilon) / (1.0 - epsilon))
        else:
            actions[j] = 0
    counts[slot, 0] = busy
    counts[slot, 1] = updates


@njit(cache=True)
def q_step(
    bounds,
    group,
    q_values,
    obs,
    actions,
    rewards,
    next_obs,
    terminated,
    truncated,
    status,
    started,
    completed,
    steps,
    n_episodes,
    allow,
    u_row,
    epsilon,
    lr,
    gamma,
    counts,
):
    """Learn from one batch of transitions (Q-learning, A.4) and choose the next actions.

    For each acting actor ``j`` of MDP ``g``:
    ``Q[g, o, a] += lr * (r + gamma * max_b Q[g, o', b] * (not terminated) - Q[g, o, a])``
    (the paper's ``(1 - lr) Q + lr (r + gamma max Q')``), then an epsilon-greedy action at
    ``o'`` (greedy ties split uniformly) from ``u_row[j]``.

    Args:
        bounds: ``[C + 1]`` int64 actor ranges, one per thread, never splitting an MDP's actors.
        group: ``[B]`` int64 MDP of each actor.
        q_values: ``[G, N, A]`` float64, updated in place.
        obs: ``[B]`` int64 observations the ``actions`` were chosen at (set to ``next_obs``).
        actions: ``[B]`` int64 actions just taken (set to the next actions).
        rewards: ``[B]`` float64 from ``step``.
        next_obs: ``[B]`` int64 from ``step`` (or ``reset``, with every status ``ENDED``).
        terminated: ``[B]`` bool from ``step``.
        truncated: ``[B]`` bool from ``step``.
        status: ``[B]`` int8 actor status, updated in place.
        started: ``[G]`` int64 episodes started per MDP, updated in place.
        completed: ``[G]`` int64 episodes completed per MDP, updated in place.
        steps: ``[G]`` int64 transitions learned from per MDP, updated in place.
        n_episodes: episodes per MDP.
        allow: whether actors may start new episodes.
        u_row: ``[B]`` float64 uniforms in [0, 1).
        epsilon: exploration probability.
        lr: learning rate.
        gamma: discount.
        counts: ``[C + 1, 2]`` int64 output: per range (rows ``0 .. C-1``) and in total (row
            ``C``), the busy actors and the transitions learned from.

    Returns:
        The busy actors in total (``counts[C, 0]``).
    """
    for c in range(bounds.shape[0] - 1):
        _q_range(
            bounds[c],
            bounds[c + 1],
            group,
            q_values,
            obs,
            actions,
            rewards,
            next_obs,
            terminated,
            truncated,
            status,
            started,
            completed,
            steps,
            n_episodes,
            allow,
            u_row,
            epsilon,
            lr,
            gamma,
            counts,
            c,
        )
    return _totals(counts)


@njit(cache=True, parallel=True)
def q_step_parallel(
    bounds,
    group,
    q_values,
    obs,
    actions,
    rewards,
    next_obs,
    terminated,
    truncated,
    status,
    started,
    completed,
    steps,
    n_episodes,
    allow,
    u_row,
    epsilon,
    lr,
    gamma,
    counts,
):
    """:func:`q_step` with the ranges of ``bounds`` on numba's threads (same results)."""
    for c in prange(bounds.shape[0] - 1):
        _q_range(
            bounds[c],
            bounds[c + 1],
            group,
            q_values,
            obs,
            actions,
            rewards,
            next_obs,
            terminated,
            truncated,
            status,
            started,
            completed,
            steps,
            n_episodes,
            allow,
            u_row,
            epsilon,
            lr,
            gamma,
            counts,
            c,
        )
    return _totals(counts)


# ---------------------------------------------------------------------------- actor-critic
@njit(cache=True)
def _a2c_update(
    g,
    j,
    length,
    bootstrap,
    ep_obs,
    ep_actions,
    ep_rewards,
    logits,
    values,
    lr,
    critic_lr,
    gamma,
    mc,
    probs,
):
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
    """
    n_actions = logits.shape[2]
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
        row = logits[g, o]
        top = row[0]
        for b in range(1, n_actions):
            top = max(top, row[b])
        total = 0.0
        for b in range(n_actions):
            p = np.exp(row[b] - top)
            probs[b] = p
            total += p
        step = lr * delta
        scale = step / total
        for b in range(n_actions):
            row[b] -= scale * probs[b]
        row[ep_actions[j, t]] += step


@njit(cache=True)
def _a2c_range(
    lo,
    hi,
    group,
    logits,
    values,
    obs,
    actions,
    rewards,
    next_obs,
    terminated,
    truncated,
    status,
    started,
    completed,
    steps,
    n_episodes,
    allow,
    u_row,
    ep_obs,
    ep_actions,
    ep_rewards,
    ep_length,
    lr,
    critic_lr,
    gamma,
    mc,
    counts,
    slot,
):
    n_index = np.uint64(logits.shape[1])
    n_actions = logits.shape[2]
    stride = np.uint64(n_actions)
    flat = logits.reshape(-1)
    probs = np.empty(n_actions)
    capacity = ep_actions.shape[1]
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
            t = ep_length[j]
            if t >= capacity:  # an episode longer than the buffers: stop learning from it
                overflow = 1
                status[j] = IDLE
                obs[j] = o_next
                actions[j] = 0
                continue
            ep_actions[j, t] = actions[j]
            ep_rewards[j, t] = rewards[j]
            ep_obs[j, t + 1] = o_next
            ep_length[j] = t + 1
            if terminated[j] or truncated[j]:
                _a2c_update(
                    g,
                    j,
                    t + 1,
                    not terminated[j],
                    ep_obs,
                    ep_actions,
                    ep_rewards,
                    logits,
                    values,
                    lr,
                    critic_lr,
                    gamma,
                    mc,
                    probs,
                )
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
            if allow and started[g] < n_episodes:
                started[g] += 1
                status[j] = ACTING
                ep_length[j] = 0
                ep_obs[j, 0] = o_next
            else:
                status[j] = IDLE
        obs[j] = o_next
        if status[j] == ACTING:
            busy += 1
            base = (np.uint64(g) * n_index + np.uint64(o_next)) * stride
            actions[j] = _sample_softmax(flat, base, n_actions, u_row[j], probs)
        else:
            actions[j] = 0
    counts[slot, 0] = busy
    counts[slot, 1] = updates
    counts[slot, 2] = overflow


@njit(cache=True)
def a2c_step(
    bounds,
    group,
    logits,
    values,
    obs,
    actions,
    rewards,
    next_obs,
    terminated,
    truncated,
    status,
    started,
    completed,
    steps,
    n_episodes,
    allow,
    u_row,
    ep_obs,
    ep_actions,
    ep_rewards,
    ep_length,
    lr,
    critic_lr,
    gamma,
    mc,
    counts,
):
    """Record one batch of transitions (A2C teacher, A.3); update MDPs whose episode ended.

    Actions are sampled from ``softmax(logits[g, o'])`` with ``u_row[j]``. Arguments as
    :func:`q_step`, plus:

    Args:
        bounds: see :func:`q_step`.
        group: see :func:`q_step`.
        logits: ``[G, N, A]`` float64 actor logits, updated in place.
        values: ``[G, N]`` float64 critic, updated in place.
        obs: see :func:`q_step`.
        actions: see :func:`q_step`.
        rewards: see :func:`q_step`.
        next_obs: see :func:`q_step`.
        terminated: see :func:`q_step`.
        truncated: see :func:`q_step`.
        status: see :func:`q_step`.
        started: see :func:`q_step`.
        completed: see :func:`q_step`.
        steps: see :func:`q_step`.
        n_episodes: see :func:`q_step`.
        allow: see :func:`q_step`.
        u_row: see :func:`q_step`.
        ep_obs: ``[B, L + 1]`` int64 episode buffer of observations.
        ep_actions: ``[B, L]`` int64 episode buffer of actions.
        ep_rewards: ``[B, L]`` float64 episode buffer of rewards.
        ep_length: ``[B]`` int64 steps recorded in each actor's episode.
        lr: actor learning rate.
        critic_lr: critic learning rate.
        gamma: discount.
        mc: True for the Monte Carlo variant, False for TD(1).
        counts: ``[C + 1, 3]`` int64 output per range and in total (row ``C``): busy actors,
            transitions learned from, and 1 if an episode overflowed the buffers.

    Returns:
        The busy actors in total, or -1 if an episode overflowed the buffers.
    """
    for c in range(bounds.shape[0] - 1):
        _a2c_range(
            bounds[c],
            bounds[c + 1],
            group,
            logits,
            values,
            obs,
            actions,
            rewards,
            next_obs,
            terminated,
            truncated,
            status,
            started,
            completed,
            steps,
            n_episodes,
            allow,
            u_row,
            ep_obs,
            ep_actions,
            ep_rewards,
            ep_length,
            lr,
            critic_lr,
            gamma,
            mc,
            counts,
            c,
        )
    return _totals(counts)


@njit(cache=True, parallel=True)
def a2c_step_parallel(
    bounds,
    group,
    logits,
    values,
    obs,
    actions,
    rewards,
    next_obs,
    terminated,
    truncated,
    status,
    started,
    completed,
    steps,
    n_episodes,
    allow,
    u_row,
    ep_obs,
    ep_actions,
    ep_rewards,
    ep_length,
    lr,
    critic_lr,
    gamma,
    mc,
    counts,
):
    """:func:`a2c_step` with the ranges of ``bounds`` on numba's threads (same results)."""
    for c in prange(bounds.shape[0] - 1):
        _a2c_range(
            bounds[c],
            bounds[c + 1],
            group,
            logits,
            values,
            obs,
            actions,
            rewards,
            next_obs,
            terminated,
            truncated,
            status,
            started,
            completed,
            steps,
            n_episodes,
            allow,
            u_row,
            ep_obs,
            ep_actions,
            ep_rewards,
            ep_length,
            lr,
            critic_lr,
            gamma,
            mc,
            counts,
            c,
        )
    return _totals(counts)


# ------------------------------------------------------------------ compiled reference loop
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
                    a = _greedy(flat, base, n_actions, (u - epsilon) / (1.0 - epsilon))
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
