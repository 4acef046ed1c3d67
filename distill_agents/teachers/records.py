"""Typed records of the teacher trainers' agent kernels.

The agent kernels (:mod:`~distill_agents.teachers.q_kernels`,
:mod:`~distill_agents.teachers.a2c_kernels`) take their arrays grouped in these NamedTuples
(numba compiles them as typed tuples with named fields); the trainer
(:mod:`distill_agents.teachers.training`) builds them once per training phase, and the kernels
update their arrays in place:

- :class:`Actors`: the sub-envs of one phase, their MDPs, observations, actions and status
  (:data:`IDLE`, :data:`ACTING`, :data:`ENDED`), the thread ranges and the per-range counts;
- :class:`Tallies`: per MDP, the episodes started and completed and the transitions learned;
- :class:`QParams` / :class:`A2CParams`: the hyper-parameters;
- :class:`A2CTables`: the actor-critic's tables; :class:`EpisodeBuffers`: its per-actor
  episode buffers.

The transitions of one ``step`` (rewards, next observations, terminations, truncations), the
actors' uniforms and whether new episodes may start are passed on their own: they change at
every call.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "ACTING",
    "ENDED",
    "IDLE",
    "A2CParams",
    "A2CTables",
    "Actors",
    "EpisodeBuffers",
    "QParams",
    "Tallies",
]

IDLE = 0  #: the actor takes no part; its sub-env is stepped and its transitions are ignored
ACTING = 1  #: the actor is in an episode that is learned from
ENDED = 2  #: the actor's episode ended at the previous step (the next step is an autoreset)


class Actors(NamedTuple):
    """The actors (sub-envs) of one training phase.

    Attributes:
        bounds: ``[C + 1]`` int64 actor ranges, one per thread, never splitting an MDP's actors.
        group: ``[B]`` int64 MDP of each actor (contiguous, ascending).
        obs: ``[B]`` int64 observations the ``actions`` were chosen at (set to the next ones).
        actions: ``[B]`` int64 actions just taken (set to the next actions).
        status: ``[B]`` int8 actor status (:data:`IDLE`, :data:`ACTING`, :data:`ENDED`).
        counts: ``[C + 1, k]`` int64 output: per range (rows ``0 .. C-1``) and in total (row
            ``C``), the busy actors, the transitions learned from and (A2C, ``k = 3``) 1 if an
            episode overflowed the buffers.
    """

    bounds: NDArray[np.int64]
    group: NDArray[np.int64]
    obs: NDArray[np.int64]
    actions: NDArray[np.int64]
    status: NDArray[np.int8]
    counts: NDArray[np.int64]


class Tallies(NamedTuple):
    """Per-MDP episode accounting (``[G]`` int64 arrays, updated in place).

    Attributes:
        started: episodes started per MDP.
        completed: episodes completed per MDP.
        steps: transitions learned from per MDP.
        n_episodes: episodes each MDP learns from.
    """

    started: NDArray[np.int64]
    completed: NDArray[np.int64]
    steps: NDArray[np.int64]
    n_episodes: int


class QParams(NamedTuple):
    """Q-learning's hyper-parameters.

    Attributes:
        epsilon: exploration probability.
        lr: learning rate.
        gamma: discount.
    """

    epsilon: float
    lr: float
    gamma: float


class A2CTables(NamedTuple):
    """The actor-critic's tables (updated in place).

    Attributes:
        logits: ``[G, N, A]`` float64 actor logits.
        values: ``[G, N]`` float64 critic.
    """

    logits: NDArray[np.float64]
    values: NDArray[np.float64]


class A2CParams(NamedTuple):
    """The actor-critic's hyper-parameters.

    Attributes:
        lr: actor learning rate.
        critic_lr: critic learning rate.
        gamma: discount.
        mc: True for the Monte Carlo variant, False for TD(1).
    """

    lr: float
    critic_lr: float
    gamma: float
    mc: bool


class EpisodeBuffers(NamedTuple):
    """Each actor's running episode (A2C learns from whole episodes).

    Attributes:
        obs: ``[B, L + 1]`` int64 observations.
        actions: ``[B, L]`` int64 actions.
        rewards: ``[B, L]`` float64 rewards.
        length: ``[B]`` int64 steps recorded so far.
    """

    obs: NDArray[np.int64]
    actions: NDArray[np.int64]
    rewards: NDArray[np.float64]
    length: NDArray[np.int64]
