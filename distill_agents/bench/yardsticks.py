"""Plain compiled loops that the benchmarks measure the package against.

:func:`q_learning_loop` is the yardstick of ``reproduce fig3``'s effective rate (SPEC 6): the
simplest tabular Q-learning one would write over the same MDPs' outcome tables, one MDP per
numba thread (``prange``): an epsilon-greedy action, the outcome drawn from the packed records,
``Q[o, a] += lr * (r + gamma * max Q[o'] - Q[o, a])``, nothing else (no evaluation, no
episode records, no progress). It shares only the outcome tables and the random stream with the
package's loops.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

from distill_agents.runner import loop_kernels as K
from gridworld_env.outcomes import next_uniform, sample_outcome, start_state

__all__ = ["q_learning_loop", "q_learning_rate"]


@njit(cache=True, parallel=True, nogil=True)
def q_learning_loop(
    env: K.EnvTables,
    seeds: NDArray[np.uint64],
    episodes: int,
    epsilon: float,
    lr: float,
    gamma: float,
    q: NDArray[np.float64],
    steps: NDArray[np.int64],
) -> None:  # pragma: no cover - compiled
    """``episodes`` episodes of epsilon-greedy Q-learning on every MDP of ``env``.

    Args:
        env: the vector env's outcome tables
            (:class:`~distill_agents.runner.loop_kernels.EnvTables`).
        seeds: ``[B]`` uint64 seeds of the per-MDP SplitMix64 streams.
        episodes: episodes per MDP.
        epsilon: probability of a uniformly random action (else the first greedy one).
        lr: learning rate.
        gamma: discount.
        q: ``[B, N, A]`` Q-values, updated in place.
        steps: ``[B]`` int64, set to the env-steps taken on each MDP.
    """
    n_mdps = env.outcomes.shape[0]
    n_actions = q.shape[2]
    for m in prange(n_mdps):
        state = np.empty(1, dtype=np.uint64)
        state[0] = seeds[m]
        qm = q[m]
        total = 0
        for _ in range(episodes):
            s = start_state(env.initial_cum[m], next_uniform(state))
            o = env.key_of_state[m, s]
            for _t in range(env.max_steps):
                u = next_uniform(state)
                if u < epsilon:
                    a = min(int(u / epsilon * n_actions), n_actions - 1)
                else:
                    a = 0
                    for b in range(1, n_actions):
                        if qm[o, b] > qm[o, a]:
                            a = b
                s, reward, key = sample_outcome(
                    env.outcomes, m, s, env.action_rows[a], next_uniform(state)
                )
                nxt = key if key >= 0 else o
                total += 1
                if env.terminal[m, s]:
                    qm[o, a] += lr * (reward - qm[o, a])
                    break
                best = qm[nxt, 0]
                for b in range(1, n_actions):
                    best = max(best, qm[nxt, b])
                qm[o, a] += lr * (reward + gamma * best - qm[o, a])
                o = nxt
        steps[m] = total


def q_learning_rate(
    env: K.EnvTables,
    n_indices: int,
    n_actions: int,
    episodes: int,
    seed: int = 0,
    epsilon: float = 0.1,
    lr: float = 0.1,
    gamma: float = 0.99,
) -> dict[str, Any]:
    """Time :func:`q_learning_loop` on ``env`` (compiled first on one episode).

    Returns:
        ``seconds``, ``env_steps`` and ``steps_per_s`` of the timed call, and the numba
        threads it ran on.
    """
    import numba

    b = env.outcomes.shape[0]
    seeds = np.asarray(
        np.random.default_rng(seed).integers(1, 2**63, size=b, dtype=np.uint64), dtype=np.uint64
    )
    steps = np.zeros(b, dtype=np.int64)
    q = np.zeros((b, n_indices, n_actions))
    q_learning_loop(env, seeds, 1, epsilon, lr, gamma, q.copy(), steps)  # compile
    t0 = time.perf_counter()
    q_learning_loop(env, seeds, episodes, epsilon, lr, gamma, q, steps)
    seconds = time.perf_counter() - t0
    total = int(steps.sum())
    return {
        "seconds": seconds,
        "env_steps": total,
        "steps_per_s": total / seconds,
        "threads": int(numba.get_num_threads()),
    }
