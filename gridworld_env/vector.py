"""A native batched vector environment: many tabular MDPs stepped at once by a compiled kernel.

``gym.make_vec("DistillGrid-v0", num_envs=B, vectorization_mode="vector_entry_point", ...)``
builds a :class:`DistillGridVectorEnv` in which sub-env ``i`` is its own random MDP (layout seed
``layout_seed + i``); the same works for ``DistillChain-v0`` and ``DistillOscillation-v0``, whose
sub-envs all share one MDP. The API is Gymnasium's batched ``reset``/``step`` with next-step
autoreset (``metadata["autoreset_mode"] = AutoresetMode.NEXT_STEP``).

One source of truth
    Every sub-env's model is the :class:`~gridworld_env.TabularMDP` built by the same function as
    the single env (``grid_mdp``/``grid_observation_table``, ``chain_mdp``, ...). The kernels
    read an *outcome table* derived from it (:func:`gridworld_env._kernels.pack_outcomes`:
    duplicate outcomes merged, sorted by probability, cumulative); there is no second copy of
    the rules. :attr:`TabularVectorEnv.models` stacks the exact models for runners.

Randomness
    Every draw comes from the vector env's own ``np_random`` (seeded by ``reset(seed=...)``,
    one generator for the whole batch): uniforms are drawn in blocks of ``[R, B]`` by one
    ``random`` call (``R = min(64, 65536 // B)``), each ``step`` and ``reset`` uses the next row,
    and sub-env ``i`` only reads the ``i``-th entry of it. Results are therefore identical, bit
    for bit, for the serial and the parallel kernel and any number of threads; a ``step`` that
    raises (bad actions) changes nothing and leaves its row unused.

Speed
    The step kernel is compiled by numba (``cache=True``); the parallel version spreads
    contiguous ranges of sub-envs over numba's threads and is chosen from
    :data:`PARALLEL_MIN_ENVS` sub-envs on. The loop is bound by one scattered read per sub-env
    (its outcome record), which it prefetches a few sub-envs ahead. On the 2-core reference
    machine, 1000 random 20x20 MDPs with random actions run at about 3-4e7 env-steps/s with
    discrete observations and 2-2.5e7 with 9x9 partial observations (81 int64 per sub-env per
    step), see ``distill-grid bench``.

Memory per MDP
    The kernel tables of one sub-env (:attr:`TabularVectorEnv.nbytes`): the outcome records
    (``24 S K M`` bytes, ``K <= 5`` rows whatever the number of actions, ``M <= 6`` outcomes;
    merged duplicates usually leave ``M = 5``), ``terminal`` (``S``), the cumulative initial
    distribution and the observation keys (``16 S``) and, for partial observations, the
    observation rows (``S D`` int8). For a 20x20 grid that is 0.20 MB (4 actions) or 0.30 MB
    (any number of actions above 4). The stacked exact models (:attr:`TabularVectorEnv.models`,
    built on first access, then cached) take about as much again, plus ``8 S D`` bytes for
    partial observations. Neither grows with the number of actions: 1000 grid MDPs with 4000
    actions need about 0.6 GB. What grows with ``A`` are a runner's own ``[B, S, A]`` tables
    (12.8 MB per MDP and table for 4000 actions in float64): such runners work in chunks of
    consecutive MDPs, one vector env per chunk built with ``layout_seed=base + chunk_start``
    (the same MDPs as one big batch), with the chunk size from :func:`chunk_size_for`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numba
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space
from numpy.typing import NDArray

from gridworld_env import _kernels
from gridworld_env import layout as lay
from gridworld_env.base import TabularEnv, check_no_unknown_kwargs, check_render_mode
from gridworld_env.grid import GridConfig, grid_mdp, grid_observation_table, make_grid_config
from gridworld_env.mdp import TabularMDP
from gridworld_env.registration import MAX_EPISODE_STEPS
from gridworld_env.wrappers import table_index

__all__ = [
    "PARALLEL_MIN_ENVS",
    "DistillChainVectorEnv",
    "DistillGridVectorEnv",
    "DistillOscillationVectorEnv",
    "StackedModels",
    "TabularVectorEnv",
    "chunk_size_for",
    "env_bytes_per_mdp",
]

#: From this many sub-envs on the parallel kernel is used by default (measured on 2 cores: the
#: serial loop wins below about 500 sub-envs, where starting the threads costs more than it saves).
PARALLEL_MIN_ENVS = 512
#: Uniforms are pre-drawn in blocks of at most this many steps ...
UNIFORM_BLOCK_ROWS = 64
#: ... and at most this many values (512 KB).
UNIFORM_BLOCK_VALUES = 65536
_INDEX_MODES = ("index", "partial_index")


def _readonly(array: NDArray) -> NDArray:
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


# --------------------------------------------------------------------------- base class
class TabularVectorEnv(gym.vector.VectorEnv):
    """Base class: ``B`` sub-envs, each a :class:`~gridworld_env.TabularMDP`, in one kernel.

    Subclasses call :meth:`_setup` and then :meth:`_install` (possibly deferred to the first
    ``reset``, see :meth:`_prepare_reset`) and implement :meth:`_sub_model`.

    ``step(actions)`` takes ``[B]`` integer actions and returns ``(obs, rewards, terminations,
    truncations, infos)`` with ``obs`` ``[B]`` (discrete) or ``[B, D]`` (partial) int64,
    ``rewards`` ``[B]`` float64, ``terminations``/``truncations`` ``[B]`` bool and
    ``infos = {"state": [B] int64 true states, "_state": [B] bool (all True)}``. Autoreset is
    Gymnasium's next-step mode: the step after a sub-env's episode ended resets it (its action
    is ignored) and returns its reset observation with reward 0, not terminated, not truncated.
    ``truncations[i]`` is set when sub-env ``i`` has taken ``max_episode_steps`` steps since its
    reset (as Gymnasium's ``TimeLimit``).
    """

    metadata: dict[str, Any] = {
        "autoreset_mode": AutoresetMode.NEXT_STEP,
        "render_modes": [],
        "render_fps": 4,
    }

    # ------------------------------------------------------------------ set-up
    def _setup(
        self,
        num_envs: Any,
        n_actions: int,
        single_observation_space: spaces.Space | None,
        index_observations: bool,
        max_episode_steps: Any,
        render_mode: str | None,
        parallel: Any,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)):
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        if num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs}")
        if max_episode_steps is not None and (
            isinstance(max_episode_steps, bool)
            or not isinstance(max_episode_steps, (int, np.integer))
            or max_episode_steps < 1
        ):
            raise ValueError(
                f"max_episode_steps must be None (no time limit) or an integer >= 1, got "
                f"{max_episode_steps!r}"
            )
        if parallel not in (None, True, False):
            raise ValueError(f"parallel must be None (automatic), True or False, got {parallel!r}")
        self.num_envs = int(num_envs)
        self.render_mode = render_mode
        self.max_episode_steps: int | None = (
            None if max_episode_steps is None else int(max_episode_steps)
        )
        self._max_steps = 0 if max_episode_steps is None else int(max_episode_steps)
        if parallel is None:
            parallel = self.num_envs >= PARALLEL_MIN_ENVS and numba.get_num_threads() > 1
        self.parallel = bool(parallel)
        self._n_chunks = max(1, numba.get_num_threads())
        self._kernel = _kernels.step_kernel_parallel if parallel else _kernels.step_kernel
        self._index_observations = index_observations
        self.single_action_space = spaces.Discrete(n_actions)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._n_actions = n_actions
        if single_observation_space is not None:
            self._set_observation_space(single_observation_space)
        self._installed = False
        self._env_state: NDArray[np.int64] | None = None  # [B, 4], None until the first reset
        self._all_true = _readonly(np.ones(self.num_envs, dtype=bool))
        n_rows = max(1, min(UNIFORM_BLOCK_ROWS, UNIFORM_BLOCK_VALUES // self.num_envs))
        self._uniforms = np.empty((n_rows, self.num_envs))
        self._n_uniform_rows = n_rows
        self._used_rows = n_rows

    def _set_observation_space(self, space: spaces.Space) -> None:
        self.single_observation_space = space
        self.observation_space = batch_space(space, self.num_envs)

    def _sub_model(self, i: int) -> tuple[TabularMDP, NDArray[np.int64]]:
        """``(mdp, observation_of_state)`` of sub-env ``i`` (as the single env has them)."""
        raise NotImplementedError

    def _install(self) -> None:
        """Build the kernel tables from every sub-env's model (and, if needed, index tables)."""
        n_envs = self.num_envs
        built: list[tuple[Any, ...]] = []
        done: dict[int, tuple[Any, ...]] = {}  # sub-envs sharing one model share its tables
        for i in range(n_envs):
            mdp, table = self._sub_model(i)
            shared = done.get(id(mdp))
            if shared is not None and shared[0] is mdp and shared[5] is table:
                built.append(shared[:5])
                continue
            rows = np.asarray(table, dtype=np.int64).reshape(mdp.n_states, -1)
            has_obs = np.all(rows >= 0, axis=1)
            state_to_index, n_index = None, 0
            if self._index_observations:
                state_to_index, index_to_obs = table_index(mdp, table)
                key_of_state = state_to_index
                n_index = int(index_to_obs.shape[0])
            elif rows.shape[1] == 1:
                key_of_state = rows[:, 0]
            else:
                key_of_state = np.where(has_obs, np.arange(mdp.n_states), -1)
            built.append((mdp, key_of_state, rows, state_to_index, n_index))
            done[id(mdp)] = (*built[-1], table)
        first = built[0][0]
        shape = first.next_states.shape
        for i, (mdp, _, _, _, _) in enumerate(built):
            if mdp.next_states.shape != shape or not np.array_equal(
                mdp.action_rows, first.action_rows
            ):
                raise ValueError(
                    f"all sub-envs must share the numbers of states, rows and actions; sub-env "
                    f"{i} has model shape {mdp.next_states.shape}, sub-env 0 {shape}"
                )
        n_states = shape[0]
        n_dim = 0 if self._index_observations else built[0][2].shape[1]
        partial = n_dim > 1
        outcomes = np.empty((n_envs, *shape), dtype=_kernels.OUTCOME_DTYPE)
        width = 1
        terminal = np.empty((n_envs, n_states), dtype=bool)
        initial_cum = np.empty((n_envs, n_states))
        key_table = np.empty((n_envs, n_states), dtype=np.int64)
        obs_rows = np.empty((n_envs, n_states, n_dim) if partial else (1, 1, 0), dtype=np.int8)
        first_with: dict[int, int] = {}  # id(mdp) -> first sub-env packed with that model
        for i, entry in enumerate(built):
            j = first_with.get(id(entry[0]))
            if j is not None and built[j][0] is entry[0] and built[j][1] is entry[1]:
                outcomes[i], terminal[i] = outcomes[j], terminal[j]
                initial_cum[i], key_table[i] = initial_cum[j], key_table[j]
                if partial:
                    obs_rows[i] = obs_rows[j]
                continue
            first_with[id(entry[0])] = i
            mdp, key_of_state, rows, _, _ = entry
            width = max(width, _kernels.pack_outcomes(mdp, key_of_state, outcomes[i]))
            terminal[i] = mdp.terminal
            cum = np.cumsum(mdp.initial)
            initial_cum[i] = cum / cum[-1]
            key_table[i] = key_of_state
            if partial:
                if rows.min() < -1 or rows.max() > np.iinfo(np.int8).max:
                    raise ValueError("partial observations must be small cell codes")
                obs_rows[i] = rows
        if width < outcomes.shape[3]:  # drop records no row needs
            outcomes = np.ascontiguousarray(outcomes[..., :width])
        self._outcomes = outcomes
        self._terminal = terminal
        self._initial_cum = initial_cum
        self._key_of_state = key_table
        self._obs_rows = obs_rows
        self._action_rows = np.array(first.action_rows, dtype=np.int64)
        self._tables = (
            outcomes,
            self._action_rows,
            terminal,
            initial_cum,
            key_table,
            self._max_steps,
            obs_rows,
        )
        self._obs_shape: tuple[int, ...] = (n_envs, n_dim) if partial else (n_envs,)
        self._n_states = n_states
        if self._index_observations:
            self._state_to_index: NDArray[np.int64] | None = _readonly(
                np.stack([entry[3] for entry in built])
            )
            self._n_indices: NDArray[np.int64] | None = _readonly(
                np.array([entry[4] for entry in built], dtype=np.int64)
            )
            self._set_observation_space(spaces.Discrete(int(self._n_indices.max())))
        else:
            self._state_to_index = self._n_indices = None
        self._models: StackedModels | None = None
        self._installed = True

    def _prepare_reset(self) -> None:
        """Hook run by :meth:`reset` before the start states are drawn (e.g. draw layouts)."""

    def _require_models(self) -> None:
        if not self._installed:
            raise RuntimeError(
                "the vector env has no models yet: with layout_seed=None the layouts are drawn "
                "at the first reset(); call reset() first or pass an integer layout_seed"
            )

    # ---------------------------------------------------------------- models
    def mdp(self, i: int) -> TabularMDP:
        """The exact model of sub-env ``i`` (:class:`~gridworld_env.TabularMDP`)."""
        self._require_models()
        return self._sub_model(self._env_index(i))[0]

    def observation_of_state(self, i: int) -> NDArray[np.int64]:
        """The single env's ``observation_of_state`` of sub-env ``i`` (before any indexing)."""
        self._require_models()
        return self._sub_model(self._env_index(i))[1]

    def _env_index(self, i: Any) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise ValueError(f"i must be a sub-env index in [0, {self.num_envs}), got {i!r}")
        if not 0 <= i < self.num_envs:
            raise ValueError(f"i must be a sub-env index in [0, {self.num_envs}), got {i}")
        return int(i)

    @property
    def models(self) -> StackedModels:
        """The stacked exact models of every sub-env (built on first access, then cached)."""
        self._require_models()
        if self._models is None:
            self._models = self._stack_models()
        return self._models

    def outcome_tables(self) -> tuple[NDArray, ...]:
        """The tables the compiled step kernel reads, for compiled consumers.

        Returns:
            ``(outcomes [B, S, K, W], action_rows [A], terminal [B, S], initial_cum [B, S],
            key_of_state [B, S])``: the packed outcome records (:mod:`gridworld_env._kernels`),
            each sub-env's cumulative start distribution and the observation key of each state
            (the table index with ``observation="index"``). A loop that maps its uniforms
            through these tables exactly as :mod:`gridworld_env._kernels` does (start state:
            first ``initial_cum > u``; step: first record with ``cum > u``) reproduces this
            env's dynamics bit for bit. Read-only views; do not modify.
        """
        self._require_models()
        tables = (
            self._outcomes,
            self._action_rows,
            self._terminal,
            self._initial_cum,
            self._key_of_state,
        )
        return tuple(_readonly(t.view()) for t in tables)

    def _stack_models(self) -> StackedModels:
        pairs = [self._sub_model(i) for i in range(self.num_envs)]
        if self._state_to_index is None or self._n_indices is None:
            indexed = [table_index(mdp, table) for mdp, table in pairs]
            state_to_index = np.stack([s2i for s2i, _ in indexed])
            n_indices = np.array([i2o.shape[0] for _, i2o in indexed], dtype=np.int64)
        else:
            state_to_index, n_indices = self._state_to_index, self._n_indices
        first = pairs[0][0]
        return StackedModels(
            next_states=_readonly(np.stack([m.next_states for m, _ in pairs])),
            next_probs=_readonly(np.stack([m.next_probs for m, _ in pairs])),
            next_rewards=_readonly(np.stack([m.next_rewards for m, _ in pairs])),
            action_rows=first.action_rows,
            initial=_readonly(np.stack([m.initial for m, _ in pairs])),
            terminal=_readonly(np.stack([m.terminal for m, _ in pairs])),
            observation_of_state=_readonly(
                np.stack([np.asarray(t, dtype=np.int64) for _, t in pairs])
            ),
            state_to_index=_readonly(np.array(state_to_index)),
            n_indices=_readonly(np.array(n_indices)),
        )

    @property
    def nbytes(self) -> int:
        """Bytes held by the kernel tables (not counting the cached :attr:`models`)."""
        self._require_models()
        return int(
            self._outcomes.nbytes
            + self._terminal.nbytes
            + self._initial_cum.nbytes
            + self._key_of_state.nbytes
            + self._obs_rows.nbytes
        )

    @property
    def states(self) -> NDArray[np.int64] | None:
        """Copy of the current true states ``[B]`` (``None`` before the first reset)."""
        if self._env_state is None:
            return None
        return self._env_state[:, _kernels.STATE].copy()

    def select(self, indices: Any, parallel: bool | None = None) -> TabularVectorEnv:
        """A new vector env whose sub-env ``j`` is sub-env ``indices[j]`` of this one.

        No model is built again: the new env takes this env's packed kernel tables by index
        (indices may repeat: several copies of one MDP), which is far cheaper than building the
        same sub-envs from their layouts, and it steps exactly as such a freshly built env
        would for the same ``reset`` seed. It has its own state (call ``reset`` first) and its
        own generator; time limit, render mode and observations are this env's.

        Args:
            indices: ``[B']`` integer sub-env indices in ``[0, B)``, ``B' >= 1``.
            parallel: as the constructor's (``None``: automatic for ``B'`` sub-envs).

        Returns:
            A vector env of the same class with ``B'`` sub-envs.
        """
        self._require_models()
        idx = np.asarray(indices)
        if (
            idx.ndim != 1
            or idx.size == 0
            or idx.dtype.kind not in "iu"
            or idx.min() < 0
            or idx.max() >= self.num_envs
        ):
            raise ValueError(
                f"indices must be a non-empty 1-D integer array with values in "
                f"[0, {self.num_envs}), got {indices!r}"
            )
        idx = idx.astype(np.int64)
        new = copy.copy(self)
        native = None if self._index_observations else self.single_observation_space
        new._setup(
            int(idx.size),
            self._n_actions,
            native,
            self._index_observations,
            self.max_episode_steps,
            self.render_mode,
            parallel,
        )
        new._np_random, new._np_random_seed = None, None
        new.closed = False
        new.spec = None
        new._outcomes = self._outcomes[idx]
        new._terminal = self._terminal[idx]
        new._initial_cum = self._initial_cum[idx]
        new._key_of_state = self._key_of_state[idx]
        partial = self._obs_rows.shape[2] > 0
        new._obs_rows = self._obs_rows[idx] if partial else self._obs_rows
        new._tables = (
            new._outcomes,
            self._action_rows,
            new._terminal,
            new._initial_cum,
            new._key_of_state,
            self._max_steps,
            new._obs_rows,
        )
        new._obs_shape = (int(idx.size), *self._obs_shape[1:])
        if self._state_to_index is not None and self._n_indices is not None:
            new._state_to_index = _readonly(self._state_to_index[idx])
            new._n_indices = _readonly(self._n_indices[idx])
            new._set_observation_space(spaces.Discrete(int(new._n_indices.max())))
        new._models = None
        new._installed = True
        new._select_own(self, idx)
        return new

    def _select_own(self, source: TabularVectorEnv, idx: NDArray[np.int64]) -> None:
        """Hook of :meth:`select`: take the subclass's per-sub-env data of ``source`` by index."""

    # ---------------------------------------------------------------- gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.int64], dict[str, Any]]:
        """Reset the sub-envs; ``infos["state"]`` holds their true states ``[B]``.

        Args:
            seed: seeds the vector env's ``np_random`` (one generator for the whole batch), so
                the whole batch is reproducible.
            options: ``{"reset_mask": [B] bool}`` resets only the masked sub-envs (the others
                keep their state; their current observation is returned); other keys are ignored.

        Returns:
            ``(obs, infos)``: ``obs`` ``[B]`` or ``[B, D]`` int64, ``infos["state"]`` ``[B]``
            int64 and ``infos["_state"]`` ``[B]`` bool (the reset mask).
        """
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0
        ):
            raise ValueError(f"seed must be None or a non-negative integer, got {seed!r}")
        super().reset(seed=None if seed is None else int(seed))
        if seed is not None:
            self._used_rows = self._n_uniform_rows  # drop uniforms of the old seed
        self._prepare_reset()
        self._require_models()
        n_envs = self.num_envs
        mask = self._all_true
        if options is not None and options.get("reset_mask") is not None:
            mask = np.asarray(options["reset_mask"])
            if mask.shape != (n_envs,) or mask.dtype != np.bool_:
                raise ValueError(
                    f"options['reset_mask'] must be a bool array of shape ({n_envs},), got "
                    f"shape {mask.shape} and dtype {mask.dtype}"
                )
            if self._env_state is None and not mask.all():
                raise ValueError(
                    "options['reset_mask'] must be all True at the first reset (every sub-env "
                    "needs a state)"
                )
        if self._env_state is None:
            self._env_state = np.zeros((n_envs, _kernels.N_ENV_FIELDS), dtype=np.int64)
        row = self._uniform_row()
        obs = np.empty(self._obs_shape, dtype=np.int64)
        states = np.empty(n_envs, dtype=np.int64)
        _kernels.reset_kernel(
            mask,
            self._uniforms,
            row,
            self._env_state,
            self._initial_cum,
            self._key_of_state,
            self._obs_rows,
            obs.reshape(n_envs, -1),
            states,
        )
        self._used_rows = row + 1
        mask_out = self._all_true if mask is self._all_true else mask.copy()
        return obs, {"state": states, "_state": mask_out}

    def step(
        self, actions: Any
    ) -> tuple[
        NDArray[np.int64],
        NDArray[np.float64],
        NDArray[np.bool_],
        NDArray[np.bool_],
        dict[str, Any],
    ]:
        """Step every sub-env with its action (next-step autoreset; see the class docstring).

        Args:
            actions: ``[B]`` integer array (or sequence) with values in ``[0, A)``.

        Returns:
            ``(obs, rewards, terminations, truncations, infos)``: ``[B]`` or ``[B, D]`` int64,
            ``[B]`` float64, ``[B]`` bool, ``[B]`` bool, and ``infos["state"]`` ``[B]`` int64
            (true states) with ``infos["_state"]`` ``[B]`` bool (all True).

        Raises:
            ValueError: ``actions`` of the wrong shape, dtype or range (nothing is changed).
            RuntimeError: ``step`` before the first ``reset``.
        """
        env_state = self._env_state
        if env_state is None:
            raise RuntimeError("step() called before reset(); call envs.reset() first")
        if type(actions) is not np.ndarray or actions.dtype != np.int64:
            actions = self._as_actions(actions)
        n_envs = self.num_envs
        if actions.shape != (n_envs,):
            raise ValueError(
                f"actions must be an integer array of shape ({n_envs},) with values in "
                f"[0, {self._n_actions}), got shape {actions.shape}"
            )
        row = self._used_rows
        if row == self._n_uniform_rows:
            row = self._uniform_row()
        obs = np.empty(self._obs_shape, dtype=np.int64)
        rewards = np.empty(n_envs)
        terminations = np.empty(n_envs, dtype=bool)
        truncations = np.empty(n_envs, dtype=bool)
        states = np.empty(n_envs, dtype=np.int64)
        bad = self._kernel(
            self._n_chunks,
            actions,
            self._uniforms,
            row,
            env_state,
            *self._tables,
            obs.reshape(n_envs, -1),
            rewards,
            terminations,
            truncations,
            states,
        )
        if bad >= 0:  # nothing changed, and this row of uniforms is still unused
            raise ValueError(
                f"actions must lie in [0, {self._n_actions}) (Discrete({self._n_actions})), got "
                f"actions[{bad}] = {actions[bad]}"
            )
        self._used_rows = row + 1
        return obs, rewards, terminations, truncations, {"state": states, "_state": self._all_true}

    def _as_actions(self, actions: Any) -> NDArray[np.int64]:
        array = np.asarray(actions)
        if array.dtype.kind not in "iu":
            raise ValueError(
                f"actions must be an integer array of shape ({self.num_envs},) with values in "
                f"[0, {self._n_actions}), got dtype {array.dtype}"
            )
        # uint64 values above 2**63 wrap to negative int64 and are caught by the range check.
        return array.astype(np.int64)

    # ------------------------------------------------------------- randomness
    def _uniform_row(self) -> int:
        """Index of the next unused row of the uniform block, refilling the block if needed.

        Uniforms are drawn from ``np_random`` in blocks of ``[R, B]`` (one ``random`` call per
        ``R`` steps); each ``step``/``reset`` uses one row, sub-env ``i`` its ``i``-th entry.
        """
        if self._used_rows < self._n_uniform_rows:
            return self._used_rows
        self.np_random.random(out=self._uniforms)
        self._used_rows = 0
        return 0

    @property
    def np_random(self) -> np.random.Generator:
        """The vector env's generator (seeded by ``reset(seed=...)``; every draw uses it)."""
        return super().np_random

    @np_random.setter
    def np_random(self, value: np.random.Generator) -> None:
        self._np_random = value
        self._np_random_seed = -1
        self._used_rows = self._n_uniform_rows  # drop uniforms drawn from the old generator

    def render(self) -> tuple[Any, ...] | None:
        """One frame per sub-env (``None`` without a ``render_mode``)."""
        if self.render_mode is None:
            return None
        if self._env_state is None:
            raise RuntimeError("nothing to render before reset(); call envs.reset() first")
        states = self._env_state[:, _kernels.STATE].tolist()
        obs_states = self._env_state[:, _kernels.OBS_STATE].tolist()
        return tuple(
            self._render_one(i, s, o)
            for i, (s, o) in enumerate(zip(states, obs_states, strict=True))
        )

    def _render_one(self, i: int, state: int, obs_state: int) -> Any:
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_kernel", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._kernel = _kernels.step_kernel_parallel if self.parallel else _kernels.step_kernel


