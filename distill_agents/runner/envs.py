"""Vector envs for the runner's chunks of MDPs, and the kept builds of their outcome tables.

:class:`EnvBuilder` rebuilds the teachers' MDPs as sub-envs of the native vector env
(:mod:`gridworld_env.vector`, table-index observations); :func:`built_chunk` keeps the models
and outcome tables of the last few chunks, which the compiled loop and the exact evaluation
read (runs on the same MDPs in a row build them once).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

import gridworld_env
from distill_agents.teachers import Teachers

if TYPE_CHECKING:
    from distill_agents.runner.evaluation import Evaluator

del gridworld_env  # imported to register the environment ids

__all__ = [
    "BUILT_CACHE_BYTES",
    "BUILT_CACHE_ENTRIES",
    "BUILT_CHUNKS",
    "GRID_ID",
    "SHARED_IDS",
    "Built",
    "EnvBuilder",
    "built_chunk",
]

#: Builds of chunks kept per process for the compiled loop (:func:`built_chunk`; 20x20 grids:
#: ~215 MB per 500 MDPs with 4 actions, ~290 MB with 40) ...
BUILT_CACHE_ENTRIES = 4
#: ... if their models and outcome tables take at most this many bytes.
BUILT_CACHE_BYTES = 400e6
#: The random-grid env id (per-MDP layouts from layout seeds).
GRID_ID = "DistillGrid-v0"
#: Env ids whose MDPs are all the same (no layouts).
SHARED_IDS = ("DistillChain-v0", "DistillOscillation-v0")


class EnvBuilder:
    """Vector envs whose sub-envs are given MDPs of a :class:`Teachers` (table indices)."""

    def __init__(self, teachers: Teachers, max_episode_steps: int | None, parallel: Any):
        env_id = teachers.env_id
        if env_id is None:
            raise ValueError(
                "teachers record no env_id: the runner needs teachers made for one of "
                f"{(GRID_ID, *SHARED_IDS)} (e.g. by distill-grid teach)"
            )
        if env_id not in (GRID_ID, *SHARED_IDS):
            raise ValueError(
                f"teachers.env_id must be one of {(GRID_ID, *SHARED_IDS)}, got {env_id!r}"
            )
        kwargs = dict(teachers.env_kwargs)
        for key in ("num_envs", "layouts", "render_mode", "max_episode_steps", "parallel"):
            if key in kwargs:
                raise ValueError(f"teachers.env_kwargs must not set {key!r}")
        self.env_id = env_id
        self.layout_seeds = np.asarray(teachers.layout_seeds)
        self.per_mdp_layouts = False
        self._layouts: dict[int, list[str]] = {}
        if env_id == GRID_ID:
            observation = kwargs.get("observation", "full")
            if observation not in ("full", "partial"):
                raise ValueError(
                    f"teachers.env_kwargs['observation'] must be 'full' or 'partial', got "
                    f"{observation!r}"
                )
            kwargs["observation"] = "index" if observation == "full" else "partial_index"
            if "layout_seed" in kwargs and "layout" not in kwargs:
                single_kwargs = dict(teachers.env_kwargs)
                single = gym.make(env_id, **single_kwargs).unwrapped
                kwargs.pop("layout_seed")
                kwargs["layout"] = list(single.layout)  # type: ignore[attr-defined]
            elif "layout" not in kwargs:
                if (self.layout_seeds < 0).any():
                    raise ValueError(
                        "teachers record no layout seed for some MDPs and no shared layout: "
                        "cannot rebuild their environments"
                    )
                self.per_mdp_layouts = True
        else:
            if "observation" in kwargs:
                raise ValueError(f"teachers.env_kwargs of {env_id} must not set 'observation'")
            kwargs["observation"] = "index"
        if max_episode_steps is not None:
            kwargs["max_episode_steps"] = max_episode_steps
        kwargs["parallel"] = parallel
        self.kwargs = kwargs

    def key(self, mdps: Sequence[int] | NDArray[np.int64]) -> tuple[Any, ...]:
        """What :meth:`make`'s vector env for ``mdps`` is a function of (for caches)."""
        which: Any = (
            tuple(int(s) for s in self.layout_seeds[np.asarray(mdps, dtype=np.int64)])
            if self.per_mdp_layouts
            else len(mdps)  # a shared layout, or an env without layouts: the MDPs are equal
        )
        return (self.env_id, json.dumps(self.kwargs, sort_keys=True, default=str), which)

    def make(self, mdps: Sequence[int] | NDArray[np.int64]) -> Any:
        """A vector env whose sub-env ``j`` is the teachers' MDP ``mdps[j]``."""
        mdps = [int(m) for m in mdps]
        kwargs = dict(self.kwargs)
        if self.per_mdp_layouts:
            seeds = self.layout_seeds[mdps]
            consecutive = bool(np.all(np.diff(seeds) == 1))
            if consecutive and not all(m in self._layouts for m in mdps):
                kwargs["layout_seed"] = int(seeds[0])
            else:
                for m in mdps:
                    if m not in self._layouts:
                        single_kwargs = dict(
                            kwargs, observation="full", layout_seed=int(self.layout_seeds[m])
                        )
                        single_kwargs.pop("parallel")
                        single_kwargs.pop("max_episode_steps", None)
                        single = gym.make(self.env_id, **single_kwargs).unwrapped
                        self._layouts[m] = list(single.layout)  # type: ignore[attr-defined]
                kwargs["layouts"] = [self._layouts[m] for m in mdps]
        envs = gym.make_vec(
            self.env_id, num_envs=len(mdps), vectorization_mode="vector_entry_point", **kwargs
        )
        if self.per_mdp_layouts and "layout_seed" in kwargs:
            for m, layout in zip(mdps, envs.layouts, strict=True):  # type: ignore[attr-defined]
                self._layouts[m] = list(layout)
        return envs


@dataclass
class Built:
    """What the compiled loop and the exact evaluation need of a chunk's vector env."""

    models: Any
    tables: tuple[Any, ...]
    limit: int | None
    evaluator: Evaluator | None = None  # its model parts are shared by later evaluators


#: Chunks built in this process, most recent last (see :func:`built_chunk`).
BUILT_CHUNKS: dict[tuple[Any, ...], Built] = {}


def built_chunk(builder: EnvBuilder, mdps: NDArray[np.int64]) -> tuple[Built, bool]:
    """The models and outcome tables of MDPs ``mdps``; ``(built, whether it was built now)``.

    The last :data:`BUILT_CACHE_ENTRIES` builds of at most :data:`BUILT_CACHE_BYTES` each are
    kept, so runs on the same MDPs in a row (``reproduce``'s curves of a panel, and panels on
    the same MDPs) build them once. Nothing in them is written to after the build.
    """
    key = builder.key(mdps)
    built = BUILT_CHUNKS.pop(key, None)
    fresh = built is None
    if built is None:
        envs = builder.make(mdps)
        built = Built(envs.models, envs.outcome_tables(), envs.max_episode_steps)
        envs.close()
    size = sum(int(getattr(a, "nbytes", 0)) for a in built.tables) + sum(
        int(getattr(built.models, name).nbytes)
        for name in ("next_states", "next_probs", "next_rewards")
    )
    if size <= BUILT_CACHE_BYTES:
        BUILT_CHUNKS[key] = built
        while len(BUILT_CHUNKS) > BUILT_CACHE_ENTRIES:
            del BUILT_CHUNKS[next(iter(BUILT_CHUNKS))]
    return built, fresh
