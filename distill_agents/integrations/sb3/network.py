"""An SB3 model's network: its kind, its scores on a batch, and checks of its observations.

The teacher (:mod:`~distill_agents.integrations.sb3.teacher`) and the distillation into a
network (:mod:`~distill_agents.integrations.sb3.distill_into`) both read a model through these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from numpy.typing import NDArray
from stable_baselines3.common.distributions import CategoricalDistribution
from stable_baselines3.common.policies import ActorCriticPolicy

__all__ = [
    "ACTOR_CRITIC",
    "CHUNK",
    "Q",
    "as_model_batch",
    "check_model_obs",
    "check_temperature",
    "model_kind",
    "network_scores",
    "sample_actions",
]

#: Model kind of PPO and A2C (an ``ActorCriticPolicy``).
ACTOR_CRITIC = "actor_critic"
#: Model kind of DQN (a policy with ``q_net``).
Q = "q"
#: Observations per forward pass when querying a network without gradients.
CHUNK = 4096


def check_temperature(temperature: Any) -> float:
    """``temperature`` as a float, or a ValueError unless it is a finite number ``>= 0``."""
    if isinstance(temperature, bool) or not isinstance(
        temperature, (int, float, np.integer, np.floating)
    ):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    value = float(temperature)
    if not (np.isfinite(value) and value >= 0.0):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    return value


def model_kind(model: Any) -> str:
    """``"actor_critic"`` (PPO, A2C) or ``"q"`` (DQN); a ValueError for anything else."""
    policy = getattr(model, "policy", None)
    action_space = getattr(model, "action_space", None)
    if policy is None or action_space is None:
        raise ValueError(
            f"model must be a Stable-Baselines3 model (PPO, A2C or DQN), got {type(model).__name__}"
        )
    if not isinstance(action_space, spaces.Discrete) or int(action_space.start) != 0:
        raise ValueError(
            f"model must have a Discrete action space starting at 0, got {action_space}"
        )
    if isinstance(policy, ActorCriticPolicy):
        return ACTOR_CRITIC
    if isinstance(getattr(policy, "q_net", None), torch.nn.Module):
        return Q
    raise ValueError(
        "model must be an SB3 PPO or A2C model (an ActorCriticPolicy) or a DQN model (a policy "
        f"with q_net); got a {type(model).__name__} with a {type(policy).__name__}"
    )


def network_scores(policy: Any, kind: str, obs: Any) -> torch.Tensor:
    """``[B, A]``: log-probabilities (PPO/A2C) or Q-values (DQN) of a batch, with autograd."""
    if kind == ACTOR_CRITIC:
        dist = policy.get_distribution(obs)
        if not isinstance(dist, CategoricalDistribution):
            raise ValueError(
                f"the model's action distribution must be categorical, got {type(dist).__name__}"
            )
        logits: torch.Tensor = dist.distribution.logits
        return logits
    q_values: torch.Tensor = policy.q_net(obs)
    return q_values


def check_model_obs(space: spaces.Space, batch: NDArray) -> None:
    """A ValueError for integer observations outside a Discrete / MultiDiscrete space."""
    if isinstance(space, spaces.Discrete):
        low, high = int(space.start), int(space.start + space.n)
        if batch.size and (batch.min() < low or batch.max() >= high):
            raise ValueError(
                f"observations must lie in the model's observation space {space} "
                f"([{low}, {high})), got values in [{batch.min()}, {batch.max()}]"
            )
    elif isinstance(space, spaces.MultiDiscrete):
        nvec = np.asarray(space.nvec)
        start = np.asarray(getattr(space, "start", np.zeros_like(nvec)))
        if batch.size and (np.any(batch < start) or np.any(batch >= start + nvec)):
            raise ValueError(
                f"observations must lie in the model's observation space {space}; got values "
                "outside it (a -1 row of observation_of_state? map states without an "
                "observation away first)"
            )


def as_model_batch(
    space: spaces.Space, observations: Any, mapping: Callable[[Any], Any] | None
) -> NDArray:
    """Stack observations (mapped by ``mapping`` first) into ``[B, *space.shape]``."""
    shape: tuple[int, ...] = tuple(space.shape or ())
    if mapping is not None:
        items = [np.asarray(mapping(o)) for o in observations]
        batch = np.stack(items) if items else np.zeros((0, *shape), dtype=np.int64)
    else:
        batch = np.asarray(observations)
    if batch.ndim < len(shape) or batch.shape[batch.ndim - len(shape) :] != shape:
        raise ValueError(
            f"observations must have shape [B, *{shape}] for the model's observation space "
            f"{space}, got {batch.shape}"
        )
    batch = batch.reshape((-1, *shape))
    if isinstance(space, (spaces.Discrete, spaces.MultiDiscrete)):
        if batch.dtype.kind not in "iu":
            if not (batch.dtype.kind == "f" and np.all(batch == np.round(batch))):
                raise ValueError(f"observations must be integers for {space}, got {batch.dtype}")
            batch = batch.astype(np.int64)
        check_model_obs(space, batch)
    return batch


def sample_actions(probs: NDArray[np.float64], rng: np.random.Generator) -> NDArray[np.int64]:
    """One action per row of ``probs`` ``[B, A]`` by inverse CDF (one uniform per row)."""
    cum = np.cumsum(probs, axis=-1)
    u = rng.random((probs.shape[0], 1)) * cum[:, -1:]
    actions: NDArray[np.int64] = np.minimum((cum <= u).sum(axis=-1), probs.shape[1] - 1).astype(
        np.int64
    )
    return actions