# --------------------------------------------------------------------------- grid
class DistillGridVectorEnv(TabularVectorEnv):
    """``B`` random grid-world MDPs of ``DistillGrid-v0`` in one vector env.

    ```python
    envs = gym.make_vec("DistillGrid-v0", num_envs=1000, vectorization_mode="vector_entry_point",
                        layout_seed=0, observation="index", noise=0.1)
    obs, infos = envs.reset(seed=0)
    obs, rewards, terminations, truncations, infos = envs.step(actions)   # actions: [1000] int
    ```

    ## Arguments

    The keyword arguments of ``DistillGrid-v0`` (validated by the same function), plus:

    - ``num_envs``: ``B >= 1``.
    - ``layout_seed``: ``base`` (default 0): sub-env ``i`` uses layout seed ``base + i``, i.e.
      the layout of ``gym.make("DistillGrid-v0", layout_seed=base + i)`` (same generator, same
      stream). ``None``: at the first ``reset`` an integer ``base`` is drawn from the vector
      env's ``np_random`` (so ``reset(seed=s)`` fixes it) and then kept; until then the models
      are not available. :attr:`layout_seeds` gives the seeds in use.
    - ``layout``: one hand-written map shared by every sub-env (overrides ``layout_seed``).
    - ``layouts``: a list of ``B`` hand-written maps of equal size, one per sub-env.
    - ``observation``: ``"full"`` (``[B]``, the agent's cell), ``"partial"`` (``[B, D]`` cell
      codes of the ``view_size`` window, ``D = view_size**2``), ``"index"`` (``[B]`` table indices
      of the full observations, as ``TableIndexWrapper`` over ``observation="full"`` gives them:
      each sub-env numbers its own reachable cells) or ``"partial_index"`` (``[B]`` table indices
      of the partial observations, as ``TableIndexWrapper`` over ``observation="partial"``:
      aliased windows share an index). With index observations the single observation space is
      ``Discrete(max over sub-envs of n_indices)``; sub-env ``i`` only emits indices below
      ``models.n_indices[i]``. Index modes need fixed layouts (not ``layout_seed=None``).
    - ``max_episode_steps``: time limit per sub-env (default 1000, as the registered id; ``None``
      for none). ``gym.make_vec`` passes the registered value.
    - ``render_mode``: ``None``, ``"ansi"`` or ``"rgb_array"``; :meth:`render` returns one frame
      per sub-env.
    - ``parallel``: ``None`` (automatic: numba threads from ``PARALLEL_MIN_ENVS = 512``
      sub-envs on), ``True``, ``False``; results do not depend on it.
    """

    metadata: dict[str, Any] = {
        "autoreset_mode": AutoresetMode.NEXT_STEP,
        "render_modes": ["ansi", "rgb_array"],
        "render_fps": 4,
    }

    def __init__(
        self,
        num_envs: int = 1,
        width: int | None = None,
        height: int | None = None,
        observation: str = "full",
        view_size: int = 9,
        n_actions: int = 4,
        noise: float = 0.1,
        absorb_prob: float = 0.01,
        wall_prob: float = 1 / 12,
        reward_probs: Mapping[Any, float] | None = None,
        layout_seed: int | None = 0,
        layout: Sequence[str] | None = None,
        layouts: Sequence[Sequence[str]] | None = None,
        max_episode_steps: int | None = MAX_EPISODE_STEPS,
        render_mode: str | None = None,
        parallel: bool | None = None,
        stay_reward: bool = True,
        **unknown: Any,
    ) -> None:
        check_no_unknown_kwargs(type(self), unknown)
        check_render_mode(render_mode, self.metadata["render_modes"])
        modes = ("full", "partial", *_INDEX_MODES)
        if observation not in modes:
            raise ValueError(f"observation must be one of {modes}, got {observation!r}")
        base_observation = "partial" if observation in ("partial", "partial_index") else "full"
        if layout is not None and layouts is not None:
            raise ValueError("pass either layout (one shared map) or layouts (one per sub-env)")
        self.config: GridConfig = make_grid_config(
            width,
            height,
            base_observation,
            view_size,
            n_actions,
            noise,
            absorb_prob,
            wall_prob,
            reward_probs,
            layout_seed,
            layout,
            stay_reward,
        )
        cfg = self.config
        index = observation in _INDEX_MODES
        native: spaces.Space | None = None
        if not index:
            native = (
                spaces.Discrete(cfg.width * cfg.height)
                if observation == "full"
                else spaces.MultiDiscrete(np.full(cfg.view_size**2, lay.N_CELL_CODES, np.int64))
            )
        self.observation = observation
        self._setup(
            num_envs, cfg.n_actions, native, index, max_episode_steps, render_mode, parallel
        )
        self._cells: list[NDArray[np.int8]] | None = None
        self._starts: list[tuple[int, int]] = []
        # Models of the distinct layouts, keyed by id() of their cell array: sub-envs that share
        # a map (a shared `layout=`, or repeats in `layouts=`) share one model.
        self._model_cache: dict[int, tuple[Any, ...]] = {}
        self._layout_seeds: tuple[int, ...] | None = None
        if layouts is not None:
            self._use_layouts(layouts, width, height)
        elif cfg.cells is not None:
            self._cells = [cfg.cells] * self.num_envs
            self._starts = [cfg.start] * self.num_envs
        elif cfg.layout_seed is not None:
            self._draw_layouts(cfg.layout_seed)
        elif index:
            raise ValueError(
                f"observation={observation!r} needs fixed layouts to enumerate the table indices "
                "up front: pass an integer layout_seed, layout or layouts"
            )
        if self._cells is not None:
            self._install()

    def _use_layouts(self, layouts: Any, width: Any, height: Any) -> None:
        if isinstance(layouts, str) or not isinstance(layouts, Sequence):
            raise ValueError(
                f"layouts must be a list of num_envs={self.num_envs} maps (lists of strings), "
                f"got {type(layouts).__name__}"
            )
        if len(layouts) != self.num_envs:
            raise ValueError(
                f"layouts must hold one map per sub-env: num_envs={self.num_envs}, got "
                f"{len(layouts)} maps"
            )
        cfg = self.config
        cells, starts = [], []
        parsed_maps: dict[tuple[str, ...], tuple[Any, Any]] = {}  # identical maps share cells
        for i, one in enumerate(layouts):
            key = tuple(one) if isinstance(one, Sequence) and not isinstance(one, str) else None
            if key is not None and key in parsed_maps:
                cells.append(parsed_maps[key][0])
                starts.append(parsed_maps[key][1])
                continue
            try:
                parsed = make_grid_config(width=width, height=height, layout=one)
            except ValueError as err:
                raise type(err)(f"layouts[{i}]: {err}") from None
            assert parsed.cells is not None
            if parsed.cells.shape != (cfg.height, cfg.width) and i > 0:
                raise ValueError(
                    f"layouts must all have the same size: layouts[0] is "
                    f"{cfg.height}x{cfg.width} (rows x columns), layouts[{i}] is "
                    f"{parsed.cells.shape[0]}x{parsed.cells.shape[1]}"
                )
            if i == 0:
                cfg.height, cfg.width = parsed.cells.shape
                self._set_native_space()
            cells.append(parsed.cells)
            starts.append(parsed.start)
            if key is not None:
                parsed_maps[key] = (parsed.cells, parsed.start)
        self._cells, self._starts = cells, starts

    def _install(self) -> None:
        super()._install()
        self._model_cache.clear()  # only needed while the tables are built (~0.2 MB per map)

    def _set_native_space(self) -> None:
        cfg = self.config
        if self.observation == "full":
            self._set_observation_space(spaces.Discrete(cfg.width * cfg.height))

    def _draw_layouts(self, base: int) -> None:
        cfg = self.config
        self._layout_seeds = tuple(base + i for i in range(self.num_envs))
        self._cells = [cfg.draw_cells(np.random.default_rng(seed)) for seed in self._layout_seeds]
        self._starts = [cfg.start] * self.num_envs

    def _prepare_reset(self) -> None:
        if self._cells is None:
            self._draw_layouts(int(self.np_random.integers(0, 2**31)))
            self._install()

    def _sub_model(self, i: int) -> tuple[TabularMDP, NDArray[np.int64]]:
        assert self._cells is not None
        cfg = self.config
        cells, start = self._cells[i], self._starts[i]
        hit = self._model_cache.get(id(cells))
        if hit is not None and hit[0] is cells and hit[1] == start:
            return hit[2], hit[3]
        mdp = grid_mdp(cells, start, cfg.n_actions, cfg.noise, cfg.absorb_prob, cfg.stay_reward)
        table = grid_observation_table(cells, cfg.observation, cfg.view_size)
        self._model_cache[id(cells)] = (cells, start, mdp, table)
        return mdp, table

    def _select_own(self, source: TabularVectorEnv, idx: NDArray[np.int64]) -> None:
        assert isinstance(source, DistillGridVectorEnv) and source._cells is not None
        self._cells = [source._cells[i] for i in idx]
        self._starts = [source._starts[i] for i in idx]
        seeds = source._layout_seeds
        self._layout_seeds = None if seeds is None else tuple(int(seeds[i]) for i in idx)
        self._model_cache = {}

    @property
    def layout_seeds(self) -> tuple[int, ...] | None:
        """Layout seed of each sub-env (``None`` for hand-written maps or before the draw)."""
        return self._layout_seeds

    @property
    def cells(self) -> tuple[NDArray[np.int8], ...]:
        """``[H, W]`` cell codes of each sub-env's layout."""
        self._require_models()
        assert self._cells is not None
        return tuple(self._cells)

    @property
    def layouts(self) -> tuple[tuple[str, ...], ...]:
        """Each sub-env's layout as a tuple of strings (``layout=`` of the single env)."""
        return tuple(
            lay.cells_to_strings(cells, start)
            for cells, start in zip(self.cells, self._starts, strict=True)
        )

    def _render_one(self, i: int, state: int, obs_state: int) -> Any:
        from gridworld_env import rendering

        cfg = self.config
        assert self._cells is not None
        agent = divmod(obs_state, cfg.width)
        if self.render_mode == "ansi":
            return rendering.render_ansi(self._cells[i], self._starts[i], agent)
        view = cfg.view_size if cfg.observation == "partial" else None
        return rendering.render_rgb(self._cells[i], self._starts[i], agent, view)


