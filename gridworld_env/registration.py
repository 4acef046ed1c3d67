"""Register every environment id of the package with Gymnasium (idempotently)."""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

__all__ = ["MAX_EPISODE_STEPS", "register_envs"]

#: Time limit of every registered id. The paper's episodes end by absorption (probability 0.01
#: per step, so the mean length is under 100 steps); 1000 steps truncates fewer than 5e-5 of the
#: episodes and only guards against policies that never end when ``absorb_prob=0``.
MAX_EPISODE_STEPS = 1000

_ENVS = {
    "DistillGrid-v0": ("grid:DistillGridEnv", "vector:DistillGridVectorEnv"),
    "DistillChain-v0": ("chain:DistillChainEnv", "vector:DistillChainVectorEnv"),
    "DistillOscillation-v0": (
        "oscillation:DistillOscillationEnv",
        "vector:DistillOscillationVectorEnv",
    ),
}


def register_envs() -> None:
    """Register the ids; a second call (or a re-import) does nothing and warns nothing."""
    for env_id, (entry, vector_entry) in _ENVS.items():
        if env_id in registry:
            continue
        register(
            id=env_id,
            entry_point=f"gridworld_env.{entry}",
            vector_entry_point=f"gridworld_env.{vector_entry}",
            max_episode_steps=MAX_EPISODE_STEPS,
        )
