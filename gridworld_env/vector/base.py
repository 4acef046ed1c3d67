"""TabularVectorEnv: the batched vector env every DistillGrid family shares."""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numba
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space
from numpy.typing import NDArray

from gridworld_env import kernels
from gridworld_env.mdp import TabularMDP
from gridworld_env.vector.models import StackedModels, readonly
from gridworld_env.wrappers import table_index

__all__ = [
    "INDEX_MODES",
    "PARALLEL_MIN_ENVS",
    "UNIFORM_BLOCK_ROWS",
    "UNIFORM_BLOCK_VALUES",
    "TabularVectorEnv",
]


#: From this many sub-envs on the parallel kernel is used by default (measured on 2 cores: the
#: serial loop wins below about 500 sub-envs, where starting the threads costs more than it saves).
PARALLEL_MIN_ENVS = 512
#: Uniforms are pre-drawn in blocks of at most this many steps ...
UNIFORM_BLOCK_ROWS = 64
#: ... and at most this many values (512 KB).
UNIFORM_BLOCK_VALUES = 65536
INDEX_MODES = ("index", "partial_index")


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
        self._kernel = kernels.step_kernel_parallel if parallel else kernels.step_kernel
        self._compiled: Any = None  # the kernel's machine code, bound at the first step
        self._index_observations = index_observations
        self.single_action_space = spaces.Discrete(n_actions)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._n_actions = n_actions
        if single_observation_space is not None:
            self._set_observation_space(single_observation_space)
        self._installed = False
        self._env_state: NDArray[np.int64] | None = None  # [B, 4], None until the first reset
        self._all_true = readonly(np.ones(self.num_envs, dtype=bool))
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
        outcomes = np.empty((n_envs, *shape), dtype=kernels.OUTCOME_DTYPE)
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
            width = max(width, kernels.pack_outcomes(mdp, key_of_state, outcomes[i]))
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
        self._tables = kernels.StepTables(
            outcomes, self._action_rows, terminal, initial_cum, key_table, obs_rows, self._max_steps
        )
        self._compiled = None
        self._obs_shape: tuple[int, ...] = (n_envs, n_dim) if partial else (n_envs,)
        self._n_states = n_states
        if self._index_observations:
            self._state_to_index: NDArray[np.int64] | None = readonly(
                np.stack([entry[3] for entry in built])
            )
            self._n_indices: NDArray[np.int64] | None = readonly(
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
            key_of_state [B, S])``: the packed outcome records (:mod:`gridworld_env.kernels`),
            each sub-env's cumulative start distribution and the observation key of each state
            (the table index with ``observation="index"``). A loop that maps its uniforms
            through these tables exactly as :mod:`gridworld_env.kernels` does (start state:
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
        return tuple(readonly(t.view()) for t in tables)

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
            next_states=readonly(np.stack([m.next_states for m, _ in pairs])),
            next_probs=readonly(np.stack([m.next_probs for m, _ in pairs])),
            next_rewards=readonly(np.stack([m.next_rewards for m, _ in pairs])),
            action_rows=first.action_rows,
            initial=readonly(np.stack([m.initial for m, _ in pairs])),
            terminal=readonly(np.stack([m.terminal for m, _ in pairs])),
            observation_of_state=readonly(
                np.stack([np.asarray(t, dtype=np.int64) for _, t in pairs])
            ),
            state_to_index=readonly(np.array(state_to_index)),
            n_indices=readonly(np.array(n_indices)),
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
        return self._env_state[:, kernels.STATE].copy()

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
        new._tables = kernels.StepTables(
            new._outcomes,
            self._action_rows,
            new._terminal,
            new._initial_cum,
            new._key_of_state,
            new._obs_rows,
            self._max_steps,
        )
        new._obs_shape = (int(idx.size), *self._obs_shape[1:])
        if self._state_to_index is not None and self._n_indices is not None:
            new._state_to_index = readonly(self._state_to_index[idx])
            new._n_indices = readonly(self._n_indices[idx])
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
            self._env_state = np.zeros((n_envs, kernels.N_ENV_FIELDS), dtype=np.int64)
        row = self._uniform_row()
        obs = np.empty(self._obs_shape, dtype=np.int64)
        states = np.empty(n_envs, dtype=np.int64)
        kernels.reset_kernel(
            mask,
            self._uniforms,
            row,
            self._env_state,
            self._tables,
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
        out = kernels.StepOutputs(
            obs.reshape(n_envs, -1), rewards, terminations, truncations, states
        )
        args = (self._n_chunks, actions, self._uniforms, row, env_state, self._tables, out)
        # Every argument but the actions is this env's own, of fixed types: once bound, the
        # kernel's machine code is called directly for C-contiguous writeable int64 actions.
        if self._compiled is not None and actions.flags.carray:
            bad = self._compiled(*args)
        else:
            bad = self._kernel(*args)
            if actions.flags.carray:
                self._compiled = kernels.compiled_for(self._kernel, args)
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
        states = self._env_state[:, kernels.STATE].tolist()
        obs_states = self._env_state[:, kernels.OBS_STATE].tolist()
        return tuple(
            self._render_one(i, s, o)
            for i, (s, o) in enumerate(zip(states, obs_states, strict=True))
        )

    def _render_one(self, i: int, state: int, obs_state: int) -> Any:
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_kernel", None)
        state.pop("_compiled", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._kernel = kernels.step_kernel_parallel if self.parallel else kernels.step_kernel
        self._compiled = None