# ----------------------------------------------------------- one MDP shared by all
class _SharedModelVectorEnv(TabularVectorEnv):
    """``B`` copies of one single env's MDP (environments without layout randomness)."""

    metadata: dict[str, Any] = {
        "autoreset_mode": AutoresetMode.NEXT_STEP,
        "render_modes": ["ansi"],
        "render_fps": 4,
    }

    def _build_from(
        self,
        single: TabularEnv,
        num_envs: Any,
        observation: Any,
        max_episode_steps: Any,
        render_mode: str | None,
        parallel: Any,
    ) -> None:
        if observation not in (None, "index"):
            raise ValueError(
                f"observation must be None (the single env's observations) or 'index' (table "
                f"indices), got {observation!r}"
            )
        self._single = single
        self.observation = observation
        index = observation == "index"
        space = None if index else single.observation_space
        n_actions = int(single.action_space.n)  # type: ignore[attr-defined]
        self._setup(num_envs, n_actions, space, index, max_episode_steps, render_mode, parallel)
        self._install()

    def _sub_model(self, i: int) -> tuple[TabularMDP, NDArray[np.int64]]:
        return self._single.mdp, self._single.observation_of_state

    def _render_one(self, i: int, state: int, obs_state: int) -> Any:
        single = self._single
        # The single env renders from its current state: point it at sub-env i's.
        single._state, single._obs_state = state, obs_state
        return single.render()


