"""Wrappers: :class:`TableIndexWrapper` maps observations to the rows of a table."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from gridworld_env.mdp import TabularMDP, reachable_states

__all__ = ["TableIndexWrapper", "table_index"]


def table_index(
    mdp: TabularMDP, observation_of_state: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Enumerate the distinct observations an environment can emit.

    The observations are those of every state reachable from the start (terminal states
    included); absorption into a state without an observation (``-1`` row, e.g. ``s_term``)
    repeats the previous observation and adds none. Indices are assigned in order of the first
    reachable state (by state index) that emits each observation, so the order is deterministic.

    Args:
        mdp: the exact model.
        observation_of_state: ``[S]`` or ``[S, D]`` int64, -1 rows for states with no
            observation.

    Returns:
        ``(state_to_index, index_to_obs)``: ``[S]`` int64 (-1 for unreachable states and states
        without an observation) and ``[n]`` or ``[n, D]`` int64.
    """
    table = np.asarray(observation_of_state, dtype=np.int64)
    rows = table.reshape(table.shape[0], -1)
    emits = reachable_states(mdp) & (rows >= 0).all(axis=1)
    states = np.flatnonzero(emits)
    _, first, inverse = np.unique(rows[states], axis=0, return_index=True, return_inverse=True)
    # np.unique sorts observations; re-number them by first appearance instead.
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    state_to_index = np.full(table.shape[0], -1, dtype=np.int64)
    state_to_index[states] = rank[inverse.reshape(-1)]
    index_to_obs = table[states[np.sort(first)]]
    return state_to_index, index_to_obs


class TableIndexWrapper(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Map every observation to a table index in ``Discrete(n)``.

    ``n`` is the number of distinct observations the environment can emit from its start state,
    enumerated up front from the exact model by :func:`table_index` (so the space is known before
    the first step and SB3 accepts it). Works with every environment of the package and both
    observation modes; it needs a fixed layout.

    Like Gymnasium's own wrappers it records its constructor arguments
    (:class:`gymnasium.utils.RecordConstructorArgs`; it has none besides ``env``), so the wrapped
    env's ``spec`` lists it in ``additional_wrappers`` and ``gym.make(env.spec)`` rebuilds the
    wrapped env. That needs a layout fixed at construction (an integer ``layout_seed`` or a
    ``layout``): an env with ``layout_seed=None`` that was reset before wrapping is rebuilt
    without that reset, and the rebuilt wrapper refuses it with the clear error below.

    Attributes:
        state_to_index: ``[S]`` int64, the index observed in each state (-1 for unreachable
            states, walls and ``s_term``).
    """

    def __init__(self, env: gym.Env) -> None:
        # Record first (as Gymnasium's wrappers do): the first call wins, ``env`` is not stored.
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        base = env.unwrapped
        try:
            mdp = base.mdp  # type: ignore[attr-defined]
            table = base.observation_of_state  # type: ignore[attr-defined]
        except AttributeError as err:
            raise TypeError(
                "TableIndexWrapper needs an environment with an exact model "
                "(env.unwrapped.mdp and env.unwrapped.observation_of_state)"
            ) from err
        except RuntimeError as err:
            raise ValueError(
                "TableIndexWrapper needs a fixed layout to enumerate the observations up front: "
                "pass an integer layout_seed or a layout, or reset() the env before wrapping"
            ) from err
        self.state_to_index, self._index_to_obs = table_index(mdp, table)
        self._index_to_obs.flags.writeable = False
        n = int(self._index_to_obs.shape[0])
        self.observation_space = spaces.Discrete(n)
        self._flat = self._index_to_obs.ndim == 1
        if self._flat:
            self._lookup: Any = {int(o): i for i, o in enumerate(self._index_to_obs)}
        else:
            self._lookup = {row.tobytes(): i for i, row in enumerate(self._index_to_obs)}

    def obs_to_index(self, obs: Any) -> int:
        """The table index of an observation of the wrapped env.

        Raises:
            ValueError: the observation is not one the environment can emit.
        """
        try:
            if self._flat:
                return self._lookup[int(obs)]
            return self._lookup[np.asarray(obs, dtype=np.int64).tobytes()]
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"obs {obs!r} is not an observation this environment can emit from its start "
                f"state (the table has {len(self._lookup)} entries)"
            ) from None

    def index_to_obs(self, index: int) -> Any:
        """The observation of the wrapped env behind a table index."""
        if not 0 <= int(index) < len(self._lookup):
            raise ValueError(f"index must be in [0, {len(self._lookup)}), got {index!r}")
        obs = self._index_to_obs[int(index)]
        return int(obs) if self._flat else obs

    def observation(self, observation: Any) -> int:
        """Map one observation to its index."""
        return self.obs_to_index(observation)
