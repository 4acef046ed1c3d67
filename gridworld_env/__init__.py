"""Gymnasium environments for studying policy distillation (Czarnecki et al., AISTATS 2019).

Importing the package registers ``DistillGrid-v0``, ``DistillChain-v0`` and
``DistillOscillation-v0`` (also reachable as ``"gridworld_env:DistillGrid-v0"`` without an
import).
"""

from gridworld_env.base import TabularEnv
from gridworld_env.chain import DistillChainEnv, chain_mdp, chain_observation_table
from gridworld_env.grid import DistillGridEnv, grid_mdp, grid_observation_table
from gridworld_env.layout import LayoutError
from gridworld_env.mdp import TabularMDP, reachable_states
from gridworld_env.oscillation import (
    DistillOscillationEnv,
    oscillation_mdp,
    oscillation_observation_table,
)
from gridworld_env.registration import MAX_EPISODE_STEPS, register_envs
from gridworld_env.wrappers import TableIndexWrapper, table_index

__all__ = [
    "MAX_EPISODE_STEPS",
    "DistillChainEnv",
    "DistillGridEnv",
    "DistillOscillationEnv",
    "LayoutError",
    "TableIndexWrapper",
    "TabularEnv",
    "TabularMDP",
    "chain_mdp",
    "chain_observation_table",
    "grid_mdp",
    "grid_observation_table",
    "oscillation_mdp",
    "oscillation_observation_table",
    "reachable_states",
    "table_index",
]

__version__ = "0.1.0"

register_envs()
