"""Compiled (numba) action choices and per-range totals shared by the agent kernels.

:func:`greedy`, :func:`epsilon_greedy` (Q-learning) and :func:`sample_softmax` (A2C) choose an
action from one row of a flat ``[G * N * A]`` table with one uniform; :func:`softmax_into` is
the softmax's unnormalised weights (also the A2C update's); :func:`totals` sums the per-range
counts of a kernel call.

The softmax here takes ``exp`` from numba's ``np.exp`` and falls back to the last action with
positive weight when rounding leaves the running sum below the threshold: not the arithmetic of
:mod:`distill_agents.numerics` (its own ``exp``) nor of the student rows'
(:mod:`distill_agents.updates`), so each keeps its own.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "PREFETCH_DISTANCE",
    "epsilon_greedy",
    "greedy",
    "sample_softmax",
    "softmax_into",
    "totals",
]

#: How many actors ahead the agent kernels prefetch the Q (logit) row they will read: the loop
#: is bound by the latency of one scattered read per actor, and prefetching overlaps them.
PREFETCH_DISTANCE = 8


@njit(cache=True, inline="always")
def greedy(flat_q, base, n_actions, u):
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
def epsilon_greedy(flat_q, base, n_actions, u, epsilon):
    """Epsilon-greedy action from one uniform ``u`` in [0, 1).

    ``u < epsilon``: the uniformly random action ``floor(u / epsilon * A)``; otherwise the
    greedy action, ties split by ``(u - epsilon) / (1 - epsilon)``. The Q-learning loops write
    this out in place (same choice): calling it from them compiled to a slower loop.
    """
    if u < epsilon:
        return min(int(u / epsilon * n_actions), n_actions - 1)
    return greedy(flat_q, base, n_actions, (u - epsilon) / (1.0 - epsilon))


@njit(cache=True, inline="always")
def softmax_into(flat_logits, base, n_actions, probs):
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
def sample_softmax(flat_logits, base, n_actions, u, probs):
    """Sample from ``softmax(flat_logits[base : base + A])`` with one uniform ``u``."""
    total = softmax_into(flat_logits, base, n_actions, probs)
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
def totals(counts):
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
