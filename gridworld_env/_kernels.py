"""Former name of :mod:`gridworld_env.kernels` (re-exports its public names)."""

from gridworld_env.kernels import *  # noqa: F403
from gridworld_env.kernels import OUTCOME_DTYPE, pack_outcomes  # noqa: F401
