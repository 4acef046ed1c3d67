"""The one step rule of the compiled loops: a random stream, the start draw, the outcome draw.

Every compiled loop that samples episodes from the outcome tables of
:func:`gridworld_env.kernels.pack_outcomes` (the batched runner's loops, its sampled
evaluation, the teachers' reference Q-learning loop and the benchmark's yardstick) takes its
uniforms from :func:`next_uniform` (one SplitMix64 stream per MDP), its start state from
:func:`start_state` and each transition from :func:`sample_outcome`. The vector env's step kernel
(:mod:`gridworld_env.kernels`) applies the same rule to a flat view of the same records, with
its uniforms from the env's ``np_random``.

The rule, for a uniform ``u`` in [0, 1):

- start state: the first state whose cumulative initial probability exceeds ``u``;
- transition: the first outcome record of (MDP, state, action row) whose cumulative probability
  ``cum`` exceeds ``u`` (records are sorted and the last positive one has ``cum`` 1.0, so the
  walk always stops on a positive outcome);
- the loops end an episode on a terminal state, or truncate it after ``max_steps`` steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit
from numpy.typing import NDArray

__all__ = ["next_uniform", "sample_outcome", "start_state"]


@njit(inline="always")
def next_uniform(state: NDArray[np.uint64]) -> float:  # pragma: no cover - compiled
    """SplitMix64: the next uniform in [0, 1) of the stream ``state[0]`` (advanced)."""
    z = state[0] + np.uint64(0x9E3779B97F4A7C15)
    state[0] = z
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return float(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(inline="always")
def start_state(initial_cum: NDArray[np.float64], u: float) -> Any:  # pragma: no cover - compiled
    """The start state for the uniform ``u``: the first with ``initial_cum[s] > u``."""
    return np.searchsorted(initial_cum, u, side="right")


@njit(inline="always")
def sample_outcome(
    outcomes: NDArray, m: Any, s: Any, row: Any, u: float
) -> tuple[Any, float, Any]:  # pragma: no cover - compiled
    """The outcome of action row ``row`` in state ``s`` of MDP ``m`` for the uniform ``u``.

    The first outcome record with ``cum > u``.

    Returns:
        ``(next state, reward, observation key)`` (key -1: the previous observation stays).
    """
    recs = outcomes[m, s, row]
    k = 0
    while u >= recs[k]["cum"]:
        k += 1
    return np.int64(recs[k]["state"]), recs[k]["reward"], np.int64(recs[k]["obs_key"])
