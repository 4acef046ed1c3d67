"""Vector envs whose sub-envs share one MDP: DistillChain-v0 and DistillOscillation-v0."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode
from numpy.typing import NDArray

from gridworld_env.base import TabularEnv, check_no_unknown_kwargs
from gridworld_env.mdp import TabularMDP
from gridworld_env.registration import MAX_EPISODE_STEPS
from gridworld_env.vector.base import TabularVectorEnv

__all__ = [
    "DistillChainVectorEnv",
    "DistillOscillationVectorEnv",
]


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
