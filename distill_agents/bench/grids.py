"""The random grids and optimal teachers the student benchmarks run on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from distill_agents.runner.envs import GRID_ID
from distill_agents.teachers import Teachers, planned_teachers

__all__ = ["grid_teachers"]


def grid_teachers(n_mdps: int, seed: int, env_kwargs: Mapping[str, Any]) -> tuple[Teachers, Any]:
    """Planned (optimal) teachers of ``n_mdps`` random 20x20 grids (layout seeds ``seed ..``).

    Returns:
        The teachers and the vector env's models of their MDPs.
    """
    envs: Any = gym.make_vec(
        GRID_ID,
        num_envs=n_mdps,
        vectorization_mode="vector_entry_point",
        observation="index",
        layout_seed=seed,
        **env_kwargs,
    )
    models = envs.models
    teachers = planned_teachers(
        models,
        env_id=GRID_ID,
        env_kwargs=dict(env_kwargs),
        layout_seeds=np.arange(seed, seed + n_mdps),
    )
    return teachers, models
