"""A Gymnasium environment that samples its dynamics from a :class:`TabularMDP`.

Every environment of the package derives from :class:`TabularEnv`: a subclass builds the model
and the table of observations once (``_build``), and this class does the rest. Stepping reads
plain Python lists compiled from the model (about ten times faster than NumPy scalar indexing)
and draws its uniforms from ``self.np_random`` in blocks, so a step costs well under a
microsecond of Python.
"""

from __future__ import annotations

import inspect
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from gridworld_env.mdp import TabularMDP

__all__ = [
    "TabularEnv",
    "check_action",
    "check_int",
    "check_no_unknown_kwargs",
    "check_render_mode",
]

_UNIFORM_BLOCK = 1024


def check_int(name: str, value: Any, minimum: int) -> int:
    """Return ``value`` as an int if it is an integer >= ``minimum``, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_no_unknown_kwargs(cls: type, unknown: Mapping[str, Any]) -> None:
    """Refuse keyword arguments that ``cls.__init__`` does not take, listing the accepted ones.

    Python's own message ("got an unexpected keyword argument") names the argument but not what
    is accepted; envs take ``**unknown`` and call this first.

    Raises:
        TypeError: ``unknown`` is not empty (the type Python raises for a bad keyword).
    """
    if not unknown:
        return
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    accepted = [
        name
        for name, param in inspect.signature(cls).parameters.items()
        if name != "self" and param.kind in kinds
    ]
    names = ", ".join(repr(name) for name in unknown)
    raise TypeError(
        f"{cls.__name__} got unknown keyword argument(s) {names}; accepted keyword arguments: "
        f"{', '.join(accepted) or '(none)'}"
    )


def check_render_mode(render_mode: Any, modes: Sequence[str]) -> str | None:
    """Return ``render_mode`` if it is ``None`` or one of ``modes``, else raise a clear error."""
    if render_mode is not None and render_mode not in modes:
        raise ValueError(f"render_mode must be None or one of {list(modes)}, got {render_mode!r}")
    return render_mode


def check_action(action: Any, n_actions: int) -> int:
    """Return ``action`` as a Python int in ``[0, n_actions)``, or raise a clear error."""
    if type(action) is not int:
        if (
            isinstance(action, (np.integer, np.ndarray))
            and np.ndim(action) == 0
            and np.issubdtype(np.asarray(action).dtype, np.integer)
        ):
            action = int(action)
        else:
            raise ValueError(
                f"action must be an integer in [0, {n_actions}) (Discrete({n_actions})), "
                f"got {action!r}"
            )
    if not 0 <= action < n_actions:
        raise ValueError(
            f"action must be in [0, {n_actions}) (Discrete({n_actions})), got {action}"
        )
    return action


class TabularEnv(gym.Env):
    """Base class: an episodic environment whose dynamics are a :class:`TabularMDP`.

    Subclasses set ``observation_space``/``action_space`` and call :meth:`_set_model` with the
    model and its ``observation_of_state`` table. ``info["state"]`` is the true state index after
    every ``reset`` and ``step``. When the episode ends by absorption into a state without an
    observation (``observation_of_state`` row of -1, e.g. ``s_term``) the previous observation is
    repeated.
    """

    metadata: dict[str, Any] = {"render_modes": [], "render_fps": 4}

    _mdp: TabularMDP | None = None
    _state: int = -1
    _obs_state: int = -1  # the state whose observation is current (differs after absorption)
    _obs: Any = None

    # ----------------------------------------------------------- model set-up
    def _set_model(self, mdp: TabularMDP, observation_of_state: NDArray[np.int64]) -> None:
        self._mdp = mdp
        obs_table = np.array(observation_of_state, dtype=np.int64)
        obs_table.flags.writeable = False
        self._observation_of_state = obs_table
        has_obs: NDArray[np.bool_] = np.all(obs_table.reshape(obs_table.shape[0], -1) >= 0, axis=1)
        self._has_obs: list[bool] = [bool(flag) for flag in has_obs]
        # Array observations are copied on return (Gymnasium asks for fresh objects per call).
        self._copy_obs = obs_table.ndim > 1
        if obs_table.ndim == 1:
            self._obs_list: list[Any] = obs_table.tolist()
        else:
            self._obs_list = list(obs_table)  # read-only row views, returned as observations
        self._n_actions = mdp.n_actions
        self._terminal = mdp.terminal.tolist()
        # Per (state, row): (cumulative probabilities, successors, rewards) of the outcomes with
        # positive probability. Cumulative probabilities are normalised so the last entry is
        # exactly 1.0 (x / x == 1 in IEEE arithmetic), hence u in [0, 1) always lands on one.
        # _dynamics[s][a] points at the shared tuple of a's row: one lookup per step.
        action_rows = mdp.action_rows.tolist()
        self._dynamics: list[list[tuple[list[float], list[int], list[float]]]] = []
        for s in range(mdp.n_states):
            row_tuples = []
            for k in range(mdp.n_rows):
                keep = mdp.next_probs[s, k] > 0
                cum = np.cumsum(mdp.next_probs[s, k][keep])
                row_tuples.append(
                    (
                        (cum / cum[-1]).tolist(),
                        mdp.next_states[s, k][keep].tolist(),
                        mdp.next_rewards[s, k][keep].tolist(),
                    )
                )
            self._dynamics.append([row_tuples[k] for k in action_rows])
        init_cum = np.cumsum(mdp.initial)
        self._initial_cum = (init_cum / init_cum[-1]).tolist()
        self._uniforms: list[float] = []
        self._state = -1

    @property
    def mdp(self) -> TabularMDP:
        """The exact model of the environment (:class:`TabularMDP`)."""
        if self._mdp is None:
            raise RuntimeError(
                "the environment has no model yet: with layout_seed=None the layout is drawn at "
                "the first reset(); call reset() first or pass an integer layout_seed"
            )
        return self._mdp

    @property
    def observation_of_state(self) -> NDArray[np.int64]:
        """Observation of each state: ``[S]`` or ``[S, D]`` int64, -1 where there is none."""
        self.mdp  # noqa: B018 -- raises the clear error when there is no model yet
        return self._observation_of_state

    # ------------------------------------------------------------- randomness
    @property
    def np_random(self) -> np.random.Generator:
        """The environment's generator (every random draw goes through it)."""
        return super().np_random

    @np_random.setter
    def np_random(self, value: np.random.Generator) -> None:
        self._np_random = value
        self._uniforms = []

    def _refill_uniforms(self) -> list[float]:
        # Uniforms are drawn from np_random in blocks: same seed, same sequence.
        self._uniforms = self.np_random.random(_UNIFORM_BLOCK).tolist()[::-1]
        return self._uniforms

    def _uniform(self) -> float:
        return (self._uniforms or self._refill_uniforms()).pop()

    # ---------------------------------------------------------------- gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Start an episode in a state drawn from ``mdp.initial``; ``info["state"]`` is it."""
        super().reset(seed=seed)
        if seed is not None:
            self._uniforms = []
        self._prepare_reset()
        s = bisect_right(self._initial_cum, self._uniform())
        self._state = self._obs_state = s
        self._obs = self._obs_list[s]
        return (self._obs.copy() if self._copy_obs else self._obs), {"state": s}

    def _prepare_reset(self) -> None:
        """Hook run by :meth:`reset` before the start state is drawn (e.g. draw a layout)."""

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Sample the next state from the model; the reward is the outcome's reward."""
        s = self._state
        if s < 0:
            raise RuntimeError("step() called before reset(); call env.reset() first")
        if type(action) is not int or action < 0:
            action = check_action(action, self._n_actions)
        try:
            cum, succ, rew = self._dynamics[s][action]
        except IndexError:
            check_action(action, self._n_actions)
            raise
        # Inlined self._uniform(): this is the hot path.
        i = bisect_right(cum, (self._uniforms or self._refill_uniforms()).pop())
        s_next = succ[i]
        self._state = s_next
        if self._has_obs[s_next]:
            self._obs = self._obs_list[s_next]
            self._obs_state = s_next
        obs = self._obs.copy() if self._copy_obs else self._obs
        return obs, rew[i], self._terminal[s_next], False, {"state": s_next}

    @property
    def state(self) -> int:
        """The current true state index (-1 before the first reset)."""
        return self._state
