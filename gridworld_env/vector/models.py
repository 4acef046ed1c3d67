"""The stacked exact models of a vector env's sub-envs, and how many MDPs fit in memory."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gridworld_env.mdp import TabularMDP

__all__ = [
    "StackedModels",
    "chunk_size_for",
    "env_bytes_per_mdp",
    "readonly",
]


def readonly(array: NDArray) -> NDArray:
    """``array``, made read-only in place."""
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class StackedModels:
    """The exact models of all ``B`` sub-envs of a vector env, stacked (read-only arrays).

    Attributes:
        next_states: ``[B, S, K, M]`` int64 (see :class:`~gridworld_env.TabularMDP`).
        next_probs: ``[B, S, K, M]`` float64.
        next_rewards: ``[B, S, K, M]`` float64.
        action_rows: ``[A]`` int64, shared by all sub-envs.
        initial: ``[B, S]`` float64.
        terminal: ``[B, S]`` bool.
        observation_of_state: ``[B, S]`` or ``[B, S, D]`` int64, the single env's observation
            of each state (-1 for walls and ``s_term``); with table-index observations, the
            single env's observations *before* indexing (use ``state_to_index`` for the indices).
        state_to_index: ``[B, S]`` int64, the table index observed in each state (as
            :class:`~gridworld_env.TableIndexWrapper` gives; -1 for unreachable states, walls and
            ``s_term``).
        n_indices: ``[B]`` int64, the number of table indices of each sub-env.
    """

    next_states: NDArray[np.int64]
    next_probs: NDArray[np.float64]
    next_rewards: NDArray[np.float64]
    action_rows: NDArray[np.int64]
    initial: NDArray[np.float64]
    terminal: NDArray[np.bool_]
    observation_of_state: NDArray[np.int64]
    state_to_index: NDArray[np.int64]
    n_indices: NDArray[np.int64]

    @property
    def n_envs(self) -> int:
        """Number of sub-envs ``B``."""
        return int(self.next_states.shape[0])

    @property
    def n_states(self) -> int:
        """Number of states ``S`` of every sub-env."""
        return int(self.next_states.shape[1])

    @property
    def n_actions(self) -> int:
        """Number of actions ``A``."""
        return int(self.action_rows.shape[0])

    @property
    def n_rows(self) -> int:
        """Number of distinct action rows ``K``."""
        return int(self.next_states.shape[2])

    def mdp(self, i: int) -> TabularMDP:
        """The model of sub-env ``i`` as a :class:`~gridworld_env.TabularMDP`."""
        return TabularMDP(
            self.next_states[i],
            self.next_probs[i],
            self.next_rewards[i],
            self.action_rows,
            self.initial[i],
            self.terminal[i],
        )


def chunk_size_for(
    n_actions: int,
    budget_bytes: float,
    n_states: int = 401,
    tables_per_mdp: int = 1,
    itemsize: int = 8,
    observation_size: int = 1,
) -> int:
    """How many MDPs to process at once so that per-MDP ``[S, A]`` tables fit a memory budget.

    The estimate per MDP is ``tables_per_mdp * n_states * n_actions * itemsize`` (the runner's
    tables) plus :func:`env_bytes_per_mdp` (the vector env and its stacked models, independent
    of ``A``). For example 1000 grid MDPs with 4000 actions and 3 float64 tables need about
    39 GB, so with an 8 GB budget ``chunk_size_for(4000, 8e9, tables_per_mdp=3)`` gives 205;
    build one vector env per chunk with ``layout_seed=base + chunk_start`` to get the same MDPs
    as one big batch.

    Args:
        n_actions: ``A``.
        budget_bytes: memory allowed for one chunk.
        n_states: ``S`` (401 for a 20x20 grid).
        tables_per_mdp: number of ``[S, A]`` tables the runner keeps per MDP.
        itemsize: bytes per table entry (8 for float64).
        observation_size: ``D``, the length of one observation (81 for 9x9 partial views).

    Returns:
        The chunk size, at least 1.

    Raises:
        ValueError: a non-positive size or budget.
    """
    for name, value, low in (
        ("n_actions", n_actions, 1),
        ("n_states", n_states, 1),
        ("tables_per_mdp", tables_per_mdp, 0),
        ("itemsize", itemsize, 1),
        ("observation_size", observation_size, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if isinstance(budget_bytes, bool) or not budget_bytes > 0:
        raise ValueError(f"budget_bytes must be a positive number, got {budget_bytes!r}")
    per_mdp = tables_per_mdp * n_states * n_actions * itemsize + env_bytes_per_mdp(
        n_states, n_actions, observation_size
    )
    return max(1, int(budget_bytes // per_mdp))


def env_bytes_per_mdp(n_states: int = 401, n_actions: int = 4, observation_size: int = 1) -> int:
    """Upper estimate of the bytes one sub-env costs, kernel tables plus stacked models.

    Kernel tables: outcome records ``24 S K M`` (``K <= 5`` rows, ``M <= 6`` outcomes per row),
    ``terminal`` ``S``, cumulative initial distribution and observation keys ``16 S``,
    partial observation rows ``S D`` (int8). Stacked models (:attr:`TabularVectorEnv.models`,
    built on request): ``24 S K M`` for the model arrays, ``17 S`` and ``8 S D``. For a 20x20
    grid with full observations that is about 0.59 MB, independent of ``A`` beyond 4.
    """
    n_rows = 4 if n_actions <= 4 else 5
    records = 24 * n_states * n_rows * 6
    partial = observation_size if observation_size > 1 else 0
    return 2 * records + (17 + 16) * n_states + 9 * n_states * max(partial, 1)
