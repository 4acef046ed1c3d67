"""The environment a batch of teachers trains on: one vector env per chunk of MDPs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

import gridworld_env  # noqa: F401  (registers the environment ids)

__all__ = [
    "TeacherEnv",
]


_ENV_IDS = ("DistillGrid-v0", "DistillChain-v0", "DistillOscillation-v0")


class TeacherEnv:
    """How to build vector envs whose sub-envs are given MDPs of one family.

    MDP ``i`` of ``DistillGrid-v0`` has ``layout_seed = layout_base + i``, unless the env kwargs
    fix the layout (a ``layout`` map or an integer ``layout_seed``): then every MDP is that one
    layout. ``DistillChain-v0`` and ``DistillOscillation-v0`` have one MDP for every index.
    Observations are table indices (``"index"``, or ``"partial_index"`` for the grid's
    ``observation="partial"``), numbered as ``TableIndexWrapper`` numbers the single env's.

    Args:
        env_id: ``DistillGrid-v0``, ``DistillChain-v0`` or ``DistillOscillation-v0``.
        env_kwargs: keyword arguments of the single env (JSON values).
        layout_base: layout seed of MDP 0 when the kwargs do not fix the layout.
    """

    def __init__(
        self,
        env_id: str = "DistillGrid-v0",
        env_kwargs: Mapping[str, Any] | None = None,
        layout_base: int = 0,
    ) -> None:
        if env_id not in _ENV_IDS:
            raise ValueError(f"env_id must be one of {_ENV_IDS}, got {env_id!r}")
        kwargs = dict(env_kwargs or {})
        for key in ("num_envs", "layouts", "render_mode", "max_episode_steps"):
            if key in kwargs:
                raise ValueError(f"env_kwargs must not set {key!r} (the trainers set it)")
        if isinstance(layout_base, bool) or not isinstance(layout_base, (int, np.integer)):
            raise ValueError(f"layout_base must be an integer, got {layout_base!r}")
        self.env_id = env_id
        self.env_kwargs = kwargs
        self.grid = env_id == "DistillGrid-v0"
        self._vector_kwargs = dict(kwargs)
        self.layout_base: int | None = None
        self._shared_layout: tuple[str, ...] | None = None
        self._layouts: dict[int, tuple[str, ...]] = {}
        if self.grid:
            observation = kwargs.get("observation", "full")
            if observation not in ("full", "partial"):
                raise ValueError(
                    f"env_kwargs['observation'] must be 'full' or 'partial', got {observation!r}"
                )
            self._vector_kwargs["observation"] = (
                "index" if observation == "full" else "partial_index"
            )
            seed = kwargs.get("layout_seed")
            if "layout_seed" in kwargs and (
                isinstance(seed, bool) or not isinstance(seed, int) or seed < 0
            ):
                raise ValueError(
                    "env_kwargs['layout_seed'] must be a non-negative integer (teachers need "
                    f"fixed layouts), got {seed!r}"
                )
            if "layout" in kwargs or "layout_seed" in kwargs:
                single = gym.make(env_id, **kwargs).unwrapped
                self._shared_layout = tuple(single.layout)  # type: ignore[attr-defined]
                self._vector_kwargs.pop("layout_seed", None)
                self._vector_kwargs["layout"] = list(self._shared_layout)
            else:
                if layout_base < 0:
                    raise ValueError(f"layout_base must be >= 0, got {layout_base}")
                self.layout_base = int(layout_base)
        else:
            if "observation" in kwargs:
                raise ValueError(f"env_kwargs of {env_id} must not set 'observation'")
            self._vector_kwargs["observation"] = "index"
        # Build one single env now so that bad kwargs fail early with the env's own message.
        self.probe = gym.make(env_id, **self.single_kwargs(0)).unwrapped

    def layout_seed(self, mdp: int) -> int:
        """Layout seed of MDP ``mdp`` (-1 if the MDPs have none of their own)."""
        if self.layout_base is None:
            return int(self.env_kwargs.get("layout_seed", -1))
        return self.layout_base + int(mdp)

    def single_kwargs(self, mdp: int) -> dict[str, Any]:
        """Keyword arguments of the single env of MDP ``mdp``."""
        kwargs = dict(self.env_kwargs)
        if self.layout_base is not None:
            kwargs["layout_seed"] = self.layout_base + int(mdp)
        return kwargs

    @property
    def n_states(self) -> int:
        """States per MDP."""
        return int(self.probe.mdp.n_states)  # type: ignore[attr-defined]

    @property
    def n_actions(self) -> int:
        """Actions per MDP."""
        return int(self.probe.mdp.n_actions)  # type: ignore[attr-defined]

    @property
    def observation_size(self) -> int:
        """Length of one raw observation (1, or ``view_size**2`` for partial views)."""
        table = np.asarray(self.probe.observation_of_state)  # type: ignore[attr-defined]
        return 1 if table.ndim == 1 else int(table.shape[1])

    def make_vec(self, mdps: Sequence[int], parallel: bool = False) -> Any:
        """A vector env whose sub-env ``j`` is MDP ``mdps[j]`` (table-index observations).

        ``parallel``: step on numba's threads (the vector env's ``parallel``; off by default,
        see :data:`THREAD_MIN_ACTORS`).
        """
        mdps = [int(m) for m in mdps]
        kwargs = dict(self._vector_kwargs)
        kwargs["parallel"] = bool(parallel)
        if self.layout_base is not None:
            first = mdps[0]
            if mdps != list(range(first, first + len(mdps))):
                missing = [m for m in dict.fromkeys(mdps) if m not in self._layouts]
                if missing:
                    self._remember_layouts(missing)
                kwargs["layouts"] = [list(self._layouts[m]) for m in mdps]
            else:
                kwargs["layout_seed"] = self.layout_base + first
        return gym.make_vec(
            self.env_id, num_envs=len(mdps), vectorization_mode="vector_entry_point", **kwargs
        )

    def _remember_layouts(self, mdps: Sequence[int]) -> None:
        assert self.layout_base is not None
        for m in mdps:
            single = gym.make(self.env_id, **self.single_kwargs(m)).unwrapped
            self._layouts[m] = tuple(single.layout)  # type: ignore[attr-defined]