class DistillChainVectorEnv(_SharedModelVectorEnv):
    """``B`` copies of the ``DistillChain-v0`` corridor in one vector env.

    Arguments: those of ``DistillChain-v0`` (``length``, ``n_actions``, ``noise``,
    ``absorb_prob``, ``render_mode``), plus ``num_envs``, ``max_episode_steps`` (default 1000),
    ``parallel`` (see :class:`DistillGridVectorEnv`) and ``observation``: ``None`` (the cell
    index, as the single env) or ``"index"`` (table indices, as ``TableIndexWrapper``).
    """

    def __init__(
        self,
        num_envs: int = 1,
        length: int = 11,
        n_actions: int = 2,
        noise: float = 0.0,
        absorb_prob: float = 0.01,
        observation: str | None = None,
        max_episode_steps: int | None = MAX_EPISODE_STEPS,
        render_mode: str | None = None,
        parallel: bool | None = None,
        **unknown: Any,
    ) -> None:
        check_no_unknown_kwargs(type(self), unknown)
        from gridworld_env.chain import DistillChainEnv

        single = DistillChainEnv(
            length=length,
            n_actions=n_actions,
            noise=noise,
            absorb_prob=absorb_prob,
            render_mode=render_mode,
        )
        self._build_from(single, num_envs, observation, max_episode_steps, render_mode, parallel)


class DistillOscillationVectorEnv(_SharedModelVectorEnv):
    """``B`` copies of the ``DistillOscillation-v0`` MDP in one vector env.

    Arguments: ``render_mode`` (as ``DistillOscillation-v0``), ``num_envs``,
    ``max_episode_steps`` (default 1000), ``parallel`` (see :class:`DistillGridVectorEnv`) and
    ``observation``: ``None`` (the aliased observation, as the single env) or ``"index"``.
    """

    def __init__(
        self,
        num_envs: int = 1,
        observation: str | None = None,
        max_episode_steps: int | None = MAX_EPISODE_STEPS,
        render_mode: str | None = None,
        parallel: bool | None = None,
        **unknown: Any,
    ) -> None:
        check_no_unknown_kwargs(type(self), unknown)
        from gridworld_env.oscillation import DistillOscillationEnv

        single = DistillOscillationEnv(render_mode=render_mode)
        self._build_from(single, num_envs, observation, max_episode_steps, render_mode, parallel)
